"""required_evidence keys with dots reach into nested evidence, as condition paths do (SPEC §4):
for the missing-evidence test, the narrowing of queries and the memory features."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _builders import request

from lumyn import Lumyn, LumynConfig
from lumyn.memory import memory_features
from lumyn.policy import PolicyInvalid, compile_policy

POLICY = """\
schema_version: policy.v0
policy_id: nested-evidence
policy_version: "1"
defaults: {mode: enforce, default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
required_evidence:
  support.refund: [ticket_id, address.country, customer.account.id]
rules:
  - id: REQ
    stage: REQUIREMENTS
    when: {action_type: support.refund}
    then:
      verdict: QUERY
      reason_codes: [MISSING_EVIDENCE_REFUND]
      queries:
        - {field: evidence.ticket_id, question: Which ticket?}
        - {field: evidence.address.country, question: Which country is the address in?}
        - {field: evidence.customer.account.id, question: Which account?}
  - id: OK
    stage: TRUST_PATHS
    when: {action_type: support.refund}
    if: {evidence.address.country_in: [US, CA]}
    then: {verdict: TRUST, reason_codes: [REFUND_SMALL_LOW_RISK]}
"""


@pytest.fixture
def lumyn(tmp_path: Path) -> Iterator[Lumyn]:
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    instance = Lumyn(LumynConfig(store_path=str(tmp_path / "lumyn.db"), policy_path=str(policy)))
    yield instance
    instance.close()


def refund(evidence: dict[str, Any]) -> dict[str, Any]:
    return request(evidence=evidence)


def test_nested_evidence_satisfies_a_dotted_requirement(lumyn: Lumyn) -> None:
    record = lumyn.decide(refund({"ticket_id": "T-1", "address": {"country": "US"},
                                  "customer": {"account": {"id": "A-7"}}}))
    assert record["verdict"] == "TRUST", record["explanation"]["summary"]
    assert record["reason_codes"] == ["REFUND_SMALL_LOW_RISK"]
    assert record["explanation"]["details"]["missing_evidence"] == []


def test_only_the_missing_nested_key_is_queried(lumyn: Lumyn) -> None:
    record = lumyn.decide(refund({"ticket_id": "T-1", "address": {"country": ""},
                                  "customer": {"account": {"id": "A-7"}}}))
    assert record["verdict"] == "QUERY"
    assert record["reason_codes"] == ["MISSING_EVIDENCE_REFUND"]
    assert record["queries"] == [
        {"field": "evidence.address.country", "question": "Which country is the address in?"}
    ]
    assert record["explanation"]["details"]["missing_evidence"] == ["address.country"]


@pytest.mark.parametrize("evidence", [
    {"ticket_id": "T-1", "customer": {"account": {"id": "A-7"}}},  # no address at all
    {"ticket_id": "T-1", "address": "US", "customer": {"account": {"id": "A-7"}}},  # not an object
    {"ticket_id": "T-1", "address": {"country": None}, "customer": {"account": {"id": "A-7"}}},
])
def test_absent_null_or_unreachable_nested_key_is_missing(lumyn: Lumyn, evidence: dict[str, Any]) -> None:
    record = lumyn.decide(refund(evidence))
    assert record["verdict"] == "QUERY"
    assert [q["field"] for q in record["queries"]] == ["evidence.address.country"]


def test_nested_evidence_values_become_dotted_memory_features() -> None:
    features = memory_features(
        {"action": {"type": "support.refund"},
         "evidence": {"address": {"country": "US", "geo": {"verified": True}}, "tier": "gold"}},
        amount_usd=None,
    )
    assert features == ("action:support.refund", "ev:address.country=US",
                        "ev:address.geo.verified=true", "ev:tier=gold")


def test_a_failure_on_a_nested_value_is_remembered(lumyn: Lumyn) -> None:
    """A labeled failure from one country is more similar to the next request from the same
    country than to one from another: the nested value takes part in similarity."""
    def ev(country: str) -> dict[str, Any]:
        return {"ticket_id": "T-1", "address": {"country": country},
                "customer": {"account": {"id": "A-7"}}}

    first = lumyn.decide(refund(ev("US")))
    lumyn.label(first["decision_id"], "failure", summary="fraud ring")
    same = lumyn.decide(refund(ev("US")))["risk_signals"]["failure_similarity"]["score"]
    other = lumyn.decide(refund(ev("CA")))["risk_signals"]["failure_similarity"]["score"]
    assert same > other


def test_a_required_key_with_an_empty_segment_is_a_policy_problem() -> None:
    with pytest.raises(PolicyInvalid) as caught:
        compile_policy(POLICY.replace("[ticket_id, address.country,", "[ticket_id, address..country,"))
    assert "'address..country' is not an evidence key" in str(caught.value)
