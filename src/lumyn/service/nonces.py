"""The replay cache for `v1` signatures: a signed request that writes is accepted once.

A `v1` signature binds timestamp, method, path and body, and is accepted within the replay
window; inside it, a captured request could be sent again (a second decision without a
`request_id`, a second event). The service remembers every accepted signature of a request
that writes (POST) until its window has passed, and refuses a second use with 401
`SIGNATURE_REPLAYED`. Reads are not remembered: replaying a GET changes nothing, and two
identical reads in the same second are normal.

On SQLite the cache is in process memory (one service process per database file); it is
bounded (`MemoryNonces.capacity`), and when full of signatures still inside their window it
refuses new ones (fail closed, 503) rather than forget one early. On PostgreSQL, where replicas
share the database, it is a table there, so a signature used on one replica is refused on all.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from lumyn.errors import StorageUnavailable
from lumyn.masking import mask_password
from lumyn.service.errors import ApiError

CAPACITY = 200_000  # ≈ 30 MB; at 300 s windows, 660 signed writes a second
PRUNE_EVERY = 1000  # PostgreSQL: delete expired rows once per this many insertions


if TYPE_CHECKING:
    import psycopg


class NonceCache(Protocol):
    blocking: bool  # does first_use do I/O (run it off the event loop)?

    def first_use(self, signature: bytes, expires_at: float) -> bool:
        """Record `signature` until `expires_at` (unix time); False if it is already held."""
        ...

    def close(self) -> None: ...


class MemoryNonces:
    blocking = False

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._expiry: dict[bytes, float] = {}
        self._order: list[tuple[float, bytes]] = []  # a heap: soonest expiry first
        self._lock = threading.Lock()

    def first_use(self, signature: bytes, expires_at: float) -> bool:
        with self._lock:
            now = time.time()
            while self._order and self._order[0][0] <= now:
                _, old = heapq.heappop(self._order)
                if self._expiry.get(old, now + 1) <= now:
                    del self._expiry[old]
            held = self._expiry.get(signature)
            if held is not None and held > now:
                return False
            if len(self._expiry) >= self.capacity:
                raise ApiError(503, "REPLAY_CACHE_FULL",
                               "too many signed writes inside the replay window; retry later",
                               field="X-Lumyn-Signature")
            self._expiry[signature] = expires_at
            heapq.heappush(self._order, (expires_at, signature))
            return True

    def close(self) -> None:
        pass


class PostgresNonces:
    """One row per accepted signature in `lumyn_signature_nonces`, shared by every replica."""

    blocking = True

    def __init__(self, url: str) -> None:
        import psycopg  # the postgres extra, present whenever a PostgreSQL store is

        self._psycopg: Any = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._inserts = 0

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS lumyn_signature_nonces "
                "(signature BYTEA PRIMARY KEY, expires_at DOUBLE PRECISION NOT NULL)")
        return self._conn

    def first_use(self, signature: bytes, expires_at: float) -> bool:
        with self._lock:
            try:
                conn = self._connection()
                row = conn.execute(
                    "INSERT INTO lumyn_signature_nonces VALUES (%s, %s) ON CONFLICT (signature) "
                    "DO UPDATE SET expires_at = EXCLUDED.expires_at "
                    "WHERE lumyn_signature_nonces.expires_at <= extract(epoch FROM now()) "
                    "RETURNING 1", (signature, expires_at)).fetchone()
                self._inserts += 1
                if self._inserts % PRUNE_EVERY == 0:
                    conn.execute("DELETE FROM lumyn_signature_nonces "
                                 "WHERE expires_at <= extract(epoch FROM now())")
            except self._psycopg.Error as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise StorageUnavailable(
                    f"replay cache on {mask_password(self._url)}: {type(exc).__name__}") from None
            return row is not None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def nonce_cache_for(url: str) -> NonceCache:
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresNonces(url)
    return MemoryNonces()


def refuse_replay(cache: NonceCache, headers: Mapping[str, str], window_s: int) -> None:
    """Raise 401 SIGNATURE_REPLAYED if this (already verified) v1 signature was used before."""
    signature = bytes.fromhex(headers["x-lumyn-signature"][3:])
    expires_at = int(headers["x-lumyn-timestamp"]) + window_s + 1
    if not cache.first_use(signature, expires_at):
        raise ApiError(401, "SIGNATURE_REPLAYED",
                       "this signature was already used; sign each request afresh",
                       field="X-Lumyn-Signature")
