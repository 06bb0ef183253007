"""Backtest speed: `lumyn diff --policy` over 100,000 stored decisions, beside a hot loop that
evaluates the same requests under the same candidate in memory, in the same run; peak RSS of
the backtest; decide p50 with and without shadow mode.

    python benchmarks/bench_diff.py [--decisions 100000] [--storage-url URL] [--decide 1000]

Targets (issue 19): backtest rate >= 0.5x the hot loop's (I/O and decoding must not dominate);
peak RSS under 200 MB; shadow mode costs at most one extra evaluation.

The store is filled by a child process (its memory is not the backtest's); the first backtest
runs before anything else in this process, so the peak RSS printed is the backtest's own
(interpreter and imports included). Backtest and hot loop then alternate for a few rounds.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import orjson
from _common import percentile, sample_request

from lumyn import Lumyn, LumynConfig
from lumyn.backtest import backtest
from lumyn.engine.evaluate import evaluate
from lumyn.engine.features import build_facts
from lumyn.engine.normalize import tenant_of
from lumyn.policy import bundled_policy_path, compile_policy
from lumyn.store import open_store
from lumyn.store.scan import Scope

SUPPORT = bundled_policy_path("support").read_text(encoding="utf-8")
CANDIDATE = (SUPPORT.replace("refund_trust_max_usd: 25 ", "refund_trust_max_usd: 40 ")
             .replace("chargeback_escalate: 0.35", "chargeback_escalate: 0.25"))
BATCH = 500


def varied_request(rng: random.Random, i: int) -> dict[str, Any]:
    request = sample_request(i, request_id=f"diff-{i}")
    request["subject"]["tenant_id"] = f"tenant-{i % 5}"
    request["action"]["amount"]["value"] = round(rng.uniform(1, 300), 2)
    evidence = request["evidence"]
    evidence["chargeback_risk"] = round(rng.uniform(0, 0.5), 2)
    evidence["payment_instrument_risk"] = rng.choice(["low", "low", "medium", "high"])
    evidence["customer_age_days"] = rng.randint(1, 900)
    return request


def populate(url: str, count: int) -> None:
    rng = random.Random(19)
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        for start in range(0, count, BATCH):
            results = lumyn.decide_many([varied_request(rng, i)
                                         for i in range(start, min(count, start + BATCH))])
            assert all(isinstance(r, dict) for r in results)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def hot_loop_rate(url: str, candidate: Any) -> tuple[float, int]:
    """Evaluate every stored request under the candidate, timing only the evaluations: each
    chunk of 10,000 is read and decoded first (untimed), then evaluated in a hot loop."""
    store = open_store(url)
    evaluated, spent, after = 0, 0.0, None
    gc.disable()  # as the backtest does: neither side pays for cyclic collection
    try:
        while rows := store.decisions_page(Scope(), after, 10_000):
            inputs = []
            for _, raw in rows:
                record = orjson.loads(raw)
                request = record["request"]
                inputs.append((request, tenant_of(request),
                               record["risk_signals"]["failure_similarity"]["score"],
                               record["explanation"]["details"]["success_similarity_score"]))
            after = rows[-1][0]
            start = time.perf_counter()
            for request, tenant, failure, success in inputs:
                evaluate(candidate, build_facts(request, tenant, failure, success))
            spent += time.perf_counter() - start
            evaluated += len(inputs)
    finally:
        gc.enable()
        store.close()
    return evaluated / spent, evaluated


def decide_p50(url: str, shadow_path: str | None, count: int, tag: int) -> tuple[float, float]:
    """(decide p50, evaluation-half p50) in ms, over `count` fresh requests."""
    rng = random.Random(7)
    config = LumynConfig(storage_url=url, shadow_policy_path=shadow_path)
    decides, evaluations = [], []
    with Lumyn(config) as lumyn:
        for i in range(count):
            request = varied_request(rng, 10_000_000 + i)
            request["request_id"] = f"p50-{tag}-{i}"
            unkeyed = {k: v for k, v in request.items() if k != "request_id"}
            start = time.perf_counter()
            lumyn._prepare(lumyn._admit(unkeyed))  # the evaluation half alone: no write
            evaluations.append(time.perf_counter() - start)
            start = time.perf_counter()
            lumyn.decide(request)
            decides.append(time.perf_counter() - start)
    return percentile(decides, 50) * 1e3, percentile(evaluations, 50) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--storage-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--decide", type=int, default=1000, help="requests per p50 sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--populate", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.populate:
        populate(args.populate, args.decisions)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        url = args.storage_url or f"sqlite:///{Path(tmp) / 'lumyn.db'}"
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--populate", url,
                        "--decisions", str(args.decisions)], check=True)
        print(f"stored {args.decisions} decisions in {time.perf_counter() - started:.1f}s "
              f"({url.split(':')[0]})")

        candidate = compile_policy(CANDIDATE)
        ratios = []
        # Round 0 warms both sides (file pages, generated matchers) and is not counted.
        for round_number in range(args.rounds + 1):  # alternate, as the machine is shared
            store = open_store(url)
            try:
                start = time.perf_counter()
                report = backtest(store, candidate)
                elapsed = time.perf_counter() - start
            finally:
                store.close()
            rate = report.scanned / elapsed
            if round_number == 0:
                print(f"backtest: {report.changed} of {report.scanned} decisions would change "
                      f"({report.loosened} looser); peak RSS {peak_rss_mb():.0f} MB "
                      "(target < 200 MB)")
            hot, evaluated = hot_loop_rate(url, candidate)
            assert evaluated == report.scanned
            if round_number == 0:
                continue
            ratios.append(rate / hot)
            print(f"round {round_number}: backtest {rate:,.0f}/s (whole scan {elapsed:.2f}s), hot "
                  f"loop {hot:,.0f}/s over the same requests, ratio {rate / hot:.2f}x")
        print(f"ratio backtest / hot loop, median of {len(ratios)}: "
              f"{statistics.median(ratios):.2f}x (target >= 0.5x)")

        shadow_file = Path(tmp) / "shadow.yml"
        shadow_file.write_text(CANDIDATE, encoding="utf-8")
        rounds = [("without shadow", None), ("with shadow", str(shadow_file))] * 2
        for tag, (label, path) in enumerate(rounds):
            decide, evaluation = decide_p50(f"sqlite:///{Path(tmp) / 'p50.db'}", path,
                                            args.decide, tag)
            print(f"decide p50 {label:15s}: {decide:.3f} ms (evaluation half {evaluation:.3f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
