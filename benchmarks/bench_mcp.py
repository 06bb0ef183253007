"""The MCP gateway's added latency per gated call.

    python benchmarks/bench_mcp.py [--calls 200] [--rounds 5]

One run, one MCP client SDK, one tool (`refund_order`, a small refund the bundled policy
TRUSTs), three loops interleaved round by round so drift hits all alike:
- direct: the client calls the downstream MCP server (a stdio subprocess) straight;
- gateway: the client calls `lumyn mcp` (a stdio subprocess, SQLite workspace), which decides,
  forwards to its own downstream and appends the outcome event;
- decide: one `Lumyn.decide()` of the same request in this process (SQLite, durable).
Target (issue 18): median(gateway) - median(direct) <= median(decide) + 2 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from lumyn.config import LumynConfig
from lumyn.contracts.ids import new_id
from lumyn.integrations.mapfile import ToolRule, parse_map
from lumyn.sdk import Lumyn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the tests' downstream server and tool map

from mcp_support.harness import DOWNSTREAM, TOOLS_YML, small_refund  # noqa: E402

TOOL = "refund_order"
ARGUMENTS = small_refund()


async def time_calls(client: Client, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        result = await client.call_tool(TOOL, ARGUMENTS)
        samples.append(time.perf_counter() - start)
        assert not result.is_error, result
    return samples


def time_decides(lumyn: Lumyn, rule: ToolRule, subject: dict[str, Any], calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        request = rule.request(TOOL, ARGUMENTS, subject, request_id=f"mcp:{TOOL}:{new_id()}",
                               extensions={"mcp": {"tool": TOOL}})
        start = time.perf_counter()
        record = lumyn.decide(request)
        samples.append(time.perf_counter() - start)
        assert record["verdict"] == "TRUST", record["reason_codes"]
    return samples


async def run(calls: int, rounds: int, work: Path) -> None:
    map_path = work / "tools.yml"
    map_path.write_text(TOOLS_YML)
    tool_map = parse_map(TOOLS_YML)
    rule = tool_map.rule_for(TOOL)
    assert isinstance(rule, ToolRule)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("DOWNSTREAM_CALLS", None)
    direct = StdioServerParameters(command=sys.executable, args=[str(DOWNSTREAM)], env=env)
    gateway = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumyn.cli.main", "mcp", "--map", str(map_path), "--workspace",
              str(work / "gateway"), "--", sys.executable, str(DOWNSTREAM)], env=env)
    results: dict[str, list[float]] = {"direct": [], "gateway": [], "decide": []}
    config = LumynConfig(storage_url=f"sqlite:///{work / 'decide.db'}")
    with Lumyn(config) as lumyn:
        async with Client(direct, cache=None) as straight, Client(gateway, cache=None) as gated:
            await time_calls(straight, 20)  # warm-up: imports, first writes, page cache
            await time_calls(gated, 20)
            time_decides(lumyn, rule, tool_map.subject, 20)
            for number in range(1, rounds + 1):
                results["direct"] += await time_calls(straight, calls)
                results["gateway"] += await time_calls(gated, calls)
                results["decide"] += time_decides(lumyn, rule, tool_map.subject, calls)
                print(f"round {number}/{rounds} done", file=sys.stderr)
    medians = {name: statistics.median(samples) * 1e3 for name, samples in results.items()}
    added = medians["gateway"] - medians["direct"]
    print(f"calls per loop: {calls} x {rounds} rounds")
    for name in ("direct", "gateway", "decide"):
        print(f"{name:8s} median {medians[name]:7.3f} ms")
    print(f"added by the gateway: {added:.3f} ms = decide() + {added - medians['decide']:.3f} ms "
          f"(target: <= decide() + 2 ms: {'met' if added <= medians['decide'] + 2 else 'NOT met'})")
    print(f"ratio gateway / direct: {medians['gateway'] / medians['direct']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lumyn-bench-mcp-") as work:
        anyio.run(run, args.calls, args.rounds, Path(work))


if __name__ == "__main__":
    main()
