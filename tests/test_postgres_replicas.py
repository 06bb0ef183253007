"""End to end on PostgreSQL: two `lumyn serve` replicas on one database, and the CLI (decide,
label, export --pack, replay, doctor) from a PostgreSQL-backed workspace.

Everything runs as real subprocesses with LUMYN_STORAGE_URL=postgresql://… pointing at a fresh
database of the session's pgserver.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"


def refund(ticket: str, **evidence: Any) -> dict[str, Any]:
    return {
        "schema_version": "decision_request.v0",
        "subject": {"type": "agent", "id": "support-bot", "tenant_id": "acme"},
        "action": {
            "type": "support.refund",
            "intent": "Refund duplicate charge",
            "target": {"system": "stripe", "resource_type": "charge", "resource_id": "ch_1"},
            "amount": {"value": 12.0, "currency": "USD"},
            "tags": ["duplicate_charge"],
        },
        "evidence": {
            "ticket_id": ticket, "order_id": "82731", "customer_id": "C-9",
            "customer_age_days": 180, "previous_refund_count_90d": 0, "chargeback_risk": 0.05,
            "payment_instrument_risk": "low", **evidence,
        },
        "context": {"mode": "digest_only", "digest": "sha256:" + "a" * 64},
    }


def cli_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    path = [str(SRC), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(LUMYN_STORAGE_URL=url, PYTHONPATH=os.pathsep.join(path))
    return env


def lumyn_cli(url: str, cwd: Path, *args: str, stdin: str | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lumyn.cli.main", *args], cwd=cwd,
                          env=cli_env(url), input=stdin, capture_output=True, text=True,
                          timeout=120)


# -- replicas ---------------------------------------------------------------------------------------


class Replica:
    def __init__(self, url: str, workspace: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lumyn.cli.main", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workspace", str(workspace)],
            env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                output = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"lumyn serve exited with {self.proc.returncode}: {output}")
            try:
                self.call("GET", "/healthz")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("lumyn serve did not become healthy") from None
                time.sleep(0.2)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    started: list[Replica] = []
    try:
        for name in ("a", "b"):
            started.append(Replica(pg_url, tmp_path / f"ws-{name}"))
        yield started[0], started[1]
    finally:
        for replica in started:
            replica.stop()


def decide(replica: Replica, request: dict[str, Any]) -> dict[str, Any]:
    status, record = replica.call("POST", "/v0/decide", request)
    assert status == 200, record
    assert "STORAGE_UNAVAILABLE" not in record["reason_codes"]
    return dict(record)


def label(replica: Replica, decision_id: str, value: str, summary: str) -> dict[str, Any]:
    status, event = replica.call("POST", f"/v0/decisions/{decision_id}/events",
                                 {"type": "label", "data": {"label": value, "summary": summary}})
    assert status in (200, 201), event
    return dict(event)


def test_a_decision_made_through_one_replica_is_read_and_labeled_through_the_other(
    replicas: tuple[Replica, Replica]
) -> None:
    a, b = replicas
    assert a.port != b.port
    record = decide(a, refund("ZD-1"))
    status, read = b.call("GET", f"/v0/decisions/{record['decision_id']}")
    assert status == 200
    assert read == record
    label(b, record["decision_id"], "success", "refund confirmed by the customer")
    status, read_back = a.call("GET", f"/v0/decisions/{record['decision_id']}")
    assert status == 200
    log = read_back["decision_event_log"]
    assert [e["type"] for e in log] == ["label"]
    assert log[0]["data"]["label"] == "success"
    assert a.call("GET", "/v0/policy")[1] == b.call("GET", "/v0/policy")[1]


def test_memory_labeled_through_one_replica_changes_the_verdict_on_the_other(
    replicas: tuple[Replica, Replica], pg_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    primed = decide(b, refund("ZD-10"))  # b has looked at this tenant's memory already
    first = decide(a, refund("ZD-11"))
    assert primed["verdict"] == first["verdict"] == "TRUST"
    event = label(a, first["decision_id"], "failure", "chargeback after refund")

    after = decide(b, refund("ZD-12"))
    assert after["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in after["reason_codes"]
    top = after["risk_signals"]["failure_similarity"]["top_k"][0]
    assert top["label"] == "failure"
    memory_id = event.get("data", {}).get("memory_id")
    if memory_id:
        assert top["memory_id"] == memory_id

    # the replica-made decision is replayable from the CLI of a PostgreSQL-backed workspace
    pack = tmp_path / "after.zip"
    exported = lumyn_cli(pg_url, tmp_path, "export", after["decision_id"], "--pack",
                         "--out", str(pack))
    assert exported.returncode == 0, exported.stderr
    replayed = lumyn_cli(pg_url, tmp_path, "replay", str(pack))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def test_idempotent_retries_across_replicas_make_one_decision(
    replicas: tuple[Replica, Replica]
) -> None:
    a, b = replicas
    request = refund("ZD-20") | {"request_id": "retry-across-replicas"}
    first, second = decide(a, request), decide(b, request)
    assert first == second
    changed = refund("ZD-21") | {"request_id": "retry-across-replicas"}
    status, body = b.call("POST", "/v0/decide", changed)
    assert status == 409, body


# -- the CLI on a PostgreSQL store ----------------------------------------------------------------------


def test_cli_decide_label_export_replay_on_postgres(pg_url: str, tmp_path: Path) -> None:
    def decide_cli(request: dict[str, Any]) -> dict[str, Any]:
        done = lumyn_cli(pg_url, tmp_path, "decide", "--in", "-", stdin=json.dumps(request))
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    before = decide_cli(refund("ZD-31"))
    assert before["verdict"] == "TRUST"
    labeled = lumyn_cli(pg_url, tmp_path, "label", before["decision_id"], "--label", "failure",
                        "--summary", "refund abused")
    assert labeled.returncode == 0, labeled.stderr
    after = decide_cli(refund("ZD-32"))
    assert after["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in after["reason_codes"]

    shown = lumyn_cli(pg_url, tmp_path, "show", before["decision_id"])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["decision_event_log"][0]["type"] == "label"

    for record in (before, after):
        pack = tmp_path / f"{record['decision_id']}.zip"
        exported = lumyn_cli(pg_url, tmp_path, "export", record["decision_id"], "--pack",
                             "--out", str(pack))
        assert exported.returncode == 0, exported.stderr
        with zipfile.ZipFile(pack) as archive:
            names = set(archive.namelist())
            packed = json.loads(archive.read("decision_record.json"))
            memory = json.loads(archive.read("memory.json"))
        assert {"decision_record.json", "request.json", "policy.yml", "memory.json",
                "manifest.json", "README.txt"} <= names
        assert packed["decision_id"] == record["decision_id"]
        replayed = lumyn_cli(pg_url, tmp_path, "replay", str(pack))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert len(memory) >= 1  # the ESCALATE's pack carries the failure it was similar to
    assert not (tmp_path / ".lumyn" / "lumyn.db").exists()  # nothing went to SQLite


def test_cli_doctor_reports_the_postgres_schema_version(pg_url: str, tmp_path: Path) -> None:
    from lumyn.store.base import SCHEMA_VERSION

    done = lumyn_cli(pg_url, tmp_path, "doctor", "--fix")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"schema version {SCHEMA_VERSION}" in done.stdout
    assert "postgresql://" in done.stdout
