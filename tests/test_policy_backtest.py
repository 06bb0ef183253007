"""`lumyn diff`: backtest a candidate policy over stored decisions (each with the memory it
saw), summarise shadow mode; both backends, streaming in flat memory."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from _builders import request, support_refund
from test_cli_kit import SRC, clean_env, cli

from lumyn import Lumyn, LumynConfig
from lumyn.backtest import backtest, scan, shadow_diff, since_bound
from lumyn.policy import PolicyInvalid, bundled_policy_path, compile_policy
from lumyn.store import open_store
from lumyn.store.scan import Scope

SUPPORT = bundled_policy_path("support").read_text(encoding="utf-8")
# Loosens: refunds up to 500 USD are trusted and only those over 1000 escalate.
LOOSER = (SUPPORT.replace("refund_trust_max_usd: 25 ", "refund_trust_max_usd: 500 ")
          .replace("refund_escalate_over_usd: 200 ", "refund_escalate_over_usd: 1000 "))
# Tightens: refunds over 10 USD are no longer trusted.
TIGHTER = SUPPORT.replace("refund_trust_max_usd: 25 ", "refund_trust_max_usd: 10 ")


def big_refund(tenant: str = "acme") -> dict[str, Any]:
    return request(subject__tenant_id=tenant, action__amount={"value": 250, "currency": "USD"})


def seed(url: str) -> dict[str, list[str]]:
    """Decisions under the support pack: trusted small refunds, escalated big ones, one
    escalated only because memory held a similar failure, and a close_ticket."""
    ids: dict[str, list[str]] = {"small": [], "big": [], "memory": [], "ticket": []}
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        for _ in range(3):
            ids["small"].append(lumyn.decide(request())["decision_id"])
        ids["big"].append(lumyn.decide(big_refund())["decision_id"])
        ids["big"].append(lumyn.decide(big_refund("globex"))["decision_id"])
        lumyn.label(ids["small"][0], "failure", "refund went to a fraudster")
        similar = lumyn.decide(support_refund(order_id="99999"))
        assert similar["verdict"] == "ESCALATE"
        assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in similar["reason_codes"]
        ids["memory"].append(similar["decision_id"])
        ticket = request(action__type="support.close_ticket", action__amount=None,
                         evidence={"ticket_id": "T-1", "resolution_code": "done"})
        ticket["action"].pop("amount")
        ids["ticket"].append(lumyn.decide(ticket)["decision_id"])
    return ids


def test_backtest_reports_transitions_with_causes_and_memory_as_seen(store_url: str) -> None:
    ids = seed(store_url)
    store = open_store(store_url)
    try:
        changes: list[dict[str, Any]] = []
        report = backtest(store, compile_policy(LOOSER), on_change=lambda c: changes.append(
            c.as_dict()))
    finally:
        store.close()
    assert report.scanned == report.compared == 7
    # The two big refunds loosen to TRUST. The memory-escalated refund stays escalated: it is
    # re-evaluated with the failure similarity it saw, which the looser policy still escalates.
    assert report.changed == 2 and report.loosened == 2 and report.tightened == 0
    assert sorted(c["decision_id"] for c in changes) == sorted(ids["big"])
    assert {(c["old_verdict"], c["new_verdict"]) for c in changes} == {("ESCALATE", "TRUST")}
    transition = report.transitions[("ESCALATE", "TRUST")]
    assert transition.count == 2
    assert dict(transition.rules) == {"R014": 2}
    assert dict(transition.rules_no_longer_matching) == {"R008": 2}
    assert dict(transition.reason_codes_added) == {"REFUND_SMALL_LOW_RISK": 2}
    assert dict(transition.reason_codes_removed) == {"REFUND_OVER_ESCALATION_LIMIT": 2}
    assert sorted(transition.examples) == sorted(ids["big"])
    assert report.before["ESCALATE"] == 3 and report.after["ESCALATE"] == 1


def test_backtest_scope_filters_tenant_action_type_and_time(store_url: str) -> None:
    seed(store_url)
    store = open_store(store_url)
    looser = compile_policy(LOOSER)
    try:
        acme = backtest(store, looser, Scope(tenant_id="acme"))
        assert acme.scanned == 6 and acme.changed == 1
        tickets = backtest(store, looser, Scope(action_type="support.close_ticket"))
        assert tickets.scanned == 1 and tickets.changed == 0
        assert backtest(store, looser, Scope(since=since_bound("1h"))).scanned == 7
        future = backtest(store, looser, Scope(since="2999-01-01T00:00:00.000Z"))
        assert future.scanned == 0
        assert store.count_decisions(Scope(tenant_id="globex")) == 1
        assert backtest(store, looser, Scope(tenant_id="no\x00such")).scanned == 0
    finally:
        store.close()


def test_scan_pages_cover_every_decision_once_in_id_order(store_url: str) -> None:
    seed(store_url)
    store = open_store(store_url)
    try:
        pages = list(scan(store, Scope(), page=2))
    finally:
        store.close()
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    ids = [decision_id for page in pages for decision_id, _ in page]
    assert ids == sorted(set(ids)) and len(ids) == 7


def test_backtest_memory_is_bound_to_a_page_not_to_the_store(tmp_path: Path) -> None:
    """Scanning 300 and 3,000 decisions peaks at about the same memory."""
    url = f"sqlite:///{tmp_path / 'lumyn.db'}"
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        lumyn.decide_many([request(request_id=f"a{i}") for i in range(300)])
        lumyn.decide_many([request(request_id=f"b{i}", subject__tenant_id="globex")
                           for i in range(2700)])
    store = open_store(url)
    policy = compile_policy(SUPPORT)
    peaks = []
    try:
        for scope in (Scope(tenant_id="acme"), Scope()):
            tracemalloc.start()
            report = backtest(store, policy, scope, page=100)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert report.changed == 0
    finally:
        store.close()
    assert peaks[1] < 1.5 * peaks[0] + 256 * 1024, peaks


# -- shadow mode ----------------------------------------------------------------------------------


def test_shadow_mode_records_the_shadow_verdict_and_enforces_the_live_one(
        store_url: str, tmp_path: Path) -> None:
    shadow_path = tmp_path / "tighter.yml"
    shadow_path.write_text(TIGHTER, encoding="utf-8")
    shadow_policy = compile_policy(TIGHTER)
    config = LumynConfig.load(env={"LUMYN_STORAGE_URL": store_url,
                                   "LUMYN_SHADOW_POLICY_PATH": str(shadow_path)})
    assert config.shadow_policy_path == str(shadow_path)
    with Lumyn(config) as lumyn:
        record = lumyn.decide(request())
        big = lumyn.decide(big_refund())
        dry = lumyn.decide(request(hints={"dry_run": True}))
        stored = lumyn.get_decision(record["decision_id"])
    assert record["verdict"] == "TRUST"  # the live policy decides
    assert record["extensions"]["shadow"] == {
        **shadow_policy.summary(), "verdict": "ESCALATE",
        "reason_codes": ["NO_MATCH_DEFAULT_ESCALATE"]}
    assert stored["extensions"] == record["extensions"]
    assert big["extensions"]["shadow"]["verdict"] == big["verdict"] == "ESCALATE"
    assert dry["extensions"]["lumyn"]["dry_run"] is True
    assert dry["extensions"]["shadow"]["verdict"] == "ESCALATE"

    with Lumyn(LumynConfig(storage_url=store_url)) as plain:
        unshadowed = plain.decide(request())
    assert "extensions" not in unshadowed

    store = open_store(store_url)
    try:
        report = shadow_diff(store)
    finally:
        store.close()
    assert report.scanned == 3 and report.compared == 2
    assert report.changed == 1 and report.tightened == 1
    transition = report.transitions[("TRUST", "ESCALATE")]
    assert transition.examples == [record["decision_id"]]
    assert not transition.rules and not transition.rules_no_longer_matching  # not recorded
    assert dict(transition.reason_codes_added) == {"NO_MATCH_DEFAULT_ESCALATE": 1}
    assert report.policies == {shadow_policy.policy_hash}


# -- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Path:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUMYN_STORAGE_URL", store_url)
    (tmp_path / "looser.yml").write_text(LOOSER, encoding="utf-8")
    (tmp_path / "tighter.yml").write_text(TIGHTER, encoding="utf-8")
    return tmp_path


def test_diff_json_lists_every_changed_decision_and_ci_gates(workspace: Path,
                                                              store_url: str) -> None:
    ids = seed(store_url)
    result = cli("diff", "--policy", "looser.yml", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(c["decision_id"] for c in report["changes"]) == sorted(ids["big"])
    assert all(c["old_verdict"] == "ESCALATE" and c["new_verdict"] == "TRUST"
               for c in report["changes"])
    assert report["scanned"] == 7 and report["changed"] == 2 and report["loosened"] == 2
    assert report["transitions"][0]["from"] == "ESCALATE"
    assert report["transitions"][0]["rules_no_longer_matching"] == {"R008": 2}

    changed = cli("diff", "--policy", "looser.yml", "--fail-on-change")
    assert changed.exit_code == 1 and "2 decision(s) would change" in changed.stderr
    assert "ESCALATE → TRUST" in changed.stdout and "R008 (2)" in changed.stdout
    assert cli("diff", "--policy", "looser.yml", "--fail-on-loosen").exit_code == 1
    tighter = cli("diff", "--policy", "tighter.yml", "--fail-on-loosen")
    assert tighter.exit_code == 0, tighter.stderr
    assert "more permissive" in tighter.stdout
    assert cli("diff", "--policy", "tighter.yml", "--fail-on-change").exit_code == 1
    scoped = json.loads(cli("diff", "--policy", "looser.yml", "--json", "--tenant", "globex",
                            "--since", "7d").stdout)
    assert scoped["scanned"] == 1 and scoped["scope"]["tenant_id"] == "globex"


def test_diff_shadow_summarises_stored_records(workspace: Path, store_url: str) -> None:
    with Lumyn(LumynConfig(storage_url=store_url,
                           shadow_policy_path=str(workspace / "tighter.yml"))) as lumyn:
        trusted = lumyn.decide(request())["decision_id"]
    result = cli("diff", "--shadow", "--json", "--fail-on-change")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["mode"] == "shadow" and report["compared"] == 1
    assert report["changes"] == [{
        "decision_id": trusted, "created_at": report["changes"][0]["created_at"],
        "tenant_id": "acme", "action_type": "support.refund", "old_verdict": "TRUST",
        "new_verdict": "ESCALATE", "old_reason_codes": ["REFUND_SMALL_LOW_RISK"],
        "new_reason_codes": ["NO_MATCH_DEFAULT_ESCALATE"]}]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--shadow", "--policy", "looser.yml"), "either --policy CANDIDATE"),
        ((), "either --policy CANDIDATE"),
        (("--policy", "looser.yml", "--since", "last tuesday"), "--since 'last tuesday'"),
        (("--policy", "missing.yml"), "file not found"),
    ],
)
def test_diff_bad_arguments_are_one_line_errors(workspace: Path, store_url: str,
                                                args: tuple[str, ...], needle: str) -> None:
    seed(store_url)
    result = cli("diff", *args)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_shadow_policy_is_configured_like_the_others_and_fails_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tighter.yml").write_text(TIGHTER, encoding="utf-8")
    monkeypatch.setenv("LUMYN_SHADOW_POLICY_PATH", "tighter.yml")
    dry = cli("serve", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["shadow_policy_path"] == "tighter.yml"
    (tmp_path / "broken.yml").write_text(TIGHTER.replace("amount_usd_lte", "amount_currency_lte"),
                                         encoding="utf-8")
    with pytest.raises(PolicyInvalid, match="amount_currency is a string"):
        Lumyn(LumynConfig(store_path=str(tmp_path / "x.db"), shadow_policy_path="broken.yml"))


def _run_on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run the real `lumyn` entry point with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "lumyn.cli.main", *args], cwd=cwd,
                               env=env, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_only_on_a_terminal_for_long_scans(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lumyn.db'}"
    with Lumyn(LumynConfig(storage_url=url)) as lumyn:
        for batch in range(5):
            lumyn.decide_many([request(request_id=f"p{batch}-{i}") for i in range(500)])
    (tmp_path / "tighter.yml").write_text(TIGHTER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    env.update(LUMYN_STORAGE_URL=url, PYTHONPATH=str(SRC), COLUMNS="120", TERM="xterm")
    code, screen = _run_on_a_terminal(["diff", "--policy", "tighter.yml"], tmp_path, env)
    assert code == 0, screen
    assert "scanning" in screen and "decisions/s" in screen, screen
    assert "2500 would change verdict" in screen, screen
    piped = subprocess.run([sys.executable, "-m", "lumyn.cli.main", "diff", "--policy",
                            "tighter.yml"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    assert "scanning" not in piped.stdout + piped.stderr
    assert "over 2500 stored decision(s)" in piped.stdout
