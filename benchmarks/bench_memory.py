"""Experience Memory top-k over N stored items of one tenant and action type, printed beside
one `SELECT count(*)` over the same items in the same run; then a cold start in a fresh
process (open the store, answer the first lookup) beside reading the index files' bytes once,
and that process's peak RSS.

    python benchmarks/bench_memory.py [--items 100000] [--queries 500] [--ab | --no-ab]

Targets (issue 21): at 1,000,000 items top-k p95 <= 5 ms, cold start <= 2 s, peak RSS <= 1 GB;
at 100,000 items no slower than the in-memory index it replaced (A/B in the same run: `--ab`,
on by default up to 200,000 items). The search is exact over every item.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import orjson
from _common import sample_request, summary_ms

from lumyn import Lumyn, LumynConfig
from lumyn.contracts.ids import new_id
from lumyn.engine.assess import request_features
from lumyn.memory import MemoryIndex
from lumyn.memory.features import amount_bucket

TAGS = ["duplicate_charge", "late_delivery", "damaged", "vip", "subscription", "fraud_review",
        "partial", "goodwill", "shipping", "promo"]
RISKS = ["low", "medium", "high"]
LABELS = ["failure", "success", "near_miss"]
GROUP = ("acme", "support.refund")


def synthetic_request(rng: random.Random, i: int) -> dict[str, Any]:
    request = sample_request(i)
    request["action"]["amount"] = {"value": round(rng.uniform(1, 2000), 2), "currency": "USD"}
    request["action"]["tags"] = rng.sample(TAGS, rng.randint(1, 3))
    evidence = request["evidence"]
    evidence["customer_id"] = f"C-{rng.randint(1, 5000)}"
    evidence["payment_instrument_risk"] = rng.choice(RISKS)
    return request


def synthetic_features(rng: random.Random, i: int) -> tuple[str, ...]:
    """request_features(synthetic_request(rng, i)) without building the request (the fixture
    has up to a million); checked against it in main()."""
    amount = round(rng.uniform(1, 2000), 2)
    tags = rng.sample(TAGS, rng.randint(1, 3))
    customer, risk = rng.randint(1, 5000), rng.choice(RISKS)
    return tuple(sorted({
        "action:support.refund", "currency:USD", "amount:" + amount_bucket(amount),
        *("tag:" + t for t in tags), "target:stripe", f"ev:customer_id=C-{customer}",
        f"ev:order_id={80000 + i}", f"ev:payment_instrument_risk={risk}", f"ev:ticket_id=ZD-{i}",
    }))


def fill(db: Path, items: int, rng: random.Random) -> float:
    """Insert `items` memory items in bulk (one transaction per 50,000); returns seconds."""
    start = time.perf_counter()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("PRAGMA synchronous=OFF")
    for first in range(0, items, 50_000):
        rows = [(new_id(), *GROUP, rng.choice(LABELS), f"outcome {i}", None,
                 orjson.dumps(list(synthetic_features(rng, i))), "2026-01-01T00:00:00.000Z")
                for i in range(first, min(items, first + 50_000))]
        raw.execute("BEGIN")
        raw.executemany(
            "INSERT INTO memory_items (memory_id, tenant_id, action_type, label, summary, "
            "source_decision_id, features, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        raw.execute("COMMIT")
    raw.close()
    return time.perf_counter() - start


def time_lookups(lookup: Any, queries: list[tuple[str, ...]], k: int) -> list[float]:
    times = []
    for features in queries:
        start = time.perf_counter()
        result = lookup(features)
        times.append(time.perf_counter() - start)
        assert len(result.top_k) == k
    return times


def cold_start(db: Path, k: int, queries: int) -> dict[str, Any]:
    """In this (fresh) process: open the store, answer one lookup; then read the index files'
    bytes once; then time lookups. Printed as JSON for the parent."""
    rng = random.Random(11)
    query_list = [request_features(synthetic_request(rng, 10**7 + i)) for i in range(queries)]
    start = time.perf_counter()
    lumyn = Lumyn(LumynConfig(store_path=str(db), top_k=k))
    lumyn.memory.lookup(*GROUP, query_list[0], k)
    first_s = time.perf_counter() - start
    size = lumyn.memory.size(*GROUP)
    start = time.perf_counter()
    read = sum(len(p.read_bytes()) for p in db.with_name(db.name + ".memory").rglob("*.npy"))
    read_s = time.perf_counter() - start
    lookups = time_lookups(lambda f: lumyn.memory.lookup(*GROUP, f, k), query_list, k)
    lumyn.close()
    return {"first_s": first_s, "read_s": read_s, "read_bytes": read, "items": size,
            "lookups": lookups, "rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would include the parent's, as it was when
    this process was started)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--ab", action=argparse.BooleanOptionalAction, default=None,
                        help="also time the in-memory MemoryIndex (A); default up to 200,000")
    parser.add_argument("--cold-start", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.cold_start:
        print(json.dumps(cold_start(Path(args.cold_start), args.k, args.queries)))
        return 0
    ab = args.items <= 200_000 if args.ab is None else args.ab
    rng = random.Random(7)
    check = random.Random(3)
    assert synthetic_features(random.Random(5), 42) == request_features(
        synthetic_request(random.Random(5), 42)), "fixture features drifted from the engine's"

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "lumyn.db"
        with Lumyn(LumynConfig(store_path=str(db))) as schema:
            schema.store.ensure_schema()
        fill_s = fill(db, args.items, rng)
        queries = [request_features(synthetic_request(check, 10**7 + i)) for i in range(args.queries)]

        raw = sqlite3.connect(db, isolation_level=None)
        count_times = []
        for _ in range(max(20, args.queries // 10)):
            start = time.perf_counter()
            raw.execute("SELECT count(*) FROM memory_items WHERE tenant_id = ? AND action_type = ?",
                        GROUP).fetchone()
            count_times.append(time.perf_counter() - start)
        raw.close()

        lumyn = Lumyn(LumynConfig(store_path=str(db), top_k=args.k))
        start = time.perf_counter()
        lumyn.memory.lookup(*GROUP, queries[0], args.k)
        build_s = time.perf_counter() - start
        assert lumyn.memory.size(*GROUP) == args.items
        new_times = time_lookups(lambda f: lumyn.memory.lookup(*GROUP, f, args.k), queries, args.k)

        old_times: list[float] = []
        if ab:
            start = time.perf_counter()
            rows = lumyn.store.memory_items_since(*GROUP, 0)
            old = MemoryIndex(item for _, item in rows)
            old_load_s = time.perf_counter() - start
            del rows
            for features in queries[:50]:  # the same answers, item for item
                assert old.query(*GROUP, features, args.k) == lumyn.memory.lookup(
                    *GROUP, features, args.k)
            old_times = time_lookups(lambda f: old.query(*GROUP, f, args.k), queries, args.k)
            del old
        lumyn.close()
        parent_rss = peak_rss_mb()

        child = subprocess.run(
            [sys.executable, __file__, "--cold-start", str(db), "--k", str(args.k),
             "--queries", str(args.queries)], capture_output=True, text=True, check=True)
        cold = json.loads(child.stdout)

    ct, nw, cw = summary_ms(count_times), summary_ms(new_times), summary_ms(cold["lookups"])
    print(f"items: {args.items:,} (one tenant, one action type), k={args.k}, "
          f"queries: {args.queries}; fixture inserted in {fill_s:.1f} s")
    print(f"SELECT count(*)          p50 {ct['p50_ms']:7.2f} ms  p95 {ct['p95_ms']:7.2f} ms")
    print(f"top-k (this process)     p50 {nw['p50_ms']:7.2f} ms  p95 {nw['p95_ms']:7.2f} ms  "
          f"ratio p95 / count(*) p50 = {nw['p95_ms'] / ct['p50_ms']:.2f}")
    print(f"top-k (fresh process)    p50 {cw['p50_ms']:7.2f} ms  p95 {cw['p95_ms']:7.2f} ms  "
          f"(target p95 <= 5 ms at 1,000,000)")
    if ab:
        od = summary_ms(old_times)
        print(f"A: in-memory MemoryIndex p50 {od['p50_ms']:7.2f} ms  p95 {od['p95_ms']:7.2f} ms  "
              f"(loaded in {old_load_s:.1f} s); B/A p95 = {nw['p95_ms'] / od['p95_ms']:.2f}")
    print(f"index built from the store and written: {build_s:.1f} s (once, first process)")
    print(f"cold start (open store + first lookup): {cold['first_s'] * 1e3:.0f} ms; reading the "
          f"index files' {cold['read_bytes'] / 2**20:.0f} MiB once: {cold['read_s'] * 1e3:.0f} ms "
          "(target <= 2 s)")
    print(f"peak RSS: fresh process {cold['rss_mb']:.0f} MiB; this process (fixture, build"
          f"{', A/B' if ab else ''}) {parent_rss:.0f} MiB (target <= 1 GB)")
    met = cw["p95_ms"] <= 5 and cold["first_s"] <= 2 and cold["rss_mb"] <= 1024
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
