"""Experience Memory: exact weighted-Jaccard top-k, ordering, and replayable snapshots."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn.memory import MemoryIndex, MemoryItem, memory_features
from lumyn.memory.features import amount_bucket, token_weight

TOKENS = ["action:support.refund", "currency:USD", "currency:EUR", "amount:0-10", "amount:10-25",
          "tag:dup", "tag:vip", "target:stripe", "ev:risk=low", "ev:risk=high", "ev:customer_id=C1"]


def brute_force(items: list[MemoryItem], query: tuple[str, ...], k: int):
    def score(item: MemoryItem) -> float:
        shared = sum(token_weight(t) for t in set(item.features) & set(query))
        union = sum(token_weight(t) for t in set(item.features) | set(query))
        return round(shared / union, 6) if shared else 0.0

    scored = [(score(i), i) for i in items if score(i) > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1].memory_id))
    top = [(i.memory_id, s) for s, i in scored[:k]]
    failures = [(s, i.memory_id) for s, i in scored if i.label == "failure"]
    return top, (failures[0] if failures else None)


item_strategy = st.builds(
    lambda idx, label, toks: MemoryItem(f"M{idx:05d}", "t", "support.refund", label, "",
                                        tuple(sorted(set(toks)))),
    st.integers(0, 99999),
    st.sampled_from(["failure", "success", "near_miss"]),
    st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(item_strategy, max_size=40, unique_by=lambda i: i.memory_id),
       st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6),
       st.integers(1, 6))
def test_index_top_k_equals_brute_force(items: list[MemoryItem], query_tokens: list[str], k: int) -> None:
    query = tuple(sorted(set(query_tokens)))
    index = MemoryIndex(items)  # insertion order is arbitrary: the index keeps memory_id order
    result = index.query("t", "support.refund", query, k)
    top, failure = brute_force(items, query, k)
    assert [(m.item.memory_id, m.score) for m in result.top_k] == top
    if failure is None:
        assert result.failure is None
    else:
        assert result.failure is not None
        assert (result.failure.score, result.failure.item.memory_id) == failure
    # Re-running over only the considered items reproduces the same signals (replay).
    replay = MemoryIndex(result.considered()).query("t", "support.refund", query, k)
    assert replay == result
    assert replay.snapshot_digest() == result.snapshot_digest()


def test_search_is_scoped_to_tenant_and_action_type() -> None:
    item = MemoryItem("M1", "acme", "support.refund", "failure", "", ("currency:USD",))
    index = MemoryIndex([item])
    assert index.query("acme", "support.refund", ("currency:USD",), 5).failure_score == 1.0
    assert index.query("globex", "support.refund", ("currency:USD",), 5).top_k == ()
    assert index.query("acme", "support.close_ticket", ("currency:USD",), 5).top_k == ()


def test_ties_break_by_memory_id_and_k_limits() -> None:
    items = [MemoryItem(f"M{i}", "t", "a.b", "success", "", ("tag:x",)) for i in (5, 3, 9, 1)]
    result = MemoryIndex(items).query("t", "a.b", ("tag:x",), 2)
    assert [m.item.memory_id for m in result.top_k] == ["M1", "M3"]
    assert result.failure is None and result.success is not None
    assert result.success.item.memory_id == "M1"


def test_a_retired_item_leaves_every_later_query() -> None:
    items = [MemoryItem(f"M{i}", "t", "a.b", label, "", ("tag:x",))
             for i, label in enumerate(["failure", "success", "failure"])]
    index = MemoryIndex(items)
    index.retire("t", "a.b", "M0")
    index.retire("t", "a.b", "M0")  # twice is once
    index.retire("t", "a.b", "missing")
    result = index.query("t", "a.b", ("tag:x",), 5)
    assert [m.item.memory_id for m in result.top_k] == ["M1", "M2"]
    assert result.failure is not None and result.failure.item.memory_id == "M2"
    assert index.size("t", "a.b") == 2


def test_features_cover_the_documented_request_parts() -> None:
    request = {
        "action": {"type": "support.refund", "amount": {"value": 12, "currency": "EUR"},
                   "tags": ["dup"], "target": {"system": "stripe"}},
        "evidence": {"risk": "low", "vip": True, "count": 3, "note": "x" * 100},
    }
    assert memory_features(request, amount_usd=13.2) == (
        "action:support.refund", "amount:10-25", "currency:EUR", "ev:risk=low", "ev:vip=true",
        "tag:dup", "target:stripe",
    )
    assert amount_bucket(0) == "0-10" and amount_bucket(25) == "25-50"
    assert amount_bucket(10_000) == "5000+"
