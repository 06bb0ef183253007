"""Evaluate a compiled policy against request facts. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from typing import Any, NamedTuple

from lumyn.policy.conditions import MISSING, Facts, evidence_at, present
from lumyn.policy.model import PRECEDENCE, CompiledPolicy, CompiledRule, Query


class Evaluation(NamedTuple):
    verdict: str
    reason_codes: tuple[str, ...]
    matched_rules: tuple[dict[str, Any], ...]
    queries: tuple[Query, ...]
    obligations: tuple[dict[str, Any], ...]
    missing_evidence: tuple[str, ...]
    defaulted: bool


def missing_evidence(policy: CompiledPolicy, facts: Facts) -> tuple[str, ...]:
    """Keys of required_evidence for this action type that are absent, null or "". A dotted
    key reaches into nested objects, as the condition path `evidence.<key>` does."""
    required = policy.required_evidence.get(str(facts.get("action.type")), ())
    evidence = facts["evidence"]
    return tuple(
        key for key in required
        if not present(evidence.get(key, MISSING) if "." not in key
                       else evidence_at(evidence, tuple(key.split("."))))
    )


def _narrowed_queries(rule: CompiledRule, missing: tuple[str, ...]) -> tuple[Query, ...]:
    by_key: dict[str, Query] = {}
    for query in rule.queries:
        key = query.field.removeprefix("evidence.")
        if key in missing:
            by_key.setdefault(key, query)
    return tuple(
        by_key.get(key) or Query(f"evidence.{key}", f"Provide evidence.{key}.") for key in missing
    )


def evaluate(policy: CompiledPolicy, facts: Facts) -> Evaluation:
    missing = missing_evidence(policy, facts)
    # The group holds the rules whose action selector can match, in stage order and file
    # order within a stage; its matcher checks the rest of each selector and the conditions.
    rules, match = policy.group_for(str(facts.get("action.type")))
    matched: list[tuple[CompiledRule, tuple[Query, ...]]] = [
        (rule, rule.queries if not rule.requirements_only
         else _narrowed_queries(rule, missing))
        for rule, hit in zip(rules, match(facts), strict=True)
        if hit and (missing or not rule.requirements_only)
    ]

    if not matched:
        code = policy.default_reason_code
        entry = {"rule_id": "DEFAULT", "stage": "DEFAULT", "effect": policy.default_verdict,
                 "reason_codes": [code]}
        return Evaluation(policy.default_verdict, (code,), (entry,), (), (), missing, True)

    verdict = (matched[0][0].verdict if len(matched) == 1
               else max((rule.verdict for rule, _ in matched), key=PRECEDENCE.__getitem__))
    reason_codes: dict[str, None] = {}
    entries = []
    queries: dict[str, Query] = {}
    obligations: list[dict[str, Any]] = []
    for rule, rule_queries in matched:
        reason_codes.update(dict.fromkeys(rule.reason_codes))
        entries.append({"rule_id": rule.rule_id, "stage": rule.stage, "effect": rule.verdict,
                        "reason_codes": list(rule.reason_codes)})
        if rule.verdict == verdict:
            if verdict == "QUERY":
                for query in rule_queries:
                    queries.setdefault(query.field, query)
            obligations.extend(rule.obligations)
    return Evaluation(verdict, tuple(reason_codes), tuple(entries), tuple(queries.values()),
                      tuple(obligations), missing, False)
