"""`lumyn serve` seen from outside: /metrics, one JSON log line per request, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _builders import support_refund
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes
from lumyn.service import create_app
from lumyn.service.observe import stored_identity

SRC = Path(__file__).resolve().parent.parent / "src"
SECRET_PASSWORD = "hunter2-very-secret"
SECRET_KEY = "sk_live_0123456789abcdef"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"))
    with TestClient(create_app(config)) as http:
        yield http


def test_metrics_count_verdicts_requests_and_latency(client: TestClient) -> None:
    for evidence in ({}, {}, {"payment_instrument_risk": "high"}):
        assert client.post("/v0/decide", json=support_refund(**evidence)).status_code == 200
    odd = support_refund()
    odd["action"]["type"] = "made.up_by_a_caller"
    client.post("/v0/decide", json=odd)
    client.get("/v0/decisions/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    seen = samples(response.text)
    assert seen[("lumyn_decisions_total", (("action_type", "support.refund"),
                                           ("verdict", "TRUST")))] == 2
    assert seen[("lumyn_decisions_total", (("action_type", "support.refund"),
                                           ("verdict", "ABSTAIN")))] == 1
    # an action type the policy never names is not a label value of its own
    assert seen[("lumyn_decisions_total", (("action_type", "(other)"),
                                           ("verdict", "ESCALATE")))] == 1
    assert seen[("lumyn_requests_total", (("route", "/v0/decide"), ("status", "200")))] == 4
    assert seen[("lumyn_requests_total", (("route", "/v0/decisions/{decision_id}"),
                                          ("status", "404")))] == 1
    assert seen[("lumyn_requests_total", (("route", "(unmatched)"), ("status", "404")))] == 1
    assert seen[("lumyn_decide_seconds_count", ())] == 4
    assert seen[("lumyn_batch_size_count", ())] >= 1
    assert seen[("lumyn_batch_size_sum", ())] == 4
    assert seen[("lumyn_storage_errors_total", ())] == 0
    assert any(name.startswith("process_") for name, _ in seen)


def test_metrics_key_guards_the_endpoint(tmp_path: Path) -> None:
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"), metrics_key="scrape-me")
    with TestClient(create_app(config)) as http:
        refused = http.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["reason_code"] == "UNAUTHORIZED"
        assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert ok.status_code == 200 and "lumyn_requests_total" in ok.text


def test_metrics_can_be_turned_off(tmp_path: Path) -> None:
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"), metrics=False)
    with TestClient(create_app(config)) as http:
        assert http.get("/metrics").status_code == 404
        assert http.post("/v0/decide", json=support_refund()).status_code == 200


def test_tenant_label_is_bounded_by_configured_keys(tmp_path: Path) -> None:
    from lumyn.telemetry.metrics import Metrics

    metrics = Metrics(["support.refund"], tenants=["acme"],
                      open_cases=lambda: {"acme": 2, "attacker-123": 5, "attacker-456": 1})
    seen = samples(metrics.exposition()[0].decode())
    assert seen[("lumyn_escalations_open", (("tenant", "acme"),))] == 2
    assert seen[("lumyn_escalations_open", (("tenant", "(other)"),))] == 6
    assert not any("attacker" in str(labels) for _, labels in seen)


def test_stored_identity_reads_id_and_verdict_like_a_full_parse(tmp_path: Path) -> None:
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"))) as gateway:
        for evidence in ({}, {"payment_instrument_risk": "high"}, {"customer_age_days": 1},
                         {"ticket_id": None}):
            record = gateway.decide(support_refund(**evidence))
            stored = gateway.store.get_decision(record["decision_id"])
            assert stored is not None
            body = stored[1]
            assert body == canonical_bytes(record)
            assert stored_identity(body) == (record["decision_id"], record["verdict"])


# -- logs, through a real `lumyn serve` --------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(SRC), **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "lumyn.cli.main", "serve", "--workspace", str(tmp_path / "ws"),
         "--port", str(port)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("lumyn serve did not start: " + (process.stderr.read() if process.stderr else ""))


def secret_request() -> dict[str, Any]:
    request = support_refund()
    inline = {"password": SECRET_PASSWORD, "api_key": SECRET_KEY, "note": "customer called"}
    from lumyn.contracts import digest

    request["context"] = {"mode": "inline", "inline": inline, "digest": digest(inline)}
    request["evidence"]["customer_note"] = "call me"
    return request


def test_serve_writes_one_json_line_per_request_and_never_a_secret(tmp_path: Path) -> None:
    process, base = serve(tmp_path, LUMYN_LOG_FORMAT="json",
                          LUMYN_METRICS_KEY="metrics-key-secret")
    try:
        answer = httpx.post(base + "/v0/decide", json=secret_request(), timeout=10)
        assert answer.status_code == 200
        decision_id = answer.json()["decision_id"]
        bad = httpx.post(base + "/v0/decide", content=b"{not json", timeout=10,
                         headers={"content-type": "application/json",
                                  "authorization": f"Bearer {SECRET_KEY}"})
        assert bad.status_code == 400
        httpx.get(base + "/metrics", headers={"Authorization": "Bearer metrics-key-secret"})
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("logger") == "lumyn.request"]
    decided = [line for line in requests if line.get("route") == "/v0/decide"]
    assert len(decided) == 2, stderr
    ok = next(line for line in decided if line["status"] == 200)
    assert ok["decision_id"] == decision_id and ok["verdict"] == "TRUST"
    assert ok["tenant_id"] == "acme" and ok["latency_ms"] > 0 and ok["level"] == "INFO"
    assert {line["status"] for line in decided} == {200, 400}
    for secret in (SECRET_PASSWORD, SECRET_KEY, "metrics-key-secret", "call me"):
        assert secret not in stderr


def test_serve_text_log_format(tmp_path: Path) -> None:
    process, base = serve(tmp_path, LUMYN_LOG_FORMAT="text")
    try:
        httpx.post(base + "/v0/decide", json=support_refund(), timeout=10)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    [line] = [x for x in stderr.splitlines() if "route=/v0/decide" in x]
    assert "status=200" in line and "verdict=TRUST" in line and "lumyn.request" in line
    assert not line.startswith("{")
