"""decide() with durable SQLite (WAL, synchronous=FULL) vs a bare insert+commit of the same
record bytes into the same database file, measured in the same run.

    python benchmarks/bench_decide.py [--n 5000] [--policy PATH]

Rounds alternate between the two so machine drift hits both alike. Target (issue 2):
decide p50 ≤ 2.5 × bare commit p50.

It then times decide()'s two halves apart, each in a hot loop, against more bare commits:
how much of the ratio the write alone takes, and the floor no real call goes below.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _common import halves_beside_bare, print_halves, sample_request, summary_ms

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--policy", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lumyn.db"
        lumyn = Lumyn(LumynConfig(store_path=str(db), policy_path=args.policy))
        bare = sqlite3.connect(db, isolation_level=None)
        bare.execute("PRAGMA journal_mode = WAL")
        bare.execute("PRAGMA synchronous = FULL")
        bare.execute("CREATE TABLE bare (id TEXT PRIMARY KEY, record BLOB NOT NULL)")

        for i in range(200):  # warm-up: caches, first-touch pages
            lumyn.decide(sample_request(-i - 1))

        per_round = args.n // args.rounds
        decide_times: list[float] = []
        bare_times: list[float] = []
        records: list[bytes] = []
        clock = time.perf_counter

        def bare_commit(key: str, payload: bytes) -> float:
            start = clock()
            bare.execute("BEGIN")
            bare.execute("INSERT INTO bare VALUES (?, ?)", (key, payload))
            bare.execute("COMMIT")
            return clock() - start

        for r in range(args.rounds):
            for i in range(r * per_round, (r + 1) * per_round):
                request = sample_request(i)
                start = clock()
                record = lumyn.decide(request)
                decide_times.append(clock() - start)
                records.append(canonical_bytes(record))
            assert record["verdict"] != "ABSTAIN" or "STORAGE_UNAVAILABLE" not in record["reason_codes"]
            for i in range(r * per_round, (r + 1) * per_round):
                bare_times.append(bare_commit(str(i), records[i]))

        evaluations, writes, split_bare = halves_beside_bare(
            lumyn, args.rounds, per_round // 2, bare_commit, records)

        stored = lumyn.store.get_decision(record["decision_id"])
        assert stored is not None, "last decision is not in the store"
        lumyn.close()
        bare.close()

    d, b = summary_ms(decide_times), summary_ms(bare_times)
    ratio = d["p50_ms"] / b["p50_ms"]
    print(f"decisions: {len(decide_times)}  (durable SQLite, WAL, synchronous=FULL)")
    print(f"decide():          p50 {d['p50_ms']:.3f} ms  p95 {d['p95_ms']:.3f} ms")
    print(f"bare insert+commit p50 {b['p50_ms']:.3f} ms  p95 {b['p95_ms']:.3f} ms")
    print(f"ratio decide p50 / bare p50 = {ratio:.2f}  (target <= 2.5)")
    print_halves(evaluations, writes, split_bare, "the bare commit")
    return 0 if ratio <= 2.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
