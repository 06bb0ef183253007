"""SQLite backend: one WAL file, synchronous=FULL, group commit.

Writes from concurrent threads are queued; whichever thread takes the write lock first commits
everything queued in one transaction (one fsync) and hands each caller its own result. A single
thread pays only an uncontended lock. Reads use one connection per thread.

Any sqlite error becomes StorageUnavailable and drops the connection, so the next call
reconnects: the store heals by itself when the fault (lock, full disk, permissions) clears.
After the first successful open the file is never re-created: a deleted or replaced database
stays a fault instead of silently starting an empty history.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lumyn.contracts.ids import utc_now
from lumyn.errors import DecisionNotFound, LumynError, StorageUnavailable
from lumyn.event_ids import event_id_taken
from lumyn.integrity.chain import (
    ChainTx,
    Entry,
    backfill,
    chain_built_message,
    event_data_bytes,
    event_row_bytes,
)
from lumyn.memory.item import MemoryItem
from lumyn.store import shared
from lumyn.store.base import DecisionRow, DecisionWrite, IdempotencyKey, WriteOutcome
from lumyn.store.scan import Scope, scan_where
from lumyn.store.schema import (
    CHAIN_MIGRATION,
    CHAIN_VIEW,
    EXPECTED_TABLES,
    MEMORY_SINCE_SQL,
    PRUNE_CUTOFF_SQL,
    PRUNED_COUNT_SQL,
    SQLITE_MIGRATIONS,
    TENANT_SPAN,
    limit_clause,
)
from lumyn.store.sqlite_files import CompanionFiles

Work = Callable[[sqlite3.Connection], Any]
FULL_CHECK_S = 0.5
MIN_FREE_BYTES = 1024 * 1024  # below this on the database's volume, the store is not ready
RECENT_FAILURE_S = 10.0  # a write that failed this recently keeps the store not ready
_TO_WRITE = b""  # a slot awaiting its insert (a stored record is never empty)
_ROWS_PER_INSERT = 100  # 1,000 parameters: within SQLite's limit on every version (999 before 3.32)


class _Op:
    __slots__ = ("done", "error", "result", "work")

    def __init__(self, work: Work) -> None:
        self.work = work
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000,
                 create: bool = True, chain: bool = True) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout_ms = busy_timeout_ms
        self._create = create
        self._identity: tuple[int, int] | None = None
        self._watch_fd: int | None = None  # our own handle on the file, to see it unlinked
        self._last_full_check = 0.0
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Op] = []
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._snapshots: set[str] = set()
        self._closed = False
        self._memory_writes = 0  # memory items this process committed
        self._migrated = False
        self._companions = CompanionFiles(self.path)  # the -wal and -shm files (sqlite_files)
        self._generation = 0  # bumped when every connection must be reopened
        self._last_write_failure: tuple[float, str] | None = None  # cleared by a commit
        # The evidence chain is always on; `chain=False` exists only for the benchmarks that
        # measure its cost (a store written without it fails `lumyn verify`).
        self._chain = chain
        self._chain_tx: ChainTx | None = None  # the entries of the transaction being written

    # -- connections -------------------------------------------------------------------------

    def _open(self, *, write: bool) -> sqlite3.Connection:
        if self._closed:
            raise StorageUnavailable("store is closed")
        first = self._identity is None
        if first and write and self._create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "rwc" if first and write and self._create else "rw"
        conn = sqlite3.connect(
            f"file:{self.path}?mode={mode}", uri=True, isolation_level=None,
            check_same_thread=False, timeout=self.busy_timeout_ms / 1000,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if write:
                self._enable_wal(conn)
                conn.execute("PRAGMA synchronous = FULL")
            self._check_identity(full=True)
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching to WAL needs a moment with no other writer and does not wait on the busy
        # handler, so two stores opening a new file together retry here. Once set, the mode is
        # stored in the file and later opens only read it.
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("could not switch the database to WAL mode")
            time.sleep(0.005)

    def _check_identity(self, full: bool = False) -> None:
        """Fail if the file was deleted or replaced since we first opened it.

        Every batch checks the link count through a held descriptor (cheap); the path itself is
        re-resolved at most every FULL_CHECK_S, because a path stat right after an fsync can
        cost more than the rest of the write.
        """
        if self._watch_fd is not None:
            if os.fstat(self._watch_fd).st_nlink == 0:
                raise StorageUnavailable(f"database file {self.path} was deleted")
            now = time.monotonic()
            if not full and now - self._last_full_check < FULL_CHECK_S:
                return
            self._last_full_check = now
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StorageUnavailable(f"database file {self.path} is missing") from None
        identity = (st.st_dev, st.st_ino)
        if self._identity is None:
            self._identity = identity
            self._watch_fd = os.open(self.path, os.O_RDONLY)
            self._last_full_check = time.monotonic()
        elif identity != self._identity:
            raise StorageUnavailable(f"database file {self.path} was replaced")

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            conn = self._open(write=True)
            try:
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._writer = conn
            self._migrated = True
            self._companions.attach()
        return self._writer

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation != self._generation:
            self._drop_reader()  # closed under us when the log files were salvaged
            conn = None
        if conn is None:
            if not self._migrated:
                # Create and migrate the database when we can (waiting for a migration another
                # thread is running); a read-only file can still be read.
                with contextlib.suppress(StorageUnavailable):
                    self._writer_conn_safely()
            conn = self._open(write=False)
            self._local.conn = conn
            self._local.generation = self._generation
            self._readers.append(conn)
        return conn

    def _writer_conn_safely(self) -> None:
        with self._write_lock:
            self._guard(self._writer_conn)

    def _drop_reader(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            _close_quietly(conn)

    def _drop_writer(self) -> None:
        self._companions.detach()
        if self._writer is not None:
            _close_quietly(self._writer)
            self._writer = None

    def _check_log_files(self, conn: sqlite3.Connection, *, full: bool) -> None:
        """Raise StorageUnavailable if the -wal or -shm file went away or was replaced, after
        salvaging: what the orphaned log holds is checkpointed into the main file, and every
        connection is closed so the next one starts a fresh, linked log."""
        fault = self._companions.fault(full=full)
        if fault is None:
            return
        self._generation += 1
        for reader in self._readers:  # readers pin the orphaned log; they reopen on next use
            _close_quietly(reader)
        self._readers.clear()
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        self._drop_writer()
        raise StorageUnavailable(f"{fault}; its commits were "
                                 + ("moved into the database file" if busy == 0 else
                                    "NOT all moved into the database file"),
                                 salvaged=busy == 0)

    def _guard(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except LumynError:
            raise
        except (sqlite3.Error, OSError) as exc:
            self._drop_writer()
            raise StorageUnavailable(f"sqlite: {exc}") from None

    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        # When no write is in flight, read through the writer connection: its page cache is
        # warm, while a separate reader must drop its cache after every commit it did not make.
        if self._writer is not None and self._write_lock.acquire(blocking=False):
            try:
                writer = self._writer
                if writer is not None:
                    return self._guard(lambda: fn(writer))
            finally:
                self._write_lock.release()
        try:
            return fn(self._reader())
        except LumynError:
            self._drop_reader()
            raise
        except (sqlite3.Error, OSError) as exc:
            self._drop_reader()
            raise StorageUnavailable(f"sqlite: {exc}") from None

    # -- group commit --------------------------------------------------------------------------

    def _submit(self, work: Work) -> Any:
        return self._submit_many([work])[0].outcome()

    def _submit_many(self, works: list[Work]) -> list[_Op]:
        ops = [_Op(work) for work in works]
        with self._queue_lock:
            self._queue.extend(ops)
        with self._write_lock:
            if not ops[-1].done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run(batch)
        return ops

    def _run(self, batch: list[_Op]) -> None:
        try:
            conn = self._guard(self._writer_conn)
            self._guard(self._check_identity)
            self._check_log_files(conn, full=False)
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Inside the write lock: the chain head read here is the database's latest.
                chain = self._chain_tx = (
                    ChainTx(functools.partial(_chain_head, conn)) if self._chain else None)
                for op in batch:
                    try:
                        op.result = op.work(conn)
                    except LumynError as exc:  # a caller's own error; others still commit
                        op.error = exc
                if chain is not None and chain.entries:
                    conn.executemany(_INSERT_ENTRY, chain.entries)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    _rollback_quietly(conn)
                raise
            finally:
                self._chain_tx = None
            self._last_write_failure = None
            try:  # the log may have gone between the check and the commit
                self._check_log_files(conn, full=False)
            except StorageUnavailable as exc:
                if not exc.salvaged:  # the commit may be only in the orphaned log
                    raise
        except LumynError as exc:
            self._last_write_failure = (time.monotonic(), exc.message)
            self._fail(batch, exc)
        except (sqlite3.Error, OSError) as exc:
            self._drop_writer()
            self._last_write_failure = (time.monotonic(), f"sqlite: {exc}")
            self._fail(batch, StorageUnavailable(f"sqlite: {exc}"))
        except BaseException as exc:
            self._drop_writer()
            self._fail(batch, StorageUnavailable(f"unexpected storage error: {exc!r}"))
            raise
        finally:
            for op in batch:
                op.done = True

    def ready(self) -> None:
        """Raise StorageUnavailable unless a write could succeed now: the database and its log
        files are the ones opened, the write lock can be taken (an empty transaction writes
        nothing), the volume has free space, and no write failed in the last RECENT_FAILURE_S
        seconds."""

        def probe() -> None:
            conn = self._writer_conn()
            self._check_identity(full=True)
            self._check_log_files(conn, full=True)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            fs = os.statvfs(self.path.parent)
            if fs.f_bavail * fs.f_frsize < MIN_FREE_BYTES:
                raise StorageUnavailable("the database's volume is full")

        with self._write_lock:
            self._guard(probe)
        failure = self._last_write_failure
        if failure is not None and time.monotonic() - failure[0] < RECENT_FAILURE_S:
            raise StorageUnavailable(f"the last write failed: {failure[1]}")

    @staticmethod
    def _fail(batch: list[_Op], error: LumynError) -> None:
        for op in batch:
            op.result = None
            op.error = error

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self, conn: sqlite3.Connection) -> list[str]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(shared.SCHEMA_VERSION_TABLE)
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            done = shared.apply_migrations(conn.execute, row[0] or 0, _MIGRATIONS, "?")
            if (row[0] or 0) < CHAIN_MIGRATION <= max(_MIGRATIONS):
                done.extend(_build_chain(conn))
            missing = _missing_tables(conn)
            if missing:  # tables dropped behind our back: recreate them idempotently
                for version in sorted(_MIGRATIONS):  # each one is idempotent
                    for statement in _MIGRATIONS[version]:
                        conn.execute(statement)
                done.append("recreated missing tables: " + ", ".join(missing))
            conn.execute("COMMIT")
        except BaseException:
            _rollback_quietly(conn)
            raise
        return done

    def ensure_schema(self) -> list[str]:
        with self._write_lock:
            self._drop_writer()
            conn = self._guard(lambda: self._open(write=True))
            try:
                done: list[str] = self._guard(lambda: self._migrate(conn))
            finally:
                conn.close()
        return done

    def schema_version(self) -> int | None:
        def fn(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            return int(row[0]) if row and row[0] is not None else None

        result: int | None = self._read(fn)
        return result

    def check(self) -> list[str]:
        def fn(conn: sqlite3.Connection) -> list[str]:
            problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
            missing = _missing_tables(conn)
            if missing:
                problems.append("missing tables: " + ", ".join(missing))
            return problems

        result: list[str] = self._read(fn)
        return result

    # -- decisions ------------------------------------------------------------------------------

    # PRAGMA data_version below tells memory when another process wrote; the catch-up query
    # it saves is cheap anyway, so decide() catches up first instead of checking at the write.
    checks_memory_at_write = False

    def append_decisions(self, writes: Sequence[DecisionWrite]) -> list[WriteOutcome]:
        if not writes:
            return []
        op = self._submit_many([self._decisions_work(writes)])[0]
        if op.error is not None:
            if isinstance(op.error, LumynError):  # the transaction failed: every write did
                return [op.error] * len(writes)
            raise op.error
        self._snapshots.update(write.policy.policy_hash for write in writes)
        results: list[WriteOutcome] = op.result
        return results

    def _decisions_work(self, writes: Sequence[DecisionWrite]) -> Work:
        """One multi-row INSERT for the batch, row by row only when it hits a unique key (a
        retry or a conflict): ~21k fewer instructions per record than a statement per row
        (docs/benchmarks.md)."""

        def work(conn: sqlite3.Connection) -> list[WriteOutcome]:
            results: list[WriteOutcome] = []  # a placeholder (_TO_WRITE) where a write goes
            todo: list[DecisionWrite] = []
            stale = (shared.stale_writes(writes, lambda t, a: _newest_memory_seq(conn, t, a))
                     if any(w.memory_seq is not None for w in writes) else ())
            for index, write in enumerate(writes):
                try:
                    shared.refuse_unstorable_write(write.row, write.key)
                except LumynError as exc:
                    results.append(exc)
                    continue
                if stale and stale[index]:
                    results.append(None)
                    continue
                results.append(_TO_WRITE)
                todo.append(write)
            rows = [_decision_params(write.row, write.key) for write in todo]
            try:
                for start in range(0, len(rows), _ROWS_PER_INSERT):
                    chunk = rows[start : start + _ROWS_PER_INSERT]
                    conn.execute(_multi_insert(len(chunk)), [v for row in chunk for v in row])
            except sqlite3.IntegrityError:
                # SQLite undid the failing statement; earlier chunks stay. Settle the rest
                # row by row: a retry gets its stored record, a conflict its own error.
                done = start
            else:
                done = len(rows)
            outcomes: list[WriteOutcome] = [w.row.record_json for w in todo[:done]]
            self._chain_rows([w.row for w in todo[:done]])
            for write in todo[done:]:
                try:
                    outcome = self._insert_one(conn, write.row, write.key)
                except LumynError as exc:
                    outcomes.append(exc)
                    continue
                outcomes.append(outcome)
                if outcome is write.row.record_json:  # written, not a retry's stored record
                    self._chain_rows([write.row])
            self._record_snapshots(conn, todo)
            written = iter(outcomes)
            return [next(written) if slot is _TO_WRITE else slot for slot in results]

        return work

    def _record_snapshots(self, conn: sqlite3.Connection, writes: Sequence[DecisionWrite]) -> None:
        written: set[str] = set()
        for row, _, policy, _ in writes:
            if policy.policy_hash not in self._snapshots and policy.policy_hash not in written:
                conn.execute(
                    "INSERT OR IGNORE INTO policy_snapshots VALUES (?, ?, ?, ?, ?)",
                    (policy.policy_hash, policy.policy_id, policy.policy_version, policy.text,
                     row.created_at),
                )
                written.add(policy.policy_hash)

    @staticmethod
    def _insert_one(conn: sqlite3.Connection, row: DecisionRow, key: IdempotencyKey | None) -> bytes:
        try:
            conn.execute(_multi_insert(1), _decision_params(row, key))
        except sqlite3.IntegrityError:
            if key is None:
                raise
            found = conn.execute(
                "SELECT request_digest, record FROM decisions "
                "WHERE tenant_id = ? AND request_id = ?",
                (key.tenant_id, key.request_id),
            ).fetchone()
            if found is None:
                raise
            if found[0] != key.request_digest:
                raise shared.conflict(key, found[1]) from None
            return bytes(found[1])  # a retry: the stored record, nothing written
        return row.record_json

    def _chain_rows(self, rows: list[DecisionRow]) -> None:
        chain = self._chain_tx
        if chain is not None:
            for row in rows:
                chain.decision(row.tenant_id, row.decision_id, row.record_json)

    def find_idempotent(self, tenant_id: str, request_id: str) -> tuple[str, bytes] | None:
        def fn(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
            found = conn.execute(
                "SELECT request_digest, record FROM decisions WHERE tenant_id = ? AND request_id = ?",
                (tenant_id, request_id),
            ).fetchone()
            return (found[0], bytes(found[1])) if found else None

        result: tuple[str, bytes] | None = self._read(fn)
        return result

    def get_decision(self, decision_id: str) -> tuple[str, bytes] | None:
        def fn(conn: sqlite3.Connection) -> tuple[str, bytes] | None:
            found = conn.execute(
                "SELECT tenant_id, record FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
            return (found[0], bytes(found[1])) if found else None

        result: tuple[str, bytes] | None = self._read(fn)
        return result

    # -- scans (lumyn.store.scan) -------------------------------------------------------------------

    def decisions_page(self, scope: Scope, after_id: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to `limit` (decision_id, record JSON) in scope after `after_id`, by id."""
        where, params = scan_where(scope, "?", after_id)

        def fn(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = conn.execute(f"SELECT decision_id, record FROM decisions{where} "
                                "ORDER BY decision_id LIMIT ?", (*params, limit)).fetchall()
            return [(r[0], bytes(r[1])) for r in rows]

        result: list[tuple[str, bytes]] = self._read(fn)
        return result

    def count_decisions(self, scope: Scope) -> int:
        where, params = scan_where(scope, "?")
        result: int = self._read(
            lambda conn: conn.execute(f"SELECT count(*) FROM decisions{where}", params).fetchone()[0])
        return result

    # -- events and memory ------------------------------------------------------------------------

    def append_event(self, decision_id: str, event: dict[str, Any], memory: MemoryItem | None) -> None:
        shared.refuse_unstorable_memory(memory)
        data_json = event_data_bytes(event.get("data"))

        def work(conn: sqlite3.Connection) -> None:
            exists = conn.execute(
                "SELECT tenant_id FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
            if exists is None:
                raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
            try:
                conn.execute(
                    "INSERT INTO decision_events (event_id, decision_id, at, type, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (event["event_id"], decision_id, event["at"], event["type"],
                     data_json),
                )
            except sqlite3.IntegrityError:  # only event_id is unique: this op alone fails
                raise event_id_taken(event["event_id"]) from None
            if self._chain_tx is not None:
                self._chain_tx.event(exists[0], decision_id, event["event_id"], event_row_bytes(
                    decision_id, event["event_id"], event["at"], event["type"], data_json))
            if memory is not None:
                conn.execute(
                    f"INSERT INTO memory_items ({shared.MEMORY_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    shared.memory_params(memory, event["at"]),
                )

        self._submit(work)
        if memory is not None:
            self._memory_writes += 1

    def list_events(self, decision_id: str) -> list[dict[str, Any]]:
        def fn(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return shared.events(conn.execute(
                f"SELECT {shared.EVENT_COLUMNS}, data FROM decision_events "
                "WHERE decision_id = ? ORDER BY seq",
                (decision_id,),
            ).fetchall())

        result: list[dict[str, Any]] = self._read(fn)
        return result

    def memory_change_token(self) -> tuple[int, int] | None:
        """A value that changes whenever memory items may have changed, or None when unknown.

        SQLite's `PRAGMA data_version` on our writer connection changes only when another
        connection (another process) commits; our own memory writes are counted separately.
        """
        if self._writer is None or not self._write_lock.acquire(blocking=False):
            return None
        try:
            writer = self._writer
            if writer is None:
                return None
            row = writer.execute("PRAGMA data_version").fetchone()
            return (int(row[0]), self._memory_writes)
        except sqlite3.Error:
            return None
        finally:
            self._write_lock.release()

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int, limit: int | None = None
    ) -> list[tuple[int, MemoryItem]]:
        def fn(conn: sqlite3.Connection) -> list[tuple[int, MemoryItem]]:
            rows = conn.execute(MEMORY_SINCE_SQL.format("?") + limit_clause(limit),
                                (tenant_id, action_type, after_seq)).fetchall()
            return shared.memory_since(rows, tenant_id, action_type)

        result: list[tuple[int, MemoryItem]] = self._read(fn)
        return result

    def prune_memory(self, before: str, tenant_id: str | None = None) -> int:
        """Items created before `before` (of `tenant_id`, or of every tenant) leave similarity;
        returns how many items that covers. Nothing is deleted."""
        def work(conn: sqlite3.Connection) -> int:
            conn.execute("INSERT INTO memory_prunes (tenant_id, before, at) VALUES (?, ?, ?)",
                         (tenant_id, before, utc_now()))
            row = conn.execute(PRUNED_COUNT_SQL.format("?"),
                               (before, tenant_id, tenant_id)).fetchone()
            return int(row[0])

        count: int = self._submit(work)
        self._memory_writes += 1
        return count

    def memory_prune_cutoff(self, tenant_id: str) -> str | None:
        def fn(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(PRUNE_CUTOFF_SQL.format("?"), (tenant_id,)).fetchone()
            return None if row is None or row[0] is None else str(row[0])

        result: str | None = self._read(fn)
        return result

    def get_memory_items(self, memory_ids: list[str]) -> list[MemoryItem]:
        if not memory_ids:
            return []

        def fn(conn: sqlite3.Connection) -> list[MemoryItem]:
            marks = ",".join("?" * len(memory_ids))
            return shared.memory_items(conn.execute(
                f"SELECT {shared.MEMORY_COLUMNS} FROM memory_items "
                f"WHERE memory_id IN ({marks}) ORDER BY memory_id",
                memory_ids,
            ).fetchall())

        result: list[MemoryItem] = self._read(fn)
        return result

    def several_tenants(self) -> bool:
        """Whether decisions of more than one tenant are stored (two index probes)."""
        def fn(conn: sqlite3.Connection) -> bool:
            row = conn.execute(TENANT_SPAN).fetchone()
            return row is not None and row[0] != row[1]

        result: bool = self._read(fn)
        return result

    def get_policy_text(self, policy_hash: str) -> str | None:
        def fn(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT text FROM policy_snapshots WHERE policy_hash = ?", (policy_hash,)
            ).fetchone()
            return str(row[0]) if row else None

        result: str | None = self._read(fn)
        return result

    # -- the evidence chain (read side; lumyn.integrity.verify walks it) ---------------------------

    def read_chain(self, fn: Callable[[_ChainView], Any]) -> Any:
        """Run `fn` over one read transaction of its own (a long walk never holds the write
        lock, and sees one consistent snapshot)."""
        if not self._migrated:
            with contextlib.suppress(StorageUnavailable):
                self._writer_conn_safely()
        conn = self._guard(lambda: self._open(write=False))
        try:
            conn.execute("BEGIN")
            return self._guard(lambda: fn(_ChainView(conn)))
        finally:
            _close_quietly(conn)

    def chain_entries(self, decision_id: str) -> list[Entry]:
        """The chain entries of a decision and its events, in chain order."""
        def fn(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM chain_entries WHERE decision_id = ? ORDER BY seq",
                (decision_id,),
            ).fetchall()
            return [Entry(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), bytes(r[6])) for r in rows]

        result: list[Entry] = self._read(fn)
        return result

    def close(self) -> None:
        with self._write_lock:
            self._closed = True
            self._drop_writer()
            for conn in self._readers:
                _close_quietly(conn)
            self._readers.clear()
            if self._watch_fd is not None:
                os.close(self._watch_fd)
                self._watch_fd = None


_INSERT_ENTRY = "INSERT INTO chain_entries VALUES (?, ?, ?, ?, ?, ?, ?)"
_ENTRY_COLUMNS = "tenant_id, seq, kind, decision_id, event_id, prev_hash, entry_hash"


class _ChainView:
    """lumyn.integrity.verify.ChainView over one SQLite read transaction (the SQL is shared
    with PostgreSQL: lumyn.store.schema.CHAIN_VIEW)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def _select(self, name: str, tenant_id: str | None) -> Iterator[tuple[Any, ...]]:
        sql, where = CHAIN_VIEW[name]
        filtered = sql.format(where=f"{where} = ? AND" if tenant_id is not None else "")
        params = (tenant_id,) if tenant_id is not None else ()
        return iter(self.conn.execute(filtered, params))

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
            "SELECT seq, decision_id FROM chain_entries WHERE tenant_id = ? AND entry_hash = ?",
            (tenant_id, entry_hash)).fetchone()
        return (int(found[0]), str(found[1])) if found else None

    def entry_at(self, tenant_id: str, seq: int) -> bytes | None:
        found = self.conn.execute(
            "SELECT entry_hash FROM chain_entries WHERE tenant_id = ? AND seq = ?",
            (tenant_id, seq)).fetchone()
        return bytes(found[0]) if found else None


def _chain_head(conn: sqlite3.Connection, tenant_id: str) -> tuple[int, bytes] | None:
    found = conn.execute(
        "SELECT seq, entry_hash FROM chain_entries WHERE tenant_id = ? ORDER BY seq DESC LIMIT 1",
        (tenant_id,),
    ).fetchone()
    return (int(found[0]), bytes(found[1])) if found else None


def _build_chain(conn: sqlite3.Connection) -> list[str]:
    """Chain the rows an older database holds, once, without changing any of them."""
    decisions = [(r[0], r[1], r[2], bytes(r[3])) for r in conn.execute(
        "SELECT tenant_id, decision_id, created_at, record FROM decisions ORDER BY decision_id")]
    events = [(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in conn.execute(
        "SELECT d.tenant_id, e.decision_id, e.event_id, e.at, e.type, e.data "
        "FROM decision_events e JOIN decisions d ON d.decision_id = e.decision_id ORDER BY e.seq")]
    if not decisions:
        return []  # a new database: nothing to build
    entries: list[Entry] = backfill(decisions, events)
    conn.executemany(_INSERT_ENTRY, entries)
    return [chain_built_message(len(decisions), len(events), len({e.tenant_id for e in entries}))]


def _statements(script: str) -> list[str]:
    # Triggers contain ';' inside BEGIN…END, so split on the statement terminator lines.
    parts, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        stripped = line.strip()
        if stripped.endswith(";") and (not stripped.startswith("BEGIN") or stripped.endswith("END;")):
            parts.append("\n".join(current))
            current = []
    if current:
        parts.append("\n".join(current))
    return [p for p in parts if p.strip()]


_MIGRATIONS = {version: _statements(script) for version, script in SQLITE_MIGRATIONS.items()}


def _newest_memory_seq(conn: sqlite3.Connection, tenant_id: str, action_type: str) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM memory_items "
                       "WHERE tenant_id = ? AND action_type = ?", (tenant_id, action_type)).fetchone()
    return int(row[0])


def _missing_tables(conn: sqlite3.Connection) -> list[str]:
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [name for name in EXPECTED_TABLES if name not in present]


def _close_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.close()


def _decision_params(row: DecisionRow, key: IdempotencyKey | None) -> tuple[Any, ...]:
    return (row.decision_id, row.created_at, row.tenant_id, row.action_type, row.verdict,
            row.policy_hash, row.context_digest, key.request_id if key else None,
            key.request_digest if key else None, row.record_json)


@functools.cache
def _multi_insert(rows: int) -> str:
    return "INSERT INTO decisions VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")
