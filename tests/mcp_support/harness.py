"""Starting `lumyn mcp` as an MCP client would (a subprocess over stdio), and the downstream
server beside it, for the gateway tests and the benchmark."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
DOWNSTREAM = Path(__file__).resolve().parent / "downstream.py"

TOOLS_YML = """\
subject: {type: agent, id: support-bot, tenant_id: acme}
default: deny
tools:
  lookup_order: allow
  refund_order:
    action_type: support.refund
    intent: "Refund order {order_id}"
    amount: {value: $.amount, currency: $.currency}
    evidence:
      order_id: $.order_id
      ticket_id: $.ticket_id
      customer_id: $.customer_id
      customer_age_days: $.customer_age_days
      payment_instrument_risk: low
      chargeback_risk: 0.05
      previous_refund_count_90d: 0
  refund_that_fails: &small_refund
    action_type: support.refund
    amount: {value: $.amount, currency: USD}
    evidence: &small_refund_evidence
      order_id: $.order_id
      ticket_id: T-1
      customer_id: C-1
      customer_age_days: 400
      payment_instrument_risk: low
      chargeback_risk: 0.05
      previous_refund_count_90d: 0
  crash: *small_refund
  hang: *small_refund
"""


def small_refund(**extra: Any) -> dict[str, Any]:
    """Arguments the bundled support policy TRUSTs."""
    return {"order_id": "A-1", "amount": 20, "currency": "USD", "ticket_id": "T-1",
            "customer_id": "C-1", "customer_age_days": 400, **extra}


def env(calls: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "DOWNSTREAM_CALLS": str(calls)}


def downstream_params(calls: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[str(DOWNSTREAM)], env=env(calls))


def gateway_params(workspace: Path, map_path: Path, calls: Path, *options: str,
                   downstream: list[str] | None = None) -> StdioServerParameters:
    command = downstream if downstream is not None else [sys.executable, str(DOWNSTREAM)]
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "lumyn.cli.main", "mcp", "--map", str(map_path), "--workspace",
              str(workspace), *options, *(["--", *command] if command else [])],
        env=env(calls),
    )


@asynccontextmanager
async def connect(params: StdioServerParameters | Any) -> AsyncIterator[Client]:
    async with Client(params, cache=None) as client:
        yield client


def calls_made(calls: Path, tool: str | None = None) -> list[dict[str, Any]]:
    if not calls.exists():
        return []
    found = [json.loads(line) for line in calls.read_text().splitlines() if line.strip()]
    return [c for c in found if tool is None or c["tool"] == tool]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_http(args: list[str], calls: Path, port: int) -> subprocess.Popen[bytes]:
    """Start a process serving MCP over HTTP on `port`; wait until it accepts connections."""
    process = subprocess.Popen(args, env=env(calls), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
