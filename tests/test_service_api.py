"""The HTTP service through the ASGI client: routes, errors, signing, tenant keys."""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from _builders import SUPPORT_REFUND, support_refund
from fastapi.testclient import TestClient

from lumyn import Lumyn, LumynConfig
from lumyn.contracts.canonical import reference_canonical_bytes
from lumyn.service import create_app
from lumyn.service.auth import body_signature, v1_signature

BASE: dict[str, Any] = SUPPORT_REFUND


def refund(**evidence: Any) -> dict[str, Any]:
    return support_refund(**evidence)


def client_for(tmp_path: Path, **settings: Any) -> TestClient:
    config = LumynConfig(store_path=str(tmp_path / "lumyn.db"), **settings)
    return TestClient(create_app(config))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as c:
        yield c


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return dict(body["error"])


def test_decide_read_label_and_compounding(client: TestClient) -> None:
    first = client.post("/v0/decide", json=refund())
    assert first.status_code == 200
    record = first.json()
    assert record["verdict"] == "TRUST"
    read = client.get(f"/v0/decisions/{record['decision_id']}")
    assert read.status_code == 200 and read.json() == record
    label = client.post(f"/v0/decisions/{record['decision_id']}/events",
                        json={"type": "label", "data": {"label": "failure", "summary": "fraud"}})
    assert label.status_code == 201
    assert label.json()["data"]["label"] == "failure"
    second = client.post("/v0/decide", json=refund(ticket_id="ZD-2", order_id="2")).json()
    assert second["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in second["reason_codes"]
    log = client.get(f"/v0/decisions/{record['decision_id']}").json()["decision_event_log"]
    assert [e["type"] for e in log] == ["label"]


def test_idempotent_retry_and_conflict(client: TestClient) -> None:
    request = {**refund(), "request_id": "r-1"}
    first = client.post("/v0/decide", json=request).json()
    assert client.post("/v0/decide", json=request).json() == first
    conflict = client.post("/v0/decide", json={**refund(ticket_id="other"), "request_id": "r-1"})
    assert conflict.status_code == 409
    assert error_of(conflict)["reason_code"] == "IDEMPOTENCY_CONFLICT"
    assert error_of(conflict)["existing_decision_id"] == first["decision_id"]


def test_decide_answers_with_the_bytes_it_stored(tmp_path: Path) -> None:
    """A 200 from decide is the stored record byte for byte (canonical JSON), retries too."""
    with client_for(tmp_path) as client:
        request = {**refund(), "request_id": "bytes-1"}
        first = client.post("/v0/decide", json=request)
        retry = client.post("/v0/decide", json=request)
        assert first.status_code == retry.status_code == 200
        assert first.headers["content-type"] == "application/json"
        decision_id = first.json()["decision_id"]
    with sqlite3.connect(tmp_path / "lumyn.db") as db:
        (stored,) = db.execute("SELECT record FROM decisions WHERE decision_id = ?",
                               (decision_id,)).fetchone()
    assert first.content == retry.content == bytes(stored)
    assert first.content == reference_canonical_bytes(first.json())


def test_policy_and_healthz(client: TestClient) -> None:
    policy = client.get("/v0/policy").json()
    assert policy["policy_id"] == "lumyn-support" and policy["policy_hash"].startswith("sha256:")
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "field"),
    [
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400,
         "INVALID_JSON", "(body)"),
        ({"content": b'{"a": NaN}', "headers": {"content-type": "application/json"}}, 400,
         "INVALID_JSON", "(body)"),
        ({"content": b"{}", "headers": {"content-type": "text/plain"}}, 415,
         "UNSUPPORTED_MEDIA_TYPE", "Content-Type"),
        ({"json": {"schema_version": "decision_request.v0"}}, 422, "INVALID_REQUEST_SCHEMA",
         "(root)"),
        ({"json": {**BASE, "action": {**BASE["action"], "type": "Refund"}}}, 422,
         "INVALID_REQUEST_SCHEMA", "action.type"),
        ({"json": [1, 2]}, 422, "INVALID_REQUEST_SCHEMA", "(root)"),
        ({"json": {**BASE, "context": {"mode": "inline", "digest": "sha256:" + "b" * 64,
                                       "inline": {"x": 1}}}}, 422, "CONTEXT_DIGEST_MISMATCH",
         "context.digest"),
    ],
)
def test_bad_decide_input_is_a_4xx_naming_reason_and_field(
    client: TestClient, kwargs: dict[str, Any], status: int, code: str, field: str
) -> None:
    response = client.post("/v0/decide", **kwargs)
    assert response.status_code == status, response.text
    assert error_of(response)["reason_code"] == code
    assert error_of(response)["field"] == field


def test_oversized_body_is_413(tmp_path: Path) -> None:
    with client_for(tmp_path, max_body_bytes=2048) as client:
        big = refund(note="x" * 4096)
        response = client.post("/v0/decide", json=big)
        assert response.status_code == 413
        assert error_of(response)["reason_code"] == "BODY_TOO_LARGE"
        # without a Content-Length (chunked), the limit holds while reading
        chunks = iter([orjson.dumps(big)[i:i + 1000] for i in range(0, 5000, 1000)])
        chunked = client.post("/v0/decide", content=chunks,
                              headers={"content-type": "application/json"})
        assert chunked.status_code == 413


def test_unknown_decision_and_event_errors(client: TestClient) -> None:
    assert error_of(client.get("/v0/decisions/01ARZ3NDEKTSV4RRFFQ69G5FAV"))["reason_code"] == (
        "DECISION_NOT_FOUND")
    decision = client.post("/v0/decide", json=refund()).json()["decision_id"]
    url = f"/v0/decisions/{decision}/events"
    cases = [
        ({"type": "rumour"}, "type"),
        ({"type": "label", "data": {"label": "meh"}}, "label"),
        ({"type": "note", "data": "text"}, "data"),
        ({"type": "note", "extra": 1}, "extra"),
        ([], "(body)"),
    ]
    for body, field in cases:
        response = client.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert error_of(response)["field"] == field
    missing = client.post("/v0/decisions/01ARZ3NDEKTSV4RRFFQ69G5FAV/events",
                          json={"type": "note", "data": {}})
    assert missing.status_code == 404


def test_decide_fast_path_and_the_router_agree(tmp_path: Path) -> None:
    """POST /v0/decide is answered before FastAPI's middleware stack and router (LumynApp);
    everything around it (other methods, a root path, unexpected errors) behaves as routes do."""
    with client_for(tmp_path) as client:
        wrong_method = client.get("/v0/decide")
        assert wrong_method.status_code == 405
        assert error_of(wrong_method)["reason_code"] == "METHOD_NOT_ALLOWED"
        assert client.post("/v0/decide", json=refund()).json()["verdict"] == "TRUST"
    config = LumynConfig(store_path=str(tmp_path / "mounted.db"))
    with TestClient(create_app(config), root_path="/gateway") as mounted:
        assert mounted.post("/v0/decide", json=refund()).json()["verdict"] == "TRUST"

    class Buggy(Lumyn):
        def prepare_many(self, requests: list[Any]) -> Any:
            raise RuntimeError("a bug, not bad input")

    buggy = Buggy(LumynConfig(store_path=str(tmp_path / "buggy.db")))
    with TestClient(create_app(buggy.config, buggy), raise_server_exceptions=False) as client:
        response = client.post("/v0/decide", json=refund())
        assert response.status_code == 500
        assert error_of(response) == {"reason_code": "INTERNAL_ERROR", "field": None,
                                      "message": "unexpected RuntimeError"}


def test_decide_reads_a_chunked_body_and_ignores_a_client_that_left(tmp_path: Path) -> None:
    import asyncio

    with client_for(tmp_path) as client:
        body = orjson.dumps(refund())
        chunked = client.post("/v0/decide", content=iter([body[:100], body[100:]]),
                              headers={"content-type": "application/json"})
        assert chunked.status_code == 200 and chunked.json()["verdict"] == "TRUST"

        # A client that disconnects before its body arrives gets no answer and no decision.
        messages = [{"type": "http.request", "body": body[:50], "more_body": True},
                    {"type": "http.disconnect"}]
        sent: list[Any] = []

        async def receive() -> Any:
            return messages.pop(0)

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v0/decide", "query_string": b"",
                 "headers": [(b"content-type", b"application/json")], "root_path": ""}
        asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
        assert sent == [] and messages == []
    with sqlite3.connect(tmp_path / "lumyn.db") as db:
        assert db.execute("SELECT count(*) FROM decisions").fetchone() == (1,)


def test_openapi_describes_routes_with_the_shipped_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {"/v0/decide", "/v0/decisions/{decision_id}",
                                  "/v0/decisions/{decision_id}/events", "/v0/policy", "/healthz"}
    decide = spec["paths"]["/v0/decide"]["post"]
    body = decide["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["schema_version", "subject", "action", "context"]
    record = decide["responses"]["200"]["content"]["application/json"]["schema"]
    assert "determinism" in record["properties"]
    assert "$ref" not in orjson.dumps(record).decode()  # self-contained
    assert {"409", "413", "415", "422"} <= set(decide["responses"])


SECRET = "s3cret"


def signed(body: bytes) -> dict[str, str]:
    return {"content-type": "application/json", "x-lumyn-signature": body_signature(SECRET, body)}


def test_body_signatures_guard_every_route(tmp_path: Path) -> None:
    with client_for(tmp_path, signing_secret=SECRET) as client:
        body = orjson.dumps(refund())
        unsigned = client.post("/v0/decide", content=body,
                               headers={"content-type": "application/json"})
        assert (unsigned.status_code, error_of(unsigned)["reason_code"]) == (401, "SIGNATURE_MISSING")
        malformed = client.post("/v0/decide", content=body, headers={
            "content-type": "application/json", "x-lumyn-signature": "md5:abc"})
        assert error_of(malformed)["reason_code"] == "SIGNATURE_MALFORMED"
        wrong = client.post("/v0/decide", content=body, headers=signed(body + b" "))
        assert error_of(wrong)["reason_code"] == "SIGNATURE_INVALID"
        ok = client.post("/v0/decide", content=body, headers=signed(body))
        assert ok.status_code == 200
        decision = ok.json()["decision_id"]
        assert client.get(f"/v0/decisions/{decision}").status_code == 401  # reads too
        assert client.get("/v0/policy").status_code == 401
        assert client.get(f"/v0/decisions/{decision}", headers=signed(b"")).status_code == 200
        assert client.get("/healthz").status_code == 200  # open for load balancers


def v1_headers(method: str, target: str, body: bytes, stamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if stamp is None else stamp)
    return {"content-type": "application/json", "x-lumyn-timestamp": ts,
            "x-lumyn-signature": v1_signature(SECRET, ts, method, target, body)}


def test_v1_signatures_bind_route_and_time(tmp_path: Path) -> None:
    with client_for(tmp_path, signing_secret=SECRET, signing_scheme="v1",
                    signature_window_s=60) as client:
        body = orjson.dumps(refund())
        ok = client.post("/v0/decide", content=body, headers=v1_headers("POST", "/v0/decide", body))
        assert ok.status_code == 200
        decision = ok.json()["decision_id"]
        read = f"/v0/decisions/{decision}"
        captured = v1_headers("GET", read, b"")
        assert client.get(read, headers=captured).status_code == 200
        # the same signature on another route fails
        other = client.get("/v0/policy", headers=captured)
        assert (other.status_code, error_of(other)["reason_code"]) == (401, "SIGNATURE_INVALID")
        # the seed scheme's body-only signature is not accepted under v1
        legacy = client.get(read, headers={"x-lumyn-signature": body_signature(SECRET, b"")})
        assert error_of(legacy)["reason_code"] == "SIGNATURE_MALFORMED"
        # outside the window
        old = client.get(read, headers=v1_headers("GET", read, b"", stamp=int(time.time()) - 120))
        assert error_of(old)["reason_code"] == "SIGNATURE_EXPIRED"
        # a tampered timestamp breaks the signature
        tampered = dict(captured, **{"x-lumyn-timestamp": str(int(time.time()) + 1)})
        assert error_of(client.get(read, headers=tampered))["reason_code"] == "SIGNATURE_INVALID"


def test_signature_helper_is_hmac_sha256_of_body() -> None:
    expected = hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
    assert body_signature("k", b"{}") == f"sha256:{expected}"


KEYS = {"key-acme": "acme", "key-globex": "globex"}


def test_tenant_keys_isolate_tenants(tmp_path: Path) -> None:
    with client_for(tmp_path, tenant_keys=KEYS) as client:
        acme = {"Authorization": "Bearer key-acme"}
        globex = {"X-Lumyn-Api-Key": "key-globex"}
        assert error_of(client.post("/v0/decide", json=refund()))["reason_code"] == "API_KEY_MISSING"
        bad = client.post("/v0/decide", json=refund(), headers={"Authorization": "Bearer nope"})
        assert (bad.status_code, error_of(bad)["reason_code"]) == (401, "API_KEY_INVALID")
        decision = client.post("/v0/decide", json=refund(), headers=acme)
        assert decision.status_code == 200
        decision_id = decision.json()["decision_id"]
        cross = client.post("/v0/decide", json=refund(), headers=globex)
        assert (cross.status_code, error_of(cross)["field"]) == (403, "tenant.tenant_id")
        assert client.get(f"/v0/decisions/{decision_id}", headers=acme).status_code == 200
        hidden = client.get(f"/v0/decisions/{decision_id}", headers=globex)
        assert (hidden.status_code, error_of(hidden)["reason_code"]) == (404, "DECISION_NOT_FOUND")
        label = client.post(f"/v0/decisions/{decision_id}/events", headers=globex,
                            json={"type": "label", "data": {"label": "failure"}})
        assert label.status_code == 404
        assert client.get(f"/v0/decisions/{decision_id}", headers=acme).json().get(
            "decision_event_log") is None


def test_storage_failure_returns_the_abstain_record(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = LumynConfig(store_path=str(blocker / "db" / "lumyn.db"))
    with TestClient(create_app(config)) as client:
        response = client.post("/v0/decide", json=refund())
        assert response.status_code == 503
        assert response.json()["verdict"] == "ABSTAIN"
        assert response.json()["reason_codes"] == ["STORAGE_UNAVAILABLE"]
        assert client.get("/healthz").status_code == 503


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux-only")
def test_pipeline_threads_do_not_preempt_the_event_loop(tmp_path: Path) -> None:
    import threading

    with client_for(tmp_path) as client:
        assert client.post("/v0/decide", json=refund()).status_code == 200
        pipeline = {t.name: t.native_id for t in threading.enumerate()
                    if t.name in ("lumyn-evaluator", "lumyn-committer")}
        assert set(pipeline) == {"lumyn-evaluator", "lumyn-committer"}
        for native_id in pipeline.values():
            assert native_id is not None
            assert os.sched_getscheduler(native_id) == os.SCHED_BATCH
        # Per thread, not per process: other threads (the event loop's too) keep the default.
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
