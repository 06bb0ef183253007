"""`lumyn policy test`: case files run in memory against a policy, with rule coverage; the
bundled packs' own case folders pass with full coverage."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from test_cli_kit import clean_env, cli

from lumyn.policy import bundled_policy_path, load_policy
from lumyn.policy.bundled import BUNDLED_PACKS
from lumyn.policytest import case_files, run_cases

POLICY = """\
schema_version: policy.v0
policy_id: tiny
policy_version: "1"
defaults: {default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
thresholds: {trust_max: 25, similar: 0.35}
required_evidence:
  shop.refund: [order_id]
rules:
  - id: ASK
    stage: REQUIREMENTS
    when: {action_type: shop.refund}
    then:
      verdict: QUERY
      reason_codes: [MISSING_ORDER]
      queries: [{field: evidence.order_id, question: Which order?}]
  - id: SIMILAR
    stage: ESCALATIONS
    when: {action_type: shop.refund}
    if: {failure_similarity_score_gte: {threshold: similar}}
    then: {verdict: ESCALATE, reason_codes: [LOOKS_LIKE_A_FAILURE]}
  - id: SMALL
    stage: TRUST_PATHS
    when: {action_type: shop.refund}
    if: {amount_usd_lte: {threshold: trust_max}}
    then: {verdict: TRUST, reason_codes: [SMALL_REFUND]}
  - id: NEVER_TESTED
    stage: HARD_BLOCKS
    when: {action_type: shop.refund}
    if: {evidence.fraud_is: true}
    then: {verdict: ABSTAIN, reason_codes: [FRAUD]}
"""

REQUEST = """\
    subject: {type: agent, id: bot, tenant_id: acme}
    action: {type: shop.refund, intent: refund, amount: {value: 10, currency: USD}}
    evidence: {order_id: O-1, channel: chat}
"""

CASES = f"""\
- name: small refund is trusted
  request:
{REQUEST}  expect: {{verdict: TRUST, reason_codes: [SMALL_REFUND]}}
- name: missing order asks for it
  request:
    subject: {{type: agent, id: bot}}
    action: {{type: shop.refund, intent: refund, amount: {{value: 10, currency: USD}}}}
  expect: {{verdict: QUERY, query_fields: [evidence.order_id]}}
- name: memory of a failure escalates, seeded for this case only
  memory:
    - label: failure
      request:
{REQUEST.replace("    ", "        ")}  request:
{REQUEST}  expect: {{verdict: ESCALATE, reason_codes: [LOOKS_LIKE_A_FAILURE]}}
"""

FAILING = f"""\
name: wrong expectation
request:
{REQUEST.replace("    ", "  ")}expect:
  {{verdict: ABSTAIN, reason_codes: [FRAUD, SMALL_REFUND], query_fields: [evidence.x]}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yml").write_text(POLICY, encoding="utf-8")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "cases.yml").write_text(CASES, encoding="utf-8")
    return tmp_path


def test_passing_cases_report_coverage_and_uncovered_rules(project: Path) -> None:
    result = cli("policy", "test", "--path", "policy.yml")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "3 passed, 0 failed" in result.stdout
    assert "rule coverage 75.0% (3/4)" in result.stdout
    assert "rules no case matched: NEVER_TESTED" in result.stdout
    assert not list(project.glob("**/*.db")), "policy test must not write a store"


def test_memory_is_seeded_per_case_not_shared(project: Path) -> None:
    # The trusted case runs after the memory case here: memory must not leak into it.
    (project / "tests" / "z_after.yml").write_text(
        f"name: trusted after a memory case\nrequest:\n{REQUEST.replace('    ', '  ')}"
        "expect: {verdict: TRUST}\n", encoding="utf-8")
    result = cli("policy", "test", "--path", "policy.yml", "--json")
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["passed"] == 4


def test_min_coverage_makes_uncovered_rules_fail(project: Path) -> None:
    result = cli("policy", "test", "--path", "policy.yml", "--min-coverage", "100")
    assert result.exit_code == 1
    assert "below --min-coverage 100" in result.stderr
    assert cli("policy", "test", "--path", "policy.yml", "--min-coverage", "75").exit_code == 0


def test_failures_show_the_difference_json_and_junit(project: Path) -> None:
    (project / "tests" / "wrong.json").write_text(json.dumps(
        {"name": "json case", "request": {"subject": {"type": "agent", "id": "b"},
                                          "action": {"type": "shop.refund", "intent": "r"},
                                          "evidence": {"order_id": "O"}},
         "expect": {"verdict": "TRUST"}}), encoding="utf-8")
    (project / "tests" / "wrong.yml").write_text(FAILING, encoding="utf-8")
    human = cli("policy", "test", "tests", "--path", "policy.yml", "--junit", "report.xml")
    assert human.exit_code == 1
    lines = [line for line in human.stdout.splitlines() if line.startswith("FAIL ")]
    assert len(lines) == 2
    wrong = next(line for line in lines if "wrong expectation" in line)
    assert "verdict: expected ABSTAIN, got TRUST" in wrong
    assert "reason_codes: expected FRAUD among SMALL_REFUND" in wrong
    assert "query_fields: expected ['evidence.x'], got none" in wrong
    assert "json case" in human.stdout and "expected TRUST, got ESCALATE" in human.stdout
    assert "3 passed, 2 failed" in human.stdout

    report = json.loads(cli("policy", "test", "--path", "policy.yml", "--json").stdout)
    assert report["passed"] == 3 and report["failed"] == 2
    assert report["uncovered_rules"] == ["NEVER_TESTED"]
    assert {f["name"] for f in report["failures"]} == {"wrong expectation", "json case"}

    suite = ElementTree.parse(project / "report.xml").getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "5" and suite.get("failures") == "2"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert sorted(failed) == ["json case", "wrong expectation"]


def test_invalid_cases_fail_with_a_reason_and_others_still_run(project: Path) -> None:
    (project / "tests" / "broken.yml").write_text(
        "- name: no expectation\n  request: {}\n"
        "- name: bad request\n  request: {subject: {type: robot, id: x}, action: {type: shop.refund,"
        " intent: r}}\n  expect: {verdict: TRUST}\n"
        "- {name: odd key, request: {}, expect: {verdict: TRUST}, expected: 1}\n",
        encoding="utf-8")
    (project / "tests" / "unparsable.yml").write_text("name: [unclosed\n", encoding="utf-8")
    result = cli("policy", "test", "--path", "policy.yml", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    problems = {f["name"]: f["problems"][0] for f in report["failures"]}
    assert report["passed"] == 3
    assert "expect.verdict is required" in problems["no expectation"]
    assert "INVALID_REQUEST_SCHEMA" in problems["bad request"]
    assert "unknown key 'expected'" in problems["odd key"]
    assert "cannot read case file" in problems["unparsable"]


def test_missing_case_folder_is_one_line_error(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.yml").write_text(POLICY, encoding="utf-8")
    result = cli("policy", "test", "--path", "policy.yml")
    assert result.exit_code == 1
    assert "CASES_NOT_FOUND" in result.stderr and ".lumyn/tests" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("pack", sorted(BUNDLED_PACKS))
def test_bundled_pack_cases_pass_with_full_rule_coverage(pack: str) -> None:
    path = bundled_policy_path(pack)
    policy = load_policy(path)
    folder = path.parent / "tests" / policy.policy_id
    report = run_cases(policy, case_files(folder))
    assert [f.as_dict() for f in report.failures] == []
    assert report.uncovered_rules == []
    assert len(report.results) >= len(report.rule_ids)


def test_bundled_pack_cases_run_from_the_cli_by_default() -> None:
    result = cli("policy", "test", "--path", str(bundled_policy_path("billing")),
                 "--min-coverage", "100")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "lumyn-billing" in result.stdout and "100.0%" in result.stdout


@pytest.mark.parametrize("pack", sorted(BUNDLED_PACKS))
def test_init_gives_the_workspace_its_pack_cases_and_they_pass(
        pack: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    created = cli("init", "--workspace", "ws", "--policy-template", pack)
    assert created.exit_code == 0, created.stderr
    assert "tests     created ws/tests" in created.stdout
    result = cli("policy", "test", "--workspace", "ws", "--min-coverage", "100")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout and "ws/tests" in result.stdout
    again = cli("init", "--workspace", "ws", "--policy-template", pack)
    assert again.exit_code == 0 and "tests     created" not in again.stdout
