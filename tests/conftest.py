"""Shared fixtures: one real PostgreSQL per test session (pgserver), a fresh database per test,
and a `store` fixture parametrized over both backends.

pgserver ships PostgreSQL binaries in a pip wheel, so this needs no system packages; as root
it runs the server as a dedicated system user. PostgreSQL tests are never skipped: if the
server cannot start, they fail.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lumyn.store import Store, open_store

BACKENDS = ["sqlite", "postgres"]


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset and falls back to /tmp; harmless.
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


@dataclass
class PgServer:
    """A running pgserver instance and how to reach it."""

    handle: Any
    pgdata: Path

    def uri(self, database: str = "postgres") -> str:
        return str(self.handle.get_uri(database=database))

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected); the data directory is kept."""
        from pgserver import _commands

        pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # generated at import time
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.handle.system_user)

    def start(self) -> None:
        """Start again on the same data directory (same socket, hence the same URIs)."""
        with self.handle._lock:
            self.handle.ensure_postgres_running()

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.uri(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error), psycopg.connect(self.uri(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_pgserver() -> Iterator[PgServer]:
    """Start a PostgreSQL server in a fresh directory; stop it and delete its data after.

    The data directory is NOT under pytest's tmp_path: pytest prunes old numbered temp dirs
    of the same user, and other pytest sessions on a shared machine would delete a running
    server's data from under it. The path stays short so the Unix socket fits in it.
    """
    pgserver = _import_pgserver()
    parent = Path(tempfile.mkdtemp(prefix="lumyn-pg-"))
    handle = pgserver.get_server(parent / "data", cleanup_mode="delete")
    try:
        yield PgServer(handle, (parent / "data").resolve())
    finally:
        handle.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """ONE PostgreSQL server for the whole session."""
    with running_pgserver() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session server (tests never see each other's rows)."""
    name = pg_server.create_database()
    yield pg_server.uri(name)
    pg_server.drop_database(name)


@pytest.fixture
def private_pg_server() -> Iterator[PgServer]:
    """A separate server a test may stop and restart without disturbing the session one."""
    with running_pgserver() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A storage URL for an empty store of the parametrized backend."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'ws' / 'lumyn.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def run_raw_sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement straight against the database behind `url` (not through Lumyn) and
    commit; raises the driver's own error."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        try:
            return [tuple(row) for row in conn.execute(statement.replace("%s", "?"), params)]
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        cur = pg.execute(statement, params)
        return [tuple(row) for row in cur.fetchall()] if cur.description else []


@pytest.fixture(scope="session")
def raw_sql() -> Any:
    """`raw_sql(url, statement, params=())`: see run_raw_sql."""
    return run_raw_sql
