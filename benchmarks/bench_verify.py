"""`lumyn verify` over a large store beside a plain SELECT of the same rows, in the same run.

    python benchmarks/bench_verify.py [--decisions 100000] [--events-every 4] [--url URL]

Builds a store (SQLite in a temporary directory unless --url names an empty PostgreSQL
database) with N decisions through decide_many and an event on every k-th decision through
append_event, then times, alternating rounds: a plain SELECT that reads every decision record
and event row into Python, and verify() (the walk `lumyn verify` runs: entries joined to their
rows, every hash recomputed, every link checked, unchained rows looked for). Target (issue 20):
verify's rate >= 0.3 x the SELECT's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import sample_request

from lumyn import Lumyn, LumynConfig
from lumyn.integrity.verify import verify


def plain_select(store: Any) -> int:
    """Every decision record and event row, read into Python, in one read transaction."""
    def run(view: Any) -> int:
        conn = view.conn
        rows = 0
        record = "record" if hasattr(conn, "create_function") else "record_json"
        data = "data" if record == "record" else "data_json"
        for statement in (f"SELECT decision_id, {record} FROM decisions",
                          f"SELECT event_id, decision_id, at, type, {data} FROM decision_events"):
            cursor = conn.cursor()
            cursor.execute(statement)
            for _ in cursor:
                rows += 1
        return rows

    result: int = store.read_chain(run)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--events-every", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url", default=None, help="an empty PostgreSQL database (default: "
                        "SQLite in a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'lumyn.db'}"
        with Lumyn(LumynConfig(storage_url=url)) as lumyn:
            start = time.perf_counter()
            ids: list[str] = []
            for first in range(0, args.decisions, 500):
                batch = [sample_request(i) for i in range(first, min(first + 500, args.decisions))]
                ids += [r["decision_id"] for r in lumyn.decide_many(batch)
                        if isinstance(r, dict)]
            for n, decision_id in enumerate(ids[:: args.events_every]):
                lumyn.append_event(decision_id, "note", {"n": n, "text": "checked"})
            built = time.perf_counter() - start
            events = len(ids[:: args.events_every])
            print(f"store: {url.split('://')[0]}, {len(ids)} decisions + {events} events "
                  f"(built in {built:.0f} s)")
            select_s: list[float] = []
            verify_s: list[float] = []
            for _ in range(args.rounds):
                start = time.perf_counter()
                rows = plain_select(lumyn.store)
                select_s.append(time.perf_counter() - start)
                start = time.perf_counter()
                report = verify(lumyn.store)  # type: ignore[arg-type]
                verify_s.append(time.perf_counter() - start)
                assert report.ok, report.as_dict()
                assert sum(t.count for t in report.tenants) == rows == len(ids) + events
    best_select, best_verify = min(select_s), min(verify_s)
    print(f"plain SELECT: {rows / best_select:10.0f} rows/s  ({best_select:.2f} s; rounds "
          + ", ".join(f"{s:.2f}" for s in select_s) + ")")
    print(f"verify:       {rows / best_verify:10.0f} rows/s  ({best_verify:.2f} s; rounds "
          + ", ".join(f"{s:.2f}" for s in verify_s) + ")")
    ratio = best_select / best_verify
    print(f"ratio verify rate / SELECT rate = {ratio:.2f}  (target >= 0.3)")
    return 0 if ratio >= 0.3 else 1


if __name__ == "__main__":
    raise SystemExit(main())
