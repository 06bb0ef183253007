"""Races on request ids and labels, and secrets that must never reach disk."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from _support import refund, start_service

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import digest


def test_64_http_clients_racing_on_the_same_request_ids(tmp_path: Path) -> None:
    workspace = tmp_path / ".lumyn"
    process, base = start_service(workspace)
    ids = [f"race-{n}" for n in range(8)]
    barrier = threading.Barrier(64)

    def client(worker: int) -> list[tuple[str, str]]:
        seen = []
        with httpx.Client(base_url=base, timeout=30) as http:
            barrier.wait()
            for round_no in range(4):
                request_id = ids[(worker + round_no) % len(ids)]
                number = int(request_id.split("-")[1])
                response = http.post("/v0/decide", json=refund(number, request_id=request_id))
                assert response.status_code == 200, response.text
                seen.append((request_id, response.json()["decision_id"]))
        return seen

    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = [pair for result in pool.map(client, range(64)) for pair in result]
    finally:
        process.terminate()
        process.wait(timeout=10)
    by_id: dict[str, set[str]] = {}
    for request_id, decision_id in answers:
        by_id.setdefault(request_id, set()).add(decision_id)
    assert all(len(decisions) == 1 for decisions in by_id.values()), by_id
    db = sqlite3.connect(workspace / "lumyn.db")
    rows = dict(db.execute("SELECT request_id, count(*) FROM decisions GROUP BY request_id"))
    db.close()
    assert rows == dict.fromkeys(ids, 1)


def test_labels_racing_with_decides_lose_no_event(tmp_path: Path) -> None:
    lumyn = Lumyn(LumynConfig(store_path=str(tmp_path / "lumyn.db")))
    targets = [lumyn.decide(refund(n))["decision_id"] for n in range(8)]
    labels_per_thread = 25
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def labeler(worker: int) -> None:
        barrier.wait()
        try:
            for n in range(labels_per_thread):
                lumyn.label(targets[(worker + n) % len(targets)], "near_miss", f"w{worker}-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def decider(worker: int) -> None:
        barrier.wait()
        for n in range(labels_per_thread):
            record = lumyn.decide(refund(1000 * worker + n))
            assert record["reason_codes"] != ["STORAGE_UNAVAILABLE"]

    threads = [threading.Thread(target=labeler, args=(w,)) for w in range(8)]
    threads += [threading.Thread(target=decider, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    db = sqlite3.connect(tmp_path / "lumyn.db")
    events = db.execute("SELECT count(*) FROM decision_events WHERE type = 'label'").fetchone()[0]
    items = db.execute("SELECT count(*) FROM memory_items").fetchone()[0]
    summaries = {r[0] for r in db.execute("SELECT summary FROM memory_items")}
    db.close()
    assert events == items == 8 * labels_per_thread
    assert summaries == {f"w{w}-{n}" for w in range(8) for n in range(labels_per_thread)}
    lumyn.close()


SECRETS = {"api_key": "zz-k3y-4242", "email": "zz-person@example.org", "prompt": "zz-sys-prompt",
           "nested": {"password": "zz-pa55", "keep": "visible-value"}}


def test_redacted_inline_fields_never_reach_the_database_or_wal(tmp_path: Path) -> None:
    for profile in ("default", "strict"):
        folder = tmp_path / profile
        lumyn = Lumyn(LumynConfig(store_path=str(folder / "lumyn.db"), redaction_profile=profile))
        request: dict[str, Any] = refund(1)
        request["context"] = {"mode": "inline", "digest": digest(SECRETS), "inline": SECRETS}
        for n in range(20):
            request["evidence"]["ticket_id"] = f"ZD-{n}"
            lumyn.decide(request)
        # Grep while the store is open, so pages may still sit in the uncheckpointed WAL.
        files = [p for p in folder.iterdir() if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files)
        on_disk = b"".join(p.read_bytes() for p in files)
        for secret in (b"zz-k3y-4242", b"zz-person@", b"zz-sys-prompt", b"zz-pa55"):
            assert secret not in on_disk, (profile, secret)
        assert (b"visible-value" in on_disk) is (profile == "default")
        lumyn.close()
        on_disk = b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
        assert b"zz-" not in on_disk
