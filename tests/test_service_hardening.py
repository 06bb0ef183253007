"""Issue 14's low-severity service defects and issue 15's "Service" section, each reproduced:
strict timestamps, documentation routes behind authentication, /healthz liveness for strangers,
no server paths or credentials in what clients or operators see, start-up warnings."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from _builders import support_refund
from fastapi.testclient import TestClient
from test_cli_kit import clean_env, cli

from lumyn import Lumyn, LumynConfig
from lumyn.errors import StorageUnavailable
from lumyn.service import create_app
from lumyn.service.auth import body_signature, v1_signature
from lumyn.service.errors import from_core
from lumyn.service.warnings import startup_warnings

SECRET = "hardening-secret"


def client_for(tmp_path: Path, **settings: Any) -> TestClient:
    return TestClient(create_app(LumynConfig(store_path=str(tmp_path / "lumyn.db"), **settings)))


def v1(method: str, target: str, body: bytes = b"", stamp: str | None = None) -> dict[str, str]:
    ts = stamp or str(int(time.time()))
    return {"x-lumyn-timestamp": ts, "x-lumyn-signature": v1_signature(SECRET, ts, method,
                                                                      target, body)}


@pytest.mark.parametrize("stamp", ["²", "1" * 4301, "١٧٠٠٠٠٠٠٠٠", " 1700000000", "-5", ""])
def test_non_ascii_or_huge_timestamps_are_401_not_500(tmp_path: Path, stamp: str) -> None:
    with client_for(tmp_path, signing_secret=SECRET, signing_scheme="v1") as client:
        raw = stamp.encode("latin-1") if stamp.isascii() or stamp == "²" else stamp.encode()
        headers = {"x-lumyn-timestamp": raw, "x-lumyn-signature": b"v1=" + b"0" * 64}
        for response in (client.get("/v0/policy", headers=headers),
                         client.post("/v0/decide", content=b"{}", headers=headers)):
            assert response.status_code == 401, response.text
            assert response.json()["error"]["reason_code"] == "SIGNATURE_MALFORMED"


@pytest.mark.parametrize("length", ["²", "9" * 4301])
def test_non_ascii_content_length_is_never_a_500(tmp_path: Path, length: str) -> None:
    with client_for(tmp_path) as client:
        response = client.post("/v0/decide", content=b"{}",
                               headers={"content-type": "application/json",
                                        "content-length": length.encode("latin-1")})
        assert response.status_code < 500


def test_documentation_routes_need_a_signature_when_signing_is_on(tmp_path: Path) -> None:
    with client_for(tmp_path, signing_secret=SECRET, signing_scheme="v1") as client:
        for path in ("/openapi.json", "/docs"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["reason_code"] == "SIGNATURE_MISSING"
            assert client.get(path, headers=v1("GET", path)).status_code == 200
        spec = client.get("/openapi.json", headers=v1("GET", "/openapi.json")).json()
        assert "/v0/decide" in spec["paths"]


def test_documentation_routes_need_an_api_key_with_tenant_keys(tmp_path: Path) -> None:
    with client_for(tmp_path, tenant_keys={"k-acme": "acme"}) as client:
        assert client.get("/openapi.json").status_code == 401
        assert client.get("/openapi.json",
                          headers={"Authorization": "Bearer k-acme"}).status_code == 200


def test_public_docs_setting_serves_them_openly(tmp_path: Path) -> None:
    with client_for(tmp_path, signing_secret=SECRET, public_docs=True) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get("/v0/policy").status_code == 401  # only the docs are open
    env = {"LUMYN_PUBLIC_DOCS": "true", "LUMYN_SIGNING_SECRET": SECRET}
    assert LumynConfig.load(env=env).public_docs is True
    assert LumynConfig.load(env={"LUMYN_PUBLIC_DOCS": "no"}).public_docs is False


def test_docs_page_loads_nothing_from_the_network(tmp_path: Path) -> None:
    with client_for(tmp_path) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "POST /v0/decide" in html and "GET /healthz" in html
        assert "<script" not in html and "http://" not in html and "https://" not in html


def test_healthz_is_liveness_only_for_unauthenticated_callers(tmp_path: Path) -> None:
    with client_for(tmp_path, signing_secret=SECRET, signing_scheme="v1") as client:
        stranger = client.get("/healthz")
        assert stranger.status_code == 200 and stranger.json() == {"status": "ok"}
        signed = client.get("/healthz", headers=v1("GET", "/healthz")).json()
        assert signed["status"] == "ok" and signed["policy_hash"].startswith("sha256:")
        assert signed["schema_version"] >= 1
    with client_for(tmp_path / "open") as client:  # no authentication configured at all
        assert "policy_id" in client.get("/healthz").json()


def test_storage_errors_reach_clients_without_server_paths(tmp_path: Path) -> None:
    db = tmp_path / "secret-dir-name" / "lumyn.db"
    config = LumynConfig(store_path=str(db))
    with TestClient(create_app(config)) as client:
        assert client.post("/v0/decide", json=support_refund()).status_code == 200
        db.unlink()  # the store now reports "database file <path> was deleted"
        decided = client.post("/v0/decide", json=support_refund())
        assert decided.json()["reason_codes"] == ["STORAGE_UNAVAILABLE"]
        health = client.get("/healthz")
        for response in (decided, health):
            assert response.status_code == 503
            assert "secret-dir-name" not in response.text and str(tmp_path) not in response.text
    mapped = from_core(StorageUnavailable(f"sqlite: cannot open {db}"))
    assert mapped.status == 503 and str(db) not in mapped.body().decode()
    # the SDK (a local caller) keeps the detail
    db.parent.mkdir(exist_ok=True)
    with Lumyn(config) as lumyn:
        lumyn.decide(support_refund())
        db.unlink()
        record = lumyn.decide(support_refund())
    assert "secret-dir-name" in record["explanation"]["details"]["storage_error"]


def test_doctor_and_init_never_print_the_database_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    for url in ("postgresql://lumyn:hunter2@127.0.0.1:1/lumyn",
                "postgresql://lumyn@127.0.0.1:1/lumyn?password=hunter2&connect_timeout=1"):
        env = {"LUMYN_STORAGE_URL": url}
        for args in (("doctor",), ("init",), ("serve", "--dry-run")):
            result = cli(*args, env=env)
            assert "hunter2" not in result.stdout + result.stderr, args
            assert "***" in result.stdout + result.stderr or result.exit_code != 0, args


def test_serve_warns_about_body_signing_and_shared_tenants(store_url: str) -> None:
    with Lumyn(LumynConfig(storage_url=store_url)) as lumyn:
        lumyn.decide(support_refund())
    config = LumynConfig(storage_url=store_url, signing_secret=SECRET)  # body, one tenant
    warned = startup_warnings(config)
    assert len(warned) == 1 and "LUMYN_SIGNING_SCHEME=v1" in warned[0]
    with Lumyn(LumynConfig(storage_url=store_url)) as lumyn:
        other = support_refund()
        other["subject"]["tenant_id"] = "globex"
        lumyn.decide(other)
    v1_config = LumynConfig(storage_url=store_url, signing_secret=SECRET, signing_scheme="v1")
    warned = startup_warnings(v1_config)
    assert len(warned) == 1 and "tenant_keys" in warned[0]
    assert startup_warnings(v1_config.with_overrides(tenant_keys={"k": "acme"})) == []


def test_signature_over_an_empty_body_still_reads_under_body_scheme(tmp_path: Path) -> None:
    """Why the start-up warning exists: under `body`, one signature opens every GET."""
    with client_for(tmp_path, signing_secret=SECRET) as client:
        headers = {"x-lumyn-signature": body_signature(SECRET, b"")}
        assert client.get("/v0/policy", headers=headers).status_code == 200
        assert client.get("/openapi.json", headers=headers).status_code == 200


def test_log_records_keep_the_storage_detail(tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "lumyn.db"
    with caplog.at_level(logging.WARNING, logger="lumyn.service"), \
            TestClient(create_app(LumynConfig(store_path=str(db)))) as client:
        assert client.post("/v0/decide", json=support_refund()).status_code == 200
        db.unlink()
        decided = client.post("/v0/decide", content=orjson.dumps(support_refund()),
                              headers={"content-type": "application/json"})
    assert decided.status_code == 503
    assert any(str(db) in r.getMessage() and decided.json()["decision_id"] in r.getMessage()
               for r in caplog.records)
