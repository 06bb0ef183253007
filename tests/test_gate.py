"""`gate` in front of Python tool functions and blocks, with the same behaviour on a `Lumyn`
object (SQLite and PostgreSQL) and on a real `lumyn serve` through `lumyn.client.Client`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_service_http import start_server

import lumyn
from lumyn.client import Client
from lumyn.config import LumynConfig
from lumyn.contracts.canonical import plain_digest
from lumyn.integrations import Blocked, Escalated, NeedsEvidence, NotTrusted, gate
from lumyn.integrations.decisions import Decider
from lumyn.sdk import Lumyn

SECRET = "gate-secret"
RISK_LOW = {"payment_instrument_risk": "low", "chargeback_risk": 0.05,
            "previous_refund_count_90d": 0, "customer_age_days": 400}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `lumyn serve` with v1 signing and tenant keys."""
    root = tmp_path_factory.mktemp("serve")
    config = root / "lumyn.toml"
    config.write_text('[lumyn]\nsigning_scheme = "v1"\n'
                      '[lumyn.tenant_keys]\n"key-acme" = "acme"\n')
    process, base = start_server(root / ".lumyn", {"LUMYN_SIGNING_SECRET": SECRET,
                                                   "LUMYN_CONFIG_PATH": str(config)})
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "postgres", "http"])
def decider(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Decider]:
    if request.param == "http":
        with Client(request.getfixturevalue("service"), signing_secret=SECRET,
                    signing_scheme="v1", tenant_key="key-acme") as client:
            yield client
        return
    url = (request.getfixturevalue("pg_url") if request.param == "postgres"
           else f"sqlite:///{tmp_path / 'lumyn.db'}")
    with Lumyn(LumynConfig(storage_url=url)) as gateway:
        yield gateway


def refund_gate(decider: Decider, **options: Any) -> Any:
    return gate(
        action_type="support.refund", gateway=decider,
        subject={"type": "agent", "id": "support-bot", "tenant_id": "acme"},
        intent="Refund order {order_id}",
        amount={"value": "$.amount", "currency": "USD"},
        evidence={"order_id": "$.order_id", "ticket_id": "$.ticket.id",
                  "customer_id": lambda args: args["customer"], **RISK_LOW},
        **options,
    )


def outcomes(decider: Decider, decision_id: str) -> list[dict[str, Any]]:
    record = decider.get_decision(decision_id)  # type: ignore[attr-defined]
    return [e["data"] for e in record.get("decision_event_log", []) if e["type"] == "outcome"]


def test_a_trusted_call_runs_and_its_outcome_is_recorded(decider: Decider) -> None:
    ran: list[str] = []

    @refund_gate(decider)
    def refund(order_id: str, amount: float, customer: str, ticket: dict[str, str]) -> str:
        ran.append(order_id)
        return f"refunded {amount}"

    assert refund("A-1", 20, "C-1", ticket={"id": "T-1"}) == "refunded 20"
    assert ran == ["A-1"]
    assert refund.__name__ == "refund"  # a well-behaved decorator


def test_the_request_is_mapped_from_the_arguments(decider: Decider) -> None:
    arguments = {"order_id": "A-2", "amount": 10, "customer": "C-2", "ticket": {"id": "T-2"}}
    record = refund_gate(decider).admit(arguments, "refund")
    request = record["request"]
    assert record["verdict"] == "TRUST"
    assert request["action"] == {"type": "support.refund", "intent": "Refund order A-2",
                                 "amount": {"value": 10, "currency": "USD"}}
    assert request["evidence"] == {"order_id": "A-2", "ticket_id": "T-2", "customer_id": "C-2",
                                   **RISK_LOW}
    assert request["subject"] == {"type": "agent", "id": "support-bot", "tenant_id": "acme"}
    assert request["context"] == {"mode": "digest_only", "digest": plain_digest(arguments)}


def test_an_exception_is_recorded_as_a_failure_and_raised(decider: Decider) -> None:
    decisions: list[str] = []
    guard = refund_gate(decider)
    original = guard.admit

    def admit(arguments: Any, name: str | None = None) -> dict[str, Any]:
        record = original(arguments, name)
        decisions.append(record["decision_id"])
        return record

    guard.admit = admit  # type: ignore[method-assign]  # observe the decision id

    @guard
    def refund(order_id: str, amount: float, customer: str, ticket: dict[str, str]) -> str:
        raise RuntimeError("payment provider down")

    with pytest.raises(RuntimeError, match="payment provider down"):
        refund("A-4", 10, "C-4", {"id": "T-4"})
    [decision_id] = decisions
    [outcome] = outcomes(decider, decision_id)
    assert outcome["status"] == "failure"
    assert outcome["error"] == "RuntimeError: payment provider down"
    assert outcome["source"] == "gate" and outcome["name"].endswith("refund")


def test_not_trusted_verdicts_raise_typed_errors_and_never_run(decider: Decider) -> None:
    ran: list[str] = []

    @refund_gate(decider)
    def refund(order_id: str, amount: float, customer: str | None,
               ticket: dict[str, str]) -> str:
        ran.append(order_id)
        return "refunded"

    with pytest.raises(Escalated) as escalated:
        refund("A-5", 900, "C-5", {"id": "T-5"})
    with pytest.raises(NeedsEvidence) as query:
        refund("A-6", 10, None, {})  # no customer, no ticket id: missing evidence
    blocked_gate = gate(action_type="support.refund", gateway=decider,
                        subject={"type": "agent", "id": "bot", "tenant_id": "acme"},
                        amount={"value": "$.amount", "currency": "USD"},
                        evidence={"order_id": "$.order_id", "ticket_id": "T", "customer_id": "C",
                                  "payment_instrument_risk": "high"})

    @blocked_gate
    def risky(order_id: str, amount: float) -> None:
        ran.append(order_id)

    with pytest.raises(Blocked) as blocked:
        risky("A-7", 5)
    assert ran == []
    for caught, verdict in ((escalated, "ESCALATE"), (query, "QUERY"), (blocked, "ABSTAIN")):
        error = caught.value
        assert isinstance(error, NotTrusted)
        assert error.verdict == verdict == error.record["verdict"]
        assert error.decision_id in str(error)
        assert outcomes(decider, error.decision_id) == []
    assert escalated.value.reason_codes == ["REFUND_OVER_ESCALATION_LIMIT"]
    assert [q["field"] for q in query.value.queries] == ["evidence.ticket_id", "evidence.customer_id"]
    assert blocked.value.reason_codes == ["PAYMENT_INSTRUMENT_HIGH_RISK"]


def test_async_functions_are_gated_the_same_way(decider: Decider) -> None:
    @refund_gate(decider)
    async def refund(order_id: str, amount: float, customer: str, ticket: dict[str, str]) -> str:
        await asyncio.sleep(0)
        return f"refunded {order_id}"

    async def main() -> tuple[str, Escalated]:
        done = await refund("A-8", 10, "C-8", {"id": "T-8"})
        try:
            await refund("A-9", 900, "C-9", {"id": "T-9"})
        except Escalated as exc:
            return done, exc
        raise AssertionError("an ESCALATE must raise")

    done, escalated = asyncio.run(main())
    assert done == "refunded A-8"
    assert escalated.record["request"]["action"]["amount"]["value"] == 900


def test_the_context_manager_gates_a_block(decider: Decider) -> None:
    arguments = {"order_id": "B-1", "amount": 10, "customer": "C-1", "ticket": {"id": "T-1"}}
    with refund_gate(decider, arguments=arguments) as record:
        assert record["verdict"] == "TRUST"
    assert outcomes(decider, record["decision_id"])[0]["status"] == "success"

    with pytest.raises(ValueError, match="half done"), \
            refund_gate(decider, arguments=arguments) as failing:
        raise ValueError("half done")
    assert outcomes(decider, failing["decision_id"])[0]["error"] == "ValueError: half done"

    ran = []
    with pytest.raises(Escalated), refund_gate(decider, arguments={**arguments, "amount": 900}):
        ran.append("body")
    assert ran == []

    async def main() -> dict[str, Any]:
        async with refund_gate(decider, arguments=arguments) as entered:
            await asyncio.sleep(0)
        return entered

    entered = asyncio.run(main())
    assert outcomes(decider, entered["decision_id"]) == [
        {"status": "success", "source": "gate", "name": "support.refund"}]


def test_wait_without_a_resolution_raises_escalated(decider: Decider) -> None:
    """wait= on an ESCALATE that nobody resolves in time: Escalated, the code never ran."""
    ran: list[str] = []

    @refund_gate(decider, wait=0.3, poll_interval=0.05)
    def refund(order_id: str, amount: float, customer: str, ticket: dict[str, str]) -> None:
        ran.append(order_id)

    with pytest.raises(Escalated) as caught:
        refund("W-1", 900, "C-1", {"id": "T-1"})
    assert ran == []
    assert caught.value.resolution is None or caught.value.resolution["status"] == "pending"


def test_lumyn_gate_is_the_package_level_name() -> None:
    assert lumyn.gate is gate
    assert lumyn.NotTrusted is NotTrusted
