"""The Lumyn service vs a bare FastAPI endpoint under the same load, in the same run.

    python benchmarks/bench_service.py [--seconds 10] [--connections 16]

Both servers are single uvicorn processes with the same settings (uvicorn defaults: uvloop and
httptools when installed, access log off). The bare endpoint parses the same JSON body with
orjson and returns a JSON object of the record's size. Load: wrk when installed (16 keep-alive
connections, distinct request_id per request), else an httpx driver in another process.
Lumyn runs with a durable SQLite store (WAL, synchronous=FULL); after its run every 200 is
checked against the database. Targets (issue 4): throughput ≥ 0.5 × bare, p99 ≤ 50 ms.

CPU placement (the same for both servers): on a machine with 2+ CPUs each server is pinned to
the last CPU and the load generator to the others, so the driver never steals the server's
core and each server gets exactly one — the shape of one replica per core. A Python server is
bound by one interpreter lock either way; left unpinned, its threads hop between cores and
pay for it (docs/benchmarks.md has both). `--no-pin` turns this off. The servers run in
alternating rounds (bare, lumyn, chain off, bare, ...) so drift on a shared machine hits all.

"chain off" is the same service on a store built with `chain=False` (SqliteStore), started by
a script that calls lumyn.service.create_app like `lumyn serve` does: the evidence chain's
cost (issue 20, target: chain on >= 0.9 x chain off in throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import sample_request  # noqa: E402

BARE_APP = """
import sys, orjson, uvicorn
from fastapi import FastAPI, Request
from starlette.responses import Response
app = FastAPI()
PAD = "x" * int(sys.argv[2])
@app.post("/v0/decide")
async def decide(request: Request) -> Response:
    body = orjson.loads(await request.body())
    return Response(orjson.dumps({"echo": body, "padding": PAD}), media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info", access_log=False)
"""

NO_CHAIN_APP = """
import sys, uvicorn
from lumyn import Lumyn, LumynConfig
from lumyn.service import create_app
from lumyn.store.sqlite import SqliteStore
config = LumynConfig(store_path=sys.argv[2])
gateway = Lumyn(config, store=SqliteStore(sys.argv[2], chain=False))
uvicorn.run(create_app(config, gateway), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="info", access_log=False)
"""

WRK_SCRIPT = """
local counter = 0
local next_id = 0
function setup(thread) thread:set("tid", next_id); next_id = next_id + 1 end
function request()
  counter = counter + 1
  local body = string.gsub(TEMPLATE, "__RID__", tid .. "-" .. counter)
  return wrk.format("POST", "/v0/decide", {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def placement(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, driver CPUs), or (None, None) when not pinning."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def pinned(cpus: set[int] | None) -> Any:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def run_wrk(port: int, template: str, seconds: int, connections: int, tmp: Path,
            cpus: set[int] | None) -> dict[str, Any]:
    script = tmp / f"load-{port}.lua"
    script.write_text(f"TEMPLATE = {json.dumps(template)}\n" + WRK_SCRIPT)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script),
         f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True,
        preexec_fn=pinned(cpus))
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT"))
    requests, duration_us, non2xx, errors, p50, p99 = (int(v) for v in line.split()[1:])
    return {"requests": requests, "ok": requests - non2xx - errors, "non2xx": non2xx,
            "errors": errors, "per_s": requests / (duration_us / 1e6),
            "p50_ms": p50 / 1000, "p99_ms": p99 / 1000}


def run_httpx(port: int, template: str, seconds: int, connections: int,
              cpus: set[int] | None) -> dict[str, Any]:
    driver = textwrap.dedent(f"""
        import asyncio, json, sys, time, httpx
        TEMPLATE = {json.dumps(template)}
        async def worker(i, client, stop, lat, codes):
            n = 0
            while time.monotonic() < stop:
                n += 1
                body = TEMPLATE.replace("__RID__", f"{{i}}-{{n}}")
                t = time.perf_counter()
                r = await client.post("/v0/decide", content=body,
                                      headers={{"content-type": "application/json"}})
                lat.append(time.perf_counter() - t); codes.append(r.status_code)
        async def main():
            lat, codes = [], []
            limits = httpx.Limits(max_connections={connections})
            async with httpx.AsyncClient(base_url="http://127.0.0.1:{port}", limits=limits,
                                         timeout=30) as client:
                start = time.monotonic(); stop = start + {seconds}
                await asyncio.gather(*(worker(i, client, stop, lat, codes)
                                       for i in range({connections})))
                elapsed = time.monotonic() - start
            lat.sort()
            ok = sum(1 for c in codes if c == 200)
            print(json.dumps({{"requests": len(codes), "ok": ok, "non2xx": len(codes) - ok,
                              "errors": 0, "per_s": len(codes) / elapsed,
                              "p50_ms": lat[len(lat) // 2] * 1e3,
                              "p99_ms": lat[int(len(lat) * 0.99)] * 1e3}}))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, check=True,
                         preexec_fn=pinned(cpus))
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one server added up; latencies are the worst round's."""
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["requests"] / r["per_s"] for r in runs)
    return {"requests": requests, "per_s": requests / seconds,
            "ok": sum(r["ok"] for r in runs), "non2xx": sum(r["non2xx"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "p50_ms": max(r["p50_ms"] for r in runs), "p99_ms": max(r["p99_ms"] for r in runs)}


def record_size(request: dict[str, Any]) -> int:
    """Bytes of the record Lumyn answers this request with (its stored canonical JSON)."""
    sys.path.insert(0, str(ROOT / "src"))
    from lumyn import Lumyn, LumynConfig
    from lumyn.contracts import canonical_bytes

    with tempfile.TemporaryDirectory() as tmp, \
            Lumyn(LumynConfig(store_path=str(Path(tmp) / "size.db"))) as gateway:
        record = gateway.decide({**request, "request_id": "0-1"})
        return len(canonical_bytes(record))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each server")
    parser.add_argument("--driver", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement to the OS")
    args = parser.parse_args()
    driver = args.driver if args.driver != "auto" else ("wrk" if shutil.which("wrk") else "httpx")
    server_cpus, driver_cpus = placement(not args.no_pin)

    request = sample_request(0)
    request["request_id"] = "__RID__"
    template = json.dumps(request)
    # The bare endpoint answers with as many bytes as a Decision Record of this request.
    size = record_size(request)
    padding = max(0, size - len(json.dumps({"echo": request, "padding": ""},
                                           separators=(",", ":"))))
    print(f"response size: {size} bytes (Lumyn's record; the bare endpoint pads to match)")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        for var in ("LUMYN_SIGNING_SECRET", "LUMYN_STORAGE_URL", "LUMYN_CONFIG_PATH"):
            env.pop(var, None)
        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "lumyn": [], "chain off": []}
        for round_no in range(args.rounds):
            for name in rounds:
                port = free_port()
                if name == "bare":
                    command = [sys.executable, "-c", BARE_APP, str(port), str(padding)]
                elif name == "chain off":
                    (tmp / f"off-{round_no}").mkdir()
                    command = [sys.executable, "-c", NO_CHAIN_APP, str(port),
                               str(tmp / f"off-{round_no}" / "lumyn.db")]
                else:
                    # a fresh store per round: request ids restart with each wrk run
                    command = [sys.executable, "-m", "lumyn.cli.main", "serve", "--workspace",
                               str(tmp / f"round-{round_no}"), "--host", "127.0.0.1",
                               "--port", str(port)]
                process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL,
                                           preexec_fn=pinned(server_cpus))
                try:
                    wait_ready(port, process)
                    if driver == "wrk":
                        result = run_wrk(port, template, args.seconds, args.connections, tmp,
                                         driver_cpus)
                    else:
                        result = run_httpx(port, template, args.seconds, args.connections,
                                           driver_cpus)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                rounds[name].append(result)
                print(f"round {round_no + 1} {name:9s} {result['per_s']:8.0f} req/s", flush=True)

        stored = 0
        for round_no in range(args.rounds):
            db = sqlite3.connect(tmp / f"round-{round_no}" / "lumyn.db")
            stored += db.execute("SELECT count(*) FROM decisions").fetchone()[0]
            db.close()

    bare, lumyn = combine(rounds["bare"]), combine(rounds["lumyn"])
    off = combine(rounds["chain off"])
    ratio = lumyn["per_s"] / bare["per_s"]
    placement_text = (f"server on CPU {sorted(server_cpus)}, driver on CPUs {sorted(driver_cpus)}"
                      if server_cpus and driver_cpus else "unpinned")
    print(f"driver: {driver}, {args.connections} keep-alive connections, {args.rounds} rounds "
          f"of {args.seconds} s per server, {placement_text}")
    for name, r in (("bare FastAPI", bare), ("lumyn", lumyn), ("chain off", off)):
        print(f"{name:13s} {r['per_s']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
              f"p99 {r['p99_ms']:6.2f} ms  ok {r['ok']}  non-2xx {r['non2xx']}  "
              f"errors {r['errors']}")
    per_round = ", ".join(f"{lr['per_s'] / br['per_s']:.2f}"
                          for br, lr in zip(rounds["bare"], rounds["lumyn"], strict=True))
    print(f"throughput ratio lumyn / bare = {ratio:.2f}  (target >= 0.5; per round: {per_round})")
    print(f"lumyn p99 = {lumyn['p99_ms']:.1f} ms  (target <= 50 ms)")
    chain_ratio = lumyn["per_s"] / off["per_s"]
    per_round = ", ".join(f"{lr['per_s'] / orr['per_s']:.2f}"
                          for lr, orr in zip(rounds["lumyn"], rounds["chain off"], strict=True))
    print(f"evidence chain: throughput on / off = {chain_ratio:.2f}  (target >= 0.90; per round: "
          f"{per_round})")
    print(f"durable: {stored} decisions in the store for {lumyn['ok']} answered 200 "
          f"({'ok' if stored >= lumyn['ok'] else 'MISSING'})")
    good = (ratio >= 0.5 and lumyn["p99_ms"] <= 50 and stored >= lumyn["ok"]
            and lumyn["non2xx"] == 0 and chain_ratio >= 0.9)
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())
