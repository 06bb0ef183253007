"""The README's CLI workflows, driven through the real Typer app in temporary directories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_cli_kit import assert_one_line_error, clean_env, cli, decide, refund, sub, write_request

from lumyn.policy import bundled_policy_path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def _init(*args: str) -> None:
    result = cli("init", *args)
    assert result.exit_code == 0, result.stderr


# -- init ---------------------------------------------------------------------------------------


def test_init_creates_database_and_support_policy(tmp_path: Path) -> None:
    result = cli("init")
    assert result.exit_code == 0, result.stderr
    policy = tmp_path / ".lumyn" / "policy.yml"
    assert policy.read_text() == bundled_policy_path().read_text()
    db = sqlite3.connect(tmp_path / ".lumyn" / "lumyn.db")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"decisions", "decision_events", "memory_items", "policy_snapshots"} <= tables
    assert "lumyn-support" in result.stdout


@pytest.mark.parametrize(
    ("template", "policy_id"),
    [
        ("policies/packs/lumyn-account.v0.yml", "lumyn-account"),  # README form, no such file here
        ("policies/packs/lumyn-billing.v0.yml", "lumyn-billing"),
        ("billing", "lumyn-billing"),
        ("lumyn-support.v0.yml", "lumyn-support"),
    ],
)
def test_init_policy_template_by_name_or_repo_path(tmp_path: Path, template: str,
                                                   policy_id: str) -> None:
    assert not (tmp_path / "policies").exists()
    _init("--workspace", ".ws", "--policy-template", template)
    assert f"policy_id: {policy_id}" in (tmp_path / ".ws" / "policy.yml").read_text()
    result = cli("policy", "validate", "--workspace", ".ws")
    assert result.exit_code == 0, result.stderr
    assert policy_id in result.stdout


def test_init_policy_template_from_a_local_file(tmp_path: Path) -> None:
    custom = bundled_policy_path("billing").read_text().replace("policy_id: lumyn-billing",
                                                                "policy_id: my-billing")
    (tmp_path / "mine.yml").write_text(custom)
    _init("--policy-template", "mine.yml")
    assert (tmp_path / ".lumyn" / "policy.yml").read_text() == custom


def test_init_refuses_to_replace_a_different_policy_without_force(tmp_path: Path) -> None:
    _init()
    policy = tmp_path / ".lumyn" / "policy.yml"
    policy.write_text(policy.read_text() + "\n# my tuning\n")
    edited = policy.read_text()
    result = cli("init", "--policy-template", "account")
    assert result.exit_code == 1
    assert "WORKSPACE_EXISTS" in result.stderr and "--force" in result.stderr
    assert policy.read_text() == edited  # untouched
    again = cli("init")  # same template, but edited: still refused
    assert again.exit_code == 1
    forced = cli("init", "--policy-template", "account", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "policy_id: lumyn-account" in policy.read_text()


def test_init_is_idempotent_and_keeps_decisions(tmp_path: Path) -> None:
    _init()
    record = decide(tmp_path, refund())
    _init()
    _init("--force")
    assert json.loads(cli("show", record["decision_id"]).stdout)["decision_id"] == record["decision_id"]


# -- decide / show / explain / export / label ---------------------------------------------------


def test_decide_show_explain_label_roundtrip(tmp_path: Path) -> None:
    _init()
    record = decide(tmp_path, refund(201.0))
    assert record["verdict"] == "ESCALATE"
    assert record["reason_codes"] == ["REFUND_OVER_ESCALATION_LIMIT"]
    decision_id = record["decision_id"]

    shown = cli("show", decision_id)
    assert shown.exit_code == 0
    assert json.loads(shown.stdout) == {**record, "decision_event_log": []}

    labeled = cli("label", decision_id, "--label", "failure", "--summary", "Bad outcome in prod")
    assert labeled.exit_code == 0, labeled.stderr
    with_events = json.loads(cli("show", decision_id).stdout)
    (event,) = with_events["decision_event_log"]
    assert event["type"] == "label"
    assert event["data"]["label"] == "failure"
    assert event["data"]["summary"] == "Bad outcome in prod"
    assert event["data"]["memory_id"] in labeled.stdout

    text = cli("explain", decision_id).stdout
    for needle in ("ESCALATE", "R008", "ESCALATIONS", "REFUND_OVER_ESCALATION_LIMIT",
                   record["determinism"]["inputs_digest"], record["policy"]["policy_hash"],
                   "Missing evidence", "Bad outcome in prod"):
        assert needle in text, needle


def test_memory_prune_retires_old_items_from_similarity(tmp_path: Path) -> None:
    _init()
    first = decide(tmp_path, refund())
    cli("label", first["decision_id"], "--label", "failure", "--summary", "stolen card")
    assert decide(tmp_path, refund(13.0, ticket_id="ZD-2", order_id="9"))["verdict"] == "ESCALATE"
    kept = cli("memory", "prune", "--older-than", "365d")
    assert kept.exit_code == 0, kept.stderr
    assert "0 items created before" in kept.stdout
    assert decide(tmp_path, refund(13.0, ticket_id="ZD-3", order_id="10"))["verdict"] == "ESCALATE"

    sqlite3.connect(tmp_path / ".lumyn" / "lumyn.db").execute("SELECT 1").close()
    pruned = sub("memory", "prune", "--older-than", "0", cwd=tmp_path)
    assert pruned.returncode == 1  # zero days is no period
    assert_one_line_error(pruned.stderr, "INVALID_EVENT", "--older-than", "365d")
    bad = cli("memory", "prune", "--older-than", "a year")
    assert bad.exit_code == 1 and "INVALID_EVENT" in bad.stderr


def test_explain_lists_missing_evidence_queries_and_memory_matches(tmp_path: Path) -> None:
    _init()
    query = decide(tmp_path, refund(order_id=None))
    assert query["verdict"] == "QUERY"
    text = cli("explain", query["decision_id"]).stdout
    assert "order_id" in text and "Which order is being refunded?" in text

    first = decide(tmp_path, refund())
    cli("label", first["decision_id"], "--label", "failure", "--summary", "stolen card")
    second = decide(tmp_path, refund(13.0, ticket_id="ZD-2", order_id="9"))
    assert second["verdict"] == "ESCALATE"
    md = cli("explain", second["decision_id"], "--markdown")
    assert md.exit_code == 0
    assert md.stdout.startswith(f"### Lumyn decision `{second['decision_id']}`: **ESCALATE**")
    assert "| `R013` | ESCALATIONS | ESCALATE | `FAILURE_MEMORY_SIMILAR_ESCALATE` |" in md.stdout
    memory_id = second["risk_signals"]["failure_similarity"]["top_k"][0]["memory_id"]
    assert f"| `{memory_id}` | failure |" in md.stdout
    assert "stolen card" in md.stdout
    # Stable: the same record always renders to the same text.
    assert cli("explain", second["decision_id"], "--markdown").stdout == md.stdout


def test_decide_from_stdin_and_out_file(tmp_path: Path) -> None:
    _init()
    result = cli("decide", "--in", "-", input=json.dumps(refund()))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "TRUST"
    written = cli("decide", "--in", write_request(tmp_path / "r.json", refund(300.0)),
                  "--out", "record.json")
    assert written.exit_code == 0
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["verdict"] == "ESCALATE"
    assert record["decision_id"] in written.stdout


def test_decide_idempotent_retry_returns_the_stored_record(tmp_path: Path) -> None:
    _init()
    request = refund()
    request["request_id"] = "req-1"
    first = decide(tmp_path, request)
    again = decide(tmp_path, request)
    assert again["decision_id"] == first["decision_id"]


def test_export_without_pack_prints_or_writes_the_record(tmp_path: Path) -> None:
    _init()
    record = decide(tmp_path, refund())
    printed = cli("export", record["decision_id"])
    assert printed.exit_code == 0
    assert json.loads(printed.stdout) == record
    to_file = cli("export", record["decision_id"], "--out", "rec.json")
    assert to_file.exit_code == 0
    assert json.loads((tmp_path / "rec.json").read_text()) == record


def test_export_pack_then_replay_via_cli(tmp_path: Path) -> None:
    _init()
    record = decide(tmp_path, refund())
    exported = cli("export", record["decision_id"], "--pack", "--out", "decision_pack.zip")
    assert exported.exit_code == 0, exported.stderr
    replayed = cli("replay", "decision_pack.zip")
    assert replayed.exit_code == 0, replayed.stdout + replayed.stderr
    assert "PASS" in replayed.stdout
    md = cli("replay", "decision_pack.zip", "--markdown")
    assert md.exit_code == 0
    assert md.stdout.startswith(f"### Lumyn replay of decision `{record['decision_id']}`: PASS")
    assert "- [x] **manifest**" in md.stdout
    as_json = json.loads(cli("replay", "decision_pack.zip", "--json").stdout)
    assert as_json["ok"] is True and as_json["decision_id"] == record["decision_id"]


def test_export_pack_default_file_name(tmp_path: Path) -> None:
    _init()
    record = decide(tmp_path, refund())
    assert cli("export", record["decision_id"], "--pack").exit_code == 0
    assert (tmp_path / f"decision_pack_{record['decision_id']}.zip").is_file()


def test_show_reads_another_workspace(tmp_path: Path) -> None:
    _init("--workspace", "a")
    record = decide(tmp_path, refund(), "--workspace", "a")
    assert cli("show", record["decision_id"], "--workspace", "a").exit_code == 0
    _init("--workspace", "b")
    missing = cli("show", record["decision_id"], "--workspace", "b")
    assert missing.exit_code == 1 and "DECISION_NOT_FOUND" in missing.stderr


def test_workspace_policy_is_the_one_deciding(tmp_path: Path) -> None:
    _init("--workspace", ".lumyn-billing", "--policy-template", "billing")
    spend = {
        "schema_version": "decision_request.v0",
        "subject": {"type": "service", "id": "ap-agent", "tenant_id": "acme"},
        "action": {"type": "billing.approve_spend", "intent": "Pay invoice",
                   "amount": {"value": 50, "currency": "USD"}},
        "evidence": {"invoice_id": "I-1", "vendor_id": "V-1", "requested_by": "u-1"},
        "context": {"mode": "digest_only", "digest": "sha256:" + "b" * 64},
    }
    record = decide(tmp_path, spend, "--workspace", ".lumyn-billing")
    assert record["policy"]["policy_id"] == "lumyn-billing"
    assert record["verdict"] == "TRUST"


# -- configuration --------------------------------------------------------------------------------


def test_lumyn_storage_url_is_honoured_by_every_command(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere" / "shared.db"
    monkeypatch.setenv("LUMYN_STORAGE_URL", f"sqlite:///{other}")
    _init()
    assert other.is_file()
    assert not (tmp_path / ".lumyn" / "lumyn.db").exists()
    record = decide(tmp_path, refund())
    assert cli("show", record["decision_id"]).exit_code == 0
    assert cli("label", record["decision_id"], "--label", "success").exit_code == 0
    assert cli("export", record["decision_id"], "--pack", "--out", "p.zip").exit_code == 0
    stories = cli("demo", "--story")
    assert stories.exit_code == 0, stories.stderr
    dry = json.loads(cli("serve", "--dry-run").stdout)
    assert dry["storage_url"] == f"sqlite:///{other}"
    assert not (tmp_path / ".lumyn" / "lumyn.db").exists()
    count = sqlite3.connect(other).execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert count == 3  # one decide + two story decisions
    monkeypatch.delenv("LUMYN_STORAGE_URL")
    assert cli("show", record["decision_id"]).exit_code == 1  # not in the workspace db


def test_config_file_sets_storage(tmp_path: Path) -> None:
    db = tmp_path / "from-config.db"
    (tmp_path / "lumyn.toml").write_text(f'[lumyn]\nstorage_url = "sqlite:///{db}"\ntop_k = 3\n')
    _init("--config", "lumyn.toml")
    record = decide(tmp_path, refund(), "--config", "lumyn.toml")
    assert db.is_file()
    assert record["explanation"]["details"]["memory_top_k"] == 3
    dry = json.loads(cli("serve", "--dry-run", "--config", "lumyn.toml", "--port", "9001").stdout)
    assert dry["storage_url"] == f"sqlite:///{db}" and dry["top_k"] == 3 and dry["port"] == 9001


def test_lumyn_policy_path_overrides_the_workspace_policy(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _init()
    monkeypatch.setenv("LUMYN_POLICY_PATH", str(bundled_policy_path("account")))
    dry = json.loads(cli("serve", "--dry-run").stdout)
    assert dry["policy_path"] == str(bundled_policy_path("account"))
    result = cli("policy", "validate")
    assert result.exit_code == 0 and "lumyn-account" in result.stdout


# -- policy validate -----------------------------------------------------------------------------


BROKEN_POLICY = """\
schema_version: policy.v0
policy_id: broken
policy_version: "1"
defaults: {mode: enforce, default_verdict: ESCALATE, default_reason_code: NO_MATCH_DEFAULT_ESCALATE}
rules:
  - id: A
    stage: NOPE
    then: {verdict: TRUST, reason_codes: [OK_CODE]}
  - id: A
    stage: ESCALATIONS
    if: {evidence.x_bogus: 1}
    then: {verdict: QUERY, reason_codes: [lower_case]}
"""


def test_policy_validate_prints_every_problem_one_per_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(BROKEN_POLICY)
    result = cli("policy", "validate", "--path", "bad.yml")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) >= 4, lines
    assert all(line.startswith("bad.yml") and "[INVALID_POLICY]" in line for line in lines)
    joined = "\n".join(lines)
    for needle in ("NOPE", "duplicate", "x_bogus", "lower_case"):
        assert needle in joined, needle
    assert "Traceback" not in result.stderr


def test_policy_validate_workspace_default_and_missing(tmp_path: Path) -> None:
    missing = cli("policy", "validate")
    assert missing.exit_code == 1
    assert "POLICY_NOT_FOUND" in missing.stderr and "lumyn init" in missing.stderr
    _init()
    ok = cli("policy", "validate")
    assert ok.exit_code == 0 and ok.stdout.startswith("OK .lumyn/policy.yml")


# -- serve ----------------------------------------------------------------------------------------


def test_serve_dry_run_prints_config_without_loading_fastapi(tmp_path: Path) -> None:
    probe = sub("serve", "--dry-run", "--host", "0.0.0.0", "--port", "8123", cwd=tmp_path,
                env={"LUMYN_SIGNING_SECRET": "s3cret", "LUMYN_MODE": "advisory"})
    assert probe.returncode == 0, probe.stderr
    config = json.loads(probe.stdout)
    assert config["host"] == "0.0.0.0" and config["port"] == 8123
    assert config["mode"] == "advisory" and config["signing"] == "enabled"
    assert "s3cret" not in probe.stdout
    check = sub("serve", "--dry-run", cwd=tmp_path,
                env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert check.returncode == 0
    assert "fastapi" not in check.stderr and "uvicorn" not in check.stderr


def test_serve_calls_the_service_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls: list[tuple[object, str, int]] = []
    fake = types.ModuleType("lumyn.service")
    fake.run = lambda config, host, port: calls.append((config, host, port))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lumyn.service", fake)
    _init()
    result = cli("serve", "--host", "127.0.0.2", "--port", "8765")
    assert result.exit_code == 0, result.stderr
    ((config, host, port),) = calls
    assert (host, port) == ("127.0.0.2", 8765)
    assert config.url == "sqlite:///.lumyn/lumyn.db"  # type: ignore[attr-defined]
    assert config.policy_path == ".lumyn/policy.yml"  # type: ignore[attr-defined]
