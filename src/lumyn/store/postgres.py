"""PostgreSQL backend: several Lumyn processes or service replicas, one database.

Selected by a `postgresql://…` storage URL. Same tables, indexes and guarantees as the SQLite
backend (lumyn.store.sqlite), with these PostgreSQL-specific choices:

* Connections come from a psycopg_pool ConnectionPool that is opened lazily, on the first call
  that needs the database, so constructing a store never fails. Connections run in autocommit:
  the hot path (`append_decision`) is ONE statement, hence one round trip and one commit.
* The schema is created and migrated by the store (a `schema_version` table, the numbering of
  lumyn.store.base.SCHEMA_VERSION) under a transaction-level advisory lock, so replicas that
  start together do not race each other's DDL.
* Records are stored twice in one row: `record_json BYTEA` holds the canonical (RFC 8785) bytes
  that `append_decision` and every read return, byte-identical to the SQLite backend by
  construction; `record JSONB` is a mirror for SQL queries. Re-canonicalising JSONB on read
  would also work for numbers, but JSONB cannot hold U+0000 in strings, which the request
  contract allows in evidence; the mirror replaces U+0000 with U+FFFD and nothing reads it.
  Event data follows the same pattern (`data_json` exact, `data` mirror).
* Append-only is enforced by triggers (UPDATE, DELETE and TRUNCATE raise) on decisions, events,
  memory items and policy snapshots; the store itself has no update or delete path.
* Idempotency: the key is the unique index on decisions (tenant_id, request_id), as in SQLite
  (the `idempotency_keys` view names it). `INSERT … ON CONFLICT DO NOTHING` makes concurrent
  identical decides from any number of processes produce exactly one row; the losers read the
  winner's row (READ COMMITTED: ON CONFLICT waited for it to commit) and compare digests.
* Memory items are read incrementally by sequence number (`memory_items_since`). A PostgreSQL
  sequence is NOT commit-ordered: transaction A may take seq 5, B seq 6, B commits, a reader
  pulls up to 6, then A commits and seq 5 is skipped forever by that reader. Every memory-item
  insert therefore takes a transaction-level advisory lock (MEMORY_LOCK) BEFORE it draws its
  sequence value and holds it until commit. PostgreSQL makes a commit visible before it
  releases the committing transaction's locks, so the next inserter can only draw a higher seq
  once every lower seq is visible: seq order equals commit order, and a reader that has seen seq
  n has seen every item below n. Labels are rare, so serialising them costs nothing measurable.
* Any psycopg or pool error becomes StorageUnavailable. A connection found broken (server
  restarted) makes the store check its idle connections and retry once; the pool reconnects in
  the background with a short reconnect timeout, so the store heals by itself when the server
  is back. Retrying a write is safe: every insert is keyed (decision_id, event_id, memory_id)
  and a retry of a committed write finds its own row.

Pool settings can ride on the URL as `lumyn_pool_min`, `lumyn_pool_max` and
`lumyn_pool_timeout` (seconds) query parameters; they are removed before psycopg sees the URL.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from lumyn.contracts.ids import utc_now
from lumyn.errors import (
    ConfigError,
    DecisionNotFound,
    IdempotencyConflict,
    InvalidEvent,
    LumynError,
    StorageUnavailable,
)
from lumyn.event_ids import event_id_taken
from lumyn.integrity.chain import Entry, event_data_bytes, event_row_bytes
from lumyn.masking import mask_password
from lumyn.memory.item import MemoryItem
from lumyn.store import pg_chain, shared
from lumyn.store.base import SCHEMA_VERSION, DecisionRow, DecisionWrite, IdempotencyKey, WriteOutcome
from lumyn.store.scan import Scope, scan_where
from lumyn.store.schema import (
    CHAIN_MIGRATION,
    EXPECTED_TABLES,
    MEMORY_SINCE_SQL,
    PRUNE_CUTOFF_SQL,
    PRUNED_COUNT_SQL,
    TENANT_SPAN,
    limit_clause,
)

T = TypeVar("T")
Conn = psycopg.Connection[Any]

# Advisory lock keys (arbitrary constants, "LUMY" + purpose).
MIGRATION_LOCK = 0x4C554D59_0001
MEMORY_LOCK = 0x4C554D59_0002

# Without a handler, psycopg_pool's reconnect warnings would reach stderr through logging's
# last-resort handler while the server is down; applications that configure logging still get
# them through propagation.
logging.getLogger("psycopg.pool").addHandler(logging.NullHandler())

_APPEND_ONLY = ("decisions", "decision_events", "memory_items", "policy_snapshots")

POSTGRES_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id    TEXT PRIMARY KEY,
    created_at     TEXT NOT NULL,
    tenant_id      TEXT NOT NULL,
    action_type    TEXT NOT NULL,
    verdict        TEXT NOT NULL,
    policy_hash    TEXT NOT NULL,
    context_digest TEXT NOT NULL,
    request_id     TEXT,
    request_digest TEXT,
    record         JSONB NOT NULL,
    record_json    BYTEA NOT NULL
)""",
        # A row holds the record twice (~2 × 1.7 KB for a typical record), over the default
        # 2 KB TOAST threshold: PostgreSQL would try to compress it on every insert, which costs
        # ~10% of the commit and rarely wins on JSON this small. Keep rows up to a page inline.
        "ALTER TABLE decisions SET (toast_tuple_target = 8160)",
        "CREATE INDEX IF NOT EXISTS decisions_tenant_action "
        "ON decisions (tenant_id, action_type, created_at)",
        "CREATE INDEX IF NOT EXISTS decisions_verdict ON decisions (verdict, created_at)",
        "CREATE INDEX IF NOT EXISTS decisions_context_digest ON decisions (context_digest)",
        "CREATE UNIQUE INDEX IF NOT EXISTS decisions_idempotency "
        "ON decisions (tenant_id, request_id) WHERE request_id IS NOT NULL",
        "CREATE OR REPLACE VIEW idempotency_keys AS "
        "SELECT tenant_id, request_id, request_digest, decision_id FROM decisions "
        "WHERE request_id IS NOT NULL",
        """
CREATE TABLE IF NOT EXISTS decision_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    decision_id TEXT NOT NULL,
    at          TEXT NOT NULL,
    type        TEXT NOT NULL,
    data        JSONB NOT NULL,
    data_json   BYTEA NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS decision_events_decision ON decision_events (decision_id, seq)",
        """
CREATE TABLE IF NOT EXISTS memory_items (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id          TEXT NOT NULL UNIQUE,
    tenant_id          TEXT NOT NULL,
    action_type        TEXT NOT NULL,
    label              TEXT NOT NULL,
    summary            TEXT NOT NULL,
    source_decision_id TEXT,
    features           BYTEA NOT NULL,
    created_at         TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS memory_items_group ON memory_items (tenant_id, action_type, seq)",
        """
CREATE TABLE IF NOT EXISTS policy_snapshots (
    policy_hash    TEXT PRIMARY KEY,
    policy_id      TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    text           TEXT NOT NULL,
    created_at     TEXT NOT NULL
)""",
        """
CREATE OR REPLACE FUNCTION lumyn_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END
$$""",
        *[
            statement
            for table in _APPEND_ONLY
            for statement in (
                f"DROP TRIGGER IF EXISTS {table}_no_update ON {table}",
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION lumyn_append_only()",
                f"DROP TRIGGER IF EXISTS {table}_no_delete ON {table}",
                f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION lumyn_append_only()",
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION lumyn_append_only()",
            )
        ],
    ],
    # The superseding label's lookup (see store/schema.py, migration 2).
    2: ["CREATE INDEX IF NOT EXISTS memory_items_source ON memory_items (source_decision_id, seq)"],
    # `lumyn memory prune` (see store/schema.py, migration 3).
    3: [
        """
CREATE TABLE IF NOT EXISTS memory_prunes (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT,
    before    TEXT NOT NULL,
    at        TEXT NOT NULL
)""",
        *[
            statement
            for op in ("update", "delete", "truncate")
            for statement in (
                f"DROP TRIGGER IF EXISTS memory_prunes_no_{op} ON memory_prunes",
                f"CREATE TRIGGER memory_prunes_no_{op} BEFORE {op.upper()} ON memory_prunes "
                f"FOR EACH {'STATEMENT' if op == 'truncate' else 'ROW'} "
                "EXECUTE FUNCTION lumyn_append_only()",
            )
        ],
    ],
    CHAIN_MIGRATION: pg_chain.MIGRATION,
}

_EXPECTED_TRIGGERS = tuple(
    f"{table}_no_{op}" for table in _APPEND_ONLY for op in ("update", "delete", "truncate")
) + pg_chain.TRIGGERS

_DECISION_COLUMNS = (
    "decision_id, created_at, tenant_id, action_type, verdict, policy_hash, context_digest, "
    "request_id, request_digest, record, record_json"
)
_INSERT_INTO = f"INSERT INTO decisions ({_DECISION_COLUMNS}) "
_VALUES = "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s) ON CONFLICT DO NOTHING"
_INSERT_DECISION = f"{_INSERT_INTO}{_VALUES} RETURNING 1"
# First decision under a policy in this process: the snapshot rides in the same statement,
# hence the same transaction, as the decision that references it.
_SNAPSHOT_CTE = (
    "snapshot AS (INSERT INTO policy_snapshots "
    "(policy_hash, policy_id, policy_version, text, created_at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING)"
)

# Lumyn.decide on this backend: the decision is inserted only if the memory it was evaluated
# against is still the newest (no item of its tenant and action type above the sequence number
# the process had indexed). That replaces a catch-up query before every decision (one round
# trip); when memory did move, nothing is inserted and the caller catches up and decides again.
# Seq order is commit order (module docstring), so "max(seq) <= seen" in this statement's
# snapshot means every label committed before it began was already indexed.
_FRESH_CTE = (
    "fresh AS (SELECT coalesce(max(seq), 0) AS seq FROM memory_items "
    "WHERE tenant_id = %s AND action_type = %s)"
)
_FROM_FRESH = (
    "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s FROM fresh WHERE fresh.seq <= %s "
    "ON CONFLICT DO NOTHING"
)


def _append_statement(with_snapshot: bool, guarded: bool, chained: bool) -> str:
    """The one-row append: the policy snapshot CTE first when asked, then the memory guard
    (fresh), the INSERT, and the chain entry (lumyn.store.pg_chain) of the row it wrote."""
    ctes = [_SNAPSHOT_CTE] if with_snapshot else []
    insert = _INSERT_INTO + (_FROM_FRESH if guarded else _VALUES)
    if guarded:
        ctes.append(_FRESH_CTE)
    elif not chained:
        return (f"WITH {ctes[0]} " if ctes else "") + insert + " RETURNING 1"
    ctes.append(f"inserted AS ({insert} RETURNING tenant_id, decision_id, record_json)")
    if chained:
        ctes.append(pg_chain.DECISION_CTES)
    result = ("SELECT fresh.seq <= %s, EXISTS (SELECT 1 FROM inserted) FROM fresh" if guarded
              else "SELECT 1 FROM inserted")
    return "WITH " + ", ".join(ctes) + " " + result


# The one-row append statements by (with the policy snapshot, conditional on memory), with the
# evidence chain (always) or without (`chain=False`, for the benchmark that measures its cost).
_APPEND_ONE = {
    chained: {(snap, guard): _append_statement(snap, guard, chained)
              for snap in (False, True) for guard in (False, True)}
    for chained in (False, True)
}

DEFAULT_POOL_MIN = 1
DEFAULT_POOL_MAX = 10
DEFAULT_POOL_TIMEOUT_S = 5.0
DEFAULT_CONNECT_TIMEOUT_S = 5
RECONNECT_TIMEOUT_S = 2.0  # the pool gives up a reconnect loop quickly; demand restarts it


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        min_size: int | None = None,
        max_size: int | None = None,
        timeout: float | None = None,
        chain: bool = True,
    ) -> None:
        conninfo, options = _split_url(url)
        self._conninfo = conninfo
        self.url = mask_password(conninfo)
        try:
            self.min_size = int(options.get("lumyn_pool_min", min_size or DEFAULT_POOL_MIN))
            self.max_size = max(self.min_size,
                                int(options.get("lumyn_pool_max", max_size or DEFAULT_POOL_MAX)))
            self.timeout = float(options.get("lumyn_pool_timeout",
                                             timeout or DEFAULT_POOL_TIMEOUT_S))
        except ValueError:
            raise ConfigError("lumyn_pool_min/lumyn_pool_max must be integers and "
                              "lumyn_pool_timeout a number of seconds", field="storage_url") from None
        unknown = sorted(set(options) - {"lumyn_pool_min", "lumyn_pool_max", "lumyn_pool_timeout"})
        if unknown:
            raise ConfigError(f"unknown storage URL option '{unknown[0]}'", field="storage_url")
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()
        self._ready = False  # schema checked/migrated by this process
        self._snapshots: set[str] = set()
        self._closed = False
        self._chain = chain  # off only for the benchmark that measures the chain's cost
        self._append = _APPEND_ONE[chain]

    # -- connections -------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._closed:
                raise StorageUnavailable("store is closed")
            if self._pool is None:
                try:
                    params = conninfo_to_dict(self._conninfo)
                except psycopg.Error as exc:
                    raise StorageUnavailable(f"postgresql: bad storage URL: {exc}") from None
                kwargs: dict[str, Any] = {"autocommit": True}
                if "connect_timeout" not in params:
                    kwargs["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT_S
                if "application_name" not in params:
                    kwargs["application_name"] = "lumyn"
                pool = ConnectionPool(
                    self._conninfo,
                    kwargs=kwargs,
                    min_size=self.min_size,
                    max_size=self.max_size,
                    timeout=self.timeout,
                    reconnect_timeout=RECONNECT_TIMEOUT_S,
                    configure=_configure,
                    open=False,
                    name="lumyn",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _run(self, fn: Callable[[Conn], T], *, migrate: bool = True) -> T:
        """Run `fn` on a pooled connection (schema ensured first); map driver errors."""
        pool = self._get_pool()
        for attempt in (1, 2):
            used: list[Conn] = []
            try:
                with pool.connection() as conn:
                    used.append(conn)
                    if migrate and not self._ready:
                        self._ensure_ready(conn)
                    return fn(conn)
            except LumynError:
                raise
            except (psycopg.Error, OSError) as exc:
                stale = bool(used) and (used[0].broken or used[0].closed)
                if stale and attempt == 1:
                    # The server went away under an idle connection (restart, failover):
                    # drop every dead idle connection and try once more on a fresh one.
                    self._check_pool(pool)
                    continue
                raise StorageUnavailable(f"postgresql: {_describe(exc)}") from None
        raise AssertionError("unreachable")

    @staticmethod
    def _check_pool(pool: ConnectionPool) -> None:
        with contextlib.suppress(psycopg.Error, OSError):
            pool.check()

    # -- schema ---------------------------------------------------------------------------------

    def _ensure_ready(self, conn: Conn) -> None:
        with self._lock:
            if self._ready:
                return
            current = _current_version(conn)
            if current is not None and current > SCHEMA_VERSION:
                raise StorageUnavailable(
                    f"database schema version {current} is newer than this Lumyn "
                    f"(supports {SCHEMA_VERSION}); upgrade Lumyn"
                )
            if current != SCHEMA_VERSION or _missing_tables(conn):
                self._migrate(conn)
            self._ready = True

    def _migrate(self, conn: Conn) -> list[str]:
        with conn.transaction():
            # Replicas starting together serialise here; the loser sees the work done.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(shared.SCHEMA_VERSION_TABLE)
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            done = shared.apply_migrations(conn.execute, current, POSTGRES_MIGRATIONS, "%s")
            if current < CHAIN_MIGRATION <= max(POSTGRES_MIGRATIONS):
                done.extend(pg_chain.build(conn))
            missing = _missing_tables(conn) + _missing_triggers(conn)
            if missing:  # dropped behind our back: recreate idempotently, never overwrite
                for version in sorted(POSTGRES_MIGRATIONS):  # each one is idempotent
                    for statement in POSTGRES_MIGRATIONS[version]:
                        conn.execute(statement)
                done.append("recreated missing objects: " + ", ".join(missing))
        return done

    def ensure_schema(self) -> list[str]:
        def fn(conn: Conn) -> list[str]:
            with self._lock:
                done = self._migrate(conn)
                self._ready = True
            return done

        return self._run(fn, migrate=False)

    def schema_version(self) -> int | None:
        return self._run(_current_version)

    def check(self) -> list[str]:
        def fn(conn: Conn) -> list[str]:
            problems: list[str] = []
            missing = _missing_tables(conn)
            if missing:
                problems.append("missing tables: " + ", ".join(missing))
            triggers = _missing_triggers(conn)
            if triggers:
                problems.append("missing append-only triggers: " + ", ".join(triggers))
            version = _current_version(conn)
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            if not missing:
                row = conn.execute(
                    "SELECT count(*) FROM decisions WHERE record_json IS NULL OR record IS NULL"
                ).fetchone()
                if row and row[0]:
                    problems.append(f"{row[0]} decisions without a record")
            return problems

        return self._run(fn)

    # -- decisions ------------------------------------------------------------------------------

    # A catch-up query before each decision would be a round trip of its own: decide()
    # evaluates against the memory it has indexed and the insert checks it is still current.
    checks_memory_at_write = True

    def append_decisions(self, writes: Sequence[DecisionWrite]) -> list[WriteOutcome]:
        """One statement in autocommit for one write (cheaper than a transaction), else ONE
        transaction with every insert pipelined."""
        outcomes: list[WriteOutcome | None] = [None] * len(writes)
        todo: list[int] = []
        for index, write in enumerate(writes):
            try:
                shared.refuse_unstorable_write(write.row, write.key)
            except LumynError as exc:
                outcomes[index] = exc
                continue
            todo.append(index)
        if len(todo) == 1:
            try:
                outcomes[todo[0]] = self._append_one(writes[todo[0]])
            except LumynError as exc:
                outcomes[todo[0]] = exc
        elif todo:
            try:
                written = self._run(lambda conn: self._append_many(conn, writes, todo))
            except StorageUnavailable as exc:
                written = [exc] * len(todo)
            for index, value in zip(todo, written, strict=True):
                outcomes[index] = value
            if not any(isinstance(value, StorageUnavailable) for value in written):
                self._snapshots.update(writes[i].policy.policy_hash for i in todo)
        return outcomes

    def _append_one(self, write: DecisionWrite) -> bytes | None:
        row, key, policy, memory_seq = write
        params: tuple[Any, ...] = _decision_params(row, key)
        guarded = memory_seq is not None
        if guarded:
            params = (row.tenant_id, row.action_type, *params, memory_seq, memory_seq)
        with_snapshot = policy.policy_hash not in self._snapshots
        if with_snapshot:
            params = (policy.policy_hash, policy.policy_id, policy.policy_version, policy.text,
                      row.created_at, *params)
        statement = self._append[with_snapshot, guarded]

        def fn(conn: Conn) -> bytes | None:
            found = conn.execute(statement, params).fetchone()
            if guarded:  # one row: (memory still current, row inserted)
                current, inserted = found or (False, False)
            else:  # a row only when inserted
                current, inserted = True, found is not None
            if not current:
                return None
            if inserted:
                return row.record_json
            return self._settle_conflict(conn, row, key)

        result = self._run(fn)
        if with_snapshot and result is not None:
            self._snapshots.add(policy.policy_hash)
        return result

    def _append_many(self, conn: Conn, writes: Sequence[DecisionWrite],
                     todo: list[int]) -> list[WriteOutcome]:
        # Insert in key order: two batches holding overlapping keys then wait on each other in
        # the same order instead of deadlocking (a deadlock would fail both closed).
        def order(i: int) -> tuple[str, str, str]:
            row, key = writes[i][:2]
            return (row.tenant_id, key.request_id if key else "", row.decision_id)

        snapshots = {writes[i].policy.policy_hash: writes[i].policy for i in todo
                     if writes[i].policy.policy_hash not in self._snapshots}
        out: dict[int, WriteOutcome] = {}
        with conn.transaction():
            for policy in snapshots.values():
                conn.execute(
                    "INSERT INTO policy_snapshots (policy_hash, policy_id, policy_version, "
                    "text, created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (policy.policy_hash, policy.policy_id, policy.policy_version, policy.text,
                     utc_now()),
                )
            stale = shared.stale_writes([writes[i] for i in todo],
                                        lambda t, a: _newest_memory_seq(conn, t, a))
            insert = sorted((i for i, old in zip(todo, stale, strict=True) if not old), key=order)
            out.update((i, None) for i, old in zip(todo, stale, strict=True) if old)
            if insert:
                cur = conn.cursor()
                # Pipelined: every INSERT goes out in one round trip; each returns 0 or 1 row.
                cur.executemany(self._append[False, False],
                                [_decision_params(*writes[i][:2]) for i in insert],
                                returning=True)
                inserted: list[bool] = []
                while True:
                    inserted.append(cur.fetchone() is not None)
                    if not cur.nextset():
                        break
                for index, ok in zip(insert, inserted, strict=True):
                    row, key = writes[index][:2]
                    if ok:
                        out[index] = row.record_json
                        continue
                    try:  # an earlier row of this batch or a committed one holds the key
                        out[index] = self._settle_conflict(conn, row, key)
                    except IdempotencyConflict as exc:
                        out[index] = exc
        return [out[i] for i in todo]

    @staticmethod
    def _settle_conflict(conn: Conn, row: DecisionRow, key: IdempotencyKey | None) -> bytes:
        # ON CONFLICT DO NOTHING waited for any concurrent inserter of the same key to commit,
        # and this new statement's snapshot sees its row.
        if key is not None:
            found = conn.execute(
                "SELECT request_digest, record_json FROM decisions "
                "WHERE tenant_id = %s AND request_id = %s",
                (key.tenant_id, key.request_id),
            ).fetchone()
            if found is not None:
                if found[0] != key.request_digest:
                    raise shared.conflict(key, bytes(found[1]))
                return bytes(found[1])  # a retry or a concurrent twin: the stored record
        same_id = conn.execute(
            "SELECT record_json FROM decisions WHERE decision_id = %s", (row.decision_id,)
        ).fetchone()
        if same_id is not None and bytes(same_id[0]) == row.record_json:
            return row.record_json  # our own write, committed before a connection loss
        raise StorageUnavailable(f"decision {row.decision_id} conflicts with a stored row")

    def find_idempotent(self, tenant_id: str, request_id: str) -> tuple[str, bytes] | None:
        def fn(conn: Conn) -> tuple[str, bytes] | None:
            found = conn.execute(
                "SELECT request_digest, record_json FROM decisions "
                "WHERE tenant_id = %s AND request_id = %s",
                (tenant_id, request_id),
            ).fetchone()
            return (str(found[0]), bytes(found[1])) if found else None

        if not (shared.storable_id(tenant_id) and shared.storable_id(request_id)):
            return None
        return self._run(fn)

    def get_decision(self, decision_id: str) -> tuple[str, bytes] | None:
        def fn(conn: Conn) -> tuple[str, bytes] | None:
            found = conn.execute(
                "SELECT tenant_id, record_json FROM decisions WHERE decision_id = %s",
                (decision_id,),
            ).fetchone()
            return (str(found[0]), bytes(found[1])) if found else None

        if not shared.storable_id(decision_id):
            return None
        return self._run(fn)

    # -- scans (lumyn.store.scan) -------------------------------------------------------------------

    def decisions_page(self, scope: Scope, after_id: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` (decision_id, record JSON) in scope after `after_id`, by id."""
        if any("\x00" in v for v in (*scope.values(), after_id or "")):
            return []  # no stored value holds U+0000 (see _reject_nul)
        where, params = scan_where(scope, "%s", after_id)

        def fn(conn: Conn) -> list[tuple[str, bytes]]:
            rows = conn.execute(f"SELECT decision_id, record_json FROM decisions{where} "
                                "ORDER BY decision_id LIMIT %s", (*params, limit)).fetchall()
            return [(str(r[0]), bytes(r[1])) for r in rows]

        return self._run(fn)

    def count_decisions(self, scope: Scope) -> int:
        if any("\x00" in v for v in scope.values()):
            return 0
        where, params = scan_where(scope, "%s")

        def fn(conn: Conn) -> int:
            row = conn.execute(f"SELECT count(*) FROM decisions{where}", params).fetchone()
            return int(row[0]) if row else 0

        return self._run(fn)

    # -- events and memory ------------------------------------------------------------------------

    def append_event(self, decision_id: str, event: dict[str, Any], memory: MemoryItem | None) -> None:
        data_json = event_data_bytes(event.get("data"))
        shared.refuse_unstorable_memory(memory)
        if not shared.storable_id(decision_id):
            raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")

        def fn(conn: Conn) -> None:
            with conn.transaction():
                exists = conn.execute(
                    "SELECT tenant_id FROM decisions WHERE decision_id = %s", (decision_id,)
                ).fetchone()
                if exists is None:
                    raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
                params = {"e": event["event_id"], "d": decision_id, "at": event["at"],
                          "type": event["type"], "data": _jsonb_text(data_json),
                          "data_json": data_json}
                if self._chain:
                    inserted = conn.execute(pg_chain.EVENT_STATEMENT, {
                        **params, "t": exists[0], "row": event_row_bytes(
                            decision_id, event["event_id"], event["at"], event["type"], data_json)
                    }).rowcount
                else:
                    inserted = conn.execute(_INSERT_EVENT, params).rowcount
                if not inserted:  # a retry of this very write is fine; anything else is not
                    same = conn.execute(
                        "SELECT 1 FROM decision_events WHERE event_id = %s AND decision_id = %s "
                        "AND at = %s AND data_json = %s",
                        (event["event_id"], decision_id, event["at"], data_json)).fetchone()
                    if same is None:
                        raise event_id_taken(event["event_id"])
                if memory is not None:
                    # Seq order must equal commit order (see the module docstring): take the
                    # lock before the INSERT draws its seq; it is held until COMMIT.
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (MEMORY_LOCK,))
                    conn.execute(
                        f"INSERT INTO memory_items ({shared.MEMORY_COLUMNS}) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (memory_id) DO NOTHING",
                        shared.memory_params(memory, event["at"]),
                    )

        self._run(fn)

    def list_events(self, decision_id: str) -> list[dict[str, Any]]:
        def fn(conn: Conn) -> list[dict[str, Any]]:
            return shared.events(conn.execute(
                f"SELECT {shared.EVENT_COLUMNS}, data_json FROM decision_events "
                "WHERE decision_id = %s ORDER BY seq",
                (decision_id,),
            ).fetchall())

        if not shared.storable_id(decision_id):
            return []
        return self._run(fn)

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int, limit: int | None = None
    ) -> list[tuple[int, MemoryItem]]:
        def fn(conn: Conn) -> list[tuple[int, MemoryItem]]:
            rows = conn.execute(MEMORY_SINCE_SQL.format("%s") + limit_clause(limit),
                                (tenant_id, action_type, after_seq)).fetchall()
            return shared.memory_since(rows, tenant_id, action_type)

        if not shared.storable_id(tenant_id):
            return []  # no such tenant can be stored
        return self._run(fn)

    def prune_memory(self, before: str, tenant_id: str | None = None) -> int:
        """Items created before `before` (of `tenant_id`, or of every tenant) leave similarity;
        returns how many items that covers. Nothing is deleted."""
        if tenant_id is not None and not shared.storable_id(tenant_id):
            raise InvalidEvent("tenant contains U+0000, which the store cannot keep in text",
                               field="tenant")

        def fn(conn: Conn) -> int:
            with conn.transaction():
                conn.execute("INSERT INTO memory_prunes (tenant_id, before, at) "
                             "VALUES (%s, %s, %s)", (tenant_id, before, utc_now()))
                row = conn.execute(PRUNED_COUNT_SQL.format("%s"),
                                   (before, tenant_id, tenant_id)).fetchone()
            return int(row[0]) if row else 0

        return self._run(fn)

    def memory_prune_cutoff(self, tenant_id: str) -> str | None:
        if "\x00" in tenant_id:
            return None

        def fn(conn: Conn) -> str | None:
            row = conn.execute(PRUNE_CUTOFF_SQL.format("%s"), (tenant_id,)).fetchone()
            return None if row is None or row[0] is None else str(row[0])

        return self._run(fn)

    def get_memory_items(self, memory_ids: list[str]) -> list[MemoryItem]:
        ids = [m for m in memory_ids if shared.storable_id(m)]
        if not ids:
            return []

        def fn(conn: Conn) -> list[MemoryItem]:
            return shared.memory_items(conn.execute(
                f"SELECT {shared.MEMORY_COLUMNS} FROM memory_items "
                "WHERE memory_id = ANY(%s) ORDER BY memory_id",
                (ids,),
            ).fetchall())

        return self._run(fn)

    def several_tenants(self) -> bool:
        """Whether decisions of more than one tenant are stored (two index probes)."""
        def fn(conn: Conn) -> bool:
            row = conn.execute(TENANT_SPAN).fetchone()
            return row is not None and row[0] != row[1]

        result: bool = self._run(fn)
        return result

    def get_policy_text(self, policy_hash: str) -> str | None:
        def fn(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT text FROM policy_snapshots WHERE policy_hash = %s", (policy_hash,)
            ).fetchone()
            return str(row[0]) if row else None

        if not shared.storable_id(policy_hash):
            return None
        return self._run(fn)

    def memory_change_token(self) -> None:
        """Unknown without a round trip: memory asks memory_items_since when it catches up."""
        return None

    # -- the evidence chain (read side; lumyn.integrity.verify walks it) ---------------------------

    def read_chain(self, fn: Callable[[pg_chain.ChainView], T]) -> T:
        """Run `fn` over one REPEATABLE READ, read-only transaction (one consistent snapshot)."""
        def run(conn: Conn) -> T:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(pg_chain.ChainView(conn))

        return self._run(run)

    def chain_entries(self, decision_id: str) -> list[Entry]:
        """The chain entries of a decision and its events, in chain order."""
        if "\x00" in decision_id:
            return []
        return self._run(lambda conn: pg_chain.entries_of(conn, decision_id))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                pool.close(timeout=1.0)


# -- helpers ----------------------------------------------------------------------------------------


_INSERT_EVENT = (
    "INSERT INTO decision_events (event_id, decision_id, at, type, data, data_json) "
    "VALUES (%(e)s, %(d)s, %(at)s, %(type)s, %(data)s::jsonb, %(data_json)s) "
    "ON CONFLICT (event_id) DO NOTHING"
)


def _decision_params(row: DecisionRow, key: IdempotencyKey | None) -> tuple[Any, ...]:
    return (
        row.decision_id, row.created_at, row.tenant_id, row.action_type, row.verdict,
        row.policy_hash, row.context_digest,
        key.request_id if key else None, key.request_digest if key else None,
        _jsonb_text(row.record_json), row.record_json,
    )


def _configure(conn: Conn) -> None:
    """Per new connection: a decision must be durable when its INSERT returns, whatever the
    server default; stronger settings (remote_write, remote_apply) are kept."""
    row = conn.execute("SHOW synchronous_commit").fetchone()
    if row is None or row[0] in ("off", "local"):
        conn.execute("SET synchronous_commit TO on")


def _newest_memory_seq(conn: Conn, tenant_id: str, action_type: str) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM memory_items "
                       "WHERE tenant_id = %s AND action_type = %s", (tenant_id, action_type)).fetchone()
    return int(row[0]) if row else 0


def _current_version(conn: Conn) -> int | None:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else None


def _missing_tables(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM unnest(%s::text[]) AS name WHERE to_regclass(name) IS NULL",
        (list(EXPECTED_TABLES),),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _missing_triggers(conn: Conn) -> list[str]:
    rows = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' "
        "AND tgrelid IN (SELECT to_regclass(t) FROM unnest(%s::text[]) AS t)",
        ([*_APPEND_ONLY, "chain_entries"],),
    ).fetchall()
    present = {str(r[0]) for r in rows}
    return [name for name in _EXPECTED_TRIGGERS if name not in present]


def _jsonb_text(canonical: bytes) -> str:
    """The JSON text for a JSONB mirror column: the canonical text itself, unless it holds
    U+0000 (escaped as \\u0000), which JSONB rejects; then a copy with U+FFFD in its place."""
    text = canonical.decode("utf-8")
    if "\\u0000" not in text:
        return text
    return orjson.dumps(_without_nul(orjson.loads(canonical))).decode("utf-8")


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {k.replace("\x00", "\ufffd"): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    """Remove the `lumyn_*` query parameters (pool settings) from a libpq URL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k.startswith("lumyn_")}
    rest = [(k, v) for k, v in query if not k.startswith("lumyn_")]
    return urlunsplit(parts._replace(query=urlencode(rest, safe="/"))), ours


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
