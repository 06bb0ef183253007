"""docs/agents.md, tested as written: the MCP client configuration (run as a client would run
it, with the doc's tools.yml) and the gate example (run as a script)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from mcp import StdioServerParameters
from mcp_support.harness import DOWNSTREAM, SRC, connect, small_refund

from lumyn.integrations.mapfile import parse_map

DOC = Path(__file__).resolve().parent.parent / "docs" / "agents.md"


def block(name: str) -> str:
    """The fenced code block that follows `<!-- agents-doc: NAME -->`."""
    found = re.search(rf"<!-- agents-doc: {name} -->\n```\w+\n(.*?)\n```", DOC.read_text(), re.S)
    assert found, f"docs/agents.md has no block {name}"
    return found.group(1)


def doc_env(tmp_path: Path) -> dict[str, str]:
    """A client's environment: `lumyn` and `python` on PATH (this interpreter's)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(SRC), "DOWNSTREAM_CALLS": str(tmp_path / "calls.jsonl")}


def test_the_client_configuration_works_as_written(tmp_path: Path) -> None:
    assert shutil.which("lumyn", path=doc_env(tmp_path)["PATH"]), "the lumyn script is installed"
    server = json.loads(block("client-config"))["mcpServers"]["orders"]
    (tmp_path / "tools.yml").write_text(block("tools-yml"))
    shutil.copy(DOWNSTREAM, tmp_path / "orders_server.py")
    params = StdioServerParameters(command=server["command"], args=server["args"],
                                   cwd=str(tmp_path), env=doc_env(tmp_path))

    async def main() -> tuple[Any, Any, Any]:
        async with connect(params) as client:
            return (await client.call_tool("lookup_order", {"order_id": "A-1"}),
                    await client.call_tool("refund_order", small_refund()),
                    await client.call_tool("refund_order", small_refund(amount=900)))

    looked_up, trusted, escalated = anyio.run(main)
    assert looked_up.content[0].text == "order A-1: shipped"
    assert not trusted.is_error and "lumyn/decision_id" in trusted.meta
    assert escalated.is_error and escalated.structured_content["verdict"] == "ESCALATE"
    assert (tmp_path / ".lumyn" / "lumyn.db").is_file()  # the default workspace, beside tools.yml


def test_the_documented_map_is_valid() -> None:
    tool_map = parse_map(block("tools-yml"))
    assert tool_map.default == "deny" and tool_map.rule_for("lookup_order") == "allow"


def test_the_gate_example_runs_as_written(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", block("gate-example")], cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
        env={**doc_env(tmp_path), "LUMYN_STORAGE_URL": f"sqlite:///{tmp_path / 'lumyn.db'}"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "refunded 20 on A-1"
    assert lines[1].startswith("escalated ['REFUND_OVER_ESCALATION_LIMIT'] ")
    assert lines[2] == "needs ['evidence.ticket_id']"
    assert lines[3] == "updating the ticket under TRUST"
