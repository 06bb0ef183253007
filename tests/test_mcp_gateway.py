"""`lumyn mcp` end to end: the mcp client SDK talks to `lumyn mcp` over stdio (a subprocess, as
an MCP client starts it), which starts a real downstream MCP server (tests/mcp_support)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support.harness import (
    DOWNSTREAM,
    TOOLS_YML,
    calls_made,
    connect,
    downstream_params,
    env,
    free_port,
    gateway_params,
    small_refund,
    start_http,
    stop,
)

from lumyn.config import LumynConfig
from lumyn.contracts.canonical import plain_digest
from lumyn.sdk import Lumyn

META = "lumyn/decision_id"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(workspace, map file, downstream call log)."""
    map_path = tmp_path / "tools.yml"
    map_path.write_text(TOOLS_YML)
    return tmp_path / "ws", map_path, tmp_path / "calls.jsonl"


def record(workspace: Path, decision_id: str) -> dict[str, Any]:
    config = LumynConfig(storage_url=f"sqlite:///{workspace / 'lumyn.db'}")
    with Lumyn(config) as lumyn:
        return lumyn.get_decision(decision_id)


def outcomes(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["data"] for e in found.get("decision_event_log", []) if e["type"] == "outcome"]


def dump(result: Any) -> Any:
    """A result as it went over the wire, without the per-response server stamp."""
    data = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    (data.get("_meta") or {}).pop("io.modelcontextprotocol/serverInfo", None)
    if data.get("_meta") == {}:
        del data["_meta"]
    return data


def test_everything_not_gated_passes_through_unchanged(setup: tuple[Path, Path, Path]) -> None:
    workspace, map_path, calls = setup

    async def listing(client: Client) -> list[Any]:
        return [
            await client.list_tools(),
            await client.list_resources(),
            await client.list_resource_templates(),
            await client.read_resource("orders://recent"),
            await client.read_resource("orders://A-7"),
            await client.list_prompts(),
            await client.get_prompt("apology", {"customer": "Ada"}),
            await client.call_tool("lookup_order", {"order_id": "A-1"}),
        ]

    async def main() -> tuple[list[Any], list[Any], Any]:
        async with connect(downstream_params(calls)) as direct:
            expected = await listing(direct)
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            got = await listing(gateway)
            return expected, got, gateway.server_info

    expected, got, info = anyio.run(main)
    assert [dump(r) for r in got] == [dump(r) for r in expected]
    assert info is not None and info.name == "orders-downstream"
    assert [c["tool"] for c in calls_made(calls)] == ["lookup_order", "lookup_order"]
    assert META not in (got[-1].meta or {})  # an allowed tool is not gated: no decision


def test_trusted_call_is_forwarded_and_its_outcome_recorded(setup: tuple[Path, Path, Path]) -> None:
    workspace, map_path, calls = setup
    arguments = small_refund()

    async def main() -> tuple[Any, Any]:
        async with connect(downstream_params(calls)) as direct:
            expected = await direct.call_tool("refund_order", arguments)
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            return expected, await gateway.call_tool("refund_order", arguments)

    expected, result = anyio.run(main)
    decision_id = result.meta[META]
    assert not result.is_error
    assert [c.model_dump() for c in result.content] == [c.model_dump() for c in expected.content]
    assert result.structured_content == expected.structured_content
    assert len(calls_made(calls, "refund_order")) == 2  # the direct call and the forwarded one
    found = record(workspace, decision_id)
    assert found["verdict"] == "TRUST"
    assert found["request"]["action"]["intent"] == "Refund order A-1"
    assert found["request"]["context"]["digest"] == plain_digest(arguments)
    assert found["request"]["evidence"]["customer_age_days"] == 400
    assert outcomes(found) == [{"status": "success", "source": "mcp", "tool": "refund_order"}]


def test_escalate_and_query_are_refused_and_nothing_is_forwarded(
    setup: tuple[Path, Path, Path],
) -> None:
    workspace, map_path, calls = setup
    missing = {"order_id": "A-2", "amount": 20, "currency": "USD"}  # no ticket, no customer

    async def main() -> tuple[Any, Any]:
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            return (await gateway.call_tool("refund_order", small_refund(amount=900)),
                    await gateway.call_tool("refund_order", missing))

    escalated, query = anyio.run(main)
    assert calls_made(calls) == []
    for result, verdict in ((escalated, "ESCALATE"), (query, "QUERY")):
        assert result.is_error
        decision_id = result.meta[META]
        assert result.structured_content["verdict"] == verdict
        assert result.structured_content["decision_id"] == decision_id
        assert decision_id in result.content[0].text
        assert record(workspace, decision_id)["verdict"] == verdict
        assert outcomes(record(workspace, decision_id)) == []
    assert escalated.structured_content["reason_codes"] == ["REFUND_OVER_ESCALATION_LIMIT"]
    assert "A person must approve" in escalated.content[0].text
    # A missing argument is missing evidence: the policy asks for it.
    fields = [q["field"] for q in query.structured_content["queries"]]
    assert fields == ["evidence.ticket_id", "evidence.customer_id"]
    assert "Which support ticket is this for?" in query.content[0].text


def test_unmapped_tools_follow_the_default(setup: tuple[Path, Path, Path]) -> None:
    workspace, map_path, calls = setup
    allow_map = map_path.with_name("allow.yml")
    allow_map.write_text(TOOLS_YML.replace("default: deny", "default: allow"))

    async def main() -> tuple[Any, Any]:
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            denied = await gateway.call_tool("delete_everything", {})
        async with connect(gateway_params(workspace, allow_map, calls)) as gateway:
            allowed = await gateway.call_tool("delete_everything", {})
        return denied, allowed

    denied, allowed = anyio.run(main)
    assert denied.is_error
    assert denied.structured_content == {"verdict": "DENY", "decision_id": None,
                                         "reason_codes": ["TOOL_NOT_ALLOWED"], "queries": []}
    assert not allowed.is_error and allowed.content[0].text == "deleted"
    assert len(calls_made(calls, "delete_everything")) == 1


def test_a_failing_tool_records_a_failure_outcome(setup: tuple[Path, Path, Path]) -> None:
    workspace, map_path, calls = setup

    async def main() -> Any:
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            return await gateway.call_tool("refund_that_fails", {"order_id": "A-3", "amount": 5})

    result = anyio.run(main)
    assert result.is_error
    assert "payment system rejected" in result.content[0].text  # the downstream's own result
    found = record(workspace, result.meta[META])
    assert found["verdict"] == "TRUST"
    assert outcomes(found) == [{"status": "failure", "source": "mcp", "tool": "refund_that_fails",
                                "error": result.content[0].text}]


def test_a_crashing_downstream_is_a_tool_error_and_the_gateway_stays_up(
    setup: tuple[Path, Path, Path],
) -> None:
    workspace, map_path, calls = setup

    async def main() -> tuple[Any, Any, Any]:
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            crashed = await gateway.call_tool("crash", {"order_id": "A-4", "amount": 5})
            # The gateway is still there: it starts the downstream again for the next call.
            after = await gateway.call_tool("lookup_order", {"order_id": "A-5"})
            refused = await gateway.call_tool("refund_order", small_refund(amount=900))
            return crashed, after, refused

    crashed, after, refused = anyio.run(main)
    assert crashed.is_error
    assert "closed the connection" in crashed.content[0].text
    found = record(workspace, crashed.meta[META])
    [outcome] = outcomes(found)
    assert outcome["status"] == "failure" and "closed the connection" in outcome["error"]
    assert after.content[0].text == "order A-5: shipped"
    assert refused.structured_content["verdict"] == "ESCALATE"
    assert [c["tool"] for c in calls_made(calls)] == ["crash", "lookup_order"]


def test_a_hanging_downstream_times_out_and_the_gateway_stays_up(
    setup: tuple[Path, Path, Path],
) -> None:
    workspace, map_path, calls = setup

    async def main() -> tuple[Any, Any]:
        params = gateway_params(workspace, map_path, calls, "--timeout", "3")
        async with connect(params) as gateway:
            with anyio.fail_after(60):
                hung = await gateway.call_tool("hang", {"order_id": "A-6", "amount": 5})
            return hung, await gateway.call_tool("lookup_order", {"order_id": "A-7"})

    hung, after = anyio.run(main)
    assert hung.is_error
    assert "did not answer within 3s" in hung.content[0].text
    [outcome] = outcomes(record(workspace, hung.meta[META]))
    assert outcome["status"] == "failure" and "did not answer within 3s" in outcome["error"]
    assert after.content[0].text == "order A-7: shipped"


BAD_MAPS = [
    ("subject: {type: agent, id: bot}\ndefault: sometimes\n", "tools.yml:2: key default"),
    ("subject: {type: robot, id: bot}\n", "tools.yml:1: key subject.type"),
    ("subject: {type: agent, id: bot}\ntools:\n  refund:\n    action_type: Refund\n",
     "tools.yml:4: key tools.refund.action_type"),
    ("subject: {type: agent, id: bot}\ntools:\n  refund:\n    action_type: support.refund\n"
     "    evidence:\n      order_id: $..id\n", "tools.yml:6: key tools.refund.evidence.order_id"),
    ("subject: {type: agent, id: bot}\ntools:\n  refund:\n    action_type: support.refund\n"
     "    amount: {value: $.amount, currency: dollars}\n",
     "tools.yml:5: key tools.refund.amount.currency"),
    ("subject: {type: agent, id: bot}\ntools:\n  refund:\n    action_type: support.refund\n"
     "    intent: 'Refund {order_id!r}'\n", "tools.yml:5: key tools.refund.intent"),
    ("subject: {type: agent, id: bot}\ntools:\n  refund: maybe\n", "tools.yml:3: key tools.refund"),
    ("subject: {type: agent, id: bot}\ntools: [\n", "tools.yml:3: YAML syntax error"),
    ("", "tools.yml: the map file is empty"),
]


@pytest.mark.parametrize(("text", "located"), BAD_MAPS)
def test_a_bad_map_file_is_one_located_line_and_exit_1(tmp_path: Path, text: str,
                                                       located: str) -> None:
    (tmp_path / "tools.yml").write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "lumyn.cli.main", "mcp", "--map", "tools.yml", "--workspace", "ws",
         "--", sys.executable, str(DOWNSTREAM)],
        cwd=tmp_path, env=env(tmp_path / "calls"), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"INVALID_MAP: {located}"), done.stderr
    assert not (tmp_path / "calls").exists()


def test_a_downstream_that_cannot_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "tools.yml").write_text(TOOLS_YML)
    done = subprocess.run(
        [sys.executable, "-m", "lumyn.cli.main", "mcp", "--map", "tools.yml", "--workspace", "ws",
         "--", sys.executable, "-c", "import sys; sys.exit(2)"],
        cwd=tmp_path, env=env(tmp_path / "calls"), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("DOWNSTREAM_UNAVAILABLE: could not start or reach"), done.stderr


def test_a_streamable_http_downstream_behind_a_gateway_served_over_http(
    setup: tuple[Path, Path, Path],
) -> None:
    """Both HTTP sides: the downstream is reached by --url, and the gateway itself serves
    Streamable HTTP (--listen) behind the same tenant keys as `lumyn serve`."""
    workspace, map_path, calls = setup
    config = map_path.with_name("lumyn.toml")
    config.write_text('[lumyn]\n[lumyn.tenant_keys]\n"key-acme" = "acme"\n"key-other" = "other"\n')
    down_port, gate_port = free_port(), free_port()
    downstream = start_http([sys.executable, str(DOWNSTREAM), "--http", str(down_port)], calls,
                            down_port)
    try:
        gateway = start_http(
            [sys.executable, "-m", "lumyn.cli.main", "mcp", "--map", str(map_path),
             "--workspace", str(workspace), "--config", str(config),
             "--url", f"http://127.0.0.1:{down_port}/mcp", "--listen", f"127.0.0.1:{gate_port}"],
            calls, gate_port)
        try:
            url = f"http://127.0.0.1:{gate_port}/mcp"
            statuses = {key: httpx2.post(url, json={}, headers=headers).status_code
                        for key, headers in (("none", {}),
                                             ("wrong", {"authorization": "Bearer nope"}),
                                             ("other", {"authorization": "Bearer key-other"}))}
            assert statuses == {"none": 401, "wrong": 401, "other": 403}

            async def main() -> tuple[Any, Any, Any]:
                http = httpx2.AsyncClient(headers={"authorization": "Bearer key-acme"})
                async with http, connect(streamable_http_client(url, http_client=http)) as client:
                    tools = await client.list_tools()
                    return (tools, await client.call_tool("refund_order", small_refund()),
                            await client.call_tool("refund_order", small_refund(amount=900)))

            tools, trusted, escalated = anyio.run(main)
        finally:
            stop(gateway)
    finally:
        stop(downstream)
    assert "refund_order" in [t.name for t in tools.tools]
    assert not trusted.is_error and trusted.content[0].text == "refunded 20.0 USD on order A-1"
    found = record(workspace, trusted.meta[META])
    assert found["request"]["tenant"] == {"tenant_id": "acme"}
    assert outcomes(found)[0]["status"] == "success"
    assert escalated.structured_content["verdict"] == "ESCALATE"
    assert len(calls_made(calls, "refund_order")) == 1


def test_gated_results_validate_as_mcp_tool_results(setup: tuple[Path, Path, Path]) -> None:
    """A refusal is a well-formed CallToolResult on the wire (isError, structuredContent, _meta)."""
    workspace, map_path, calls = setup

    async def main() -> Any:
        async with connect(gateway_params(workspace, map_path, calls)) as gateway:
            return await gateway.session.send_request(
                types.CallToolRequest(params=types.CallToolRequestParams(
                    name="refund_order", arguments=small_refund(amount=900))),
                types.CallToolResult)

    wire = anyio.run(main).model_dump(by_alias=True, mode="json", exclude_none=True)
    assert wire["isError"] is True
    assert set(wire["structuredContent"]) == {"verdict", "decision_id", "reason_codes", "queries"}
    assert wire["_meta"][META] == wire["structuredContent"]["decision_id"]

