"""Helpers shared by the benchmarks (timing and percentile printing)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(samples, 50) * 1e3,
        "p95_ms": percentile(samples, 95) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


def sample_request(i: int, **overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "schema_version": "decision_request.v0",
        "request_id": f"bench-{i}",
        "subject": {"type": "service", "id": "support-agent", "tenant_id": "acme"},
        "action": {
            "type": "support.refund",
            "intent": f"Refund duplicate charge for order {80000 + i}",
            "target": {"system": "stripe", "resource_type": "charge", "resource_id": f"ch_{i}"},
            "amount": {"value": 5.0 + (i % 40), "currency": "USD"},
            "tags": ["duplicate_charge"],
        },
        "evidence": {
            "ticket_id": f"ZD-{i}",
            "order_id": str(80000 + i),
            "customer_id": f"C-{i % 97}",
            "customer_age_days": 180,
            "previous_refund_count_90d": i % 2,
            "chargeback_risk": 0.05,
            "payment_instrument_risk": "low",
        },
        "context": {"mode": "digest_only", "digest": "sha256:" + "a" * 64},
    }
    request.update(overrides)
    return request


def decide_halves(lumyn: Any, requests: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Time the two halves of `Lumyn.decide` apart, each in its own hot loop: first the
    evaluation of every request, then the write of every result (the same calls decide()
    makes, in the same order). Each half then runs as warm as the bare baseline's loop does,
    so their sum is a floor for one decide() on this machine: a real call runs each half
    right after the other one (and after an fsync or a round trip), with colder caches."""
    at_write = lumyn.store.checks_memory_at_write
    clock = time.perf_counter
    pending, evaluations, writes = [], [], []
    for request in requests:
        start = clock()
        pending.append(lumyn._prepare(lumyn._admit(request), at_write=at_write))
        evaluations.append(clock() - start)
    for p in pending:
        start = clock()
        stored = lumyn.store.append_decisions([p.write])[0]
        writes.append(clock() - start)
        assert stored is p.decided.record_json, "a split write did not store its own record"
    return evaluations, writes


def halves_beside_bare(
    lumyn: Any, rounds: int, size: int, bare: Callable[[str, Any], float], payloads: list[Any],
) -> tuple[list[float], list[float], list[float]]:
    """`rounds` rounds of `decide_halves` over `size` fresh requests, each followed by `size`
    bare writes (`bare(key, payload)` returns its own time) so drift hits all three alike."""
    evaluations: list[float] = []
    writes: list[float] = []
    bare_times: list[float] = []
    for r in range(rounds):
        first = 10**6 + r * size
        e, w = decide_halves(lumyn, [sample_request(first + i) for i in range(size)])
        evaluations += e
        writes += w
        bare_times += [bare(f"s{first + i}", payloads[i]) for i in range(size)]
    return evaluations, writes, bare_times


def print_halves(evaluations: list[float], writes: list[float], bare: list[float],
                 bare_name: str) -> None:
    e, w, b = (percentile(x, 50) * 1e3 for x in (evaluations, writes, bare))
    print(f"halves of decide(), each in a hot loop: evaluation p50 {e:.3f} ms, "
          f"write p50 {w:.3f} ms")
    print(f"  write alone = {w / b:.2f} x {bare_name}; floor (evaluation + write) / bare = "
          f"{(e + w) / b:.2f}")
