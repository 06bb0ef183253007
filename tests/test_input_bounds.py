"""Hostile input sizes and shapes (issue 14, items 2, 3, 13 and duplicate keys): duplicate JSON
keys refused, key counts bounded, endless files and zip bombs stopped, deep nesting refused
with one line, memory items and labels per decision capped."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from _builders import support_refund
from fastapi.testclient import TestClient
from test_cli_kit import SRC, assert_one_line_error, clean_env, cli, write_request

from lumyn import Lumyn, LumynConfig
from lumyn.engine.assess import request_features
from lumyn.errors import InvalidEvent
from lumyn.memory.features import MAX_OPEN_FEATURES
from lumyn.packs import PackError, read_pack
from lumyn.safe_json import MAX_KEYS
from lumyn.sdk import MAX_LABELS
from lumyn.service import create_app


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def _post(client: TestClient, path: str, raw: bytes) -> Any:
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def test_duplicate_keys_are_a_400_naming_the_key(tmp_path: Path) -> None:
    body = orjson.dumps(support_refund()).replace(
        b'"amount":{', b'"amount":{"value":5000,', 1)  # "value" now appears twice
    assert body.count(b'"value"') >= 2
    with TestClient(create_app(LumynConfig(store_path=str(tmp_path / "l.db")))) as client:
        refused = _post(client, "/v0/decide", body)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["reason_code"] == "DUPLICATE_KEY" and "'value'" in error["message"]
        decision = client.post("/v0/decide", json=support_refund()).json()["decision_id"]
        event = _post(client, f"/v0/decisions/{decision}/events",
                      b'{"type": "note", "type": "label", "data": {}}')
        assert (event.status_code, event.json()["error"]["reason_code"]) == (400, "DUPLICATE_KEY")
        # a key that merely looks repeated inside a string value is fine
        quoted = support_refund(note='"value": 1, "value": 2')
        assert client.post("/v0/decide", json=quoted).status_code == 200


def test_request_size_is_bounded_in_keys_as_well_as_bytes(tmp_path: Path) -> None:
    request = support_refund()
    request["evidence"].update({f"k{n}": "v" for n in range(55_000)})  # ≈ 0.8 MB, under 1 MiB
    body = orjson.dumps(request)
    assert len(body) < 1024 * 1024
    with TestClient(create_app(LumynConfig(store_path=str(tmp_path / "l.db")))) as client:
        refused = _post(client, "/v0/decide", body)
    assert refused.status_code == 400
    assert refused.json()["error"]["reason_code"] == "TOO_MANY_KEYS"
    assert str(MAX_KEYS) in refused.json()["error"]["message"]


def test_memory_items_keep_a_bounded_number_of_features() -> None:
    request = support_refund()
    request["evidence"].update({f"k{n:05d}": "v" for n in range(5_000)})
    tokens = request_features(request)
    assert len([t for t in tokens if t.startswith(("ev:", "tag:"))]) == MAX_OPEN_FEATURES
    assert tokens == request_features(request)  # the cut is deterministic
    assert any(t.startswith("action:") for t in tokens)


def test_labels_per_decision_are_capped(tmp_path: Path) -> None:
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"))) as lumyn:
        decision = lumyn.decide(support_refund())["decision_id"]
        for _ in range(MAX_LABELS):
            lumyn.label(decision, "failure")
        with pytest.raises(InvalidEvent) as info:
            lumyn.label(decision, "failure")
        assert info.value.field == "label"
        assert len(lumyn.store.memory_items_since("acme", "support.refund", 0)) == MAX_LABELS


def test_deeply_nested_input_is_one_line_exit_1(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    result = cli("decide", "--in", str(deep))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "nests too deeply")


def test_duplicate_keys_in_a_cli_request_are_refused(tmp_path: Path) -> None:
    path = write_request(tmp_path / "r.json", support_refund())
    text = Path(path).read_text().replace('"evidence": {', '"evidence": {"order_id": "x", ', 1)
    Path(path).write_text(text)
    result = cli("decide", "--in", path)
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "DUPLICATE_KEY", "order_id")


@pytest.mark.parametrize("args", [("decide", "--in", "/dev/zero"), ("replay", "/dev/zero")])
def test_endless_inputs_stop_at_the_size_cap(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    env["PYTHONPATH"] = str(SRC)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lumyn.cli.main", *args], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "larger than" in result.stderr
    assert time.monotonic() - started < 30


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_bombs_are_refused_without_reading_them() -> None:
    many = _zip({f"m{n}.bin": b"\0" * 1024 for n in range(300)})
    with pytest.raises(PackError, match="members"):
        read_pack(many)
    # few members, each just under the member cap, together over the pack cap
    big = _zip({name: b"\0" * (16 * 1024 * 1024 - 1)
                for name in ("decision_record.json", "request.json", "policy.yml",
                             "memory.json", "manifest.json")})
    with pytest.raises(PackError, match="unpacks to more than"):
        read_pack(big)
    # an unknown member is named, never read
    files, problems = read_pack(_zip({"evil.bin": b"\0" * 1024}))
    assert files == {} and any("evil.bin" in p for p in problems)


def test_deeply_nested_pack_json_fails_replay_with_exit_1(tmp_path: Path) -> None:
    pack = tmp_path / "deep.zip"
    pack.write_bytes(_zip({"manifest.json": b"[" * 100_000, "decision_record.json": b"[" * 100_000}))
    result = cli("replay", str(pack))
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
