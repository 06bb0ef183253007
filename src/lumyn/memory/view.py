"""Experience Memory as the SDK reads it: the store's items, indexed in process.

Before each lookup the index pulls any items added since it last looked (by this or another
process or replica) with one indexed range query, so labels anywhere are seen everywhere.
A source whose `memory_change_token()` answers lets it skip that query when nothing changed.
This is the SDK's I/O step between the engine's two pure ones; the engine itself reads nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Protocol

from lumyn.memory.index import MemoryIndex, Similarity
from lumyn.memory.item import MemoryItem


class MemorySource(Protocol):
    """What the view needs of a store (lumyn.store.base.Store has both)."""

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int
    ) -> list[tuple[int, MemoryItem]]: ...

    def memory_change_token(self) -> Hashable | None: ...


class MemoryView:
    def __init__(self, store: MemorySource) -> None:
        self.store = store
        self.index = MemoryIndex()
        self._seen: dict[tuple[str, str], int] = {}
        self._tokens: dict[tuple[str, str], Hashable] = {}
        self._lock = threading.Lock()

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
        store's newest sequence number still being that one (DecisionWrite.memory_seq) knows
        the answer was current when it was stored."""
        with self._lock:
            similarity = self.index.query(tenant_id, action_type, features, k)
            return similarity, self._seen.get((tenant_id, action_type), 0)

    def refresh(self, tenant_id: str, action_type: str) -> None:
        with self._lock:
            self._refresh(tenant_id, action_type)

    def _refresh(self, tenant_id: str, action_type: str) -> None:
        key = (tenant_id, action_type)
        # A backend that can tell "nothing changed since you last looked" saves the query.
        token = self.store.memory_change_token()
        if token is None or self._tokens.get(key) != token:
            rows = self.store.memory_items_since(tenant_id, action_type, self._seen.get(key, 0))
            for seq, item in rows:
                self.index.add(item)
                self._seen[key] = seq
            self._tokens[key] = token
