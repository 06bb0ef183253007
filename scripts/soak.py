"""Soak: the service at a steady request rate for SOAK_SECONDS, sampling its memory.

    SOAK_SECONDS=1800 SOAK_RATE=200 python scripts/soak.py
    SOAK_LABEL_EVERY=0 ...   # no labels: memory must stay flat (labels grow the memory index)

Prints RSS samples (every SOAK_SAMPLE_SECONDS, default 60), first/last/max, and checks that
every 200 is in the store. Exits non-zero if any request failed or RSS grew by more than
SOAK_MAX_GROWTH_MB (default 50) between the first sample after warm-up and the last.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

_TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(_TESTS / "reliability"), str(_TESTS)]
from _support import refund, start_service  # type: ignore[import-not-found]  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "1800"))
    rate = float(os.environ.get("SOAK_RATE", "200"))
    sample_every = float(os.environ.get("SOAK_SAMPLE_SECONDS", "60"))
    max_growth = float(os.environ.get("SOAK_MAX_GROWTH_MB", "50"))
    label_every = int(os.environ.get("SOAK_LABEL_EVERY", "50"))  # 0: no labels
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / ".lumyn"
        process, base = start_service(workspace)
        ok = failed = labels = 0
        samples: list[tuple[float, float]] = []
        lock = threading.Lock()
        start = time.monotonic()
        stop_at = start + seconds

        def sampler() -> None:
            while time.monotonic() < stop_at:
                samples.append((time.monotonic() - start, rss_mb(process.pid)))
                print(f"t={samples[-1][0]:7.0f}s rss={samples[-1][1]:7.1f} MB ok={ok}", flush=True)
                time.sleep(min(sample_every, max(0.0, stop_at - time.monotonic())) or 0.01)

        threading.Thread(target=sampler, daemon=True).start()
        try:
            with httpx.Client(base_url=base, timeout=10) as client:
                n = 0
                while time.monotonic() < stop_at:
                    due = start + n / rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    response = client.post("/v0/decide", json=refund(n, request_id=f"soak-{n}"))
                    with lock:
                        if response.status_code == 200:
                            ok += 1
                        else:
                            failed += 1
                    # Labels add Experience Memory items, which the index keeps (by design).
                    if label_every and n % label_every == 0 and response.status_code == 200:
                        decision = response.json()["decision_id"]
                        label = client.post(f"/v0/decisions/{decision}/events",
                                            json={"type": "label", "data": {"label": "success"}})
                        labels += label.status_code == 201
                    n += 1
            samples.append((time.monotonic() - start, rss_mb(process.pid)))
        finally:
            process.terminate()
            process.wait(timeout=30)
        db = sqlite3.connect(workspace / "lumyn.db")
        stored = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
        db.close()

    warm = [mb for t, mb in samples if t >= min(60.0, seconds / 4)] or [samples[-1][1]]
    first, last, peak = warm[0], samples[-1][1], max(mb for _, mb in samples)
    print(f"duration {seconds:.0f}s at {rate:.0f} req/s: ok={ok} failed={failed} labels={labels} "
          f"stored={stored}")
    print(f"rss after warm-up {first:.1f} MB, last {last:.1f} MB, max {peak:.1f} MB, "
          f"growth {last - first:+.1f} MB")
    good = failed == 0 and stored >= ok and last - first <= max_growth
    print("SOAK PASS" if good else "SOAK FAIL")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
