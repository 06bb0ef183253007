"""Feature tokens for Experience Memory similarity.

A request becomes a set of tokens (action type, currency, amount bucket, tags, target system,
categorical evidence values). Each token kind has a weight; weights are multiples of 0.5 so
weighted sums are exact in binary floating point and scores are identical on every machine.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

WEIGHTS = {"action": 1.0, "currency": 1.0, "amount": 2.0, "tag": 1.5, "target": 1.0, "ev": 1.0}
AMOUNT_EDGES = (10, 25, 50, 100, 200, 500, 1000, 5000)
MAX_VALUE_LEN = 64
# Tag and evidence tokens kept per request (the first in sorted order): one request with
# 55,000 evidence keys must not become a 55,000-token memory item indexed on every label.
MAX_OPEN_FEATURES = 48


def token_weight(token: str) -> float:
    return WEIGHTS[token.split(":", 1)[0]]


def _bucket_names() -> tuple[str, ...]:
    lowers = (0, *AMOUNT_EDGES)
    names = [f"{lower:g}-{edge:g}" for lower, edge in zip(lowers, AMOUNT_EDGES, strict=False)]
    return (*names, f"{AMOUNT_EDGES[-1]:g}+")


_BUCKETS = _bucket_names()  # "0-10", "10-25", ..., "5000+"


def amount_bucket(amount: float) -> str:
    """The bucket [lower, edge) holding `amount` (non-negative)."""
    return _BUCKETS[bisect_right(AMOUNT_EDGES, amount)]


def memory_features(request: Mapping[str, Any], amount_usd: float | None) -> tuple[str, ...]:
    """Sorted, de-duplicated feature tokens of a (persisted) request."""
    action = request.get("action") or {}
    tokens = {"action:" + str(action.get("type"))}
    amount = action.get("amount")
    if isinstance(amount, dict):
        tokens.add("currency:" + str(amount.get("currency")))
        value = amount_usd if amount_usd is not None else amount.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool):
            tokens.add("amount:" + amount_bucket(abs(float(value))))
    open_tokens: set[str] = set()
    for tag in action.get("tags") or ():
        if isinstance(tag, str) and 0 < len(tag) <= MAX_VALUE_LEN:
            open_tokens.add("tag:" + tag)
    system = (action.get("target") or {}).get("system")
    if isinstance(system, str) and system:
        tokens.add("target:" + system[:MAX_VALUE_LEN])
    _evidence_tokens(request.get("evidence") or {}, open_tokens)
    if len(open_tokens) > MAX_OPEN_FEATURES:
        open_tokens = set(sorted(open_tokens)[:MAX_OPEN_FEATURES])
    return tuple(sorted(tokens | open_tokens))


def _evidence_tokens(evidence: Mapping[str, Any], tokens: set[str]) -> None:
    """`ev:<key>=<value>` for categorical values (strings, booleans). Nested objects give
    dotted keys (`ev:address.country=US`), the paths conditions and required_evidence use."""
    stack: list[tuple[str, Mapping[str, Any]]] = [("", evidence)]
    while stack:
        prefix, node = stack.pop()
        for name, value in node.items():
            key = prefix + name
            if len(key) > MAX_VALUE_LEN or "=" in key:
                continue
            kind = type(value)
            if kind is bool:
                tokens.add(f"ev:{key}={'true' if value else 'false'}")
            elif (kind is str or isinstance(value, str)) and 0 < len(value) <= MAX_VALUE_LEN:
                tokens.add(f"ev:{key}={value}")
            elif kind is dict:
                stack.append((key + ".", value))
