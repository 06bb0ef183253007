"""PostgreSQL backend benchmarks, each against a baseline measured in the same run.

    python benchmarks/bench_postgres.py                       # both parts, own pgserver
    python benchmarks/bench_postgres.py --part latency --n 5000
    python benchmarks/bench_postgres.py --part replicas --clients 32 --seconds 10
    python benchmarks/bench_postgres.py --url postgresql://…  # an existing (empty) database

1. latency: decide() p50 with a PostgreSQL store vs a bare INSERT (autocommit: the INSERT is
   its own transaction, one round trip, committed durably) of the same canonical record bytes
   into a two-column JSONB table of the same database. Rounds alternate so drift hits both.
   Target (issue 5): ratio ≤ 2.5. Then decide()'s two halves are timed apart, each in a hot
   loop, against more bare INSERTs: the write's own ratio and the floor of the whole.
2. replicas: 32 concurrent keep-alive HTTP clients POST /v0/decide against one replica, then
   against two replicas sharing the database (connections spread round-robin); aggregate
   decisions/s. Target: two ≥ 1.5 × one. Replicas are `lumyn serve` processes when the
   service is installed (`--server serve`), else (`--server simple`) processes each running a
   Lumyn behind a minimal stdlib HTTP server. The load generator is one asyncio process that
   writes raw HTTP/1.1, so it takes as little CPU as possible from the replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(SRC))

import orjson  # noqa: E402
import psycopg  # noqa: E402
from _common import halves_beside_bare, print_halves, sample_request, summary_ms  # noqa: E402

from lumyn import Lumyn, LumynConfig  # noqa: E402
from lumyn.contracts import canonical_bytes  # noqa: E402

# -- a PostgreSQL to measure against --------------------------------------------------------------


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """Yield the URL of an empty database: a fresh one on the given server, or on a pgserver
    started in a temporary directory (stopped and deleted afterwards)."""
    if url:
        yield url
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        pgserver: Any = importlib.import_module("pgserver")
    parent = Path(tempfile.mkdtemp(prefix="lumyn-pgbench-"))
    server = pgserver.get_server(parent / "data", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        POSTMASTER.append(server.get_pid())
        yield str(server.get_uri(database="bench"))
    finally:
        server.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


def server_facts(url: str) -> str:
    with psycopg.connect(url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
    return (f"PostgreSQL {version[0] if version else '?'}, fsync={fsync[0] if fsync else '?'}, "
            f"synchronous_commit={sync[0] if sync else '?'}")


# -- 1. decide() vs bare insert ---------------------------------------------------------------------


def bench_latency(url: str, n: int, rounds: int) -> float:
    lumyn = Lumyn(LumynConfig(storage_url=url))
    bare = psycopg.connect(url, autocommit=True)
    bare.execute("CREATE TABLE bare (id TEXT PRIMARY KEY, record JSONB NOT NULL)")

    for i in range(300):  # warm-up: pool, prepared statements, caches
        lumyn.decide(sample_request(-i - 1))
        bare.execute("INSERT INTO bare VALUES (%s, %s::jsonb)",
                     (f"w{i}", canonical_bytes(sample_request(i)).decode()))

    per_round = n // rounds
    decide_times: list[float] = []
    bare_times: list[float] = []
    records: list[str] = []
    clock = time.perf_counter
    record: dict[str, Any] = {}

    def bare_insert(key: str, payload: str) -> float:
        start = clock()
        bare.execute("INSERT INTO bare VALUES (%s, %s::jsonb)", (key, payload))
        return clock() - start

    for r in range(rounds):
        for i in range(r * per_round, (r + 1) * per_round):
            request = sample_request(i)
            start = clock()
            record = lumyn.decide(request)
            decide_times.append(clock() - start)
            records.append(canonical_bytes(record).decode())
        assert "STORAGE_UNAVAILABLE" not in record["reason_codes"], record
        for i in range(r * per_round, (r + 1) * per_round):
            bare_times.append(bare_insert(str(i), records[i]))

    evaluations, writes, split_bare = halves_beside_bare(
        lumyn, rounds, per_round // 2, bare_insert, records)

    assert lumyn.store.get_decision(record["decision_id"]) is not None
    lumyn.close()
    bare.close()

    d, b = summary_ms(decide_times), summary_ms(bare_times)
    ratio = d["p50_ms"] / b["p50_ms"]
    print(f"decisions: {len(decide_times)}  ({server_facts(url)})")
    print(f"decide():             p50 {d['p50_ms']:.3f} ms  p95 {d['p95_ms']:.3f} ms")
    print(f"bare INSERT (commit)  p50 {b['p50_ms']:.3f} ms  p95 {b['p95_ms']:.3f} ms")
    print(f"ratio decide p50 / bare p50 = {ratio:.2f}  (target <= 2.5)")
    print_halves(evaluations, writes, split_bare, "the bare INSERT")
    return ratio


# -- 2. replicas ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_available() -> bool:
    try:
        import lumyn.service  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def start_replica(mode: str, url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, LUMYN_STORAGE_URL=url, PYTHONPATH=str(SRC))
    if mode == "serve":
        cmd = [sys.executable, "-m", "lumyn.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workspace", str(workdir / f"ws-{port}")]
    else:
        cmd = [sys.executable, __file__, "--replica-port", str(port), "--url", url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"replica exited: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("replica did not become healthy")


def stop_replica(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _client(port: int, bodies: Iterator[bytes], stop_at: float, counts: list[int],
                  errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            body = next(bodies)
            writer.write(b"POST /v0/decide HTTP/1.1\r\nHost: bench\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            if not status_line.startswith(b"HTTP/1.1 200") or b"STORAGE_UNAVAILABLE" in payload:
                errors.append(status_line.decode().strip() + " " + payload[:200].decode())
                return
            counts[0] += 1
    finally:
        writer.close()


POSTMASTER: list[int] = []  # pid of the server we started (else: every "postgres" process)


def _cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU time (user + system) used so far by the replicas, by the PostgreSQL server's
    processes, by this load generator, and by the whole machine."""
    psutil: Any = importlib.import_module("psutil")  # installed with pgserver

    def cpu(proc: Any) -> float:
        try:
            times = proc.cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0

    if POSTMASTER:
        master = psutil.Process(POSTMASTER[0])
        server = [master, *master.children(recursive=True)]
    else:
        server = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    machine = psutil.cpu_times()
    return {
        "replicas": sum(cpu(psutil.Process(pid)) for pid in pids),
        "postgres": sum(cpu(p) for p in server),
        "client": cpu(psutil.Process()),
        "machine": float(machine.user + machine.system + machine.nice + machine.irq
                         + machine.softirq),
    }


async def _load(ports: list[int], clients: int, seconds: float, warmup: float,
                prefix: str, pids: list[int], cpu_per_decision: dict[str, list[float]]) -> float:
    counter = iter(range(10**9))

    def bodies() -> Iterator[bytes]:
        while True:
            i = next(counter)
            yield orjson.dumps(sample_request(i, request_id=f"{prefix}-{i}"))

    errors: list[str] = []
    warm = [0]
    await asyncio.gather(*[_client(ports[c % len(ports)], bodies(), time.monotonic() + warmup,
                                   warm, errors) for c in range(clients)])
    counts = [0]
    before = _cpu_seconds(pids)
    start = time.monotonic()
    await asyncio.gather(*[_client(ports[c % len(ports)], bodies(), start + seconds, counts,
                                   errors) for c in range(clients)])
    elapsed = time.monotonic() - start
    after = _cpu_seconds(pids)
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    for name in after:
        cpu_per_decision.setdefault(name, []).append((after[name] - before[name]) / counts[0])
    ours = sum(after[k] - before[k] for k in ("replicas", "postgres", "client"))
    cpu_per_decision.setdefault("cores_ours", []).append(ours / elapsed)
    cpu_per_decision.setdefault("cores_other", []).append(
        max(0.0, (after["machine"] - before["machine"] - ours) / elapsed))
    return counts[0] / elapsed


def _spin(seconds: float, out: Any) -> None:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(10000):
            pass
        n += 1
    out.put(n)


def cpu_ceiling(trials: int = 3, seconds: float = 1.5) -> float:
    """How much work two CPU-bound processes get done, relative to one, on this machine right
    now: the ceiling for any two-process scaling here (2.0 on two idle, dedicated cores)."""
    import multiprocessing

    ratios: list[float] = []
    for _ in range(trials):
        totals: list[int] = []
        for procs in (1, 2):
            queue: Any = multiprocessing.Queue()
            workers = [multiprocessing.Process(target=_spin, args=(seconds, queue))
                       for _ in range(procs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            totals.append(int(sum(queue.get() for _ in workers)))
        ratios.append(float(totals[1]) / float(totals[0]))
    return statistics.median(ratios)


def bench_replicas(url: str, clients: int, seconds: float, rounds: int, mode: str) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="lumyn-replicas-"))
    replicas = [start_replica(mode, url, workdir) for _ in range(2)]
    try:
        ports = [port for _, port in replicas]
        pids = [proc.pid for proc, _ in replicas]
        one: list[float] = []
        two: list[float] = []
        cpu1: dict[str, list[float]] = {}
        cpu2: dict[str, list[float]] = {}
        for r in range(rounds):  # alternate so machine drift hits both alike
            one.append(asyncio.run(_load(ports[:1], clients, seconds, 1.0, f"one-{r}",
                                         pids[:1], cpu1)))
            two.append(asyncio.run(_load(ports, clients, seconds, 1.0, f"two-{r}", pids, cpu2)))
            print(f"  round {r + 1}: one replica {one[-1]:.0f}/s, two replicas {two[-1]:.0f}/s")
    finally:
        for proc, _ in replicas:
            stop_replica(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    m1, m2 = statistics.median(one), statistics.median(two)
    ratio = m2 / m1
    print(f"replicas ({mode}), {clients} concurrent clients, {seconds:.0f} s per run, "
          f"{os.cpu_count()} CPU cores shared by PostgreSQL, replicas and the load generator")
    print(f"one replica:  {m1:.0f} decisions/s (median of {rounds})")
    print(f"two replicas: {m2:.0f} decisions/s (median of {rounds})")
    print(f"ratio two / one = {ratio:.2f}  (target >= 1.5)")
    for label, cpu in (("one replica", cpu1), ("two replicas", cpu2)):
        parts = {name: statistics.median(v) * 1e3 for name, v in cpu.items()}
        total = parts["replicas"] + parts["postgres"] + parts["client"]
        print(f"CPU per decision, {label}: replica(s) {parts['replicas']:.3f} ms, PostgreSQL "
              f"{parts['postgres']:.3f} ms, load generator {parts['client']:.3f} ms "
              f"(total {total:.3f} ms); cores busy: ours {parts['cores_ours'] / 1e3:.2f}, "
              f"other processes on the machine {parts['cores_other'] / 1e3:.2f}")
    rep = statistics.median(cpu1["replicas"]) * 1e3
    rest = (statistics.median(cpu2["postgres"]) + statistics.median(cpu2["client"])) * 1e3
    measured = cpu_ceiling()
    ceiling = min(measured, float(os.cpu_count() or 1))  # > cores is clock noise
    # In units of "one busy process": one replica is bound by its own core (GIL), at most
    # 1/rep decisions per ms; two replicas by what the machine gives all processes together,
    # at most ceiling/(rep+rest) (and 2/rep).
    bound = min(ceiling / (rep + rest), 2 / rep) / min(1 / rep, ceiling / (rep + rest))
    print(f"machine ceiling now: two CPU-bound processes do {measured:.2f}x the work of one "
          f"({os.cpu_count()} vCPUs)")
    print(f"scaling bound from the CPU costs above and that ceiling: {bound:.2f}x")
    return ratio


# -- the minimal replica (--server simple) ---------------------------------------------------------------


def run_simple_replica(port: int, url: str) -> None:
    lumyn = Lumyn(LumynConfig(storage_url=url))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200, b'{"status":"ok"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                record = lumyn.decide(orjson.loads(body))
            except Exception as exc:
                self._send(400, json.dumps({"error": str(exc)}).encode())
                return
            self._send(200, orjson.dumps(record))

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        lumyn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=None, help="an empty PostgreSQL database (default: "
                        "start a pgserver in a temporary directory)")
    parser.add_argument("--part", choices=["all", "latency", "replicas"], default="all")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--replica-rounds", type=int, default=3)
    parser.add_argument("--server", choices=["auto", "serve", "simple"], default="auto")
    parser.add_argument("--replica-port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.replica_port is not None:
        run_simple_replica(args.replica_port, args.url)
        return 0

    ok = True
    with postgres(args.url) as url:
        if args.part in ("all", "latency"):
            ok &= bench_latency(url, args.n, args.rounds) <= 2.5
        if args.part in ("all", "replicas"):
            mode = args.server
            if mode == "auto":
                mode = "serve" if service_available() else "simple"
            print()
            ok &= bench_replicas(url, args.clients, args.seconds, args.replica_rounds, mode) >= 1.5
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
