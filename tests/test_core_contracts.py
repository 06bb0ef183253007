"""The shipped JSON Schemas: the seed README's record example is valid, and they are strict."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lumyn.contracts import validate_record, validate_request
from lumyn.contracts.schemas import load_schema
from lumyn.errors import RequestInvalid

README_RECORD: dict[str, Any] = {
    "schema_version": "decision_record.v0",
    "decision_id": "01JZ1S7Y1NQ2A0D5JQK2Q2P3X4",
    "created_at": "2025-12-15T10:00:00Z",
    "request": {
        "schema_version": "decision_request.v0",
        "subject": {"type": "service", "id": "support-agent", "tenant_id": "acme"},
        "action": {
            "type": "support.refund",
            "intent": "Refund duplicate charge for order 82731",
            "target": {"system": "stripe", "resource_type": "charge", "resource_id": "ch_123"},
            "amount": {"value": 201.0, "currency": "USD"},
            "tags": ["duplicate_charge"],
        },
        "evidence": {"ticket_id": "ZD-1001", "order_id": "82731", "customer_id": "C-9"},
        "context": {"mode": "digest_only", "digest": "sha256:" + "a" * 64},
    },
    "policy": {
        "policy_id": "lumyn-support",
        "policy_version": "0.1.0",
        "policy_hash": "sha256:" + "b" * 64,
        "mode": "enforce",
    },
    "verdict": "ESCALATE",
    "reason_codes": ["REFUND_OVER_ESCALATION_LIMIT"],
    "matched_rules": [
        {"rule_id": "R008", "stage": "ESCALATIONS", "effect": "ESCALATE",
         "reason_codes": ["REFUND_OVER_ESCALATION_LIMIT"]}
    ],
    "risk_signals": {
        "uncertainty_score": 0.12,
        "failure_similarity": {"score": 0.07, "top_k": []},
    },
    "determinism": {
        "engine_version": "0.1.0",
        "evaluation_order": ["REQUIREMENTS", "HARD_BLOCKS", "ESCALATIONS", "TRUST_PATHS", "DEFAULT"],
        "inputs_digest": "sha256:" + "c" * 64,
    },
}


def test_seed_readme_record_example_is_valid() -> None:
    validate_record(README_RECORD)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.update(verdict="MAYBE"),
        lambda r: r.update(reason_codes=[]),
        lambda r: r.update(reason_codes=["lower_case"]),
        lambda r: r.update(extra_field=1),
        lambda r: r["risk_signals"].update(uncertainty_score=1.5),
        lambda r: r["determinism"].update(evaluation_order=["DEFAULT"]),
        lambda r: r.update(decision_id="not-a-ulid"),
        lambda r: r["request"]["action"].update(type="NoDots"),
        lambda r: r.update(queries=[{"field": "x", "question": "y"}]),  # not a QUERY verdict
    ],
)
def test_record_schema_rejects_broken_records(mutate: Any) -> None:
    record = copy.deepcopy(README_RECORD)
    mutate(record)
    with pytest.raises(ValueError):
        validate_record(record)


def test_schemas_declare_draft_2020_12_and_are_closed() -> None:
    for name in ("decision_request.v0.schema.json", "decision_record.v0.schema.json",
                 "policy.v0.schema.json"):
        schema = load_schema(name)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False


def test_reference_mode_needs_a_ref() -> None:
    request = copy.deepcopy(README_RECORD["request"])
    request["context"] = {"mode": "reference", "digest": "sha256:" + "a" * 64}
    with pytest.raises(RequestInvalid) as info:
        validate_request(request)
    assert info.value.field == "context"
    request["context"]["ref"] = {"kind": "s3", "id": "ctx-1"}
    validate_request(request)


def test_stored_records_are_byte_exact_rfc8785(tmp_path: Any) -> None:
    """Records take the canonical fast path (the request's bytes spliced in, the rest written
    by orjson); the bytes must equal the reference RFC 8785 implementation for every golden
    request."""
    import json
    from pathlib import Path

    from lumyn import Lumyn, LumynConfig
    from lumyn.contracts import canonical_bytes
    from lumyn.contracts.canonical import reference_canonical_bytes
    from lumyn.policy import bundled_policy_path

    golden = Path(__file__).parent / "golden"
    checked = 0
    for pack in ("support", "account", "billing"):
        with Lumyn(LumynConfig(store_path=str(tmp_path / f"{pack}.db"),
                               policy_path=str(bundled_policy_path(pack)))) as lumyn:
            for path in sorted((golden / pack).glob("*.json")):
                vector = json.loads(path.read_text())
                record = lumyn.decide(vector["request"])
                stored = lumyn.store.get_decision(record["decision_id"])
                assert stored is not None
                assert stored[1] == canonical_bytes(record) == reference_canonical_bytes(
                    json.loads(stored[1])
                )
                checked += 1
    assert checked >= 30


_NUMBER_GATEWAYS: dict[tuple[str, str], Any] = {}  # one gateway per policy, across examples
_OBLIGING_POLICY = """
schema_version: policy.v0
policy_id: numbers
policy_version: "1"
defaults: {default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
rules:
  - id: R1
    stage: ESCALATIONS
    if: {amount_usd_gt: 0}
    then:
      verdict: ESCALATE
      reason_codes: [HAS_AMOUNT]
      obligations: [{type: review, limit: %s, "%s": 1}]
"""


@pytest.mark.parametrize(("limit", "key"), [("250", "k"), ("0.00001", "k"), ("12.0", "k"),
                                            ("1.5", "\U0001F600"), ("1.0e+17", "k")])
@settings(max_examples=30, deadline=None)
@given(
    value=st.one_of(st.floats(min_value=0, max_value=1e18, allow_nan=False), st.integers(0, 10**6),
                    st.sampled_from([0.00001, 12.0, 1e16, 2.5e-7, 9007199254740993])),
    rate=st.one_of(st.none(), st.floats(min_value=1e-9, max_value=1e9, allow_nan=False)),
    risk=st.floats(allow_nan=False, allow_infinity=False),
)
def test_records_with_any_numbers_are_stored_as_rfc8785(
    tmp_path_factory: Any, limit: str, key: str, value: float, rate: float | None, risk: float
) -> None:
    """Whatever numbers a request, the memory and the policy's obligations bring, the stored
    bytes equal the reference implementation's (no list of the record's numbers to keep)."""
    import json

    from lumyn import Lumyn, LumynConfig
    from lumyn.contracts.canonical import reference_canonical_bytes
    from lumyn.errors import LumynError

    lumyn = _NUMBER_GATEWAYS.get((limit, key))
    if lumyn is None:
        folder = tmp_path_factory.mktemp("numbers")
        (folder / "p.yml").write_text(_OBLIGING_POLICY % (limit, key))
        lumyn = _NUMBER_GATEWAYS[limit, key] = Lumyn(LumynConfig(
            store_path=str(folder / "l.db"), policy_path=str(folder / "p.yml")))
    request = copy.deepcopy(README_RECORD["request"])
    request["action"]["amount"] = {"value": value, "currency": "USD" if rate is None else "EUR"}
    request["evidence"]["risk"] = risk
    if rate is not None:
        request["evidence"]["fx_rate_to_usd"] = rate
    try:
        first = lumyn.decide(request)
    except LumynError:
        return  # e.g. an amount beyond the canonical range: rejected, nothing stored
    lumyn.label(first["decision_id"], "failure", "a past outcome")
    record = lumyn.decide(request)  # the same request again: now memory has a match
    stored = lumyn.store.get_decision(record["decision_id"])
    assert stored is not None
    assert record["risk_signals"]["failure_similarity"]["top_k"]  # memory numbers present
    # Integers beyond 2^53 in canonical text stand for floats (JCS writes 2.0**53 that way).
    parsed = json.loads(stored[1], parse_int=lambda t: int(t) if len(t) < 16 else float(t))
    assert stored[1] == reference_canonical_bytes(parsed)



def test_new_ids_are_ulids_with_the_current_time_and_unique() -> None:
    import time

    from ulid import ULID

    from lumyn.contracts.ids import new_id

    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in ids[:50] + ids[-50:]:
        parsed = ULID.from_str(value)  # an independent ULID implementation reads it back
        assert str(parsed) == value and len(value) == 26
        assert before <= parsed.milliseconds <= after
    assert ids == sorted(ids)  # monotonic: many share a millisecond, yet sort in creation order


@given(ms=st.integers(0, 2**48 - 1), random=st.integers(0, 2**80 - 1))
def test_ulid_encoding_matches_an_independent_implementation(ms: int, random: int) -> None:
    from ulid import ULID

    from lumyn.contracts.ids import encode_random, encode_time

    assert encode_time(ms) + encode_random(random) == str(ULID.from_int(ms << 80 | random))


def test_new_ids_stay_ordered_across_threads_and_a_clock_step_back(monkeypatch: Any) -> None:
    import threading
    import time

    from lumyn.contracts import ids as ids_module

    made: list[str] = []
    lock = threading.Lock()

    def burst() -> None:
        mine = [ids_module.new_id() for _ in range(500)]
        assert mine == sorted(mine)
        with lock:
            made.extend(mine)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == len(made) == 2000
    before = ids_module.new_id()
    real = time.time_ns
    monkeypatch.setattr(ids_module.time, "time_ns", lambda: real() - 10**12)  # 1,000 s back
    after = ids_module.new_id()
    assert after > before


def test_timestamps_are_rfc3339_utc_milliseconds() -> None:
    import re
    from datetime import UTC, datetime

    from lumyn.contracts.ids import utc_now

    stamp = utc_now()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", stamp)
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 2


@given(
    mode=st.sampled_from(["digest_only", "inline", "reference", "other"]),
    with_ref=st.booleans(),
    with_inline=st.booleans(),
    ref_ok=st.booleans(),
)
def test_fast_request_validator_accepts_exactly_what_the_schema_accepts(
    mode: str, with_ref: bool, with_inline: bool, ref_ok: bool
) -> None:
    """The compiled validator accepts and rejects the context's mode conditions exactly as
    the reference implementation applies the shipped schema."""
    from jsonschema import ValidationError

    from lumyn.contracts.schemas import validate_request_reference

    request = copy.deepcopy(README_RECORD["request"])
    context: dict[str, Any] = {"mode": mode, "digest": "sha256:" + "a" * 64}
    if with_ref:
        context["ref"] = {"kind": "s3", "id": "ctx-1"} if ref_ok else {"kind": "s3"}
    if with_inline:
        context["inline"] = {"note": "hi"}
    request["context"] = context
    try:
        validate_request_reference(request)
        expected = True
    except ValidationError:
        expected = False
    try:
        validate_request(request)
        accepted = True
    except RequestInvalid as exc:
        accepted = False
        assert exc.field.startswith("context")
    assert accepted == expected


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 300), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "x", "support.refund", "Refund", "USD", "usd", "service", "robot",
                     "inline", "reference", "digest_only", "enforce", "sha256:" + "a" * 64,
                     "a\x00b", "x" * 300, "decision_request.v0"]),
    st.lists(st.sampled_from(["a", 1, None]), max_size=2),
    st.dictionaries(st.sampled_from(["kind", "id", "x", "tenant_id", "value", "currency"]),
                    st.sampled_from(["s3", "", 1, None]), max_size=3),
)
_PATHS = [
    ("schema_version",), ("request_id",), ("trace",), ("trace", "span_id"), ("tenant",),
    ("tenant", "tenant_id"), ("tenant", "environment"), ("subject",), ("subject", "type"),
    ("subject", "id"), ("subject", "roles"), ("action",), ("action", "type"),
    ("action", "intent"), ("action", "amount"), ("action", "amount", "value"),
    ("action", "amount", "currency"), ("action", "tags"), ("action", "target"),
    ("action", "target", "system"), ("evidence",), ("context",), ("context", "mode"),
    ("context", "digest"), ("context", "ref"), ("context", "inline"), ("policy",),
    ("policy", "mode"), ("hints",), ("hints", "dry_run"), ("extensions",), ("surprise",),
]


@given(st.lists(st.tuples(st.sampled_from(_PATHS), st.booleans(), _VALUES), max_size=3))
def test_request_validator_accepts_exactly_what_the_reference_accepts(
    changes: list[tuple[tuple[str, ...], bool, Any]],
) -> None:
    """The compiled validator (jsonschema-rs) against the reference implementation (jsonschema)
    over requests with fields set to wrong types, bad patterns, or deleted."""
    from jsonschema import ValidationError

    from lumyn.contracts.schemas import validate_request_reference

    request = copy.deepcopy(README_RECORD["request"])
    for path, delete, value in changes:
        node: Any = request
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if delete:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = copy.deepcopy(value)
    try:
        validate_request_reference(request)
        expected = None
    except ValidationError as error:
        expected = error
    try:
        validate_request(request)
        assert expected is None, f"accepted what the reference rejects: {expected}"
    except RequestInvalid as exc:
        assert expected is not None, f"rejected what the reference accepts: {exc}"
        assert exc.reason_code == "INVALID_REQUEST_SCHEMA"
        assert "\n" not in exc.one_line() and exc.field in exc.one_line()


def test_request_errors_name_the_rule_without_echoing_the_value() -> None:
    request = copy.deepcopy(README_RECORD["request"])
    cases = [
        (lambda r: r.pop("action"), "(root)", "(root) must contain 'action'"),
        (lambda r: r.update(surprise=1), "(root)", "(root) must not contain 'surprise'"),
        (lambda r: r["action"]["amount"].update(value="x" * 5000), "action.amount.value",
         "action.amount.value must be number"),
        (lambda r: r["subject"].update(type="robot"), "subject.type",
         'subject.type must be one of "service", "agent", "user", "job"'),
        (lambda r: r["context"].update(mode="reference"), "context", "context must contain 'ref'"),
        (lambda r: r.update(request_id=""), "request_id",
         "request_id must be at least 1 character(s) long"),
    ]
    for change, field, message in cases:
        bad = copy.deepcopy(request)
        change(bad)
        with pytest.raises(RequestInvalid) as info:
            validate_request(bad)
        assert (info.value.field, info.value.message) == (field, message)


class _Text(str):
    """A str subclass: jsonschema-rs does not read it, the reference validator does."""


def test_values_the_compiled_validator_cannot_read_go_to_the_reference() -> None:
    request = copy.deepcopy(README_RECORD["request"])
    request["subject"]["id"] = _Text("agent-7")
    validate_request(request)  # valid: no error
    request["subject"]["type"] = _Text("robot")
    with pytest.raises(RequestInvalid) as info:
        validate_request(request)
    assert info.value.field == "subject.type"
    assert info.value.message.startswith("subject.type must be one of")


def test_a_missing_property_is_named_when_the_reference_validator_reports_it() -> None:
    request = copy.deepcopy(README_RECORD["request"])
    request["subject"]["id"] = _Text("agent-7")  # sends validation to the reference
    del request["action"]
    with pytest.raises(RequestInvalid) as info:
        validate_request(request)
    assert (info.value.field, info.value.message) == ("(root)", "(root) must contain 'action'")
