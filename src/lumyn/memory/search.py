"""Exact weighted-Jaccard top-k over the segments of one tenant and action type.

The answer is the one `lumyn.memory.index.MemoryIndex` gives over the same live items: scores
rounded to 6 decimals, ranked by score descending then memory_id ascending; the best failure
and best success likewise; items sharing no token with the query are not candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lumyn.memory.index import EMPTY, SCORE_DECIMALS, Match, MemoryIndex, Similarity
from lumyn.memory.item import MemoryItem
from lumyn.memory.segment import LABEL_CODE, Array, Segment, doubled_weight, token_key

_FAILURE, _SUCCESS = LABEL_CODE["failure"], LABEL_CODE["success"]
_N_LABELS = len(LABEL_CODE)
DIRECT_MAX = 4096  # segments up to this size score every item instead of walking classes


@dataclass(frozen=True)
class Query:
    features: tuple[str, ...]
    terms: tuple[tuple[int, int], ...]  # (token key, doubled weight)
    q2: int

    @classmethod
    def of(cls, features: tuple[str, ...], key: Callable[[str], int] = token_key) -> Query:
        if key is token_key:
            terms = tuple(map(cached_term, features))
        else:
            terms = tuple((key(t), doubled_weight(t)) for t in features)
        return cls(features, terms, sum(w for _, w in terms))


_TERMS: dict[str, tuple[int, int]] = {}


def cached_term(token: str) -> tuple[int, int]:
    """(token_key, doubled weight), remembered for the tokens queries repeat (bounded)."""
    term = _TERMS.get(token)
    if term is None:
        if len(_TERMS) >= 65536:
            _TERMS.clear()
        term = _TERMS[token] = (token_key(token), doubled_weight(token))
    return term


@dataclass(frozen=True)
class _Hit:
    score: float
    memory_id: bytes
    label: int
    segment: int
    position: int

    def order(self) -> tuple[float, bytes]:
        return (-self.score, self.memory_id)


def _scores(shared: Array, w2: Array, q2: int) -> Array:
    """Rounded scores; `shared` (doubled) may be raised by shared keys, so clamp it to what
    two real token sets can share (the score stays an upper bound of the real one)."""
    s = np.minimum(np.minimum(shared, w2), q2).astype(np.float64)
    raw = s / (q2 + w2 - s)
    return np.round(raw, SCORE_DECIMALS)


class _SegmentSearch:
    """One query against one segment: class scores, the items rare tokens reach, and the walk
    over classes in score order."""

    def __init__(self, seg: Segment, query: Query, cutoff: bytes | None) -> None:
        a = seg.a
        self.seg, self.cutoff = seg, cutoff
        dense = np.zeros(len(seg.dense_bit), dtype=np.float32)
        reached: list[Array] = []
        weights: list[Array] = []
        for key, w2 in query.terms:
            bit = seg.dense_bit.get(key)
            if bit is not None:
                dense[bit] += w2
                continue
            at = int(np.searchsorted(a["sp_keys"], np.uint64(key)))
            if at < len(a["sp_keys"]) and int(a["sp_keys"][at]) == key:
                positions = a["sp_pos"][int(a["sp_off"][at]): int(a["sp_off"][at + 1])]
                reached.append(np.asarray(positions))
                weights.append(np.full(len(positions), w2, dtype=np.int64))
        # Each class's shared weight over the common tokens: its bit matrix times the query's
        # weights (small integers: exact in float32).
        cls_s2 = (seg.class_bits() @ dense).astype(np.int64)
        if reached:
            touched, inverse = np.unique(np.concatenate(reached), return_inverse=True)
            extra = np.bincount(inverse.reshape(-1), weights=np.concatenate(weights))
        else:
            touched, extra = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        if seg.n <= DIRECT_MAX:  # small: score every item, no walk over classes
            shared = cls_s2[a["item_cls"]]
            shared[touched] += extra.astype(np.int64)
            self.touched = np.arange(seg.n)
            self.touched_score = _scores(shared, a["w2"], query.q2)
            self.class_order = np.zeros(0, dtype=np.int64)
            self.cls_score = np.zeros(0, dtype=np.float64)
        else:
            shared = cls_s2[a["item_cls"][touched]] + extra.astype(np.int64)
            self.touched = touched
            self.touched_score = _scores(shared, a["w2"][touched], query.q2)
            self.cls_score = _scores(cls_s2, a["cls_w2"], query.q2)
            self.cls_score[cls_s2 <= 0] = 0.0
            order = np.argsort(-self.cls_score, kind="stable")
            self.class_order = order[self.cls_score[order] > 0]
        kept = self.touched_score > 0
        kept &= ~seg.dead[self.touched]
        if cutoff is not None:
            kept &= a["created"][self.touched] >= cutoff
        self.touched_kept = self.touched[kept]
        self.touched_kept_score = self.touched_score[kept]

    def _kept(self, positions: Array) -> Array:
        """Which of `positions` are live, inside the retention cutoff and not reached by a
        rare token (those are ranked apart, with their own scores)."""
        ok: Array = ~self.seg.dead[positions]
        if self.cutoff is not None:
            ok &= self.seg.a["created"][positions] >= self.cutoff
        if self.touched.size:
            at = np.minimum(np.searchsorted(self.touched, positions), self.touched.size - 1)
            ok &= self.touched[at] != positions
        return ok

    def _first(self, start: int, stop: int, need: int) -> Array:
        """The first `need` kept positions of cls_items[start:stop] (memory_id order)."""
        items = self.seg.a["cls_items"]
        found: list[Array] = []
        count, step = 0, need + 8
        while start < stop and count < need:
            chunk = np.asarray(items[start: min(stop, start + step)])
            found.append(chunk[self._kept(chunk)][: need - count])
            count += len(found[-1])
            start += step
            step *= 4
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int32)

    def _heads(self, runs: Array, need: int) -> Array:
        """The first `need` kept positions of each run (a class's items of one label, in
        memory_id order), all runs at once; a run whose head holds a left-out item and that
        has more items is read on."""
        off, items = self.seg.a["cls_off"], self.seg.a["cls_items"]
        starts, stops = off[runs], off[runs + 1]
        full = stops > starts
        starts, stops = starts[full], stops[full]
        if starts.size == 0:
            return np.zeros(0, dtype=np.int32)
        index = starts[:, None] + np.arange(need)[None, :]
        inside = index < stops[:, None]
        positions = np.asarray(items[np.where(inside, index, starts[:, None])])
        kept = inside & self._kept(positions.reshape(-1)).reshape(positions.shape)
        short = np.flatnonzero((inside & ~kept).any(axis=1) & (stops - starts > need))
        kept[short] = False
        parts = [positions[kept]]
        parts += [self._first(int(starts[r]), int(stops[r]), need) for r in short.tolist()]
        return np.concatenate(parts)

    def best(self, label: int | None, need: int, index: int, out: dict[tuple[int, int], _Hit]) -> None:
        """Add to `out` a superset of this segment's `need` best items (of `label`, or any)."""
        if need <= 0:
            return
        a = self.seg.a
        positions, scores = self.touched_kept, self.touched_kept_score
        if label is not None:
            of_label = a["label"][positions] == label
            positions, scores = positions[of_label], scores[of_label]
        for position, score in _best_of(positions, scores, a["ids"], need):
            out[(index, position)] = self._hit(score, index, position)
        order = self.class_order
        if label is not None:  # skip classes without an item of this label
            off = a["cls_off"]
            order = order[off[order * _N_LABELS + label + 1] > off[order * _N_LABELS + label]]
        ordered_scores = self.cls_score[order]
        labels = np.array([label] if label is not None else range(_N_LABELS))
        collected, i = 0, 0
        while i < len(order):  # level by level: classes of one score, best first
            level = ordered_scores[i]
            end = i + int(np.searchsorted(-ordered_scores[i:], -level, side="right"))
            runs = (order[i:end, None] * _N_LABELS + labels[None, :]).reshape(-1)
            found = self._heads(runs, need)
            for position in found.tolist():
                out[(index, position)] = self._hit(float(level), index, position)
            collected += len(found)
            if collected >= need:  # everything below this level scores less
                return
            i = end

    def _hit(self, score: float, index: int, position: int) -> _Hit:
        a = self.seg.a
        return _Hit(score, bytes(a["ids"][position]), int(a["label"][position]), index, position)


def _best_of(positions: Array, scores: Array, ids: Array, need: int) -> list[tuple[int, float]]:
    """The `need` best (position, score) by score descending, then memory_id ascending."""
    if len(positions) > need:
        threshold = -np.partition(-scores, need - 1)[need - 1]
        above = scores > threshold
        ties = np.flatnonzero(scores == threshold)
        ties = ties[np.argsort(ids[positions[ties]], kind="stable")][: need - int(above.sum())]
        keep = np.concatenate([np.flatnonzero(above), ties])
        positions, scores = positions[keep], scores[keep]
    return list(zip(positions.tolist(), scores.tolist(), strict=True))


def search(segments: Sequence[Segment], tenant_id: str, action_type: str,
           features: tuple[str, ...], k: int, cutoff: str | None = None,
           key: Callable[[str], int] = token_key) -> Similarity:
    if not features or not segments:
        return EMPTY
    query = Query.of(features, key)
    limit = cutoff.encode() if cutoff else None
    hits: dict[tuple[int, int], _Hit] = {}
    for index, seg in enumerate(segments):
        if seg.n - seg.dead_count <= 0:
            continue
        part = _SegmentSearch(seg, query, limit)
        part.best(None, k, index, hits)
        part.best(_FAILURE, 1, index, hits)
        part.best(_SUCCESS, 1, index, hits)
    ranked = sorted(hits.values(), key=_Hit.order)
    top = ranked[: max(k, 0)]
    failure = next((h for h in ranked if h.label == _FAILURE), None)
    success = next((h for h in ranked if h.label == _SUCCESS), None)
    matches: dict[tuple[int, int], Match] = {}
    for hit in [*top, failure, success]:
        if hit is not None and (hit.segment, hit.position) not in matches:
            item = segments[hit.segment].item(tenant_id, action_type, hit.position)
            matches[(hit.segment, hit.position)] = Match(item, hit.score)
    if matches and not _all_exact(list(matches.values()), features):
        # Two tokens shared a key and raised a score: answer from the features themselves.
        return brute_force(segments, tenant_id, action_type, features, k, cutoff)

    def of(hit: _Hit | None) -> Match | None:
        return None if hit is None else matches[(hit.segment, hit.position)]

    if not top and failure is None and success is None:
        return EMPTY
    return Similarity(tuple(matches[(h.segment, h.position)] for h in top), of(failure),
                      of(success))


def _all_exact(matches: list[Match], query: tuple[str, ...]) -> bool:
    """Whether each match's score is its real weighted Jaccard score with the query."""
    theirs = set(query)
    shared = [sum(map(doubled_weight, theirs.intersection(m.item.features))) for m in matches]
    union = [sum(map(doubled_weight, theirs.union(m.item.features))) for m in matches]
    exact = np.round(np.array(shared, np.float64) / np.array(union, np.float64), SCORE_DECIMALS)
    return bool((exact == np.array([m.score for m in matches])).all())


def brute_force(segments: Sequence[Segment], tenant_id: str, action_type: str,
                features: tuple[str, ...], k: int, cutoff: str | None) -> Similarity:
    """Every live item's score from its real features (the slow path; see `search`)."""
    items: list[MemoryItem] = []
    for seg in segments:
        for position in range(seg.n):
            if seg.dead[position]:
                continue
            item = seg.item(tenant_id, action_type, position)
            if cutoff is None or (item.created_at or "") >= cutoff:
                items.append(item)
    return MemoryIndex(items).query(tenant_id, action_type, features, k)

