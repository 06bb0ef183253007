"""The evidence chain: one hash chain per tenant over every stored decision and event.

    entry_hash = sha256(prev_hash || row_bytes)

`prev_hash` is the previous entry's hash in the same tenant's chain, or GENESIS (32 zero
bytes, 64 hex zeros) for the first entry. `row_bytes` are the RFC 8785 canonical JSON of

    decision: {"kind": "decision", "record": <the stored record>}
    event:    {"at", "data", "decision_id", "event_id", "kind": "event", "type"}

Both are built by concatenating the stored canonical bytes with fixed framing, so neither
writing nor verifying re-encodes a record. Entries are numbered 1, 2, 3 ... per tenant in
commit order; each store writes an entry in the same transaction as its row and takes the
order from the database (SQLite's write lock, PostgreSQL's per-tenant head row lock).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import NamedTuple

import orjson

from lumyn.contracts.canonical import canonical_bytes
from lumyn.errors import InvalidEvent

_log = logging.getLogger("lumyn.integrity")

GENESIS = bytes(32)
DECISION_PREFIX = b'{"kind":"decision","record":'
DECISION_SUFFIX = b"}"


class Entry(NamedTuple):
    tenant_id: str
    seq: int
    kind: str  # "decision" | "event"
    decision_id: str
    event_id: str | None
    prev_hash: bytes
    entry_hash: bytes


def entry_dict(entry: Entry) -> dict[str, object]:
    return {"seq": entry.seq, "kind": entry.kind, "decision_id": entry.decision_id,
            "event_id": entry.event_id, "prev_hash": entry.prev_hash.hex(),
            "entry_hash": entry.entry_hash.hex()}


def chain_dict(entries: list[Entry]) -> dict[str, object]:
    """A decision's entries as `show --chain` and packs carry them."""
    return {"tenant_id": entries[0].tenant_id if entries else None, "genesis": GENESIS.hex(),
            "entries": [entry_dict(e) for e in entries]}


def decision_hash(prev: bytes, record_json: bytes) -> bytes:
    digest = hashlib.sha256(prev)
    digest.update(DECISION_PREFIX)
    digest.update(record_json)
    digest.update(DECISION_SUFFIX)
    return digest.digest()


def _text(value: str) -> bytes:
    return orjson.dumps(value)  # orjson writes strings exactly as RFC 8785 does


def event_row_bytes(decision_id: str, event_id: str, at: str, event_type: str,
                    data_json: bytes) -> bytes:
    """The event's canonical row bytes, given its stored (canonical) data bytes."""
    return b"".join((
        b'{"at":', _text(at), b',"data":', data_json, b',"decision_id":', _text(decision_id),
        b',"event_id":', _text(event_id), b',"kind":"event","type":', _text(event_type), b"}",
    ))


def event_hash(prev: bytes, row_bytes: bytes) -> bytes:
    return hashlib.sha256(prev + row_bytes).digest()


class ChainTx:
    """The chain entries one transaction appends. `head_of(tenant)` reads a tenant's current
    (seq, hash) inside that transaction, once; later rows chain onto what this object holds."""

    __slots__ = ("_head_of", "entries", "heads")

    def __init__(self, head_of: Callable[[str], tuple[int, bytes] | None]) -> None:
        self._head_of = head_of
        self.heads: dict[str, tuple[int, bytes]] = {}
        self.entries: list[Entry] = []

    def _head(self, tenant_id: str) -> tuple[int, bytes]:
        head = self.heads.get(tenant_id)
        if head is None:
            head = self._head_of(tenant_id) or (0, GENESIS)
        return head

    def decision(self, tenant_id: str, decision_id: str, record_json: bytes) -> None:
        seq, prev = self._head(tenant_id)
        entry_hash = decision_hash(prev, record_json)
        self.heads[tenant_id] = (seq + 1, entry_hash)
        self.entries.append(Entry(tenant_id, seq + 1, "decision", decision_id, None, prev,
                                  entry_hash))

    def event(self, tenant_id: str, decision_id: str, event_id: str, row_bytes: bytes) -> None:
        seq, prev = self._head(tenant_id)
        entry_hash = event_hash(prev, row_bytes)
        self.heads[tenant_id] = (seq + 1, entry_hash)
        self.entries.append(Entry(tenant_id, seq + 1, "event", decision_id, event_id, prev,
                                  entry_hash))


def event_data_bytes(data: object) -> bytes:
    """The canonical bytes an event's data is stored as (and chained over)."""
    try:
        return canonical_bytes(data)
    except ValueError as exc:
        raise InvalidEvent(f"event data has no canonical JSON form: {exc}", field="data") from None


def backfill(
    decisions: Sequence[tuple[str, str, str, bytes]],
    events: Sequence[tuple[str, str, str, str, str, bytes]],
) -> list[Entry]:
    """Chain entries for rows stored before the chain existed: per tenant in time order, a
    decision before events of the same instant, ties in stored order.

    `decisions`: (tenant_id, decision_id, created_at, record_json), in stored order;
    `events`: (tenant_id, decision_id, event_id, at, type, data_json), in stored order."""
    order = [(d[2], 0, i) for i, d in enumerate(decisions)]
    order += [(e[3], 1, i) for i, e in enumerate(events)]
    order.sort()
    tx = ChainTx(lambda tenant_id: None)
    for _, kind, index in order:
        if kind == 0:
            tenant_id, decision_id, _, record_json = decisions[index]
            tx.decision(tenant_id, decision_id, bytes(record_json))
        else:
            tenant_id, decision_id, event_id, at, event_type, data_json = events[index]
            tx.event(tenant_id, decision_id, event_id,
                     event_row_bytes(decision_id, event_id, at, event_type, bytes(data_json)))
    return tx.entries


def chain_built_message(decisions: int, events: int, tenants: int) -> str:
    """Said once, when an older database gets its chain (also logged: opening a store builds
    it without any command asking)."""
    message = (f"built the evidence chain over {decisions} existing decision(s) and {events} "
               f"event(s) of {tenants} tenant(s); no record was changed")
    _log.warning(message)
    return message
