"""Golden vectors for the bundled policy packs.

Each file under tests/golden/<pack>/ holds one vector: optional Experience Memory seeds
(decided, then labeled), a DecisionRequest, and the expected verdict, reason codes,
matched rule ids and (for QUERY) query fields. Expected values were derived by hand from
the pack YAML and the policy.v0 evaluation rules, not by recording engine output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
BUNDLED = REPO / "src" / "lumyn" / "policies"
REPO_POLICIES = REPO / "policies"

PACK_FILES = {
    "support": "lumyn-support.v0.yml",
    "account": "packs/lumyn-account.v0.yml",
    "billing": "packs/lumyn-billing.v0.yml",
}
VERDICTS = ("TRUST", "ABSTAIN", "ESCALATE", "QUERY")
DEFAULT_CODE = "NO_MATCH_DEFAULT_ESCALATE"


def _load_vectors() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for pack in PACK_FILES:
        for path in sorted((GOLDEN / pack).glob("*.json")):
            out.append((pack, path, json.loads(path.read_text(encoding="utf-8"))))
    return out


VECTORS = _load_vectors()


def _policy_rule_ids(pack: str) -> list[str]:
    data = yaml.safe_load((BUNDLED / PACK_FILES[pack]).read_text(encoding="utf-8"))
    return [rule["id"] for rule in data["rules"]]


def _policy_rule_ids_of(record: dict[str, Any]) -> list[str]:
    return [r["rule_id"] for r in record["matched_rules"] if r["stage"] != "DEFAULT"]


@pytest.mark.parametrize(
    ("pack", "path", "vector"),
    VECTORS,
    ids=[f"{pack}/{vector['name']}" for pack, _, vector in VECTORS],
)
def test_golden_vector(pack: str, path: Path, vector: dict[str, Any], tmp_path: Path) -> None:
    from lumyn import Lumyn, LumynConfig
    from lumyn.contracts.schemas import validate_record

    assert vector["name"] == path.stem, "vector name must match its file name"
    expected = vector["expected"]

    lumyn = Lumyn(
        LumynConfig(
            store_path=str(tmp_path / "lumyn.db"),
            policy_path=str(BUNDLED / PACK_FILES[pack]),
        )
    )
    try:
        for seed in vector.get("memory", []):
            seeded = lumyn.decide(seed["request"])
            lumyn.label(seeded["decision_id"], seed["label"], summary=seed.get("summary", ""))
        record = lumyn.decide(vector["request"])
    finally:
        lumyn.close()

    validate_record(record)
    assert record["verdict"] == expected["verdict"]
    assert record["reason_codes"] == expected["reason_codes"]
    assert _policy_rule_ids_of(record) == expected["matched_rule_ids"]

    defaults = [r for r in record["matched_rules"] if r["stage"] == "DEFAULT"]
    if expected["reason_codes"] == [DEFAULT_CODE]:
        # No rule matched: exactly one DEFAULT entry carrying the default verdict and code.
        assert len(defaults) == 1
        assert defaults[0]["effect"] == "ESCALATE"
        assert defaults[0]["reason_codes"] == [DEFAULT_CODE]
    else:
        assert defaults == []

    if expected["verdict"] == "QUERY":
        fields = sorted(q["field"] for q in record.get("queries", []))
        assert fields == sorted(expected["query_fields"])
    else:
        assert "query_fields" not in expected
        assert not record.get("queries"), "queries are kept only for a QUERY verdict"


def test_vector_counts() -> None:
    counts = {pack: sum(1 for p, _, _ in VECTORS if p == pack) for pack in PACK_FILES}
    assert counts["support"] >= 24
    assert counts["account"] >= 8
    assert counts["billing"] >= 8
    assert sum(counts.values()) >= 40
    assert sum(1 for _, _, v in VECTORS if v.get("memory")) >= 2


@pytest.mark.parametrize("pack", list(PACK_FILES))
def test_every_rule_is_hit_by_a_vector(pack: str) -> None:
    hit = {rule_id for p, _, v in VECTORS if p == pack for rule_id in v["expected"]["matched_rule_ids"]}
    rule_ids = _policy_rule_ids(pack)
    assert len(rule_ids) == len(set(rule_ids)), "duplicate rule ids"
    missing = [r for r in rule_ids if r not in hit]
    assert not missing, f"rules of {pack} never hit by a golden vector: {missing}"
    unknown = sorted(hit - set(rule_ids))
    assert not unknown, f"vectors of {pack} reference unknown rules: {unknown}"


def test_every_verdict_is_reached() -> None:
    reached = {v["expected"]["verdict"] for _, _, v in VECTORS}
    assert reached == set(VERDICTS)
    assert any(v["expected"]["reason_codes"] == [DEFAULT_CODE] for _, _, v in VECTORS)


@pytest.mark.parametrize("pack", list(PACK_FILES))
def test_repo_policy_copies_are_byte_identical(pack: str) -> None:
    bundled = (BUNDLED / PACK_FILES[pack]).read_bytes()
    copy = (REPO_POLICIES / PACK_FILES[pack]).read_bytes()
    assert copy == bundled


@pytest.mark.parametrize("pack", list(PACK_FILES))
def test_pack_loads(pack: str) -> None:
    from lumyn.policy import load_policy

    load_policy(str(BUNDLED / PACK_FILES[pack]))


# The reason codes of the seed's release: teams alert and branch on them, so a pack keeps them.
# Rules the seed's packs lack keep their own codes (the second set).
SEED_CODES = {
    "support": {
        "MISSING_EVIDENCE_REFUND", "MISSING_EVIDENCE_CREDIT", "MISSING_EVIDENCE_CLOSE_TICKET",
        "MISSING_EVIDENCE_UPDATE_TICKET", "MISSING_EVIDENCE_CHANGE_PLAN",
        "MISSING_EVIDENCE_RESET_PASSWORD", "MISSING_FX_RATE", "PAYMENT_INSTRUMENT_HIGH_RISK",
        "ACCOUNT_TAKEOVER_RISK_BLOCK", "CHARGEBACK_RISK_BLOCK", "REFUND_OVER_ESCALATION_LIMIT",
        "REFUND_REPEAT_CUSTOMER", "CHARGEBACK_RISK_ESCALATE", "NEW_CUSTOMER_REFUND_ESCALATE",
        "FAILURE_MEMORY_SIMILAR_ESCALATE", "MANUAL_APPROVAL_PRESENT_ESCALATE",
        "REFUND_SMALL_LOW_RISK", "CREDIT_SMALL", "CLOSE_TICKET_OK", "UPDATE_TICKET_OK",
    },
    "account": {"MISSING_EVIDENCE_CHANGE_EMAIL", "CHANGE_EMAIL_TAKEOVER_RISK_BLOCK",
                "MANUAL_APPROVAL_PRESENT_ESCALATE", "CHANGE_EMAIL_OK"},
    "billing": {"MISSING_EVIDENCE_APPROVE_SPEND", "SPEND_OVER_APPROVAL_LIMIT", "SPEND_SMALL_OK"},
}
OWN_CODES = {
    "support": {"AMOUNT_REQUIRED", "PLAN_CHANGE_STANDARD", "PASSWORD_RESET_STANDARD"},
    "account": {"FAILURE_MEMORY_SIMILAR_ESCALATE"},
    "billing": {"FX_RATE_REQUIRED", "AMOUNT_REQUIRED", "FAILURE_MEMORY_SIMILAR_ESCALATE"},
}


@pytest.mark.parametrize("pack", list(PACK_FILES))
def test_packs_use_the_seeds_stable_reason_codes(pack: str) -> None:
    data = yaml.safe_load((BUNDLED / PACK_FILES[pack]).read_text(encoding="utf-8"))
    codes = {code for rule in data["rules"] for code in rule["then"]["reason_codes"]}
    assert codes == SEED_CODES[pack] | OWN_CODES[pack]
    assert data["defaults"]["default_reason_code"] == DEFAULT_CODE
    reached = {c for p, _, v in VECTORS if p == pack for c in v["expected"]["reason_codes"]}
    assert SEED_CODES[pack] <= reached, "every stable code has a golden vector"


def test_docs_list_every_packs_reason_codes() -> None:
    text = (REPO / "docs" / "policy_packs.md").read_text(encoding="utf-8")
    for pack in PACK_FILES:
        for code in SEED_CODES[pack] | OWN_CODES[pack]:
            assert f"`{code}`" in text, (pack, code)
