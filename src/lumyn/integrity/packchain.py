"""A pack's `chain.json`: the chain entries of its decision and events, checked offline.

    {"format": "lumyn_chain.v0", "tenant_id": ..., "genesis": "<64 hex>",
     "entries": [{"seq", "kind", "decision_id", "event_id", "prev_hash", "entry_hash",
                  "row" (events: the event's canonical row bytes as text)}]}

Replay recomputes each entry from the packed record and event log; the entries' positions and
hashes can then be compared with the store's verified chain (`lumyn verify --pack`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from lumyn.contracts.canonical import canonical_bytes
from lumyn.integrity.chain import (
    Entry,
    chain_dict,
    decision_hash,
    event_hash,
    event_row_bytes,
)

CHAIN_FILE = "chain.json"
CHAIN_FORMAT = "lumyn_chain.v0"


def chain_file(entries: list[Entry], events: list[dict[str, Any]]) -> bytes:
    """chain.json for a decision's entries, given its event log as the store returns it."""
    by_id = {e["event_id"]: e for e in events}
    body = {"format": CHAIN_FORMAT, **chain_dict(entries)}
    for entry, shown in zip(entries, body["entries"], strict=True):  # type: ignore[call-overload]
        if entry.event_id in by_id:
            shown["row"] = _event_row(entry, by_id[entry.event_id]).decode("utf-8")
    return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _event_row(entry: Entry, event: dict[str, Any]) -> bytes:
    """The row bytes the entry was computed over: events are stored as canonical JSON, but
    rows written before the chain existed kept orjson's key order (what the chain was then
    built over, unchanged), which orjson reproduces from the parsed data."""
    for data in (canonical_bytes(event["data"]), orjson.dumps(event["data"])):
        row = event_row_bytes(entry.decision_id, event["event_id"], event["at"], event["type"],
                              data)
        if event_hash(entry.prev_hash, row) == entry.entry_hash:
            return row
    return row  # the stored event no longer matches its entry: replay will say so


def check_chain(data: bytes, record: dict[str, Any]) -> tuple[bool, str]:
    """(ok, detail): every entry recomputes from the packed record and its event log."""
    try:
        body = json.loads(data.decode("utf-8"))
        entries = body["entries"]
        if body.get("format") != CHAIN_FORMAT or not isinstance(entries, list):
            raise ValueError(f"not a {CHAIN_FORMAT} file")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return False, f"{CHAIN_FILE} cannot be read: {exc}"
    stored = {k: v for k, v in record.items() if k != "decision_event_log"}
    events = {e.get("event_id"): e for e in record.get("decision_event_log") or []
              if isinstance(e, dict)}
    decision_id = record.get("decision_id")
    seen_decision, seen_events = False, set()
    try:
        for entry in entries:
            prev, expected = bytes.fromhex(entry["prev_hash"]), bytes.fromhex(entry["entry_hash"])
            if entry["kind"] == "decision":
                actual = decision_hash(prev, canonical_bytes(stored))
                what = f"decision {decision_id}"
                seen_decision = entry.get("decision_id") == decision_id
            else:
                row = entry["row"].encode("utf-8")
                fields = json.loads(row)
                event = events.get(entry.get("event_id"))
                what = f"event {entry.get('event_id')}"
                if event is None or fields.get("decision_id") != decision_id or any(
                        fields.get(k) != event.get(k) for k in ("event_id", "at", "type", "data")):
                    return False, f"{what} in {CHAIN_FILE} does not match the record's event log"
                actual = event_hash(prev, row)
                seen_events.add(entry["event_id"])
            if actual != expected:
                return False, f"entry {entry.get('seq')} ({what}) does not recompute from the pack"
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return False, f"{CHAIN_FILE} has a malformed entry: {exc!r}"
    missing = sorted(str(k) for k in set(events) - seen_events)
    if not seen_decision or missing:
        return False, (f"{CHAIN_FILE} lacks the entry of " + (
            f"event(s) {', '.join(map(str, missing))}" if seen_decision else "the decision"))
    seqs = ", ".join(str(e["seq"]) for e in entries)
    return True, f"{len(entries)} chain entries (positions {seqs}) recompute from the pack"


def match_store(data: bytes, stored: list[Entry]) -> tuple[bool, str]:
    """(ok, detail): the pack's chain entries are the store's, position for position (run on a
    chain that verified, and against a published head, this ties the pack to that head)."""
    try:
        packed = [(e["seq"], e["prev_hash"], e["entry_hash"])
                  for e in json.loads(data.decode("utf-8"))["entries"]]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return False, f"{CHAIN_FILE} cannot be read: {exc}"
    in_store = [(e.seq, e.prev_hash.hex(), e.entry_hash.hex()) for e in stored]
    if packed != in_store:
        return False, (f"the pack's chain entries (positions {_positions(packed)}) are not the "
                       f"store's (positions {_positions(in_store)})")
    return True, f"the pack's chain entries are the store's at positions {_positions(packed)}"


def _positions(entries: list[tuple[int, str, str]]) -> str:
    return ", ".join(str(e[0]) for e in entries) or "none"
