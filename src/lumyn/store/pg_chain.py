"""The evidence chain on PostgreSQL (lumyn.integrity.chain), for lumyn.store.postgres.

Several replicas append to one chain per tenant, so the order comes from the database: every
append upserts the tenant's row in `chain_heads` in the same statement as the row it chains.
`INSERT … ON CONFLICT DO UPDATE` locks that head row until COMMIT and always updates its latest
committed version, so appends of one tenant queue on the lock and each chains onto the one
before it: one chain, no forks, no gaps. The hash is computed by the server (`sha256()`), so a
decide is still one statement and one round trip. Tenants do not wait on each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from lumyn.integrity.chain import (
    DECISION_PREFIX,
    DECISION_SUFFIX,
    GENESIS,
    Entry,
    backfill,
    chain_built_message,
)
from lumyn.store.schema import CHAIN_VIEW_PG

Conn = psycopg.Connection[Any]

_GENESIS = f"'\\x{GENESIS.hex()}'::bytea"
_PREFIX = f"'\\x{DECISION_PREFIX.hex()}'::bytea"
_SUFFIX = f"'\\x{DECISION_SUFFIX.hex()}'::bytea"

MIGRATION = [
    """
CREATE TABLE IF NOT EXISTS chain_entries (
    tenant_id   TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    event_id    TEXT,
    prev_hash   BYTEA NOT NULL,
    entry_hash  BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, seq)
)""",
    "CREATE INDEX IF NOT EXISTS chain_entries_decision ON chain_entries (decision_id)",
    # One row per tenant: the lock that orders its appends, and its latest entry.
    """
CREATE TABLE IF NOT EXISTS chain_heads (
    tenant_id TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    prev_hash BYTEA NOT NULL,
    head_hash BYTEA NOT NULL
)""",
    *[
        statement
        for op, level in (("update", "ROW"), ("delete", "ROW"), ("truncate", "STATEMENT"))
        for statement in (
            f"DROP TRIGGER IF EXISTS chain_entries_no_{op} ON chain_entries",
            f"CREATE TRIGGER chain_entries_no_{op} BEFORE {op.upper()} ON chain_entries "
            f"FOR EACH {level} EXECUTE FUNCTION lumyn_append_only()",
        )
    ],
]
TRIGGERS = ("chain_entries_no_update", "chain_entries_no_delete", "chain_entries_no_truncate")

# The CTEs that chain the row an `inserted AS (INSERT INTO decisions … RETURNING tenant_id,
# decision_id, record_json)` CTE wrote (nothing when it wrote nothing: a retry).
DECISION_CTES = (
    "head AS (INSERT INTO chain_heads AS h (tenant_id, seq, prev_hash, head_hash) "
    f"SELECT i.tenant_id, 1, {_GENESIS}, "
    f"sha256({_GENESIS} || {_PREFIX} || i.record_json || {_SUFFIX}) FROM inserted i "
    "ON CONFLICT (tenant_id) DO UPDATE SET seq = h.seq + 1, prev_hash = h.head_hash, "
    f"head_hash = sha256(h.head_hash || {_PREFIX} || "
    f"(SELECT record_json FROM inserted) || {_SUFFIX}) "
    "RETURNING h.tenant_id, h.seq, h.prev_hash, h.head_hash), "
    "entry AS (INSERT INTO chain_entries "
    "SELECT head.tenant_id, head.seq, 'decision', i.decision_id, NULL, head.prev_hash, "
    "head.head_hash FROM head, inserted i)"
)

# An event and its chain entry, inside append_event's transaction (named parameters).
EVENT_STATEMENT = (
    "WITH ev AS (INSERT INTO decision_events (event_id, decision_id, at, type, data, data_json) "
    "VALUES (%(e)s, %(d)s, %(at)s, %(type)s, %(data)s::jsonb, %(data_json)s) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING 1), "
    "head AS (INSERT INTO chain_heads AS h (tenant_id, seq, prev_hash, head_hash) "
    f"SELECT %(t)s, 1, {_GENESIS}, sha256({_GENESIS} || %(row)s) FROM ev "
    "ON CONFLICT (tenant_id) DO UPDATE SET seq = h.seq + 1, prev_hash = h.head_hash, "
    "head_hash = sha256(h.head_hash || %(row)s) RETURNING h.seq, h.prev_hash, h.head_hash) "
    "INSERT INTO chain_entries SELECT %(t)s, seq, 'event', %(d)s, %(e)s, prev_hash, head_hash "
    "FROM head"
)
_ENTRY_COLUMNS = "tenant_id, seq, kind, decision_id, event_id, prev_hash, entry_hash"


def build(conn: Conn) -> list[str]:
    """Chain the rows an older database holds, once (inside the migration's transaction and
    advisory lock), without changing any of them."""
    decisions = [(r[0], r[1], r[2], bytes(r[3])) for r in conn.execute(
        "SELECT tenant_id, decision_id, created_at, record_json FROM decisions "
        "ORDER BY decision_id")]
    events = [(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in conn.execute(
        "SELECT d.tenant_id, e.decision_id, e.event_id, e.at, e.type, e.data_json "
        "FROM decision_events e JOIN decisions d ON d.decision_id = e.decision_id ORDER BY e.seq")]
    if not decisions:
        return []  # a new database: nothing to build
    entries = backfill(decisions, events)
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO chain_entries ({_ENTRY_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s)", entries)
        heads = {e.tenant_id: e for e in entries}
        cur.executemany(
            "INSERT INTO chain_heads (tenant_id, seq, prev_hash, head_hash) "
            "VALUES (%s, %s, %s, %s)",
            [(e.tenant_id, e.seq, e.prev_hash, e.entry_hash) for e in heads.values()])
    return [chain_built_message(len(decisions), len(events), len(heads))]


def entries_of(conn: Conn, decision_id: str) -> list[Entry]:
    rows = conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM chain_entries WHERE decision_id = %s ORDER BY seq",
        (decision_id,)).fetchall()
    return [Entry(r[0], int(r[1]), r[2], r[3], r[4], bytes(r[5]), bytes(r[6])) for r in rows]


class ChainView:
    """lumyn.integrity.verify.ChainView over one REPEATABLE READ transaction; the row scans
    stream through a server-side cursor."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def _select(self, name: str, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        sql, where = CHAIN_VIEW_PG[name]
        filtered = sql.format(where=f"{where} = %s AND" if tenant_id is not None else "")
        params = (tenant_id,) if tenant_id is not None else ()
        with self.conn.cursor(name=f"lumyn_verify_{name}") as cur:
            cur.itersize = 5000
            cur.execute(filtered, params)
            yield from cur

    def decisions(self, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        return self._select("decisions", tenant_id)

    def events(self, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        return self._select("events", tenant_id)

    def orphans(self, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        return self._select("orphans", tenant_id)

    def broken_links(self, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        return self._select("broken_links", tenant_id)

    def heads(self, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        return self._select("heads", tenant_id)

    def entry_with_hash(self, tenant_id: str, entry_hash: bytes) -> tuple[int, str] | None:
        found = self.conn.execute(
            "SELECT seq, decision_id FROM chain_entries WHERE tenant_id = %s AND entry_hash = %s",
            (tenant_id, entry_hash)).fetchone()
        return (int(found[0]), str(found[1])) if found else None

    def entry_at(self, tenant_id: str, seq: int) -> bytes | None:
        found = self.conn.execute(
            "SELECT entry_hash FROM chain_entries WHERE tenant_id = %s AND seq = %s",
            (tenant_id, seq)).fetchone()
        return bytes(found[0]) if found else None
