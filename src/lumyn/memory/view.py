"""Experience Memory as the SDK reads it: the store's items, indexed in process.

Each tenant and action type has a `GroupIndex` whose files persist beside the store (see
lumyn.memory.group), so a process starts from them and reads from the store only the items
added since they were written. Before each lookup the index pulls any items added since it
last looked (by this or another process or replica) with one indexed range query, so labels
anywhere are seen everywhere. Backends that offer `memory_change_token()` let it skip that
query when nothing changed. An item that supersedes an earlier one (the same decision labeled
again) retires it: the latest label of a decision is the one memory keeps.

Items older than the store's prune cutoff (`lumyn memory prune`) or the configured retention
period take no part in similarity. This is the SDK's I/O step between the engine's two pure
ones; the engine itself reads nothing.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Protocol

from lumyn.memory.group import GroupIndex
from lumyn.memory.index import Similarity
from lumyn.memory.item import MemoryItem

CATCH_UP_ROWS = 50_000  # items read per query while catching up (bounds memory, not speed)
CUTOFF_RECHECK_S = 1.0  # how stale another process's prune may be here, at most


class MemorySource(Protocol):
    """What the view needs of a store (lumyn.store.base.Store has all of it)."""

    url: str

    def memory_items_since(
        self, tenant_id: str, action_type: str, after_seq: int, limit: int | None = None
    ) -> list[tuple[int, MemoryItem]]: ...

    def memory_change_token(self) -> Hashable | None: ...

    def memory_prune_cutoff(self, tenant_id: str) -> str | None: ...


def index_directory(setting: str | None, store: MemorySource) -> Path | None:
    """Where a store's memory index lives: the setting, else beside a SQLite file, else (any
    other store) a cache directory named after the store's URL."""
    if setting is not None:
        return None if setting in ("", "off") else Path(setting)
    path = getattr(store, "path", None)
    if isinstance(path, Path):
        return path.with_name(path.name + ".memory")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    name = hashlib.sha256(store.url.encode()).hexdigest()[:16]
    return Path(cache) / "lumyn" / "memory" / name


class MemoryView:
    def __init__(self, store: MemorySource, directory: Path | None = None,
                 retention_days: int | None = None) -> None:
        self.store = store
        self.directory = directory
        self.retention_days = retention_days
        self._groups: dict[tuple[str, str], GroupIndex] = {}
        self._tokens: dict[tuple[str, str], Hashable] = {}
        self._lock = threading.Lock()
        self._pruned: dict[str, tuple[float, str | None]] = {}  # tenant -> (checked at, cutoff)

    def lookup(self, tenant_id: str, action_type: str, features: tuple[str, ...],
               k: int, *, refresh: bool = True) -> Similarity:
        """Top-k over the tenant's items. `refresh=False` skips the catch-up: a batch calls
        refresh() once for its groups (memory as of batch start), then looks up each request."""
        with self._lock:
            group = self._group(tenant_id, action_type)
            if refresh:
                self._refresh(group, force_cutoff=False)
            return group.query(features, k, self._cutoff(tenant_id))

    def lookup_indexed(self, tenant_id: str, action_type: str, features: tuple[str, ...],
                       k: int) -> tuple[Similarity, int]:
        """Top-k over the items already indexed, without asking the store, and the sequence
        number those items run up to. A caller that makes its write conditional on the
        store's newest sequence number still being that one (DecisionWrite.memory_seq)
        knows the answer was current when it was stored."""
        with self._lock:
            group = self._group(tenant_id, action_type)
            return group.query(features, k, self._cutoff(tenant_id)), group.last_seq

    def refresh(self, tenant_id: str, action_type: str) -> None:
        with self._lock:
            self._refresh(self._group(tenant_id, action_type), force_cutoff=True)

    def size(self, tenant_id: str, action_type: str) -> int:
        """Items of the group that take part in similarity (superseded ones do not)."""
        with self._lock:
            return self._group(tenant_id, action_type).live

    def _group(self, tenant_id: str, action_type: str) -> GroupIndex:
        key = (tenant_id, action_type)
        group = self._groups.get(key)
        if group is None:
            path = None
            if self.directory is not None:
                name = hashlib.sha256(f"{tenant_id}\x00{action_type}".encode()).hexdigest()[:24]
                path = self.directory / name
            group = GroupIndex(tenant_id, action_type, path)
            if group.load() and not self._same_store(group):
                group.reset()  # files of another database (or one restored from a backup)
            self._groups[key] = group
        return group

    def _same_store(self, group: GroupIndex) -> bool:
        rows = self.store.memory_items_since(group.tenant_id, group.action_type,
                                             group.last_seq - 1, limit=1)
        return bool(rows) and rows[0][0] == group.last_seq \
            and rows[0][1].memory_id == group.last_item_id()

    def _refresh(self, group: GroupIndex, *, force_cutoff: bool) -> None:
        key = (group.tenant_id, group.action_type)
        # A backend that can tell "nothing changed since you last looked" saves the query.
        token = self.store.memory_change_token()
        if token is None or self._tokens.get(key) != token:
            group.apply_batches(self._since(group))
            self._pruned.pop(group.tenant_id, None)  # a prune also moves the token
            self._tokens[key] = token
        elif force_cutoff:
            self._pruned.pop(group.tenant_id, None)

    def _since(self, group: GroupIndex) -> Iterator[list[tuple[int, MemoryItem]]]:
        after = group.last_seq
        while True:
            rows = self.store.memory_items_since(group.tenant_id, group.action_type, after,
                                                 limit=CATCH_UP_ROWS)
            if rows:
                yield rows
                after = rows[-1][0]
            if len(rows) < CATCH_UP_ROWS:
                return

    def _cutoff(self, tenant_id: str) -> str | None:
        """Items created before this (RFC 3339 text) take no part: the later of the store's
        prune cutoff and the retention period's start."""
        cutoffs = []
        checked = self._pruned.get(tenant_id)
        now = time.monotonic()
        if checked is None or now - checked[0] > CUTOFF_RECHECK_S:
            checked = self._pruned[tenant_id] = (now, self.store.memory_prune_cutoff(tenant_id))
        if checked[1]:
            cutoffs.append(checked[1])
        if self.retention_days:
            cutoffs.append(utc_text(time.time() - self.retention_days * 86400))
        return max(cutoffs) if cutoffs else None


def utc_text(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, as the store writes created_at (compared as text)."""
    ms = int(seconds * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
