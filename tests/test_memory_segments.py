"""The segmented memory index answers exactly as the brute-force MemoryIndex does, and its
files survive restarts and crashes (never a wrong answer: a broken index is rebuilt)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from _builders import support_refund
from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn import Lumyn, LumynConfig
from lumyn.memory import MemoryIndex, MemoryItem
from lumyn.memory import group as group_module
from lumyn.memory import search as search_module
from lumyn.memory import segment as segment_module
from lumyn.memory.group import GroupIndex

TOKENS = ["action:a.b", "currency:USD", "currency:EUR", "amount:0-10", "amount:10-25",
          "tag:dup", "tag:vip", "target:stripe", "ev:risk=low", "ev:risk=high",
          "ev:customer_id=C1", "ev:customer_id=C2", "ev:order=1", "ev:order=2"]
DAYS = ["2025-01-01T00:00:00.000Z", "2025-06-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z"]


def colliding_key(token: str) -> int:
    return zlib.crc32(token.encode()) & 3  # four keys for every token: collisions everywhere


def reference(items: list[MemoryItem], retired: set[str], cutoff: str | None,
              query: tuple[str, ...], k: int):
    live = [i for i in items if i.memory_id not in retired
            and (cutoff is None or (i.created_at or "") >= cutoff)]
    return MemoryIndex(live).query("t", "a.b", query, k)


def rows_of(spec: list[tuple[int, str, list[str], int, int | None]]) -> list[tuple[int, MemoryItem]]:
    """(memory id number, label, tokens, day, superseded position) -> (seq, item) rows."""
    rows: list[tuple[int, MemoryItem]] = []
    for position, (number, label, tokens, day, replaces) in enumerate(spec):
        supersedes = rows[replaces][0] if replaces is not None and replaces < position else None
        item = MemoryItem(f"M{number:05d}", "t", "a.b", label, f"s{position}",
                          tuple(sorted(set(tokens))), None, DAYS[day], supersedes)
        rows.append((10 + 3 * position, item))
    return rows


row_spec = st.tuples(st.integers(0, 99999), st.sampled_from(["failure", "success", "near_miss"]),
                     st.lists(st.sampled_from(TOKENS), min_size=1, max_size=7),
                     st.integers(0, 2), st.one_of(st.none(), st.integers(0, 60)))


@settings(max_examples=150, deadline=None)
@given(st.lists(row_spec, max_size=60, unique_by=lambda r: r[0]),
       st.lists(st.sampled_from(TOKENS), min_size=1, max_size=7), st.integers(0, 6),
       st.lists(st.integers(1, 20), max_size=6), st.booleans(),
       st.one_of(st.none(), st.sampled_from(DAYS)),
       st.sampled_from([(1, 64, 0, 0), (3, 2, 0, 0), (64, 64, 0, 4096), (64, 64, 2048, 4096)]))
def test_segments_answer_exactly_as_brute_force(
        spec, query_tokens, k, cuts, collide, cutoff, paths) -> None:
    # paths: which tokens become mask bits (a share of the items, at most so many) and which
    # posting lists; whether a small group uses MemoryIndex; up to which size a segment
    # scores every item. Small sets exercise every path and their mixes.
    saved = (segment_module.DENSE_SHARE, segment_module.MAX_DENSE, group_module.SMALL_MAX,
             search_module.DIRECT_MAX)
    (segment_module.DENSE_SHARE, segment_module.MAX_DENSE, group_module.SMALL_MAX,
     search_module.DIRECT_MAX) = paths
    try:
        check_against_brute_force(spec, query_tokens, k, cuts, collide, cutoff)
    finally:
        (segment_module.DENSE_SHARE, segment_module.MAX_DENSE, group_module.SMALL_MAX,
         search_module.DIRECT_MAX) = saved


def check_against_brute_force(spec, query_tokens, k, cuts, collide, cutoff) -> None:
    rows = rows_of(spec)
    query = tuple(sorted(set(query_tokens)))
    index = GroupIndex("t", "a.b", key=colliding_key if collide else group_module.token_key)
    seq_to_id = {seq: item.memory_id for seq, item in rows}
    start = 0
    for size in [*cuts, len(rows)]:  # batches of any size: several segments, merges
        index.apply(rows[start:start + size])
        start += size
        seen = rows[:start]
        retired = {seq_to_id[item.supersedes_seq] for _, item in seen if item.supersedes_seq}
        expected = reference([item for _, item in seen], retired, cutoff, query, k)
        result = index.query(query, k, cutoff)
        assert result == expected
    # The record's memory snapshot (top-k plus best failure and success) replays exactly.
    replay = MemoryIndex(result.considered()).query("t", "a.b", query, k)
    assert replay == result and replay.snapshot_digest() == result.snapshot_digest()
    assert index.live == len(rows) - len(retired)


def test_ties_across_segments_break_by_memory_id(monkeypatch) -> None:
    monkeypatch.setattr(group_module, "SMALL_MAX", 0)
    items = [(seq, MemoryItem(f"M{n}", "t", "a.b", "failure", "", ("tag:x",)))
             for seq, n in ((1, 7), (2, 3), (3, 9), (4, 1), (5, 5))]
    index = GroupIndex("t", "a.b")
    for row in items:
        index.apply([row])
    result = index.query(("tag:x",), 3)
    assert [m.item.memory_id for m in result.top_k] == ["M1", "M3", "M5"]
    assert result.failure is not None and result.failure.item.memory_id == "M1"


def many_rows(n: int, first_seq: int = 1) -> list[tuple[int, MemoryItem]]:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        tokens = {"action:a.b", f"tag:t{rng.integers(0, 6)}", f"ev:customer_id=C{rng.integers(0, 50)}",
                  f"amount:{rng.integers(0, 4)}", f"ev:order={i}"}
        label = ["failure", "success", "near_miss"][int(rng.integers(0, 3))]
        replaces = first_seq + i - 5 if i % 10 == 9 else None  # a decision labeled again
        rows.append((first_seq + i, MemoryItem(f"M{first_seq + i:07d}", "t", "a.b", label, f"o{i}",
                                               tuple(sorted(tokens)), f"D{i}", DAYS[2], replaces)))
    return rows


QUERY = ("action:a.b", "amount:1", "ev:customer_id=C7", "ev:order=5", "tag:t2")


def test_an_index_reopens_from_its_files_with_the_same_answers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(group_module, "SMALL_MAX", 0)
    rows = many_rows(3000)
    index = GroupIndex("t", "a.b", tmp_path)
    index.apply(rows[:2500])
    index.apply(rows[2500:2600])  # a small segment: not written, read again from the store
    before = index.query(QUERY, 5)
    reopened = GroupIndex("t", "a.b", tmp_path)
    assert reopened.load()
    assert reopened.last_seq == 2500
    reopened.apply(rows[2500:2600])
    assert reopened.query(QUERY, 5) == before
    assert reopened.live == index.live == 2600 - 260  # superseded items stay retired
    assert isinstance(reopened.segments[0].a["w2"], np.memmap)  # mapped, not read


def test_a_crash_while_writing_leaves_the_previous_index(tmp_path: Path, monkeypatch) -> None:
    rows = many_rows(4000)
    index = GroupIndex("t", "a.b", tmp_path)
    index.apply(rows[:2000])
    expected_after_all = GroupIndex("t", "a.b")
    expected_after_all.apply(rows)

    def crash(path: Path, data: bytes) -> None:  # the segment is written, the manifest is not
        (path.parent / (path.name + ".tmp-dead")).write_bytes(data[: len(data) // 2])
        raise OSError("power cut")

    monkeypatch.setattr(group_module, "_write_atomically", crash)
    with pytest.raises(OSError):
        index.apply(rows[2000:4000])
    monkeypatch.undo()
    (tmp_path / "tmp-seg-torn").mkdir()  # a half-written segment directory
    (tmp_path / "tmp-seg-torn" / "seq.npy").write_bytes(b"\x93NUMPY")

    reopened = GroupIndex("t", "a.b", tmp_path)
    assert reopened.load() and reopened.last_seq == 2000  # the old manifest, still whole
    reopened.apply(rows[2000:])  # caught up from the store
    assert reopened.query(QUERY, 5) == expected_after_all.query(QUERY, 5)
    assert not (tmp_path / "tmp-seg-torn").exists()  # debris cleared by the next write


@pytest.mark.parametrize("damage", ["manifest", "segment", "other group"])
def test_a_damaged_index_is_not_used(tmp_path: Path, damage: str) -> None:
    index = GroupIndex("t", "a.b", tmp_path)
    index.apply(many_rows(1500))
    if damage == "manifest":
        (tmp_path / "manifest.json").write_bytes(b'{"format": 1, "tenant')
    elif damage == "segment":
        segment = next(p for p in tmp_path.iterdir() if p.is_dir())
        (segment / "w2.npy").write_bytes((segment / "w2.npy").read_bytes()[:-40])
    assert not GroupIndex("t", "b.c" if damage == "other group" else "a.b", tmp_path).load()


def test_lumyn_starts_from_the_index_files_and_never_from_another_databases(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(group_module, "PERSIST_MIN", 1)
    monkeypatch.setattr(group_module, "SMALL_MAX", 0)
    db = tmp_path / "lumyn.db"
    request = support_refund()
    with Lumyn(LumynConfig(store_path=str(db))) as first:
        for i in range(3):
            decided = first.decide(support_refund(ticket_id=f"ZD-{i}"))
            first.label(decided["decision_id"], "failure", "fraud")
        before = first.decide(request)["risk_signals"]["failure_similarity"]
    manifests = list((tmp_path / "lumyn.db.memory").glob("*/manifest.json"))
    assert len(manifests) == 1

    with Lumyn(LumynConfig(store_path=str(db))) as second:
        again = second.decide(request)["risk_signals"]["failure_similarity"]
        group = second.memory._groups[("acme", "support.refund")]
        assert all(name is not None for name in group.names)  # opened from the files
        assert isinstance(group.segments[0].a["seq"], np.memmap)
    assert again == before

    for leftover in tmp_path.glob("lumyn.db*"):
        if leftover.is_file():
            leftover.unlink()  # another database at the same path
    with Lumyn(LumynConfig(store_path=str(db))) as third:
        decided = third.decide(support_refund(ticket_id="ZD-9"))
        event = third.label(decided["decision_id"], "failure", "the only one")
        top = third.decide(request)["risk_signals"]["failure_similarity"]["top_k"]
        assert [m["memory_id"] for m in top] == [event["data"]["memory_id"]]

    with Lumyn(LumynConfig(store_path=str(db), memory_index_dir="off")) as plain:
        assert plain.decide(request)["risk_signals"]["failure_similarity"]["top_k"] == top
