"""Exact weighted-Jaccard top-k over every memory item of a tenant and action type.

Items live in per-(tenant, action type) groups ordered by memory_id, with an inverted index
token → item positions held in growable numpy arrays. A query adds each of its token weights
into an accumulator through the posting lists, so cost follows the postings touched, and then
ranks exactly (score descending, memory_id ascending) with a partial sort.

Weighted Jaccard of token sets A, B with weights w: W(A∩B) / (W(A) + W(B) − W(A∩B)).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from lumyn.contracts.canonical import digest, plain_digest
from lumyn.memory.features import token_weight
from lumyn.memory.item import LABELS as LABELS  # re-exported: moved to a numpy-free module
from lumyn.memory.item import MemoryItem as MemoryItem

_LABEL_CODE = {label: code for code, label in enumerate(LABELS)}
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class Match:
    item: MemoryItem
    score: float


@dataclass(frozen=True)
class Similarity:
    top_k: tuple[Match, ...]
    failure: Match | None
    success: Match | None

    @property
    def failure_score(self) -> float:
        return self.failure.score if self.failure else 0.0

    @property
    def success_score(self) -> float:
        return self.success.score if self.success else 0.0

    @cached_property
    def _considered(self) -> tuple[MemoryItem, ...]:
        items = {m.item.memory_id: m.item for m in self.top_k}
        for match in (self.failure, self.success):
            if match:
                items.setdefault(match.item.memory_id, match.item)
        return tuple(items[key] for key in sorted(items))

    def considered(self) -> list[MemoryItem]:
        """Every item that determined the signals: top-k plus the best failure and success.
        Re-running the search over just these items reproduces the same signals exactly."""
        return list(self._considered)

    def snapshot_digest(self) -> str:
        considered = self._considered
        if not considered:
            return _EMPTY_SNAPSHOT
        return plain_digest([item.snapshot_entry() for item in considered])


EMPTY = Similarity((), None, None)
_EMPTY_SNAPSHOT = digest([])


class _Grow:
    """A numpy array with amortised O(1) append."""

    def __init__(self, dtype: Any) -> None:
        self.data: npt.NDArray[Any] = np.empty(16, dtype=dtype)
        self.size = 0

    def append(self, value: Any) -> None:
        self.insert(self.size, value)

    def insert(self, at: int, value: Any) -> None:
        if self.size == len(self.data):
            self.data = np.concatenate([self.data, np.empty(len(self.data), self.data.dtype)])
        if at < self.size:
            self.data[at + 1 : self.size + 1] = self.data[at : self.size].copy()
        self.data[at] = value
        self.size += 1

    def view(self) -> npt.NDArray[Any]:
        return self.data[: self.size]


@dataclass
class _Group:
    items: list[MemoryItem] = field(default_factory=list)
    weights: _Grow = field(default_factory=lambda: _Grow(np.float64))
    labels: _Grow = field(default_factory=lambda: _Grow(np.int8))
    postings: dict[str, _Grow] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    alive: _Grow = field(default_factory=lambda: _Grow(np.bool_))
    retired: int = 0

    def add(self, item: MemoryItem) -> None:
        if item.memory_id in self.ids:
            return
        self.ids.add(item.memory_id)
        if self.items and item.memory_id < self.items[-1].memory_id:
            # Ids minted by another process, committed later: O(items) numpy shifts (a
            # rebuild cost seconds at 100k items). The common case appends.
            position = bisect_left(self.items, item.memory_id, key=lambda it: it.memory_id)
        else:
            position = len(self.items)
        self._place(item, position)

    def _place(self, item: MemoryItem, position: int) -> None:
        """Insert `item` at `position` of the memory_id order, keeping postings consistent."""
        if position < len(self.items):
            for posting in self.postings.values():
                view = posting.view()
                view[view >= position] += 1
        self.items.insert(position, item)
        self.weights.insert(position, sum(token_weight(t) for t in item.features))
        self.labels.insert(position, _LABEL_CODE[item.label])
        self.alive.insert(position, True)
        for token in item.features:
            posting = self._posting(token)
            at = posting.size if position == len(self.items) - 1 else int(
                np.searchsorted(posting.view(), position))
            posting.insert(at, position)

    def retire(self, memory_id: str) -> None:
        """Leave the item out of every later query (a newer label of its decision replaced it)."""
        position = bisect_left(self.items, memory_id, key=lambda it: it.memory_id)
        alive = self.alive.view()
        if position < len(self.items) and self.items[position].memory_id == memory_id \
                and alive[position]:
            alive[position] = False
            self.retired += 1

    def _posting(self, token: str) -> _Grow:
        posting = self.postings.get(token)
        if posting is None:
            posting = self.postings[token] = _Grow(np.int32)
        return posting

    def query(self, features: tuple[str, ...], k: int) -> Similarity:
        n = len(self.items)
        if n == 0 or not features:
            return EMPTY
        accumulated = np.zeros(n, dtype=np.float64)
        query_weight = 0.0
        for token in features:  # sorted order keeps float sums identical everywhere
            weight = token_weight(token)
            query_weight += weight
            posting = self.postings.get(token)
            if posting is not None:
                accumulated[posting.view()] += weight
        candidates = np.flatnonzero(accumulated)
        if self.retired:
            candidates = candidates[self.alive.view()[candidates]]
        if candidates.size == 0:
            return EMPTY
        shared = accumulated[candidates]
        raw = shared / (query_weight + self.weights.view()[candidates] - shared)
        scores = np.round(raw, SCORE_DECIMALS)
        top = self._top(candidates, scores, k)
        labels = self.labels.view()[candidates]
        return Similarity(
            top_k=tuple(self._match(candidates[i], scores[i]) for i in top),
            failure=self._best(candidates, scores, labels, _LABEL_CODE["failure"]),
            success=self._best(candidates, scores, labels, _LABEL_CODE["success"]),
        )

    def _match(self, position: Any, score: Any) -> Match:
        return Match(self.items[int(position)], float(score))

    def _best(self, candidates: Any, scores: Any, labels: Any, code: int) -> Match | None:
        mask = labels == code
        if not mask.any():
            return None
        positions = np.flatnonzero(mask)
        best = positions[int(np.argmax(scores[positions]))]  # first max = lowest memory_id
        return self._match(candidates[best], scores[best])

    @staticmethod
    def _top(candidates: Any, scores: Any, k: int) -> list[int]:
        """Indices into `candidates` of the k best, by score desc then memory_id asc."""
        if k <= 0:
            return []
        if scores.size > k:
            kth = np.partition(scores, scores.size - k)[scores.size - k]
            above = np.flatnonzero(scores > kth)
            ties = np.flatnonzero(scores == kth)[: k - above.size]
            chosen = np.concatenate([above, ties])
        else:
            chosen = np.arange(scores.size)
        # candidates are ascending positions = ascending memory_id, so index order breaks ties.
        order = np.lexsort((chosen, -scores[chosen]))
        return [int(chosen[i]) for i in order[:k]]


class MemoryIndex:
    """In-process index of memory items, grouped by (tenant, action type). Not thread-safe on
    its own: memory.view.MemoryView serialises access."""

    def __init__(self, items: Iterable[MemoryItem] = ()) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}
        for item in items:
            self.add(item)

    def add(self, item: MemoryItem) -> None:
        key = (item.tenant_id, item.action_type)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group()
        group.add(item)

    def retire(self, tenant_id: str, action_type: str, memory_id: str) -> None:
        group = self._groups.get((tenant_id, action_type))
        if group is not None:
            group.retire(memory_id)

    def size(self, tenant_id: str, action_type: str) -> int:
        """Items that take part in queries."""
        group = self._groups.get((tenant_id, action_type))
        return len(group.items) - group.retired if group else 0

    def query(self, tenant_id: str, action_type: str, features: tuple[str, ...], k: int) -> Similarity:
        group = self._groups.get((tenant_id, action_type))
        if group is None:
            return EMPTY
        return group.query(features, k)
