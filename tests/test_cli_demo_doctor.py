"""`demo`, `demo --story` and `doctor [--fix]`: the README's fastest "aha" in a fresh directory."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from test_cli_kit import clean_env, cli, sub

ULID = r"[0-9A-HJKMNP-TV-Z]{26}"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def _story_ids(stdout: str) -> tuple[str, str]:
    row = next(line for line in stdout.splitlines() if line.strip().startswith("decision_id"))
    before, after = re.findall(ULID, row)
    return before, after


# -- the README quickstart, in a fresh interpreter --------------------------------------------------


def test_doctor_fix_then_story_in_a_fresh_directory(tmp_path: Path) -> None:
    fixed = sub("doctor", "--fix", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "fixed" in fixed.stdout and "Healthy" in fixed.stdout
    story = sub("demo", "--story", cwd=tmp_path)
    assert story.returncode == 0, story.stderr
    out = story.stdout
    assert "TRUST" in out and "ESCALATE" in out
    assert "+ FAILURE_MEMORY_SIMILAR_ESCALATE" in out
    _, after = _story_ids(out)
    assert f"lumyn show {after}" in out and "lumyn replay decision_pack.zip" in out
    # The printed ids are real: the next commands work.
    shown = sub("show", after, cwd=tmp_path)
    assert shown.returncode == 0
    record = json.loads(shown.stdout)
    assert record["verdict"] == "ESCALATE"
    assert "FAILURE_MEMORY_SIMILAR_ESCALATE" in record["reason_codes"]
    assert sub("export", after, "--pack", "--out", "decision_pack.zip", cwd=tmp_path).returncode == 0
    replayed = sub("replay", "decision_pack.zip", "--markdown", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "PASS" in replayed.stdout


# -- demo --story ---------------------------------------------------------------------------------


def test_story_shows_both_records_side_by_side(tmp_path: Path) -> None:
    result = cli("demo", "--story")  # creates the workspace when missing
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / ".lumyn" / "lumyn.db").is_file()
    assert (tmp_path / ".lumyn" / "policy.yml").is_file()
    before_id, after_id = _story_ids(result.stdout)
    before = json.loads(cli("show", before_id).stdout)
    after = json.loads(cli("show", after_id).stdout)
    assert before["verdict"] == "TRUST" and before["reason_codes"] == ["REFUND_SMALL_LOW_RISK"]
    assert after["verdict"] == "ESCALATE"
    assert after["reason_codes"] == ["FAILURE_MEMORY_SIMILAR_ESCALATE", "REFUND_SMALL_LOW_RISK"]
    # The first record was labeled a failure, and the second decision's memory points at it.
    (event,) = before["decision_event_log"]
    assert event["data"]["label"] == "failure"
    top = after["risk_signals"]["failure_similarity"]["top_k"]
    assert top[0]["memory_id"] == event["data"]["memory_id"]
    assert after["risk_signals"]["failure_similarity"]["score"] >= 0.35
    verdict_row = next(line for line in result.stdout.splitlines() if line.strip().startswith("verdict"))
    assert verdict_row.split()[1:] == ["TRUST", "ESCALATE"]


def test_story_uses_a_fresh_tenant_each_run(tmp_path: Path) -> None:
    first = cli("demo", "--story")
    second = cli("demo", "--story")
    assert first.exit_code == second.exit_code == 0
    tenants = [re.search(r"tenant (demo-\S+),", r.stdout) for r in (first, second)]
    assert tenants[0] and tenants[1] and tenants[0].group(1) != tenants[1].group(1)
    # The second run starts from TRUST again: earlier failures do not leak across tenants.
    before, _ = _story_ids(second.stdout)
    assert json.loads(cli("show", before).stdout)["verdict"] == "TRUST"


def _decision_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM decisions").fetchone()[0])


@pytest.mark.parametrize("story", [True, False])
def test_demo_leaves_a_workspace_with_another_policy_untouched(tmp_path: Path, story: bool) -> None:
    """`init`'s own hint for the billing pack is `lumyn demo --story --workspace .lumyn-billing`:
    the support refunds go to a separate demo workspace, and the output says so."""
    assert cli("init", "--workspace", ".lumyn-billing", "--policy-template", "billing").exit_code == 0
    billing_db = tmp_path / ".lumyn-billing" / "lumyn.db"
    result = cli("demo", *(["--story"] if story else []), "--workspace", ".lumyn-billing")
    assert result.exit_code == 0, result.stderr
    said = result.stdout if story else result.stderr
    assert "lumyn-billing, which the demo's support refunds do not fit" in said
    assert "separate demo workspace .lumyn-billing/demo" in said
    assert "--workspace .lumyn-billing/demo" in (result.stdout + result.stderr)  # next commands
    assert _decision_count(billing_db) == 0
    assert _decision_count(tmp_path / ".lumyn-billing" / "demo" / "lumyn.db") > 0
    if story:
        _, after = _story_ids(result.stdout)
        shown = json.loads(cli("show", after, "--workspace", ".lumyn-billing/demo").stdout)
        assert shown["policy"]["policy_id"] == "lumyn-support"
    assert "lumyn-billing" in (tmp_path / ".lumyn-billing" / "policy.yml").read_text()


def test_demo_uses_a_support_workspace_itself(tmp_path: Path) -> None:
    assert cli("init", "--workspace", "ws").exit_code == 0
    result = cli("demo", "--story", "--workspace", "ws")
    assert result.exit_code == 0, result.stderr
    assert "note:" not in result.stdout
    assert _decision_count(tmp_path / "ws" / "lumyn.db") == 2
    assert not (tmp_path / "ws" / "demo").exists()


def test_story_fails_loudly_when_compounding_cannot_happen(monkeypatch: pytest.MonkeyPatch) -> None:
    import lumyn.cli.demo as demo

    original = demo.refund_request

    def dissimilar(tenant: str, **kwargs: object) -> dict[str, object]:
        request = original(tenant, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("ticket") == "ZD-1077":  # the second request: make it unlike the first
            request["action"]["amount"]["value"] = 4000.0  # type: ignore[index]
            request["action"]["tags"] = ["goodwill"]  # type: ignore[index]
            request["action"]["target"] = {"system": "adyen"}  # type: ignore[index]
        return request

    monkeypatch.setattr(demo, "refund_request", dissimilar)
    result = cli("demo", "--story")
    assert result.exit_code == 1
    assert "DEMO_FAILED" in result.stderr


# -- demo -------------------------------------------------------------------------------------------


def test_demo_prints_real_records_as_json(tmp_path: Path) -> None:
    result = cli("demo")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["verdict"] for r in records] == ["TRUST", "ESCALATE", "QUERY", "ABSTAIN", "TRUST"]
    tenants = {r["request"]["subject"]["tenant_id"] for r in records}
    assert len(tenants) == 1 and next(iter(tenants)).startswith("demo-")
    for record in records:  # stored, so they can be shown
        assert json.loads(cli("show", record["decision_id"]).stdout)["decision_id"] == record["decision_id"]
    query = records[2]
    assert query["queries"][0]["field"] == "evidence.order_id"


# -- doctor -----------------------------------------------------------------------------------------


def _rows(stdout: str) -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in stdout.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ("ok", "FAIL", "fixed", "warn"):
            rows.setdefault(parts[1], []).append(parts[0])
    return rows


def test_doctor_reports_a_missing_workspace_without_creating_it(tmp_path: Path) -> None:
    result = cli("doctor")
    assert result.exit_code == 1
    rows = _rows(result.stdout)
    assert rows["python"] == ["ok"]
    assert rows["workspace"] == ["FAIL"] and rows["policy"] == ["FAIL"] and rows["database"] == ["FAIL"]
    assert "UNHEALTHY: 3 problem(s)" in result.stderr and "--fix" in result.stderr
    assert not (tmp_path / ".lumyn").exists()


def test_doctor_fix_repairs_and_says_what_it_did(tmp_path: Path) -> None:
    result = cli("doctor", "--fix")
    assert result.exit_code == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert rows["workspace"] == ["fixed"]
    assert rows["policy"] == ["fixed", "ok"]
    assert rows["database"] == ["fixed", "ok"]
    assert "created .lumyn/policy.yml" in result.stdout
    assert "created .lumyn/lumyn.db" in result.stdout
    again = cli("doctor")
    assert again.exit_code == 0
    assert all(v == ["ok"] for v in _rows(again.stdout).values()), again.stdout


def test_doctor_finds_and_fixes_missing_tables(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    db = tmp_path / ".lumyn" / "lumyn.db"
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE memory_items")
    conn.commit()
    conn.close()
    broken = cli("doctor")
    assert broken.exit_code == 1
    assert "missing tables: memory_items" in broken.stdout
    # Without --fix nothing was changed.
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert "memory_items" not in names
    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 0, fixed.stdout
    assert "recreated missing tables: memory_items" in fixed.stdout
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert "memory_items" in names


def test_doctor_flags_an_invalid_policy_and_does_not_overwrite_it(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    policy = tmp_path / ".lumyn" / "policy.yml"
    policy.write_text("schema_version: policy.v0\npolicy_id: x\n")
    for args in (("doctor",), ("doctor", "--fix")):
        result = cli(*args)
        assert result.exit_code == 1
        assert _rows(result.stdout)["policy"] == ["FAIL"]
        assert "lumyn policy validate" in result.stdout
    assert policy.read_text() == "schema_version: policy.v0\npolicy_id: x\n"


def test_doctor_flags_a_corrupt_database(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    db = tmp_path / ".lumyn" / "lumyn.db"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    db.write_bytes(b"garbage" * 1000)
    result = cli("doctor", "--fix")
    assert result.exit_code == 1
    assert _rows(result.stdout)["database"] == ["FAIL"]
    assert db.read_bytes() == b"garbage" * 1000  # never overwritten


def test_doctor_workspace_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / ".lumyn").write_text("oops")
    result = cli("doctor", "--fix")
    assert result.exit_code == 1
    assert _rows(result.stdout)["workspace"] == ["FAIL"]
