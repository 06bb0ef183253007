"""Policy load → validate → compile: located errors, hostile YAML, hashing, operators."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _builders import POLICY

from lumyn.policy import PolicyInvalid, compile_policy, load_policy
from lumyn.policy.conditions import MISSING, compile_condition, make_getter, split_key

BROKEN = """\
schema_version: policy.v0
policy_id: broken
policy_version: "1"
defaults: {default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
thresholds: {limit: 10}
rules:
  - id: R1
    stage: ESCALATIONS
    if: {amount_usd_gtx: 5}
    then: {verdict: ESCALATE, reason_codes: [OK_CODE]}
  - id: R1
    stage: SOMETIMES
    then: {verdict: ESCALATE, reason_codes: [OK_CODE]}
  - id: R3
    stage: HARD_BLOCKS
    if: {evidence.risk_gte: {threshold: nope}}
    then: {verdict: ABSTAIN, reason_codes: [STORAGE_UNAVAILABLE]}
  - id: R4
    stage: REQUIREMENTS
    if: {colour_is: red}
    then: {verdict: QUERY, reason_codes: [bad-code]}
  - id: R5
    stage: TRUST_PATHS
    then: {verdict: MAYBE, reason_codes: [OK_CODE]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        compile_policy(text, source="p.yml")
    return [p.format("p.yml") for p in info.value.problems]


def test_validation_reports_every_problem_with_rule_key_and_line() -> None:
    found = problems_of(BROKEN)
    joined = "\n".join(found)
    expectations = [
        ("p.yml:9: rule R1: key if.amount_usd_gtx", "unknown operator"),
        ("p.yml:11: rule R1: key id", "duplicate rule id"),
        ("p.yml:12: rule R1: key stage", "SOMETIMES"),
        ("p.yml:16: rule R3: key if.evidence.risk_gte", "threshold 'nope' is not defined"),
        ("p.yml:17: rule R3: key then.reason_codes", "STORAGE_UNAVAILABLE is reserved"),
        ("p.yml:20: rule R4: key if.colour_is", "unknown path 'colour'"),
        ("rule R4: key then.reason_codes.0", "bad-code"),
        ("rule R4: key then.queries", "a QUERY rule must list queries"),
        ("p.yml:24: rule R5: key then.verdict", "MAYBE"),
    ]
    for where, what in expectations:
        assert any(where in line and what in line for line in found), (where, what, joined)
    assert len(found) >= len(expectations)


def test_load_policy_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as info:
        load_policy(tmp_path / "nope.yml")
    assert "file not found" in str(info.value)


def test_reformatting_keeps_policy_hash_and_value_change_alters_it() -> None:
    original = compile_policy(POLICY)
    reformatted = "# a comment\n" + POLICY.replace(
        "thresholds:\n  trust_max_usd: 25\n  escalate_over_usd: 200\n  failure_similarity: 0.35\n",
        "thresholds: {failure_similarity: 0.35, escalate_over_usd: 200.0,   trust_max_usd: 25}  # x\n",
    )
    assert reformatted != POLICY
    assert compile_policy(reformatted).policy_hash == original.policy_hash
    changed = POLICY.replace("trust_max_usd: 25", "trust_max_usd: 26")
    assert compile_policy(changed).policy_hash != original.policy_hash


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!python/object/apply:os.system ['echo hi']\n", "not allowed"),
        ("a: !!binary aGVsbG8=\n", "not allowed"),
        ("a: [1, 2\n", "YAML syntax error"),
        ("a: 1\na: 2\n", "duplicate key"),
        ("", "empty"),
    ],
)
def test_hostile_or_malformed_yaml_is_rejected(text: str, message: str) -> None:
    assert any(message in line for line in problems_of(text))


def test_alias_bomb_is_rejected_quickly() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    start = time.perf_counter()
    found = problems_of("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 2.0
    assert any("alias bomb" in line for line in found)


def test_anchors_and_aliases_are_expanded() -> None:
    text = POLICY.replace(
        "if: {amount_usd_gt: {threshold: escalate_over_usd}}",
        "if: &big {amount_usd_gt: {threshold: escalate_over_usd}}",
    ).replace(
        "    if: {failure_similarity_score_gte: {threshold: failure_similarity}}",
        "    if: {failure_similarity_score_gte: {threshold: failure_similarity}}\n    if_all: [*big]",
    )
    assert "*big" in text
    plain = POLICY.replace(
        "    if: {failure_similarity_score_gte: {threshold: failure_similarity}}",
        "    if: {failure_similarity_score_gte: {threshold: failure_similarity}}\n"
        "    if_all: [{amount_usd_gt: {threshold: escalate_over_usd}}]",
    )
    assert compile_policy(text).policy_hash == compile_policy(plain).policy_hash


def test_huge_policy_is_rejected_without_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    path.write_text("# " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(PolicyInvalid) as info:
        load_policy(path)
    assert "larger than" in str(info.value)


def test_policy_compiles_rules_in_stage_order() -> None:
    policy = compile_policy(POLICY)
    stages = [rule.stage for rule in policy.rules]
    assert stages == sorted(
        stages, key=["REQUIREMENTS", "HARD_BLOCKS", "ESCALATIONS", "TRUST_PATHS"].index
    )
    assert [r.rule_id for r in policy.rules][:2] == ["R001", "R005"]


def test_split_key_prefers_the_longest_operator() -> None:
    assert split_key("evidence.x_not_in") == ("evidence.x", "_not_in")
    assert split_key("amount_usd_gte") == ("amount_usd", "_gte")
    assert split_key("evidence.fx_rate_to_usd_present") == ("evidence.fx_rate_to_usd", "_present")
    assert split_key("nothing") is None


def _holds(op: str, value: object, operand: object) -> bool:
    facts = {"evidence": {} if value is MISSING else {"k": value}}
    return compile_condition(op, make_getter("evidence.k"), operand)(facts)


@pytest.mark.parametrize(
    ("op", "value", "operand", "expected"),
    [
        ("_is", "low", "low", True),
        ("_is", MISSING, "low", False),
        ("_is", True, 1, False),  # booleans are not numbers
        ("_is", 1, 1.0, True),
        ("_ne", MISSING, "low", True),
        ("_ne", "low", "low", False),
        ("_in", "low", ["low", "medium"], True),
        ("_in", MISSING, ["low"], False),
        ("_not_in", "high", ["low", "medium"], True),
        ("_not_in", "low", ["low"], False),
        ("_gt", 5, 4, True),
        ("_gt", True, 0, False),
        ("_gt", "5", 4, False),
        ("_gte", 0.35, 0.35, True),
        ("_lt", 0.34, 0.35, True),
        ("_lte", MISSING, 1, False),
        ("_present", "", True, False),
        ("_present", None, False, True),
        ("_present", 0, True, True),
        ("_present", MISSING, False, True),
        ("_contains", ["a", "b"], "b", True),
        ("_contains", "ab", "b", False),
    ],
)
def test_operator_semantics(op: str, value: object, operand: object, expected: bool) -> None:
    assert _holds(op, value, operand) is expected


def test_nested_evidence_paths() -> None:
    getter = make_getter("evidence.customer.tier")
    assert getter({"evidence": {"customer": {"tier": "gold"}}}) == "gold"
    assert getter({"evidence": {"customer": "gold"}}) is MISSING
