"""The real service over real HTTP: `lumyn serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import copy
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _builders import SUPPORT_REFUND

from lumyn.service.auth import v1_signature

SRC = Path(__file__).resolve().parent.parent / "src"
SECRET = "e2e-secret"
REQUEST: dict[str, Any] = SUPPORT_REFUND


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workspace: Path, env: dict[str, str],
                 preexec_fn: Callable[[], None] | None = None,
                 ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(SRC), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "lumyn.cli.main", "serve", "--workspace", str(workspace),
         "--host", "127.0.0.1", "--port", str(port)],
        env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec_fn,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "exited")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    process, base = start_server(tmp_path / ".lumyn", {
        "LUMYN_SIGNING_SECRET": SECRET, "LUMYN_SIGNING_SCHEME": "v1"})
    yield base
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def call(client: httpx.Client, method: str, path: str, body: Any = None) -> httpx.Response:
    raw = b"" if body is None else orjson.dumps(body)
    stamp = str(int(time.time()))
    headers = {"x-lumyn-timestamp": stamp,
               "x-lumyn-signature": v1_signature(SECRET, stamp, method, path, raw)}
    if body is not None:
        headers["content-type"] = "application/json"
    return client.request(method, path, content=raw, headers=headers)


def test_signed_decide_read_label_compounding_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        first = call(client, "POST", "/v0/decide", REQUEST)
        assert first.status_code == 200, first.text
        decision = first.json()["decision_id"]
        assert first.json()["verdict"] == "TRUST"
        assert call(client, "GET", f"/v0/decisions/{decision}").json() == first.json()
        labeled = call(client, "POST", f"/v0/decisions/{decision}/events",
                       {"type": "label", "data": {"label": "failure", "summary": "chargeback"}})
        assert labeled.status_code == 201
        similar = copy.deepcopy(REQUEST)
        similar["evidence"].update(ticket_id="ZD-2", order_id="2")
        second = call(client, "POST", "/v0/decide", similar).json()
        assert second["verdict"] == "ESCALATE"
        unsigned = client.get(f"/v0/decisions/{decision}")
        assert unsigned.status_code == 401


def test_concurrent_decides_are_all_durable(server: str, tmp_path: Path) -> None:
    def one(i: int) -> dict[str, Any]:
        body = copy.deepcopy(REQUEST)
        body["request_id"] = f"c-{i}"
        body["evidence"]["ticket_id"] = f"ZD-{i}"
        with httpx.Client(base_url=server, timeout=30) as client:
            response = call(client, "POST", "/v0/decide", body)
            assert response.status_code == 200, response.text
            return dict(response.json())

    with ThreadPoolExecutor(max_workers=32) as pool:
        records = list(pool.map(one, range(64)))
    import sqlite3

    db = sqlite3.connect(tmp_path / ".lumyn" / "lumyn.db")
    stored = {row[0] for row in db.execute("SELECT decision_id FROM decisions")}
    db.close()
    assert {r["decision_id"] for r in records} <= stored
    assert len(records) == 64
