"""Shared helpers for the reliability tests: requests, servers, database checks."""

from __future__ import annotations

import copy
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _builders import SUPPORT_REFUND

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

BASE: dict[str, Any] = SUPPORT_REFUND


def refund(i: int, request_id: str | None = None) -> dict[str, Any]:
    request = copy.deepcopy(BASE)
    request["evidence"]["ticket_id"] = f"ZD-{i}"
    request["evidence"]["order_id"] = str(i)
    if request_id is not None:
        request["request_id"] = request_id
    return request


def env_with_src(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(workspace: Path, port: int | None = None,
                  **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "lumyn.cli.main", "serve", "--workspace", str(workspace),
         "--host", "127.0.0.1", "--port", str(port)],
        env=env_with_src(**env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"lumyn serve exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("lumyn serve did not become healthy")


def stored_records(db: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(db)
    try:
        return {row[0]: bytes(row[1]) for row in conn.execute("SELECT decision_id, record FROM decisions")}
    finally:
        conn.close()


def integrity_ok(db: Path) -> bool:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")] == ["ok"]
    finally:
        conn.close()
