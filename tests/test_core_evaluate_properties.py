"""Property tests of the pure evaluator over generated policies and facts."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn.engine.evaluate import evaluate
from lumyn.policy import compile_policy
from lumyn.policy.model import PRECEDENCE, STAGES

VERDICTS = ["TRUST", "ABSTAIN", "ESCALATE", "QUERY"]
CONDITIONS = [
    {"amount_usd_gt": 100}, {"amount_usd_lte": 25}, {"evidence.risk_is": "high"},
    {"evidence.risk_in": ["low", "medium"]}, {"evidence.count_gte": 2},
    {"evidence.flag_present": True}, {"action.tags_contains": "vip"},
    {"failure_similarity_score_gte": 0.35}, {"subject.type_ne": "user"},
    # every operator, each operand type, nested paths and thresholds
    {"evidence.flag_is": True}, {"evidence.flag_is": False}, {"evidence.flag_is": None},
    {"evidence.count_is": 2},
    {"evidence.count_is": 2.0}, {"evidence.risk_ne": "low"}, {"evidence.count_ne": 3},
    {"evidence.risk_in": ["low", 3, None, True]}, {"evidence.risk_not_in": ["high", 3]},
    {"evidence.risk_not_in": ["high"]}, {"evidence.flag_present": False},
    {"evidence.ticket_id_present": True}, {"evidence.customer.tier_is": "gold"},
    {"evidence.customer.tier_present": True}, {"evidence.count_lt": {"threshold": "LIMIT"}},
    {"amount_usd_gte": {"threshold": "LIMIT"}}, {"evidence.count_is": {"threshold": "LIMIT"}},
    {"action.tags_contains": "vip"}, {"subject.roles_contains": "admin"},
    {"tenant.environment_is": "prod"}, {"amount_currency_in": ["USD", "EUR"]},
]
SELECTORS = [
    {}, {"action_type": "support.refund"}, {"action_type_in": ["support.refund", "x.y"]},
    {"subject_type": "user"}, {"subject_type_in": ["user", "job"]}, {"tenant_id": "acme"},
    {"tenant_id_in": ["acme", "beta"]}, {"tag": "vip"},
    {"action_type": "x.y", "subject_type": "service", "tag": "dup"},
]


@st.composite
def policies(draw: Any) -> str:
    rules = []
    for index in range(draw(st.integers(0, 8))):
        verdict = draw(st.sampled_from(VERDICTS))
        rule: dict[str, Any] = {
            "id": f"R{index}",
            "stage": draw(st.sampled_from(STAGES)),
            "when": draw(st.sampled_from(SELECTORS)),
            "then": {"verdict": verdict, "reason_codes": [f"CODE_{index}"]},
        }
        if verdict == "QUERY":
            rule["then"]["queries"] = [{"field": "evidence.x", "question": "x?"}]
        block = draw(st.sampled_from(["if", "if_all", "if_any", None]))
        if block == "if":
            rule["if"] = draw(st.sampled_from(CONDITIONS))
        elif block:
            rule[block] = draw(st.lists(st.sampled_from(CONDITIONS), min_size=1, max_size=3))
        rules.append(rule)
    doc = {
        "schema_version": "policy.v0", "policy_id": "p", "policy_version": "1",
        "defaults": {"default_verdict": draw(st.sampled_from(VERDICTS[1:3])),
                     "default_reason_code": "NO_MATCH_DEFAULT_ESCALATE"},
        "required_evidence": {"support.refund": ["ticket_id"]},
        "thresholds": {"LIMIT": 2},
        "rules": rules,
    }
    return yaml.safe_dump(doc)


@st.composite
def facts(draw: Any) -> dict[str, Any]:
    evidence: dict[str, Any] = {}
    if draw(st.booleans()):
        evidence["ticket_id"] = draw(st.sampled_from(["T1", "", None]))
    evidence["risk"] = draw(st.sampled_from(["low", "medium", "high", 3, 3.0, True, None]))
    evidence["count"] = draw(st.one_of(st.integers(0, 5), st.floats(0, 5), st.booleans(),
                                       st.just("2"), st.just([2])))
    if draw(st.booleans()):
        evidence["flag"] = draw(st.sampled_from([True, False, "", None, 0, 1, "x"]))
    if draw(st.booleans()):
        evidence["customer"] = draw(st.sampled_from([{"tier": "gold"}, {"tier": None}, {},
                                                     "gold", {"tier": ["gold"]}]))
    result = {
        "evidence": evidence,
        "action.type": draw(st.sampled_from(["support.refund", "x.y", "a.b"])),
        "action.tags": draw(st.lists(st.sampled_from(["vip", "dup", 3]), max_size=2)),
        "subject.type": draw(st.sampled_from(["user", "service"])),
        "subject.roles": draw(st.lists(st.sampled_from(["admin", "agent"]), max_size=2)),
        "failure_similarity_score": draw(st.floats(0, 1)),
    }
    for fact, options in (("tenant_id", ["acme", "beta", "zeta"]),
                          ("tenant.environment", ["prod", "dev"]),
                          ("amount_currency", ["USD", "EUR", "GBP"])):
        if draw(st.booleans()):
            result[fact] = draw(st.sampled_from(options))
    if draw(st.booleans()):
        result["amount_usd"] = draw(st.floats(0, 1000))
    return result


@settings(max_examples=300, deadline=None)
@given(policies(), facts())
def test_verdict_obeys_precedence_and_is_deterministic(text: str, fact: dict[str, Any]) -> None:
    policy = compile_policy(text)
    result = evaluate(policy, fact)
    assert result == evaluate(compile_policy(text), fact)  # same answer on every run
    assert len(result.reason_codes) >= 1
    effects = [rule["effect"] for rule in result.matched_rules]
    assert result.verdict == max(effects, key=PRECEDENCE.__getitem__)
    if result.defaulted:
        assert result.matched_rules[0]["stage"] == "DEFAULT"
        assert result.verdict == policy.default_verdict
    stage_order = ["REQUIREMENTS", "HARD_BLOCKS", "ESCALATIONS", "TRUST_PATHS", "DEFAULT"]
    positions = [stage_order.index(rule["stage"]) for rule in result.matched_rules]
    assert positions == sorted(positions)
    assert bool(result.queries) == (result.verdict == "QUERY")


@settings(max_examples=1500, deadline=None)
@given(policies(), facts())
def test_indexed_evaluation_matches_the_plain_reading(text: str, fact: dict[str, Any]) -> None:
    """The evaluator's shortcuts (rules indexed by action type, flattened checks) pick exactly
    the rules a literal reading of selector + condition blocks picks."""
    policy = compile_policy(text)
    missing = bool(evaluate(policy, fact).missing_evidence)
    expected = [
        rule.rule_id
        for rule in policy.rules
        if rule.selector(fact)
        and all(block(fact) for block in rule.blocks)
        and (missing or not rule.requirements_only)
    ]
    matched = [r["rule_id"] for r in evaluate(policy, fact).matched_rules if r["stage"] != "DEFAULT"]
    assert matched == expected
