"""Storage faults: every decide returns ABSTAIN STORAGE_UNAVAILABLE, nothing raises, and the
gateway resumes by itself once the fault clears."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import refund, start_service

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import validate_record
from lumyn.store import sqlite as sqlite_store


def abstains(record: dict[str, Any]) -> bool:
    validate_record(record)
    return record["verdict"] == "ABSTAIN" and record["reason_codes"] == ["STORAGE_UNAVAILABLE"]


def trusted(record: dict[str, Any]) -> bool:
    validate_record(record)
    return record["verdict"] == "TRUST"


@pytest.fixture(params=["tmpfs", "injected"])
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, str]]:
    """A real 1 MiB tmpfs when we may mount (root, as in CI), and in every run a connection
    that reports a full disk from the driver on every write while `.full` exists."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = request.param == "tmpfs" and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True, check=False).returncode == 0
    try:
        yield mount, "tmpfs" if mounted else "injected"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=False)


class _FullDiskConnection(sqlite3.Connection):
    flag: Path

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if self.flag.exists() and sql.lstrip().upper().startswith(("INSERT", "COMMIT")):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


def test_full_disk_abstains_and_recovers(small_disk: tuple[Path, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mount, kind = small_disk
    db = mount / "lumyn.db"
    flag = mount / ".full"
    if kind == "injected":
        _FullDiskConnection.flag = flag
        monkeypatch.setattr(sqlite_store.sqlite3, "connect",
                            functools.partial(sqlite3.connect, factory=_FullDiskConnection))
    lumyn = Lumyn(LumynConfig(store_path=str(db)))
    assert trusted(lumyn.decide(refund(0)))
    ballast = mount / "ballast"
    if kind == "tmpfs":
        fd = os.open(ballast, os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk to the last byte
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
    else:
        flag.write_text("full")
    outcomes = [lumyn.decide(refund(i)) for i in range(1, 40)]  # must never raise
    assert any(abstains(r) for r in outcomes), kind
    assert all(abstains(r) or trusted(r) for r in outcomes)
    for path in (ballast, flag):
        path.unlink(missing_ok=True)
    recovered = lumyn.decide(refund(99))
    assert trusted(recovered)
    assert lumyn.get_decision(recovered["decision_id"])["verdict"] == "TRUST"
    lumyn.close()


def test_locked_database_beyond_busy_timeout(tmp_path: Path) -> None:
    db = tmp_path / "lumyn.db"
    lumyn = Lumyn(LumynConfig(store_path=str(db), busy_timeout_ms=100))
    assert trusted(lumyn.decide(refund(0)))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    assert abstains(lumyn.decide(refund(1)))
    assert time.monotonic() - started < 5
    holder.execute("ROLLBACK")
    holder.close()
    assert trusted(lumyn.decide(refund(2)))
    lumyn.close()


def _chattr(flag: str, path: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def test_read_only_database_file(tmp_path: Path) -> None:
    db = tmp_path / "lumyn.db"
    first = Lumyn(LumynConfig(store_path=str(db)))
    assert trusted(first.decide(refund(0)))
    first.close()
    if not _chattr("+i", db):  # root ignores modes; the immutable bit stops root too
        os.chmod(db, 0o444)
    try:
        lumyn = Lumyn(LumynConfig(store_path=str(db)))
        assert abstains(lumyn.decide(refund(1)))
        assert abstains(lumyn.decide(refund(2)))
    finally:
        _chattr("-i", db)
        os.chmod(db, 0o644)
    assert trusted(lumyn.decide(refund(3)))
    lumyn.close()


def test_service_deleted_directory_then_restored(tmp_path: Path) -> None:
    workspace = tmp_path / ".lumyn"
    process, base = start_service(workspace)
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/v0/decide", json=refund(0)).status_code == 200
            aside = tmp_path / "aside"
            workspace.rename(aside)  # the volume disappears under the running service
            time.sleep(sqlite_store.FULL_CHECK_S + 0.2)
            gone = client.post("/v0/decide", json=refund(1))
            assert gone.status_code == 503
            assert abstains(gone.json())
            assert client.get("/healthz").status_code in (200, 503)
            assert not workspace.exists()  # nothing re-created behind the operator's back
            aside.rename(workspace)
            back = client.post("/v0/decide", json=refund(2))
            assert back.status_code == 200 and trusted(back.json())
    finally:
        process.terminate()
        process.wait(timeout=10)
