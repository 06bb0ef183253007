"""Replay against the store: is this pack what the workspace recorded?

Replay alone proves a pack is self-consistent: a pack re-derived with another verdict and a
recomputed manifest replays clean. When the workspace's store holds the pack's decision,
`lumyn replay` also exports that decision afresh and compares member by member: the record
(every field but the event log), the request, the policy text and the memory items must be
byte-identical, and the pack's event log must be the first events the store holds for the
decision (a pack exported before a later label is still genuine). The manifest is derived
from those members and checked by replay itself, so every field of a pack is covered.
Authenticity for a pack whose decision is not in the store is signing's job (issue 13).
"""

from __future__ import annotations

import json
from typing import Any

from lumyn.errors import LumynError
from lumyn.packs import (
    MEMORY_FILE,
    POLICY_FILE,
    RECORD_FILE,
    REQUEST_FILE,
    Check,
    ReplayReport,
    export_pack,
    read_pack,
)
from lumyn.store import Store

EVENT_LOG = "decision_event_log"
NOT_IN_STORE = ("the workspace's store does not hold this decision: the pack was checked for "
                "consistency only, not against the record")


def compare_with_store(report: ReplayReport, files: dict[str, bytes], store: Store) -> None:
    """Add a `store` check to `report` (and a note when the store lacks the decision)."""
    decision_id = report.decision_id
    if not isinstance(decision_id, str) or store.get_decision(decision_id) is None:
        report.notes.append(NOT_IN_STORE)
        return
    try:
        stored, _ = read_pack(export_pack(store, decision_id))
    except LumynError as exc:
        report.checks.append(Check("store", False, f"cannot export the stored decision: "
                                                   f"{exc.message}"))
        return
    differing = [name for name in (REQUEST_FILE, POLICY_FILE, MEMORY_FILE)
                 if files.get(name) != stored.get(name)]
    pack_record, store_record = _json(files.get(RECORD_FILE)), _json(stored.get(RECORD_FILE))
    pack_events = pack_record.pop(EVENT_LOG, []) if isinstance(pack_record, dict) else None
    store_events = store_record.pop(EVENT_LOG, []) if isinstance(store_record, dict) else []
    if pack_record != store_record:
        differing.insert(0, RECORD_FILE)
    elif not isinstance(pack_events, list) or pack_events != store_events[:len(pack_events)]:
        differing.insert(0, f"{RECORD_FILE} ({EVENT_LOG})")
    if differing:
        report.checks.append(Check("store", False, "differs from the decision the store holds: "
                                                   + ", ".join(differing)))
    else:
        report.checks.append(Check("store", True, "identical to the decision the store holds"))


def _json(data: bytes | None) -> Any:
    try:
        return json.loads(data or b"null")
    except ValueError:
        return None
