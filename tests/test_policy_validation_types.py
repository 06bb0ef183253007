"""Validation that fails closed: conditions impossible for their path's type are located
errors; probable mistakes are warnings (fatal under --strict); `policy validate --json`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_kit import clean_env, cli

from lumyn.policy import PolicyInvalid, bundled_policy_path, check_policy, compile_policy
from lumyn.policy.bundled import BUNDLED_PACKS

HEAD = """\
schema_version: policy.v0
policy_id: typed
policy_version: "1"
defaults: {default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
thresholds: {limit: 10}
rules:
"""


def rule(rule_id: str, conditions: str, stage: str = "HARD_BLOCKS",
         action: str = "support.refund", then: str = "{verdict: ABSTAIN, reason_codes: [BLOCK]}"
         ) -> str:
    return (f"  - id: {rule_id}\n    stage: {stage}\n    when: {{action_type: {action}}}\n"
            f"    if: {conditions}\n    then: {then}\n")


def errors_of(text: str) -> list[str]:
    with pytest.raises(PolicyInvalid) as info:
        compile_policy(text, source="p.yml")
    return [p.format("p.yml") for p in info.value.problems]


@pytest.mark.parametrize(
    ("condition", "needle"),
    [
        ("{amount_currency_gt: 100}", "_gt compares numbers but amount_currency is a string"),
        ("{action.tags_gt: 3}", "_gt compares numbers but action.tags is a list"),
        ("{amount_usd_contains: 3}", "_contains tests a list but amount_usd is a number"),
        ("{subject.type_contains: agent}", "_contains tests a list but subject.type is a string"),
        ("{action.tags_contains: 3}", "action.tags holds strings"),
        ("{amount_usd_is: '100'}", "amount_usd is a number but _is compares it with '100'"),
        ("{amount_currency_in: [1, 2]}", "amount_currency is a string but _in compares it with 1"),
        ("{amount_currency_ne: {threshold: limit}}", "amount_currency is a string"),
        ("{amount_usd_in: 5}", "_in needs a list"),
        ("{amount_usd_gte: '5'}", "_gte needs a number"),
        ("{amount_usd_gte: true}", "_gte needs a number"),
        ("{evidence.vip_present: 'yes'}", "_present needs true or false"),
    ],
)
def test_condition_impossible_for_its_path_type_is_a_located_error(condition: str,
                                                                   needle: str) -> None:
    found = errors_of(HEAD + rule("B1", condition))
    assert len(found) == 1, found
    assert found[0].startswith("p.yml:10: rule B1: key if."), found[0]
    assert needle in found[0]


def test_evidence_key_takes_the_type_of_its_first_use() -> None:
    text = (HEAD + rule("B1", "{evidence.risk_gte: 0.5}")
            + rule("B2", "{evidence.risk_is: high}")
            + rule("B3", "{evidence.address_is: 3}")
            + rule("B4", "{evidence.address.country_is: US}"))
    found = errors_of(text)
    assert len(found) == 2, found
    assert "rule B2" in found[0] and "evidence.risk is a number (as used on line 10)" in found[0]
    assert "rule B4" in found[1]
    assert "evidence.address is a number (as used on line 20)" in found[1]


def test_consistent_evidence_uses_and_nested_objects_are_valid() -> None:
    text = (HEAD + rule("B1", "{evidence.risk_gte: 0.5, evidence.risk_present: true}")
            + rule("B2", "{evidence.risk_lt: {threshold: limit}, evidence.flags_contains: x}")
            + rule("B3", "{evidence.address.country_in: [US, CA], evidence.address_present: true}")
            + rule("B4", "{evidence.note_is: null, action.tags_contains: vip}"))
    policy = compile_policy(text)
    assert [r.rule_id for r in policy.rules] == ["B1", "B2", "B3", "B4"]


WARNED = HEAD.replace("{limit: 10}", "{limit: 10, unused_limit: 5}") + (
    rule("E1", "{amount_usd_gt: {threshold: limit}}", stage="ESCALATIONS",
         then="{verdict: ESCALATE, reason_codes: [BIG]}")
    + rule("E2", "{amount_usd_gt: {threshold: limit}, evidence.vip_is: true}",
           stage="ESCALATIONS", then="{verdict: ESCALATE, reason_codes: [BIG_VIP]}")
    + rule("E3", "{amount_usd_gt: 1}", stage="ESCALATIONS", action="support.refnud",
           then="{verdict: ESCALATE, reason_codes: [TYPO]}")
    + rule("Q1", "{evidence.order_id_present: false}", stage="REQUIREMENTS",
           then="{verdict: QUERY, reason_codes: [ASK], queries: "
                "[{field: evidence.order_id, question: Which order?}, "
                "{field: evidence.customer_id, question: Who?}]}")
)


def test_probable_mistakes_are_warnings_with_rule_key_and_line() -> None:
    compile_policy(WARNED)  # valid: warnings never stop a policy from loading
    path = Path("warned.yml")
    try:
        path.write_text(WARNED, encoding="utf-8")
        _, warnings = check_policy(path)
    finally:
        path.unlink()
    by_rule = {(w.rule_id, w.key): w for w in warnings}
    assert {w.severity for w in warnings} == {"warning"}
    assert "shadowed by rule E1 (line 7)" in by_rule[("E2", "id")].message
    assert by_rule[("E2", "id")].line == 12
    assert "support.refnud" in by_rule[("E3", "when")].message
    assert "evidence.customer_id" in by_rule[("Q1", "then.queries")].message
    assert "evidence.order_id" not in by_rule[("Q1", "then.queries")].message
    unused = by_rule[(None, "thresholds.unused_limit")]
    assert unused.line == 5 and "no rule uses it" in unused.message
    assert len(warnings) == 4


def test_a_weaker_later_verdict_is_shadowed_but_a_stronger_one_is_not() -> None:
    stronger = HEAD + (
        rule("E1", "{amount_usd_gt: {threshold: limit}}", stage="ESCALATIONS",
             then="{verdict: TRUST, reason_codes: [OK]}")
        + rule("E2", "{amount_usd_gt: {threshold: limit}}", stage="ESCALATIONS",
               then="{verdict: ESCALATE, reason_codes: [BIG]}"))
    path = Path("stronger.yml")
    try:
        path.write_text(stronger, encoding="utf-8")
        _, warnings = check_policy(path)
    finally:
        path.unlink()
    assert warnings == []


@pytest.mark.parametrize("pack", sorted(BUNDLED_PACKS))
def test_bundled_packs_have_no_warnings(pack: str) -> None:
    _, warnings = check_policy(bundled_policy_path(pack))
    assert warnings == [], [w.format() for w in warnings]


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_validate_prints_warnings_and_exits_0_unless_strict(in_tmp: Path) -> None:
    (in_tmp / "p.yml").write_text(WARNED, encoding="utf-8")
    relaxed = cli("policy", "validate", "--path", "p.yml")
    assert relaxed.exit_code == 0, relaxed.stderr
    assert "OK p.yml" in relaxed.stdout and "4 warning(s)" in relaxed.stdout
    assert relaxed.stderr.count("WARNING p.yml:") == 4
    strict = cli("policy", "validate", "--path", "p.yml", "--strict")
    assert strict.exit_code == 1
    assert "OK" not in strict.stdout
    assert "--strict" in strict.stderr


def test_validate_json_lists_every_problem_as_an_object(in_tmp: Path) -> None:
    (in_tmp / "bad.yml").write_text(HEAD + rule("B1", "{amount_currency_gt: 100}"),
                                    encoding="utf-8")
    bad = cli("policy", "validate", "--path", "bad.yml", "--json")
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["policy"] is None
    assert report["problems"] == [{
        "severity": "error", "rule_id": "B1", "key": "if.amount_currency_gt", "line": 10,
        "message": "_gt compares numbers but amount_currency is a string: it can never hold",
    }]
    (in_tmp / "warned.yml").write_text(WARNED, encoding="utf-8")
    warned = cli("policy", "validate", "--path", "warned.yml", "--json")
    assert warned.exit_code == 0
    report = json.loads(warned.stdout)
    assert report["ok"] is True and report["policy"]["policy_id"] == "typed"
    assert len(report["problems"]) == 4
    assert {p["severity"] for p in report["problems"]} == {"warning"}
    assert set(report["problems"][0]) == {"severity", "rule_id", "key", "line", "message"}
    strict = cli("policy", "validate", "--path", "warned.yml", "--json", "--strict")
    assert strict.exit_code == 1 and json.loads(strict.stdout)["ok"] is False


def test_in_is_impossible_only_when_no_option_has_the_path_type() -> None:
    compile_policy(HEAD + rule("B1", "{amount_currency_in: [USD, 1]}"))
    assert "never holds" in errors_of(HEAD + rule("B1", "{amount_currency_in: [1, 2]}"))[0]
    assert "always holds" in errors_of(HEAD + rule("B1", "{amount_currency_not_in: [1]}"))[0]
