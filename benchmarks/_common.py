"""Helpers shared by the benchmarks (timing and percentile printing)."""

from __future__ import annotations

import statistics
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
