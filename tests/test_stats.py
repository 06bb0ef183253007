"""`lumyn stats`, drift and `lumyn monitor` over real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from _builders import support_refund

from lumyn import Lumyn, LumynConfig
from lumyn.contracts import canonical_bytes
from lumyn.contracts.ids import encode_random
from lumyn.durations import parse_duration
from lumyn.policy import bundled_policy_path, load_policy
from lumyn.stats import chi2_sf, drift_test, id_floor, iter_decisions
from lumyn.store import DecisionRow, DecisionWrite, PolicySnapshot
from lumyn.store.base import Store

ABSTAIN = {"payment_instrument_risk": "high"}
ESCALATE = {"customer_age_days": 2}


def lumyn_cli(*args: str, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lumyn.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def backdate(store: Store, record: dict[str, Any], when: datetime, n: int) -> None:
    """Store a copy of `record` as if decided at `when` (its id carries that time)."""
    policy = load_policy(bundled_policy_path())
    snapshot = PolicySnapshot(policy.policy_hash, policy.policy_id, policy.policy_version,
                              policy.text)
    copy = dict(record)
    copy["decision_id"] = id_floor(when)[:10] + encode_random(n + 1)
    copy["created_at"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    body = canonical_bytes(copy)
    [stored] = store.append_decisions(
        [DecisionWrite(DecisionRow.from_record(copy, "acme", body), None, snapshot)])
    assert stored == body


def test_chi_square_tail_matches_known_critical_values() -> None:
    # 5% critical values of the chi-square distribution for 1..4 degrees of freedom
    for dof, critical in ((1, 3.841459), (2, 5.991465), (3, 7.814728), (4, 9.487729)):
        assert chi2_sf(critical, dof) == pytest.approx(0.05, abs=1e-5)
    assert chi2_sf(0.0, 3) == 1.0
    assert chi2_sf(50.0, 3) < 1e-9


def test_drift_flags_a_moved_mix_and_not_the_same_mix() -> None:
    base = Counter(TRUST=900, ESCALATE=80, ABSTAIN=20)
    same = Counter(TRUST=88, ESCALATE=9, ABSTAIN=3)
    moved = Counter(TRUST=50, ESCALATE=45, ABSTAIN=5)
    assert not drift_test(base, same).drifted
    flagged = drift_test(base, moved)
    assert flagged.drifted and flagged.dof == 2 and flagged.p_value < 1e-6
    assert flagged.max_shift == pytest.approx(0.4, abs=0.01)
    few = drift_test(base, Counter(ESCALATE=5))
    assert not few.drifted and "not enough" in few.note


def test_durations_parse_and_bad_ones_name_the_flag() -> None:
    assert parse_duration("24h", field="--since") == timedelta(hours=24)
    assert parse_duration("7d", field="--since") == timedelta(days=7)
    for bad in ("", "0h", "3x", "h", "-1d"):
        with pytest.raises(Exception, match="not a duration") as info:
            parse_duration(bad, field="--since")
        assert getattr(info.value, "field", None) == "--since"


def test_scan_pages_through_a_window_by_id_on_both_backends(store_url: str) -> None:
    with Lumyn(LumynConfig(storage_url=store_url)) as gateway:
        ids = [gateway.decide(support_refund(order_id=f"o{i}"))["decision_id"] for i in range(7)]
        store = gateway.store
        now = datetime.now(UTC)
        seen = [row.decision_id for row in iter_decisions(store, now - timedelta(hours=1), page=3)]
        assert seen == ids
        assert [r.decision_id for r in iter_decisions(store, now + timedelta(seconds=5))] == []
        before = list(iter_decisions(store, now - timedelta(hours=1), now - timedelta(minutes=30)))
        assert before == []
        assert [r.verdict for r in iter_decisions(store, now - timedelta(hours=1),
                                                  tenant_id="nobody")] == []


def test_stats_json_counts_verdicts_groups_and_reasons(store_url: str, tmp_path: Path) -> None:
    with Lumyn(LumynConfig(storage_url=store_url)) as gateway:
        for evidence in ({}, {}, ABSTAIN, ESCALATE):
            gateway.decide(support_refund(**evidence))
    result = lumyn_cli("stats", "--json", "--workspace", str(tmp_path),
                       env={"LUMYN_STORAGE_URL": store_url})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"] == 4
    assert report["verdicts"] == {"TRUST": 2, "QUERY": 0, "ESCALATE": 1, "ABSTAIN": 1}
    assert report["groups"] == {"support.refund": {"ABSTAIN": 1, "ESCALATE": 1, "TRUST": 2}}
    codes = {row["reason_code"]: row["count"] for row in report["top_reason_codes"]}
    assert codes["PAYMENT_INSTRUMENT_HIGH_RISK"] == 1
    assert sum(sum(v for k, v in hour.items() if k != "hour") for hour in report["hourly"]) == 4
    by_rule = json.loads(lumyn_cli("stats", "--json", "--by", "rule", "--workspace",
                                   str(tmp_path), env={"LUMYN_STORAGE_URL": store_url}).stdout)
    assert sum(sum(c.values()) for c in by_rule["groups"].values()) >= 4


def test_stats_drift_fails_a_cron_job_when_the_mix_moves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lumyn.db'}"
    now = datetime.now(UTC)
    with Lumyn(LumynConfig(storage_url=url)) as gateway:
        trusted = gateway.decide(support_refund())
        blocked = gateway.decide(support_refund(**ABSTAIN))
        for n in range(60):  # a calm baseline two days ago: all trusted
            backdate(gateway.store, trusted, now - timedelta(days=2, minutes=n), n)
        for n in range(40):  # the last hour: mostly blocked
            backdate(gateway.store, blocked if n % 4 else trusted,
                     now - timedelta(minutes=50, seconds=n), 100 + n)
    env = {"LUMYN_STORAGE_URL": url}
    calm = lumyn_cli("stats", "--baseline", "7d", "--window", "1h", "--fail-on-drift",
                     "--tenant", "nobody", "--workspace", str(tmp_path), env=env)
    assert calm.returncode == 0, calm.stderr
    drifted = lumyn_cli("stats", "--since", "7d", "--baseline", "7d", "--window", "1h",
                        "--fail-on-drift", "--workspace", str(tmp_path), env=env)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    assert "verdict mix changed" in drifted.stdout
    report = json.loads(lumyn_cli("stats", "--json", "--since", "7d", "--baseline", "7d",
                                  "--window", "1h", "--workspace", str(tmp_path), env=env).stdout)
    assert report["drift"]["drifted"] is True
    assert report["drift"]["baseline"]["TRUST"] == 60
    assert report["drift"]["window"]["ABSTAIN"] == 31


def test_stats_bad_flags_are_one_line_errors(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lumyn.db'}"
    Lumyn(LumynConfig(storage_url=url)).close()
    for args, field in ((["--since", "soon"], "--since"), (["--by", "color"], "--by"),
                        (["--baseline", "7"], "--baseline")):
        result = lumyn_cli("stats", *args, "--workspace", str(tmp_path),
                           env={"LUMYN_STORAGE_URL": url})
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and field in result.stderr, result.stderr
    missing = lumyn_cli("stats", "--workspace", str(tmp_path / "none"))
    assert missing.returncode == 1 and "WORKSPACE_NOT_FOUND" in missing.stderr


def test_monitor_tails_decisions_written_while_it_runs(store_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "LUMYN_STORAGE_URL": store_url}
    with Lumyn(LumynConfig(storage_url=store_url)) as gateway:
        earlier = gateway.decide(support_refund(order_id="before"))["decision_id"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "lumyn.cli.main", "monitor", "--json", "--since", "1m", "--interval",
             "0.1", "--duration", "6", "--workspace", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        written: list[str] = []

        def write() -> None:
            time.sleep(2.5)
            for i in range(5):
                written.append(gateway.decide(support_refund(order_id=f"live{i}"))["decision_id"])

        writer = threading.Thread(target=write)
        writer.start()
        stdout, stderr = proc.communicate(timeout=60)
        writer.join()
    assert proc.returncode == 0, stderr
    lines = [orjson.loads(line) for line in stdout.splitlines()]
    ids = [line["decision_id"] for line in lines]
    assert ids == [earlier, *written]  # each once, in order
    assert {line["verdict"] for line in lines} == {"TRUST"}
