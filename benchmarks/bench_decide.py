"""decide() with durable SQLite (WAL, synchronous=FULL) vs a bare insert+commit of the same
record bytes into the same database file, measured in the same run.

    python benchmarks/bench_decide.py [--n 5000] [--policy PATH]

Rounds alternate between the two so machine drift hits both alike. Target (issue 2):
decide p50 ≤ 2.5 × bare commit p50.

It then times decide()'s two halves apart, each in a hot loop, against more bare commits:
how much of the ratio the write alone takes, and the floor no real call goes below.

Last, the evidence chain's cost (issue 20): decide() on a store with the chain (the default)
against a store built with `chain=False`, two fresh files, alternating rounds. Target: at most
10% slower (p50 ratio on / off <= 1.10).
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
from lumyn.store.sqlite import SqliteStore


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
        chain_on, chain_off = chain_cost(Path(tmp), args.policy, args.rounds, per_round)

    d, b = summary_ms(decide_times), summary_ms(bare_times)
    ratio = d["p50_ms"] / b["p50_ms"]
    print(f"decisions: {len(decide_times)}  (durable SQLite, WAL, synchronous=FULL)")
    print(f"decide():          p50 {d['p50_ms']:.3f} ms  p95 {d['p95_ms']:.3f} ms")
    print(f"bare insert+commit p50 {b['p50_ms']:.3f} ms  p95 {b['p95_ms']:.3f} ms")
    print(f"ratio decide p50 / bare p50 = {ratio:.2f}  (target <= 2.5)")
    print_halves(evaluations, writes, split_bare, "the bare commit")
    on, off = summary_ms(chain_on), summary_ms(chain_off)
    chain_ratio = on["p50_ms"] / off["p50_ms"]
    print(f"evidence chain on:  p50 {on['p50_ms']:.3f} ms  p95 {on['p95_ms']:.3f} ms")
    print(f"evidence chain off: p50 {off['p50_ms']:.3f} ms  p95 {off['p95_ms']:.3f} ms")
    print(f"ratio chain on / off p50 = {chain_ratio:.3f}  (target <= 1.10)")
    return 0 if ratio <= 2.5 and chain_ratio <= 1.10 else 1


def chain_cost(tmp: Path, policy: str | None, rounds: int,
               per_round: int) -> tuple[list[float], list[float]]:
    """decide() latencies with and without the evidence chain, alternating rounds."""
    gateways = {}
    for name, chain in (("on", True), ("off", False)):
        path = tmp / f"chain-{name}.db"
        config = LumynConfig(store_path=str(path), policy_path=policy)
        gateways[name] = Lumyn(config, store=SqliteStore(path, chain=chain))
        for i in range(200):
            gateways[name].decide(sample_request(-i - 1))
    times: dict[str, list[float]] = {"on": [], "off": []}
    clock = time.perf_counter
    for r in range(rounds):
        for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
            for i in range(r * per_round, (r + 1) * per_round):
                request = sample_request(i)
                start = clock()
                gateways[name].decide(request)
                times[name].append(clock() - start)
    for gateway in gateways.values():
        gateway.close()
    return times["on"], times["off"]


if __name__ == "__main__":
    raise SystemExit(main())
