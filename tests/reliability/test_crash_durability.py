"""SIGKILL at random moments loses nothing that was answered, and leaves a sound database."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from _support import env_with_src, integrity_ok, refund, start_service, stored_records

from lumyn.contracts import canonical_bytes

CHILD = """
import hashlib, os, sys
from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes
sys.path[:0] = [{support!r}, {tests!r}]
from _support import refund
db, report, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
lumyn = Lumyn(LumynConfig(store_path=db))
with open(report, "a", buffering=1) as out:
    i = start
    while True:
        record = lumyn.decide(refund(i, request_id=f"k-{{i}}"))
        # reported only after decide() returned: this is what a caller acted on
        out.write(record["decision_id"] + " " + hashlib.sha256(canonical_bytes(record)).hexdigest() + "\\n")
        i += 1
"""


def reported(report: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    if report.exists():
        for line in report.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[1]) == 64:  # a torn last line is not a report
                entries[parts[0]] = parts[1]
    return entries


def check_store(db: Path, answered: dict[str, str]) -> None:
    stored = stored_records(db)
    missing = [d for d in answered if d not in stored]
    assert not missing, f"{len(missing)} answered decisions missing after SIGKILL"
    for decision_id, sha in answered.items():
        assert hashlib.sha256(stored[decision_id]).hexdigest() == sha, decision_id
    assert integrity_ok(db)


def sdk_kills(tmp_path: Path, kills: int, seed: int) -> int:
    rng = random.Random(seed)
    db, report = tmp_path / "lumyn.db", tmp_path / "report.txt"
    here = Path(__file__).parent
    script = CHILD.format(support=str(here), tests=str(here.parent))
    for round_no in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(db), str(report), str(round_no * 1_000_000)],
            env=env_with_src(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        before = len(reported(report))
        while len(reported(report)) <= before and time.monotonic() < deadline:
            time.sleep(0.02)  # wait until this child is really deciding
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL
        check_store(db, reported(report))
    total = len(reported(report))
    assert total > kills  # the children really were deciding
    return total


def test_sdk_child_killed_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    sdk_kills(tmp_path, kills=4, seed=1)


@pytest.mark.slow
def test_sdk_child_killed_25_times_loses_nothing(tmp_path: Path) -> None:
    total = sdk_kills(tmp_path, kills=25, seed=2)
    print(f"\nSDK: 25 SIGKILLs, {total} answered decisions, all stored byte-identical")


def service_kills(tmp_path: Path, kills: int, seed: int) -> int:
    rng = random.Random(seed)
    workspace = tmp_path / ".lumyn"
    answered: dict[str, str] = {}
    lock = threading.Lock()
    counter = iter(range(10**9))
    for _round in range(kills):
        process, base = start_service(workspace)
        stop = threading.Event()

        def client(base: str = base, stop: threading.Event = stop) -> None:
            with httpx.Client(base_url=base, timeout=5) as http:
                while not stop.is_set():
                    with lock:
                        i = next(counter)
                    try:
                        response = http.post("/v0/decide", json=refund(i, request_id=f"s-{i}"))
                    except httpx.HTTPError:
                        return  # the server died mid-request: nothing was promised
                    if response.status_code == 200:
                        record = orjson.loads(response.content)
                        with lock:
                            answered[record["decision_id"]] = hashlib.sha256(
                                canonical_bytes(record)).hexdigest()

        threads = [threading.Thread(target=client) for _ in range(8)]
        before = len(answered)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(answered) <= before and time.monotonic() < deadline:
            time.sleep(0.02)  # on a loaded machine the clients take a while to start
        time.sleep(rng.uniform(0.2, 0.8))
        process.send_signal(signal.SIGKILL)
        process.wait()
        stop.set()
        for t in threads:
            t.join()
        check_store(workspace / "lumyn.db", answered)
    return len(answered)


def test_service_killed_under_load_loses_nothing(tmp_path: Path) -> None:
    assert service_kills(tmp_path, kills=2, seed=3) > 0


@pytest.mark.slow
def test_service_killed_20_times_under_load_loses_nothing(tmp_path: Path) -> None:
    total = service_kills(tmp_path, kills=20, seed=4)
    print(f"\nservice: 20 SIGKILLs under 8 clients, {total} answered 200s, all stored")
