"""Caller-chosen event ids: an event sent twice (a retry, a replayed request) is stored once.

`append_event(..., event_id=X)` / `{"type": …, "data": …, "event_id": X}`: the first event
with id X is stored; sending the same event again returns the stored one (nothing is appended,
no second memory item); the same id with a different decision, type or data is a 409
`EVENT_ID_CONFLICT`. Without an id every call appends a new event, as before.
"""

from __future__ import annotations

import re
from typing import Any

from lumyn.errors import EventIdConflict, InvalidEvent

EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SERVER_FIELDS = ("memory_id",)  # label data the server fills in; not part of the comparison


def check_event_id(event_id: Any) -> str:
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise InvalidEvent("event_id must be 1-128 characters: letters, digits, . _ : - "
                           "(a ULID or UUID is a good choice)", field="event_id")
    return event_id


def event_id_taken(event_id: str) -> EventIdConflict:
    return EventIdConflict(f"event_id '{event_id}' already names a different event",
                           field="event_id")


def earlier_event(events: list[dict[str, Any]], event_id: str, event_type: str,
                  data: dict[str, Any]) -> dict[str, Any] | None:
    """The stored event a repeat of (event_id, type, data) should return, or None when the id
    is new for this decision; EventIdConflict when the id names a different event."""
    for event in events:
        if event.get("event_id") != event_id:
            continue
        stored = {k: v for k, v in (event.get("data") or {}).items() if k not in SERVER_FIELDS}
        sent = {k: v for k, v in data.items() if k not in SERVER_FIELDS}
        if event.get("type") != event_type or stored != sent:
            raise event_id_taken(event_id)
        return event
    return None
