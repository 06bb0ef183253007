"""The service exports decision packs, signed with its configured key, over real loopback HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _builders import support_refund
from fastapi.testclient import TestClient

from lumyn import LumynConfig
from lumyn.errors import LumynError
from lumyn.integrity.keys import generate, load_public_keys
from lumyn.packs import replay_pack
from lumyn.service import create_app

SRC = Path(__file__).resolve().parent.parent / "src"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    _, private, public = generate(tmp_path / "keys")
    return private, public


def serve(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """`lumyn serve` on a free loopback port, with LUMYN_* settings from `env`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    full = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    full["PYTHONPATH"] = os.pathsep.join([str(SRC), full.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, "-m", "lumyn.cli.main", "serve", "--port",
                             str(port), "--workspace", str(tmp_path / "ws")],
                            env={**full, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            fetch(port, "/healthz")
            return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("lumyn serve did not start")


def fetch(port: int, path: str, body: Any = None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_served_pack_is_signed_with_the_configured_key(tmp_path: Path,
                                                         keys: tuple[Path, Path]) -> None:
    private, public = keys
    proc, port = serve(tmp_path, {"LUMYN_STORAGE_URL": f"sqlite:///{tmp_path / 'lumyn.db'}",
                                  "LUMYN_PACK_SIGNING_KEY": str(private)})
    try:
        status, body = fetch(port, "/v0/decide", support_refund())
        assert status == 200
        decision_id = json.loads(body)["decision_id"]
        status, pack = fetch(port, f"/v0/decisions/{decision_id}/pack")
        assert status == 200
        report = replay_pack(pack, trusted_keys=load_public_keys(public))
        assert report.ok, report.failures()
        assert {c.name for c in report.checks} >= {"signature", "chain"}
        status, missing = fetch(port, "/v0/decisions/01ZZZZZZZZZZZZZZZZZZZZZZZZ/pack")
        assert status == 404
        assert json.loads(missing)["error"]["reason_code"] == "DECISION_NOT_FOUND"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def unsigned(tmp_path: Path) -> Iterator[TestClient]:
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"), tenant_keys={"k-acme": "acme"})
    with TestClient(create_app(config)) as client:
        yield client


def test_without_a_key_packs_are_unsigned_and_scoped_to_the_tenant(
    unsigned: TestClient, keys: tuple[Path, Path]
) -> None:
    acme = {"Authorization": "Bearer k-acme"}
    record = unsigned.post("/v0/decide", json=support_refund(), headers=acme).json()
    response = unsigned.get(f"/v0/decisions/{record['decision_id']}/pack", headers=acme)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert replay_pack(response.content).ok
    report = replay_pack(response.content, trusted_keys=load_public_keys(keys[1]))
    assert not report.ok and "not signed" in report.failures()[0]
    other = unsigned.get(f"/v0/decisions/{record['decision_id']}/pack")
    assert other.status_code == 401


def test_a_bad_signing_key_stops_the_service_at_start(tmp_path: Path) -> None:
    (tmp_path / "bad.key").write_text("not a key\n")
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"),
                         pack_signing_key=str(tmp_path / "bad.key"))
    with pytest.raises(LumynError) as caught:
        create_app(config)
    assert caught.value.reason_code == "KEY_INVALID"
