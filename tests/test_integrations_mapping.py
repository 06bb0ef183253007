"""From a tool call's arguments to a DecisionRequest, and the map file's checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lumyn.contracts.canonical import plain_digest
from lumyn.engine.normalize import normalize_request
from lumyn.integrations.mapfile import MapError, load_map, parse_map
from lumyn.integrations.mapping import MISSING, ToolRule, read_path, render_intent

SUBJECT = {"type": "agent", "id": "bot", "tenant_id": "acme"}
RULE = ToolRule(
    action_type="support.refund",
    intent="Refund {order_id} for {customer.name}",
    amount={"value": "$.amount", "currency": "$.currency"},
    evidence={"order_id": "$.order_id", "age": "$.customer.age_days", "first_item": "$.items.0",
              "risk": "low", "flag": False},
    request_id="$.key",
    target={"system": "shop", "resource_id": "$.order_id"},
)


def test_paths_read_nested_arguments_and_missing_is_missing() -> None:
    arguments = {"a": {"b": [10, {"c": None}]}}
    assert read_path(arguments, "$.a.b.0") == 10
    assert read_path(arguments, "$.a.b.1.c") is None  # present, null
    assert read_path(arguments, "$.a.x") is MISSING
    assert read_path(arguments, "$.a.b.7") is MISSING
    assert read_path(arguments, "$.a.b.0.deeper") is MISSING


def test_a_full_call_becomes_a_valid_request() -> None:
    arguments = {"order_id": "A-1", "amount": 12.5, "currency": "EUR", "key": "idem-1",
                 "customer": {"name": "Ada", "age_days": 30}, "items": ["sku-1"]}
    request = RULE.request("refund_order", arguments, SUBJECT, tenant_id="acme")
    assert request["action"] == {
        "type": "support.refund", "intent": "Refund A-1 for Ada",
        "amount": {"value": 12.5, "currency": "EUR"},
        "target": {"system": "shop", "resource_id": "A-1"},
    }
    assert request["evidence"] == {"order_id": "A-1", "age": 30, "first_item": "sku-1",
                                   "risk": "low", "flag": False}
    assert request["request_id"] == "idem-1"
    assert request["tenant"] == {"tenant_id": "acme"}
    assert request["context"] == {"mode": "digest_only", "digest": plain_digest(arguments)}
    normalize_request(request)  # valid against decision_request.v0


@pytest.mark.parametrize("arguments", [
    {},
    {"amount": "twelve", "currency": "USD"},
    {"amount": True, "currency": "USD"},
    {"amount": 12, "currency": "usd"},
    {"amount": 12},
])
def test_missing_or_malformed_arguments_are_left_out_never_a_crash(arguments: dict[str, object],
                                                                   ) -> None:
    request = RULE.request("refund_order", arguments, SUBJECT, request_id="derived-1")
    assert "amount" not in request["action"]
    assert "order_id" not in request["evidence"] and request["evidence"]["risk"] == "low"
    assert request["action"]["intent"] == "Refund (missing) for (missing)"
    assert request["request_id"] == "derived-1"
    normalize_request(request)


def test_callables_and_non_json_arguments() -> None:
    rule = ToolRule(action_type="support.refund", intent=lambda a: f"refund {a['order']}",
                    evidence=lambda a: {"order_id": a["order"], "conn": MISSING})
    arguments = {"order": "A-9", "db": object()}
    request = rule.request("fn", arguments, SUBJECT)
    assert request["action"]["intent"] == "refund A-9"
    assert request["evidence"] == {"order_id": "A-9"}
    # A non-JSON argument counts by its type name, so the digest is stable across calls.
    again = rule.request("fn", {"order": "A-9", "db": object()}, SUBJECT)
    assert request["context"]["digest"] == again["context"]["digest"]
    assert render_intent("no placeholders", {}) == "no placeholders"


def test_the_map_file_defaults_and_rules(tmp_path: Path) -> None:
    path = tmp_path / "tools.yml"
    path.write_text("subject: {type: agent, id: bot}\ntools:\n  a: allow\n  b: deny\n"
                    "  c: {action_type: support.refund}\n")
    tool_map = load_map(path)
    assert tool_map.default == "deny"
    assert tool_map.rule_for("a") == "allow" and tool_map.rule_for("b") == "deny"
    assert tool_map.rule_for("zzz") == "deny"
    assert isinstance(tool_map.rule_for("c"), ToolRule)


def test_every_problem_is_collected_and_located() -> None:
    text = ("subject: {type: agent, id: bot, colour: red}\n"
            "tools:\n"
            "  refund:\n"
            "    action_type: support.refund\n"
            "    request_id: literal-id\n"
            "    frobnicate: 1\n")
    with pytest.raises(MapError) as caught:
        parse_map(text, "m.yml")
    assert caught.value.problems == [
        "m.yml:1: key subject.colour: unknown key 'colour' (allowed: id, ip, roles, tenant_id, "
        "type, user_agent)",
        "m.yml:6: key tools.refund.frobnicate: unknown key 'frobnicate' (allowed: action_type, "
        "amount, evidence, intent, request_id, target)",
        "m.yml:5: key tools.refund.request_id: must be a $.path into the arguments",
    ]
    assert caught.value.one_line().startswith("INVALID_MAP: m.yml:1: key subject.colour")


def test_an_unreadable_map_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(MapError, match="map file not found"):
        load_map(tmp_path / "nope.yml")
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe")
    with pytest.raises(MapError, match="cannot read"):
        load_map(tmp_path / "bin.yml")
