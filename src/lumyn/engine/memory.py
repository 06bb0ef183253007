"""Experience Memory as seen by the engine: the store's items, indexed in process.

Before each lookup the index pulls any items added since it last looked (by this or another
process or replica) with one indexed range query, so labels anywhere are seen everywhere.
Backends that offer `memory_change_token()` let it skip that query when nothing changed.
"""

from __future__ import annotations

import threading

from lumyn.memory.index import MemoryIndex, Similarity
from lumyn.store.base import Store


class MemoryView:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = MemoryIndex()
        self._seen: dict[tuple[str, str], int] = {}
        self._tokens: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self._token_of = getattr(store, "memory_change_token", None)

    def lookup(self, tenant_id: str, action_type: str, features: tuple[str, ...],
               k: int, *, refresh: bool = True) -> Similarity:
        """Top-k over the tenant's items. `refresh=False` skips the catch-up: a batch calls
        refresh() once for its groups (memory as of batch start), then looks up each request."""
        with self._lock:
            if refresh:
                self._refresh(tenant_id, action_type)
            return self.index.query(tenant_id, action_type, features, k)

    def lookup_indexed(self, tenant_id: str, action_type: str, features: tuple[str, ...],
                       k: int) -> tuple[Similarity, int]:
        """Top-k over the items already indexed, without asking the store, and the sequence
        number those items run up to. A caller that makes its write conditional on the
        store's newest sequence number still being that one (PostgresStore's
        append_decision_if_memory_at) knows the answer was current when it was stored."""
        with self._lock:
            similarity = self.index.query(tenant_id, action_type, features, k)
            return similarity, self._seen.get((tenant_id, action_type), 0)

    def refresh(self, tenant_id: str, action_type: str) -> None:
        with self._lock:
            self._refresh(tenant_id, action_type)

    def _refresh(self, tenant_id: str, action_type: str) -> None:
        key = (tenant_id, action_type)
        # A backend that can tell "nothing changed since you last looked" saves the query.
        token = self._token_of() if self._token_of else None
        if token is None or self._tokens.get(key) != token:
            rows = self.store.memory_items_since(tenant_id, action_type, self._seen.get(key, 0))
            for seq, item in rows:
                self.index.add(item)
                self._seen[key] = seq
            self._tokens[key] = token
