"""What both backends share, written once: the inputs they refuse, how rows become memory items
and events, the migration loop, memory-checked writes and the idempotency conflict.

Each backend keeps only its dialect (SQL text, placeholders, connections, locking).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from lumyn.contracts.ids import utc_now
from lumyn.errors import IdempotencyConflict, InvalidEvent, RequestInvalid
from lumyn.memory.item import MemoryItem
from lumyn.store.base import DecisionRow, DecisionWrite, IdempotencyKey

SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version "
    "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
)
# Column lists that the row readers below expect, in this order.
MEMORY_COLUMNS = (
    "memory_id, tenant_id, action_type, label, summary, source_decision_id, features, created_at"
)
EVENT_COLUMNS = "event_id, at, type"  # then the data column, which the backends name apart


# -- inputs both backends refuse ------------------------------------------------------------------
# PostgreSQL TEXT cannot hold U+0000, so identifiers and label summaries containing it are
# refused by every backend alike (records and event data are stored as bytes and keep it).


def refuse_unstorable_write(row: DecisionRow, key: IdempotencyKey | None) -> None:
    _refuse_nul(row.tenant_id, "tenant_id", RequestInvalid)
    if key is not None:
        _refuse_nul(key.request_id, "request_id", RequestInvalid)


def refuse_unstorable_memory(memory: MemoryItem | None) -> None:
    if memory is not None:
        _refuse_nul(memory.summary, "summary", InvalidEvent)
        _refuse_nul(memory.tenant_id, "tenant_id", InvalidEvent)


def storable_id(value: str) -> bool:
    """Whether an identifier can be stored at all; a read for one that cannot finds nothing."""
    return "\x00" not in value


def _refuse_nul(value: str | None, field: str,
                invalid: type[RequestInvalid] | type[InvalidEvent]) -> None:
    if value is not None and "\x00" in value:
        raise invalid(f"{field} contains U+0000, which the store cannot keep in text", field=field)


# -- rows ------------------------------------------------------------------------------------------


def memory_since(rows: Sequence[Sequence[Any]], tenant_id: str,
                 action_type: str) -> list[tuple[int, MemoryItem]]:
    """Rows of schema.MEMORY_SINCE_SQL as (seq, item)."""
    return [
        (int(r[0]), MemoryItem(r[1], tenant_id, action_type, r[2], r[3],
                               tuple(orjson.loads(r[5])), r[4], r[6],
                               None if r[7] is None else int(r[7])))
        for r in rows
    ]


def memory_items(rows: Sequence[Sequence[Any]]) -> list[MemoryItem]:
    """Rows of MEMORY_COLUMNS as items."""
    return [MemoryItem(r[0], r[1], r[2], r[3], r[4], tuple(orjson.loads(r[6])), r[5], r[7])
            for r in rows]


def memory_params(memory: MemoryItem, at: str) -> tuple[Any, ...]:
    """The values of MEMORY_COLUMNS for an insert."""
    return (memory.memory_id, memory.tenant_id, memory.action_type, memory.label, memory.summary,
            memory.source_decision_id, orjson.dumps(list(memory.features)),
            memory.created_at or at)


def events(rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of EVENT_COLUMNS plus the data column as events."""
    return [{"event_id": r[0], "at": r[1], "type": r[2], "data": orjson.loads(r[3])}
            for r in rows]


def conflict(key: IdempotencyKey, record_json: bytes) -> IdempotencyConflict:
    existing = orjson.loads(record_json)["decision_id"]
    return IdempotencyConflict(
        f"request_id '{key.request_id}' was already used for a different request "
        f"(decision {existing})",
        existing_decision_id=existing,
    )


# -- writes ------------------------------------------------------------------------------------


def stale_writes(writes: Sequence[DecisionWrite],
                 newest_seq: Callable[[str, str], int]) -> list[bool]:
    """For each write, whether memory of its group moved past its memory_seq; `newest_seq`
    (tenant, action type) is asked once per group, inside the write's transaction."""
    newest: dict[tuple[str, str], int] = {}
    stale = []
    for write in writes:
        if write.memory_seq is None:
            stale.append(False)
            continue
        group = (write.row.tenant_id, write.row.action_type)
        if group not in newest:
            newest[group] = newest_seq(*group)
        stale.append(newest[group] > write.memory_seq)
    return stale


# -- schema ------------------------------------------------------------------------------------


def apply_migrations(execute: Callable[..., Any], current: int,
                     migrations: Mapping[int, Sequence[str]], mark: str) -> list[str]:
    """Run every migration above `current`, recording each in schema_version (`mark` is the
    dialect's placeholder). The caller holds the transaction and any lock."""
    done: list[str] = []
    for version in sorted(migrations):
        if version > current:
            for statement in migrations[version]:
                execute(statement)  # no parameters: DDL may hold a literal %
            execute(f"INSERT INTO schema_version VALUES ({mark}, {mark})", (version, utc_now()))
            done.append(f"applied schema migration {version}")
    return done
