"""Derived evaluation features: the facts the compiled policy reads."""

from __future__ import annotations

from typing import Any


def amount_usd(request: dict[str, Any]) -> float | None:
    """amount.value in USD; converted with evidence.fx_rate_to_usd when that is a number."""
    amount = request["action"].get("amount")
    if not isinstance(amount, dict):
        return None
    value, currency = amount.get("value"), amount.get("currency")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    if currency == "USD":
        return float(value)
    rate = (request.get("evidence") or {}).get("fx_rate_to_usd")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        return float(value) * float(rate)
    return None


def build_facts(
    request: dict[str, Any], tenant_id: str, failure_score: float, success_score: float
) -> dict[str, Any]:
    action = request["action"]
    subject = request["subject"]
    amount = action.get("amount") if isinstance(action.get("amount"), dict) else {}
    evidence = dict(request.get("evidence") or {})
    # The engine places memory signals into evidence too (SPEC §4).
    evidence["failure_similarity_score"] = failure_score
    evidence["success_similarity_score"] = success_score
    facts: dict[str, Any] = {
        "evidence": evidence,
        "action.type": action["type"],
        "action.tags": list(action.get("tags") or []),
        "action.target.system": (action.get("target") or {}).get("system"),
        "subject.type": subject["type"],
        "subject.id": subject["id"],
        "subject.roles": list(subject.get("roles") or []),
        "tenant_id": tenant_id,
        "tenant.environment": (request.get("tenant") or {}).get("environment"),
        "amount_value": amount.get("value"),
        "amount_currency": amount.get("currency"),
        "failure_similarity_score": failure_score,
        "success_similarity_score": success_score,
    }
    usd = amount_usd(request)
    if usd is not None:
        facts["amount_usd"] = usd
    return {k: v for k, v in facts.items() if v is not None}
