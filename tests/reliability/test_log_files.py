"""SQLite's -wal and -shm files deleted under a running `lumyn serve` (issue 14, item 1), and
/healthz telling the truth about whether a write can succeed (item 9)."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx
from _support import refund, start_service, stored_records

from lumyn.contracts import validate_record


def test_deleted_log_files_never_lose_an_acknowledged_decision(tmp_path: Path) -> None:
    workspace = tmp_path / ".lumyn"
    db = workspace / "lumyn.db"
    process, base = start_service(workspace)
    acknowledged: list[str] = []
    statuses: list[int] = []
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            for i in range(90):
                if i == 30:
                    os.unlink(f"{db}-wal")
                if i == 60:
                    os.unlink(f"{db}-shm")
                response = client.post("/v0/decide", json=refund(i))
                statuses.append(response.status_code)
                if response.status_code == 200:
                    acknowledged.append(response.json()["decision_id"])
                    continue
                record = response.json()
                validate_record(record)
                assert response.status_code == 503
                assert record["reason_codes"] == ["STORAGE_UNAVAILABLE"]
                assert str(tmp_path) not in response.text  # item 11: no server paths
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    # Each deletion is reported (the decide that found it abstains) and then recovered from.
    assert statuses[30] == 503 and statuses[60] == 503, statuses
    assert statuses[31:60] == [200] * 29 and statuses[61:] == [200] * 29, statuses
    stored = stored_records(db)
    lost = [d for d in acknowledged if d not in stored]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged decisions lost"
    assert len(acknowledged) == 88


def test_healthz_reports_whether_a_write_can_succeed(tmp_path: Path) -> None:
    workspace = tmp_path / ".lumyn"
    db = workspace / "lumyn.db"
    process, base = start_service(workspace)
    try:
        with httpx.Client(base_url=base, timeout=15) as client:
            assert client.post("/v0/decide", json=refund(0)).status_code == 200
            # The log deleted: reported, salvaged, then ready again.
            os.unlink(f"{db}-wal")
            gone = client.get("/healthz")
            assert gone.status_code == 503
            assert gone.json()["error"]["reason_code"] == "STORAGE_UNAVAILABLE"
            assert str(tmp_path) not in gone.text
            assert client.get("/healthz").status_code == 200
            # Another process holds the write lock beyond the busy timeout.
            holder = sqlite3.connect(db, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            try:
                assert client.get("/healthz").status_code == 503
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert client.get("/healthz").status_code == 200
            # The database unlinked: not ready, and it stays so (nothing re-created).
            os.unlink(db)
            assert client.get("/healthz").status_code == 503
            assert client.get("/healthz").status_code == 503
            assert client.post("/v0/decide", json=refund(1)).status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=10)
