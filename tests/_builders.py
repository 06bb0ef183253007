"""Request and policy builders shared by the core tests."""

from __future__ import annotations

import copy
from typing import Any

DIGEST = "sha256:" + "a" * 64

POLICY = """\
schema_version: policy.v0
policy_id: test-policy
policy_version: "1.0.0"
defaults:
  mode: enforce
  default_verdict: ESCALATE
  default_reason_code: NO_MATCH_DEFAULT_ESCALATE
thresholds:
  trust_max_usd: 25
  escalate_over_usd: 200
  failure_similarity: 0.35
required_evidence:
  support.refund: [ticket_id, order_id]
rules:
  - id: R001
    stage: REQUIREMENTS
    when: {action_type: support.refund}
    then:
      verdict: QUERY
      reason_codes: [MISSING_REQUIRED_EVIDENCE]
      queries:
        - {field: evidence.ticket_id, question: "Which support ticket asked for this refund?"}
        - {field: evidence.order_id, question: "Which order is refunded?"}
  - id: R002
    stage: HARD_BLOCKS
    when: {action_type: support.refund}
    if: {evidence.payment_instrument_risk_is: high}
    then: {verdict: ABSTAIN, reason_codes: [PAYMENT_INSTRUMENT_HIGH_RISK]}
  - id: R003
    stage: ESCALATIONS
    when: {action_type: support.refund}
    if: {amount_usd_gt: {threshold: escalate_over_usd}}
    then:
      verdict: ESCALATE
      reason_codes: [REFUND_OVER_ESCALATION_LIMIT]
      obligations: [{type: human_review, queue: refunds}]
  - id: R004
    stage: ESCALATIONS
    when: {action_type: support.refund}
    if: {failure_similarity_score_gte: {threshold: failure_similarity}}
    then: {verdict: ESCALATE, reason_codes: [FAILURE_MEMORY_SIMILAR_ESCALATE]}
  - id: R005
    stage: REQUIREMENTS
    when: {action_type: support.refund}
    if_all:
      - {amount_currency_ne: USD}
      - {evidence.fx_rate_to_usd_present: false}
    then:
      verdict: QUERY
      reason_codes: [FX_RATE_REQUIRED]
      queries: [{field: evidence.fx_rate_to_usd, question: "What is the FX rate to USD?"}]
  - id: R006
    stage: TRUST_PATHS
    when: {action_type: support.refund}
    if: {amount_usd_lte: {threshold: trust_max_usd}}
    if_any:
      - {evidence.payment_instrument_risk_in: [low, medium]}
      - {subject.roles_contains: refund_admin}
    then: {verdict: TRUST, reason_codes: [REFUND_SMALL_LOW_RISK]}
"""


# A small, clean USD refund that the bundled support pack trusts (the README's SDK example).
SUPPORT_REFUND: dict[str, Any] = {
    "schema_version": "decision_request.v0",
    "subject": {"type": "service", "id": "support-agent", "tenant_id": "acme"},
    "action": {
        "type": "support.refund",
        "intent": "Refund duplicate charge for order 82731",
        "target": {"system": "stripe", "resource_type": "charge", "resource_id": "ch_123"},
        "amount": {"value": 12.0, "currency": "USD"},
        "tags": ["duplicate_charge"],
    },
    "evidence": {
        "ticket_id": "ZD-1001",
        "order_id": "82731",
        "customer_id": "C-9",
        "customer_age_days": 180,
        "previous_refund_count_90d": 0,
        "chargeback_risk": 0.05,
        "payment_instrument_risk": "low",
    },
    "context": {"mode": "digest_only", "digest": DIGEST},
}


def request(**changes: Any) -> dict[str, Any]:
    """A small, clean USD refund; keyword changes are applied as dotted paths."""
    result = copy.deepcopy(SUPPORT_REFUND)
    for dotted, value in changes.items():
        node = result
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is _DELETE:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return result


_DELETE = object()
DELETE = _DELETE


def support_refund(**evidence: Any) -> dict[str, Any]:
    """SUPPORT_REFUND with evidence keys replaced."""
    result = copy.deepcopy(SUPPORT_REFUND)
    result["evidence"].update(evidence)
    return result
