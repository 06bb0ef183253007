"""Storage backends behind one protocol."""

from __future__ import annotations

from lumyn.errors import ConfigError
from lumyn.store.base import DecisionRow, DecisionWrite, IdempotencyKey, PolicySnapshot, Store
from lumyn.store.sqlite import SqliteStore

__all__ = ["DecisionRow", "DecisionWrite", "IdempotencyKey", "PolicySnapshot", "SqliteStore", "Store",
           "open_store"]


def open_store(url: str, *, busy_timeout_ms: int = 5000) -> Store:
    """`sqlite:///path/to/lumyn.db`, a bare path, or `postgresql://…`."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from lumyn.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError(
                "PostgreSQL storage needs the postgres extra: pip install '.[postgres]' from the "
                f"Lumyn source tree ({exc})",
                field="storage_url",
            ) from None
        store: Store = PostgresStore(url)
        return store
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    if url.startswith("sqlite://") and not url.startswith("sqlite:///"):
        raise ConfigError("sqlite URLs look like sqlite:///path/to/lumyn.db", field="storage_url")
    return SqliteStore(path, busy_timeout_ms=busy_timeout_ms)
