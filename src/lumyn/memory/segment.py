"""An immutable block of memory items of one tenant and action type, laid out for exact top-k.

Items are grouped into classes that share (dense token mask, total weight): the tokens common
in the block (at most 64, each in at least 1/64 of its items) are bits of a mask, the others
sit in posting lists. For a query, every item a rare query token does not reach scores exactly
as its class does, so a query scores the classes (thousands, however many items) plus the items
those posting lists reach, then reads the best items of the best classes in memory_id order.

Tokens are keyed by a 64-bit hash. Two tokens that share a key can only raise a computed score
(a shared key counts as a shared token), never lower it; `lumyn.memory.search` checks the
winners' scores against their real features and falls back to a full exact scan if one was
raised. Weights are kept doubled (`w2`, integers): token weights are multiples of 0.5.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from lumyn.memory.features import WEIGHTS
from lumyn.memory.item import LABELS, MemoryItem

LABEL_CODE = {label: code for code, label in enumerate(LABELS)}
MAX_DENSE = 64
DENSE_SHARE = 64  # a token in at least 1/DENSE_SHARE of a block's items is a mask bit

Array = npt.NDArray[Any]
# The arrays a segment is made of, in the order they are written to disk.
FIELDS = ("seq", "ids", "w2", "label", "created", "tok_off", "tok_key", "pay_off", "payload",
          "dense_keys", "mask", "cls_mask", "cls_w2", "cls_off", "cls_items", "item_cls",
          "sp_keys", "sp_off", "sp_pos")


def token_key(token: str) -> int:
    """A stable 64-bit key for a token (the same in every process and on every machine)."""
    data = token.encode()
    return (zlib.crc32(data) << 32) | zlib.adler32(data)


_DOUBLED = {kind: int(weight * 2) for kind, weight in WEIGHTS.items()}


def doubled_weight(token: str) -> int:
    return _DOUBLED[token[: token.index(":")]]


@dataclass
class Columns:
    """Per-item columns of a run of items in seq order: the input a segment is built from."""

    seq: Array  # int64
    ids: Array  # bytes (S)
    w2: Array  # int32
    label: Array  # int8
    created: Array  # bytes (S): RFC 3339 UTC, compared as text
    tok_off: Array  # int64, n + 1
    tok_key: Array  # uint64
    pay_off: Array  # int64, n + 1
    payload: Array  # uint8

    @property
    def n(self) -> int:
        return len(self.seq)

    @classmethod
    def from_items(cls, rows: Sequence[tuple[int, MemoryItem]],
                   key: Callable[[str], int] = token_key) -> Columns:
        keys: list[int] = []
        counts: list[int] = []
        w2: list[int] = []
        payloads: list[bytes] = []
        terms: dict[str, tuple[int, int]] = {}  # most tokens repeat across items
        for _, item in rows:
            item_w2 = 0
            for token in item.features:
                term = terms.get(token)
                if term is None:
                    term = terms[token] = (key(token), doubled_weight(token))
                keys.append(term[0])
                item_w2 += term[1]
            counts.append(len(item.features))
            w2.append(item_w2)
            payloads.append(orjson.dumps([item.memory_id, item.label, item.summary,
                                          list(item.features), item.source_decision_id,
                                          item.created_at]))
        lengths = np.fromiter((len(p) for p in payloads), np.int64, len(payloads))
        return cls(
            seq=np.fromiter((seq for seq, _ in rows), np.int64, len(rows)),
            ids=np.array([item.memory_id.encode() for _, item in rows] or [b""], dtype=bytes)[
                : len(rows)],
            w2=np.array(w2, dtype=np.int32),
            label=np.array([LABEL_CODE[item.label] for _, item in rows], dtype=np.int8),
            created=np.array([(item.created_at or "").encode() for _, item in rows] or [b""],
                             dtype=bytes)[: len(rows)],
            tok_off=_offsets(np.array(counts, dtype=np.int64)),
            tok_key=np.array(keys, dtype=np.uint64),
            pay_off=_offsets(lengths),
            payload=np.frombuffer(b"".join(payloads), dtype=np.uint8),
        )

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        def join(name: str) -> Array:
            return np.concatenate([getattr(p, name) for p in parts])

        def offsets(name: str) -> Array:
            lengths = [np.diff(getattr(p, name)) for p in parts]
            return _offsets(np.concatenate(lengths))

        return cls(seq=join("seq"), ids=join("ids"), w2=join("w2"), label=join("label"),
                   created=join("created"), tok_off=offsets("tok_off"), tok_key=join("tok_key"),
                   pay_off=offsets("pay_off"), payload=join("payload"))


def _offsets(lengths: Array) -> Array:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


class Segment:
    """Read-only arrays (memory-mapped when loaded from disk) plus an in-memory `dead` mask."""

    def __init__(self, arrays: dict[str, Array]) -> None:
        self.a = arrays
        self.n = len(arrays["seq"])
        self.dead = np.zeros(self.n, dtype=np.bool_)
        self.dead_count = 0
        self.dense_bit = {int(key): bit for bit, key in enumerate(arrays["dense_keys"])}
        self.first_seq = int(arrays["seq"][0]) if self.n else 0
        self.last_seq = int(arrays["seq"][-1]) if self.n else 0
        self._class_bits: Array | None = None

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, c: Columns) -> Segment:
        n = c.n
        occ_item = np.repeat(np.arange(n, dtype=np.int32), np.diff(c.tok_off))
        uniq, inverse, counts = np.unique(c.tok_key, return_inverse=True, return_counts=True)
        common = np.flatnonzero(counts * DENSE_SHARE >= max(n, 1))
        if common.size > MAX_DENSE:  # keep the most frequent (ties: smaller key)
            order = np.lexsort((uniq[common], -counts[common]))
            common = np.sort(common[order[:MAX_DENSE]])
        bit_of_uniq = np.full(len(uniq), -1, dtype=np.int64)
        bit_of_uniq[common] = np.arange(common.size)
        occ_bit = bit_of_uniq[inverse.reshape(-1)]
        is_dense = occ_bit >= 0

        bits = np.zeros(len(occ_bit), dtype=np.uint64)
        bits[is_dense] = np.left_shift(np.uint64(1), occ_bit[is_dense].astype(np.uint64))
        mask = np.zeros(n, dtype=np.uint64)
        np.bitwise_or.at(mask, occ_item[is_dense], bits[is_dense])

        sparse = ~is_dense
        sp_key_occ, sp_item_occ = c.tok_key[sparse], occ_item[sparse]
        order = np.argsort(sp_key_occ, kind="stable")  # items stay ascending within a key
        sp_sorted = sp_key_occ[order]
        sp_keys, sp_starts = np.unique(sp_sorted, return_index=True)
        sp_off = np.append(sp_starts, len(sp_sorted)).astype(np.int64)

        # Classes: (mask, w2); inside a class items by label, then memory_id.
        by = np.lexsort((c.ids, c.label, c.w2, mask)) if n else np.zeros(0, np.int64)
        m_sorted, w_sorted = mask[by], c.w2[by]
        new_class = np.ones(n, dtype=np.bool_)
        new_class[1:] = (m_sorted[1:] != m_sorted[:-1]) | (w_sorted[1:] != w_sorted[:-1])
        class_of_sorted = np.cumsum(new_class) - 1
        n_classes = int(class_of_sorted[-1]) + 1 if n else 0
        item_cls = np.empty(n, dtype=np.int32)
        item_cls[by] = class_of_sorted
        code = class_of_sorted * len(LABELS) + c.label[by]
        cls_off = _offsets(np.bincount(code, minlength=n_classes * len(LABELS)).astype(np.int64))
        starts = np.flatnonzero(new_class)
        return cls({
            "seq": c.seq, "ids": c.ids, "w2": c.w2.astype(np.int32), "label": c.label,
            "created": c.created, "tok_off": c.tok_off, "tok_key": c.tok_key,
            "pay_off": c.pay_off, "payload": c.payload,
            "dense_keys": uniq[common].astype(np.uint64), "mask": mask,
            "cls_mask": m_sorted[starts], "cls_w2": w_sorted[starts].astype(np.int32),
            "cls_off": cls_off, "cls_items": by.astype(np.int32), "item_cls": item_cls,
            "sp_keys": sp_keys.astype(np.uint64), "sp_off": sp_off,
            "sp_pos": sp_item_occ[order].astype(np.int32),
        })

    def class_bits(self) -> Array:
        """Each class's common tokens as a 0/1 matrix (classes x mask bits), made once."""
        if self._class_bits is None:
            bits = np.arange(len(self.dense_bit), dtype=np.uint64)
            masks = np.asarray(self.a["cls_mask"])[:, None]
            self._class_bits = ((masks >> bits) & np.uint64(1)).astype(np.float32)
        return self._class_bits

    def columns(self) -> Columns:
        """This segment's items as build input (to merge it with a neighbour)."""
        a = self.a
        return Columns(seq=np.asarray(a["seq"]), ids=np.asarray(a["ids"]),
                       w2=np.asarray(a["w2"]), label=np.asarray(a["label"]),
                       created=np.asarray(a["created"]), tok_off=np.asarray(a["tok_off"]),
                       tok_key=np.asarray(a["tok_key"]), pay_off=np.asarray(a["pay_off"]),
                       payload=np.asarray(a["payload"]))

    # -- reading ----------------------------------------------------------------------------

    def item(self, tenant_id: str, action_type: str, position: int) -> MemoryItem:
        off = self.a["pay_off"]
        raw = self.a["payload"][int(off[position]): int(off[position + 1])]
        memory_id, label, summary, features, source, created = orjson.loads(raw.tobytes())
        return MemoryItem(memory_id, tenant_id, action_type, label, summary, tuple(features),
                          source, created)

    def position_of_seq(self, seq: int) -> int | None:
        seqs = self.a["seq"]
        at = int(np.searchsorted(seqs, seq))
        return at if at < self.n and int(seqs[at]) == seq else None

    def retire(self, position: int) -> None:
        if not self.dead[position]:
            self.dead[position] = True
            self.dead_count += 1
