"""One chain per tenant under concurrent writers: the service's group commit and two processes
on one SQLite file, and two `lumyn serve` replicas on one PostgreSQL. No forks, no gaps."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psycopg
from _builders import support_refund
from test_postgres_replicas import Replica, cli_env, decide, label, lumyn_cli, refund, replicas

from lumyn import Lumyn, LumynConfig
from lumyn.integrity.verify import verify

__all__ = ["replicas"]  # the fixture, imported for the replica test below

WRITER = textwrap.dedent("""
    import sys
    from _builders import support_refund
    from lumyn import Lumyn, LumynConfig
    with Lumyn(LumynConfig(storage_url=sys.argv[1])) as lumyn:
        for i in range(int(sys.argv[2])):
            record = lumyn.decide(support_refund(order_id=f"p-{sys.argv[3]}-{i}"))
            if i % 5 == 0:
                lumyn.append_event(record["decision_id"], "note", {"i": i})
""")


def assert_one_unbroken_chain(store: Any, tenant: str, count: int) -> None:
    report = verify(store, tenant)
    assert report.ok, report.as_dict()
    assert report.tenants[0].count == count


def test_threads_and_two_processes_on_one_sqlite_file_make_one_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ws' / 'lumyn.db'}"
    tests_dir = Path(__file__).resolve().parent
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        lumyn.decide(support_refund())  # create the database before the writers race
        env = cli_env(url)
        env["PYTHONPATH"] = f"{tests_dir}:{env['PYTHONPATH']}"
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, "30", name], env=env)
                 for name in ("a", "b")]

        def batch(n: int) -> None:  # decide_many: the service's group commit path
            for i in range(10):
                lumyn.decide_many([support_refund(order_id=f"t-{n}-{i}-{k}") for k in range(3)])

        threads = [threading.Thread(target=batch, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [p.wait(120) for p in procs] == [0, 0]
        # 1 + 2 processes x (30 decisions + 6 notes) + 3 threads x 10 batches x 3
        assert_one_unbroken_chain(lumyn.store, "acme", 1 + 2 * 36 + 90)


def test_two_replicas_writing_at_once_on_one_postgres_make_one_chain(
    replicas: tuple[Replica, Replica], pg_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    errors: list[BaseException] = []

    def writer(replica: Replica, name: str) -> None:
        try:
            for i in range(15):
                record = decide(replica, refund(f"{name}-{i}"))
                if i % 5 == 0:
                    label(replica, record["decision_id"], "success", f"fine {name}-{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(r, f"{n}{k}"))
               for k in range(2) for n, r in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    total = 4 * (15 + 3)  # 4 writers x (15 decisions + 3 labels)
    done = lumyn_cli(pg_url, tmp_path, "verify", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["tenants"][0]["count"] == total
    heads = lumyn_cli(pg_url, tmp_path, "verify", "--head", "--json")
    assert json.loads(heads.stdout)["heads"][0]["count"] == total
    # The entries are exactly 1..total, one per row: no fork (two entries on one seq is
    # impossible by the key) and no gap.
    with psycopg.connect(pg_url) as conn:
        seqs = [r[0] for r in conn.execute(
            "SELECT seq FROM chain_entries WHERE tenant_id = 'acme' ORDER BY seq")]
        head = conn.execute("SELECT seq FROM chain_heads WHERE tenant_id = 'acme'").fetchone()
    assert seqs == list(range(1, total + 1))
    assert head == (total,)
