"""The condition language: `<path>_<operator>` keys compiled to predicates over Facts.

Facts is a plain dict built by the engine (see engine/features.py). Predicates are pure
functions of it, so evaluation has no I/O and is easy to property-test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Facts = Mapping[str, Any]
Predicate = Callable[[Facts], bool]
Getter = Callable[[Facts], Any]

MISSING: Any = object()

# Longest suffixes first so `_not_in` is not read as `_in`, `_gte` not as `_gt`.
OPERATORS = ("_not_in", "_present", "_contains", "_gte", "_lte", "_is", "_ne", "_in", "_gt", "_lt")
NUMERIC_OPERATORS = {"_gt", "_gte", "_lt", "_lte"}

# Paths that name a fact directly; `evidence.<key>` paths reach into evidence.
FACT_PATHS = {
    "amount_usd",
    "amount_value",
    "amount_currency",
    "action.type",
    "action.tags",
    "action.target.system",
    "subject.type",
    "subject.id",
    "subject.roles",
    "tenant.environment",
    "failure_similarity_score",
    "success_similarity_score",
}


def split_key(key: str) -> tuple[str, str] | None:
    """`evidence.chargeback_risk_gte` → (`evidence.chargeback_risk`, `_gte`)."""
    for op in OPERATORS:
        if key.endswith(op) and len(key) > len(op):
            return key[: -len(op)], op
    return None


def path_known(path: str) -> bool:
    if path in FACT_PATHS:
        return True
    if path.startswith("evidence."):
        parts = path[len("evidence.") :].split(".")
        return all(parts)
    return False


def evidence_at(evidence: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value at a dotted evidence path (`address.country` -> ("address", "country")),
    walking nested objects; MISSING when any step is absent or not an object. Condition
    paths, required_evidence and memory features all read evidence this one way."""
    value: Any = evidence
    for part in keys:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def make_getter(path: str) -> Getter:
    if path.startswith("evidence."):
        keys = tuple(path[len("evidence.") :].split("."))
        if len(keys) == 1:
            key = keys[0]

            def get_one(facts: Facts) -> Any:
                return facts["evidence"].get(key, MISSING)

            return get_one

        def get_nested(facts: Facts) -> Any:
            return evidence_at(facts["evidence"], keys)

        return get_nested

    def get_fact(facts: Facts) -> Any:
        return facts.get(path, MISSING)

    return get_fact


def is_number(value: Any) -> bool:
    kind = type(value)  # exact types first: the common case, and bool is never a number
    if kind is int or kind is float:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def same(a: Any, b: Any) -> bool:
    """JSON equality: booleans never equal numbers; 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if is_number(a) and is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def present(value: Any) -> bool:
    return value is not MISSING and value is not None and value != ""


def compile_condition(op: str, getter: Getter, operand: Any) -> Predicate:
    """Build one predicate. `operand` is already resolved (thresholds substituted)."""
    if op == "_is":
        return lambda f: (v := getter(f)) is not MISSING and same(v, operand)
    if op == "_ne":
        return lambda f: (v := getter(f)) is MISSING or not same(v, operand)
    if op == "_in":
        options = tuple(operand)
        return lambda f: (v := getter(f)) is not MISSING and any(same(v, o) for o in options)
    if op == "_not_in":
        options = tuple(operand)
        return lambda f: (v := getter(f)) is MISSING or not any(same(v, o) for o in options)
    if op == "_present":
        want = bool(operand)
        return lambda f: present(getter(f)) is want
    if op == "_contains":
        return lambda f: isinstance(v := getter(f), list) and any(same(x, operand) for x in v)
    limit = float(operand)
    if op == "_gt":
        return lambda f: is_number(v := getter(f)) and v > limit
    if op == "_gte":
        return lambda f: is_number(v := getter(f)) and v >= limit
    if op == "_lt":
        return lambda f: is_number(v := getter(f)) and v < limit
    if op == "_lte":
        return lambda f: is_number(v := getter(f)) and v <= limit
    raise ValueError(f"unknown operator {op}")  # validation rejects this earlier
