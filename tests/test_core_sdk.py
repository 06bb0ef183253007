"""decide() end to end on the SQLite store: records, digests, idempotency, memory, failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _builders import DELETE, POLICY, request

from lumyn import Lumyn, LumynConfig, decide
from lumyn.contracts import canonical_bytes, digest, validate_record
from lumyn.errors import (
    ContextDigestMismatch,
    DecisionNotFound,
    IdempotencyConflict,
    InvalidEvent,
    RequestInvalid,
)
from lumyn.policy import compile_policy
from lumyn.store.sqlite import FULL_CHECK_S


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def lumyn(tmp_path: Path, policy_path: Path) -> Iterator[Lumyn]:
    instance = Lumyn(LumynConfig(store_path=str(tmp_path / "ws" / "lumyn.db"),
                                 policy_path=str(policy_path)))
    yield instance
    instance.close()


def without_ids(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("decision_id", "created_at")}


def test_clean_small_refund_is_trusted_and_record_is_valid(lumyn: Lumyn) -> None:
    record = lumyn.decide(request())
    validate_record(record)
    assert record["verdict"] == "TRUST"
    assert record["reason_codes"] == ["REFUND_SMALL_LOW_RISK"]
    assert record["matched_rules"] == [
        {"rule_id": "R006", "stage": "TRUST_PATHS", "effect": "TRUST",
         "reason_codes": ["REFUND_SMALL_LOW_RISK"]}
    ]
    assert record["policy"]["policy_hash"] == compile_policy(POLICY).policy_hash
    assert record["policy"]["mode"] == "enforce"
    assert "queries" not in record


def test_record_is_durable_and_reads_back_identically(tmp_path: Path, lumyn: Lumyn) -> None:
    record = lumyn.decide(request())
    lumyn.close()
    again = Lumyn(LumynConfig(store_path=str(tmp_path / "ws" / "lumyn.db"),
                              policy_path=lumyn.config.policy_path))
    assert canonical_bytes(again.get_decision(record["decision_id"])) == canonical_bytes(record)
    again.close()


def test_precedence_accumulates_codes_in_evaluation_order(lumyn: Lumyn) -> None:
    record = lumyn.decide(request(
        action__amount={"value": 500, "currency": "USD"},
        evidence__payment_instrument_risk="high",
        evidence__order_id="",
    ))
    assert record["verdict"] == "ABSTAIN"
    assert record["reason_codes"] == [
        "MISSING_REQUIRED_EVIDENCE", "PAYMENT_INSTRUMENT_HIGH_RISK", "REFUND_OVER_ESCALATION_LIMIT"
    ]
    assert "queries" not in record  # queries only for a QUERY verdict
    assert "obligations" not in record  # the escalation's obligation does not apply to ABSTAIN


def test_requirements_rule_narrows_queries_to_missing_keys(lumyn: Lumyn) -> None:
    record = lumyn.decide(request(evidence__order_id=DELETE))
    assert record["verdict"] == "QUERY"
    assert record["queries"] == [
        {"field": "evidence.order_id", "question": "Which order is refunded?"}
    ]
    validate_record(record)


def test_non_usd_without_rate_queries_and_with_rate_converts(lumyn: Lumyn) -> None:
    eur = {"value": 20, "currency": "EUR"}
    record = lumyn.decide(request(action__amount=eur))
    assert record["verdict"] == "QUERY"
    assert record["reason_codes"] == ["FX_RATE_REQUIRED"]
    record = lumyn.decide(request(action__amount=eur, evidence__fx_rate_to_usd=1.1))
    assert record["verdict"] == "TRUST"
    record = lumyn.decide(request(action__amount=eur, evidence__fx_rate_to_usd=20))
    assert record["verdict"] == "ESCALATE"
    assert record["obligations"] == [{"type": "human_review", "queue": "refunds"}]


def test_default_verdict_when_nothing_matches(lumyn: Lumyn) -> None:
    record = lumyn.decide(request(action__amount={"value": 100, "currency": "USD"}))
    assert record["verdict"] == "ESCALATE"
    assert record["reason_codes"] == ["NO_MATCH_DEFAULT_ESCALATE"]
    assert record["matched_rules"][0]["stage"] == "DEFAULT"


def test_identical_inputs_give_identical_records_but_ids(lumyn: Lumyn) -> None:
    first, second = lumyn.decide(request()), lumyn.decide(request())
    assert first["decision_id"] != second["decision_id"]
    assert canonical_bytes(without_ids(first)) == canonical_bytes(without_ids(second))


def test_inputs_digest_changes_with_inputs(lumyn: Lumyn) -> None:
    a = lumyn.decide(request())
    b = lumyn.decide(request(evidence__ticket_id="ZD-2"))
    assert a["determinism"]["inputs_digest"] != b["determinism"]["inputs_digest"]


def test_idempotent_retry_returns_the_stored_record(lumyn: Lumyn) -> None:
    first = lumyn.decide(request(request_id="req-1"))
    retry = lumyn.decide(request(request_id="req-1"))
    assert retry == first
    other_tenant = lumyn.decide(request(request_id="req-1", subject__tenant_id="globex"))
    assert other_tenant["decision_id"] != first["decision_id"]


def test_reused_request_id_with_different_request_conflicts(lumyn: Lumyn) -> None:
    first = lumyn.decide(request(request_id="req-2"))
    with pytest.raises(IdempotencyConflict) as info:
        lumyn.decide(request(request_id="req-2", evidence__ticket_id="ZD-other"))
    assert info.value.existing_decision_id == first["decision_id"]
    assert info.value.field == "request_id"


def test_concurrent_retries_make_exactly_one_decision(lumyn: Lumyn, tmp_path: Path) -> None:
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(lumyn.decide(request(request_id="race")))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r["decision_id"] for r in results}) == 1
    db = sqlite3.connect(tmp_path / "ws" / "lumyn.db")
    assert db.execute("SELECT count(*) FROM decisions WHERE request_id = 'race'").fetchone() == (1,)
    db.close()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action__type": "Refund"}, "action.type"),
        ({"subject__type": "robot"}, "subject.type"),
        ({"context__digest": "md5:abc"}, "context.digest"),
        ({"action__amount": {"value": "12", "currency": "USD"}}, "action.amount.value"),
        ({"surprise": 1}, "(root)"),
        ({"evidence__risk": float("nan")}, "evidence.risk"),
    ],
)
def test_invalid_requests_name_the_field(lumyn: Lumyn, change: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        lumyn.decide(request(**change))
    assert info.value.reason_code == "INVALID_REQUEST_SCHEMA"
    assert info.value.field == field
    assert field in info.value.one_line()


def test_non_object_request_is_rejected(lumyn: Lumyn) -> None:
    with pytest.raises(RequestInvalid):
        lumyn.decide(["not", "an", "object"])


def inline_request(inline: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return request(context={"mode": "inline", "digest": digest(inline), "inline": inline}, **changes)


def test_inline_context_digest_must_match(lumyn: Lumyn) -> None:
    bad = inline_request({"a": 1})
    bad["context"]["inline"] = {"a": 2}
    with pytest.raises(ContextDigestMismatch) as info:
        lumyn.decide(bad)
    assert info.value.reason_code == "CONTEXT_DIGEST_MISMATCH"
    assert info.value.field == "context.digest"


SECRET_INLINE = {
    "customer": {"email": "zz-secret-mail@example.com", "tier": "gold"},
    "api_key": "zz-secret-key-123",
    "messages": [{"role": "user", "content": "zz-secret-prompt"}],
    "order": "82731",
}


@pytest.mark.parametrize(
    ("profile", "kept", "removed"),
    [
        ("default", {"customer": {"tier": "gold"}, "order": "82731"},
         ["/context/inline/api_key", "/context/inline/customer/email", "/context/inline/messages"]),
        ("strict", {}, ["/context/inline/api_key", "/context/inline/customer",
                        "/context/inline/messages", "/context/inline/order"]),
        ("off", SECRET_INLINE, []),
    ],
)
def test_redaction_profiles_and_nothing_removed_reaches_disk(
    tmp_path: Path, policy_path: Path, profile: str, kept: dict[str, Any], removed: list[str]
) -> None:
    db = tmp_path / "r" / "lumyn.db"
    with Lumyn(LumynConfig(store_path=str(db), policy_path=str(policy_path),
                           redaction_profile=profile)) as lumyn:
        record = lumyn.decide(inline_request(SECRET_INLINE))
        context = record["request"]["context"]
        assert context["inline"] == kept
        assert context["redaction"] == {"profile": profile, "fields_removed": removed}
        # the caller's digest is kept only when nothing was removed (it would let a guess of
        # a removed value be confirmed); otherwise it is the digest of what is stored
        assert context["digest"] == digest(kept if removed else SECRET_INLINE)
        validate_record(record)
    on_disk = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.is_file())
    for secret in (b"zz-secret-mail", b"zz-secret-key", b"zz-secret-prompt"):
        assert (secret in on_disk) is (profile == "off")


def test_failure_label_turns_the_next_similar_trust_into_escalate(lumyn: Lumyn) -> None:
    first = lumyn.decide(request())
    assert first["verdict"] == "TRUST"
    event = lumyn.label(first["decision_id"], "failure", "chargeback after refund")
    assert event["type"] == "label"
    similar = lumyn.decide(request(evidence__ticket_id="ZD-2002", evidence__order_id="99"))
    assert similar["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in similar["reason_codes"]
    top = similar["risk_signals"]["failure_similarity"]
    assert top["score"] >= 0.35
    assert top["top_k"][0]["memory_id"] == event["data"]["memory_id"]
    assert top["top_k"][0]["summary"] == "chargeback after refund"
    assert similar["determinism"]["memory_snapshot"] != first["determinism"]["memory_snapshot"]
    unrelated = lumyn.decide(request(subject__tenant_id="globex"))
    assert unrelated["verdict"] == "TRUST"  # memory is per tenant
    logged = lumyn.get_decision(first["decision_id"])["decision_event_log"]
    assert [e["type"] for e in logged] == ["label"]


def test_labels_from_another_connection_are_seen_at_once(tmp_path: Path, lumyn: Lumyn) -> None:
    # A second gateway on the same file stands in for another process (its own connections).
    first = lumyn.decide(request())
    assert lumyn.decide(request(evidence__ticket_id="ZD-3"))["verdict"] == "TRUST"
    other = Lumyn(LumynConfig(store_path=str(tmp_path / "ws" / "lumyn.db"),
                              policy_path=lumyn.config.policy_path))
    other.label(first["decision_id"], "failure", "seen elsewhere")
    assert lumyn.decide(request(evidence__ticket_id="ZD-4"))["verdict"] == "ESCALATE"
    other.close()


def test_events_require_known_types_labels_and_decisions(lumyn: Lumyn) -> None:
    record = lumyn.decide(request())
    with pytest.raises(InvalidEvent):
        lumyn.append_event(record["decision_id"], "rumour", {})
    with pytest.raises(InvalidEvent):
        lumyn.label(record["decision_id"], "meh")
    with pytest.raises(DecisionNotFound):
        lumyn.label("01ARZ3NDEKTSV4RRFFQ69G5FAV", "failure")
    note = lumyn.append_event(record["decision_id"], "note", {"text": "checked by on-call"})
    assert lumyn.get_decision(record["decision_id"])["decision_event_log"] == [note]


def test_other_tenants_decisions_are_not_found(lumyn: Lumyn) -> None:
    record = lumyn.decide(request())
    assert lumyn.get_decision(record["decision_id"], tenant_id="acme")
    with pytest.raises(DecisionNotFound):
        lumyn.get_decision(record["decision_id"], tenant_id="globex")
    with pytest.raises(DecisionNotFound):
        lumyn.label(record["decision_id"], "failure", tenant_id="globex")


def test_advisory_mode_is_recorded(lumyn: Lumyn) -> None:
    record = lumyn.decide(request(hints={"mode": "advisory"}))
    assert record["policy"]["mode"] == "advisory"
    assert record["verdict"] == "TRUST"
    assert "advisory" in record["explanation"]["summary"]


def test_dry_run_is_not_persisted(lumyn: Lumyn) -> None:
    record = lumyn.decide(request(hints={"dry_run": True}, request_id="dry"))
    assert record["extensions"] == {"lumyn": {"dry_run": True, "persisted": False}}
    with pytest.raises(DecisionNotFound):
        lumyn.get_decision(record["decision_id"])


def test_policy_pin_mismatch_is_rejected(lumyn: Lumyn) -> None:
    with pytest.raises(RequestInvalid) as info:
        lumyn.decide(request(policy={"policy_id": "other"}))
    assert info.value.reason_code == "POLICY_MISMATCH"


def assert_storage_unavailable(record: dict[str, Any]) -> None:
    validate_record(record)
    assert record["verdict"] == "ABSTAIN"
    assert record["reason_codes"] == ["STORAGE_UNAVAILABLE"]


def test_locked_database_abstains_then_recovers(tmp_path: Path, policy_path: Path) -> None:
    db = tmp_path / "db" / "lumyn.db"
    with Lumyn(LumynConfig(store_path=str(db), policy_path=str(policy_path))) as lumyn:
        ok = lumyn.decide(request())
        assert ok["verdict"] == "TRUST"
        holder = sqlite3.connect(db)
        holder.execute("BEGIN EXCLUSIVE")  # nobody else may write now
        try:
            fast = Lumyn(LumynConfig(store_path=str(db), policy_path=str(policy_path),
                                     busy_timeout_ms=50))
            assert_storage_unavailable(fast.decide(request()))
        finally:
            holder.rollback()
            holder.close()
        recovered = fast.decide(request())  # the same instance heals once the lock is gone
        assert recovered["verdict"] == "TRUST"
        assert fast.get_decision(recovered["decision_id"])
        fast.close()


def test_missing_directory_that_cannot_be_created_abstains(tmp_path: Path, policy_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with Lumyn(LumynConfig(store_path=str(blocker / "sub" / "lumyn.db"),
                           policy_path=str(policy_path))) as lumyn:
        assert_storage_unavailable(lumyn.decide(request()))


def test_moved_database_abstains_instead_of_starting_empty(tmp_path: Path, policy_path: Path) -> None:
    folder = tmp_path / "gone"
    with Lumyn(LumynConfig(store_path=str(folder / "lumyn.db"),
                           policy_path=str(policy_path))) as lumyn:
        first = lumyn.decide(request())
        moved = tmp_path / "moved"
        folder.rename(moved)
        time.sleep(FULL_CHECK_S + 0.1)  # the path is re-resolved at most this often
        assert_storage_unavailable(lumyn.decide(request()))
        assert not folder.exists()  # nothing silently re-created
        moved.rename(folder)
        again = lumyn.decide(request())
        assert again["verdict"] == "TRUST"
        assert lumyn.get_decision(first["decision_id"])


def test_deleted_database_file_abstains_at_once(tmp_path: Path, policy_path: Path) -> None:
    db = tmp_path / "del" / "lumyn.db"
    with Lumyn(LumynConfig(store_path=str(db), policy_path=str(policy_path))) as lumyn:
        lumyn.decide(request())
        for path in db.parent.iterdir():
            path.unlink()
        assert_storage_unavailable(lumyn.decide(request()))
        assert_storage_unavailable(lumyn.decide(request()))
        assert not db.exists()


def test_decisions_are_append_only_in_the_database(lumyn: Lumyn, tmp_path: Path) -> None:
    record = lumyn.decide(request())
    lumyn.label(record["decision_id"], "success")
    db = sqlite3.connect(tmp_path / "ws" / "lumyn.db")
    for statement in ("UPDATE decisions SET verdict = 'TRUST'", "DELETE FROM decisions",
                      "UPDATE memory_items SET label = 'x'", "DELETE FROM decision_events"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(statement)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_readme_sdk_example_with_module_level_decide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = LumynConfig(store_path=".lumyn/lumyn.db")
    req = {
        "schema_version": "decision_request.v0",
        "request_id": "req_123",
        "subject": {"type": "service", "id": "support-agent", "tenant_id": "acme"},
        "action": {
            "type": "support.refund",
            "intent": "Refund duplicate charge for order 82731",
            "amount": {"value": 12.0, "currency": "USD"},
            "tags": ["duplicate_charge"],
        },
        "evidence": {
            "ticket_id": "ZD-1001", "order_id": "82731", "customer_id": "C-9",
            "customer_age_days": 180, "previous_refund_count_90d": 0,
            "chargeback_risk": 0.05, "payment_instrument_risk": "low",
        },
        "context": {"mode": "digest_only", "digest": "sha256:" + ("a" * 64)},
    }
    record = decide(req, config=cfg)
    validate_record(record)
    assert record["verdict"] == "TRUST"
    assert record["policy"]["policy_id"] == "lumyn-support"
    assert decide(req, config=LumynConfig(store_path=".lumyn/lumyn.db")) == record
    assert (tmp_path / ".lumyn" / "lumyn.db").exists()


def test_decide_many_matches_decide_and_shares_one_commit(lumyn: Lumyn, tmp_path: Path) -> None:
    requests = [
        request(request_id="m-1"),
        request(request_id="m-1"),  # a retry inside the batch: same record
        request(request_id="m-1", evidence__ticket_id="x"),  # conflict
        request(action__type="Bad"),  # invalid
        request(evidence__order_id=DELETE),  # QUERY
    ]
    results = lumyn.decide_many(requests)
    assert isinstance(results[0], dict) and isinstance(results[1], dict)
    assert results[0]["decision_id"] == results[1]["decision_id"]
    assert isinstance(results[2], IdempotencyConflict)
    assert isinstance(results[3], RequestInvalid)
    assert isinstance(results[4], dict) and results[4]["verdict"] == "QUERY"
    for record in (results[0], results[4]):
        assert isinstance(record, dict)
        assert lumyn.get_decision(record["decision_id"])["verdict"] == record["verdict"]
    assert lumyn.decide(request(request_id="m-1")) == results[0]
    single = lumyn.decide(request(request_id="m-3"))
    assert single["verdict"] == results[0]["verdict"]
    assert single["reason_codes"] == results[0]["reason_codes"]


def test_hostile_nesting_is_rejected_not_crashing(lumyn: Lumyn) -> None:
    deep: Any = "x"
    for _ in range(5000):
        deep = {"k": [deep]}
    with pytest.raises(RequestInvalid) as info:
        lumyn.decide(request(evidence__deep=deep))
    assert info.value.field == "evidence"


def test_effective_config_masks_the_database_password() -> None:
    shown = LumynConfig(storage_url="postgresql://bob:hunter2@db:5432/lumyn").effective()
    assert shown["storage_url"] == "postgresql://bob:***@db:5432/lumyn"
    assert "hunter2" not in str(shown)


def test_nul_in_ids_is_rejected_on_every_backend(lumyn: Lumyn) -> None:
    with pytest.raises(RequestInvalid) as info:
        lumyn.decide(request(request_id="a\x00b"))
    assert info.value.field == "request_id"
