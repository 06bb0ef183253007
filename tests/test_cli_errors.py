"""Every expected failure: one line on stderr naming the problem, non-zero exit, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_kit import (
    assert_one_line_error,
    clean_env,
    cli,
    decide,
    refund,
    sub,
    write_request,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    assert cli("init").exit_code == 0
    return tmp_path / ".lumyn"


def _fails(*args: str, code: int = 1, input: str | None = None) -> str:
    result = cli(*args, input=input)
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.stderr


# -- input files ----------------------------------------------------------------------------------


def test_missing_request_file(workspace: Path) -> None:
    assert_one_line_error(_fails("decide", "--in", "nope.json"), "FILE_NOT_FOUND", "nope.json")


def test_request_path_is_a_directory(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    assert_one_line_error(_fails("decide", "--in", "dir"), "FILE_NOT_FOUND", "dir")


def test_bad_json(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"schema_version": ')
    assert_one_line_error(_fails("decide", "--in", "bad.json"), "INVALID_JSON", "bad.json", "line 1")


def test_empty_stdin(workspace: Path) -> None:
    assert_one_line_error(_fails("decide", "--in", "-", input=""), "INVALID_JSON", "standard input")


def test_request_that_is_not_an_object(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    assert_one_line_error(_fails("decide", "--in", "list.json"), "INVALID_REQUEST_SCHEMA")


def test_schema_invalid_request_names_the_field(workspace: Path, tmp_path: Path) -> None:
    request = refund()
    request["action"]["type"] = "Refund Now"
    line = assert_one_line_error(_fails("decide", "--in", write_request(tmp_path / "r.json", request)),
                                 "INVALID_REQUEST_SCHEMA")
    assert "action.type" in line


def test_context_digest_mismatch(workspace: Path, tmp_path: Path) -> None:
    request = refund()
    request["context"] = {"mode": "inline", "digest": "sha256:" + "0" * 64, "inline": {"a": 1}}
    assert_one_line_error(_fails("decide", "--in", write_request(tmp_path / "r.json", request)),
                          "CONTEXT_DIGEST_MISMATCH", "context.digest")


def test_policy_pin_mismatch(workspace: Path, tmp_path: Path) -> None:
    request = refund()
    request["policy"] = {"policy_id": "some-other-policy"}
    assert_one_line_error(_fails("decide", "--in", write_request(tmp_path / "r.json", request)),
                          "POLICY_MISMATCH", "policy.policy_id")


def test_idempotency_conflict(workspace: Path, tmp_path: Path) -> None:
    first = refund()
    first["request_id"] = "same-key"
    record = decide(tmp_path, first)
    second = refund(15.0)
    second["request_id"] = "same-key"
    line = assert_one_line_error(
        _fails("decide", "--in", write_request(tmp_path / "second.json", second)),
        "IDEMPOTENCY_CONFLICT", "same-key",
    )
    assert record["decision_id"] in line


# -- decisions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("show", "01UNKNOWN"),
        ("explain", "01UNKNOWN"),
        ("explain", "01UNKNOWN", "--markdown"),
        ("export", "01UNKNOWN"),
        ("export", "01UNKNOWN", "--pack", "--out", "p.zip"),
        ("label", "01UNKNOWN", "--label", "failure"),
    ],
)
def test_unknown_decision_id(workspace: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    assert_one_line_error(_fails(*args), "DECISION_NOT_FOUND", "01UNKNOWN")
    assert not (tmp_path / "p.zip").exists()


def test_bad_label(workspace: Path, tmp_path: Path) -> None:
    record = decide(tmp_path, refund())
    line = assert_one_line_error(_fails("label", record["decision_id"], "--label", "oops"),
                                 "INVALID_EVENT", "failure, success, near_miss")
    assert "label" in line
    events = json.loads(cli("show", record["decision_id"]).stdout)["decision_event_log"]
    assert events == []  # nothing was appended


def test_reading_commands_never_create_a_missing_workspace(tmp_path: Path) -> None:
    for args in (("show", "X"), ("explain", "X"), ("export", "X"), ("label", "X", "--label", "success")):
        assert_one_line_error(_fails(*args), "WORKSPACE_NOT_FOUND", "lumyn init")
    assert not (tmp_path / ".lumyn").exists()


# -- policy and workspace -------------------------------------------------------------------------


def test_invalid_workspace_policy_stops_decide(workspace: Path, tmp_path: Path) -> None:
    (workspace / "policy.yml").write_text("policy_id: [unclosed\n")
    line = assert_one_line_error(
        _fails("decide", "--in", write_request(tmp_path / "r.json", refund())), "INVALID_POLICY",
    )
    assert "policy.yml" in line


def test_unknown_policy_template(tmp_path: Path) -> None:
    assert_one_line_error(_fails("init", "--policy-template", "nope"), "POLICY_TEMPLATE_NOT_FOUND",
                          "nope", "support, account, billing")
    assert not (tmp_path / ".lumyn").exists()


def test_invalid_policy_template(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("schema_version: policy.v0\nrules: 3\n")
    assert_one_line_error(_fails("init", "--policy-template", "bad.yml"), "INVALID_POLICY", "bad.yml")


@pytest.mark.parametrize(
    "args",
    [
        ("init",),
        ("decide", "--in", "r.json"),
        ("demo",),
        ("demo", "--story"),
    ],
)
def test_unwritable_workspace(tmp_path: Path, args: tuple[str, ...]) -> None:
    write_request(tmp_path / "r.json", refund())
    (tmp_path / "ws").write_text("a file, not a directory")
    result = cli(*args, "--workspace", "ws")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "WORKSPACE_UNWRITABLE", "ws")


def test_unwritable_database_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blocker").write_text("x")
    monkeypatch.setenv("LUMYN_STORAGE_URL", f"sqlite:///{tmp_path}/blocker/sub/lumyn.db")
    write_request(tmp_path / "r.json", refund())
    assert_one_line_error(_fails("decide", "--in", "r.json"), "WORKSPACE_UNWRITABLE", "blocker")


def test_corrupt_database_fails_closed(workspace: Path, tmp_path: Path) -> None:
    (workspace / "lumyn.db").write_bytes(b"this is not sqlite" * 100)
    result = cli("decide", "--in", write_request(tmp_path / "r.json", refund()))
    assert result.exit_code == 1
    record = json.loads(result.stdout)  # the fail-closed record is still printed
    assert record["verdict"] == "ABSTAIN" and record["reason_codes"] == ["STORAGE_UNAVAILABLE"]
    assert_one_line_error(result.stderr, "STORAGE_UNAVAILABLE")
    assert_one_line_error(_fails("show", record["decision_id"]), "STORAGE_UNAVAILABLE")


def test_output_file_unwritable(workspace: Path, tmp_path: Path) -> None:
    record = decide(tmp_path, refund())
    (tmp_path / "adir").mkdir()
    assert_one_line_error(_fails("export", record["decision_id"], "--pack", "--out", "adir"),
                          "OUTPUT_UNWRITABLE", "adir")
    assert_one_line_error(_fails("export", record["decision_id"], "--out", "missing/dir/x.json"),
                          "OUTPUT_UNWRITABLE")


# -- configuration --------------------------------------------------------------------------------


def test_bad_config_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[lumyn\n")
    assert_one_line_error(_fails("show", "X", "--config", "bad.toml"), "INVALID_CONFIG", "bad.toml")
    assert_one_line_error(_fails("doctor", "--config", "missing.toml"), "UNHEALTHY")


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("LUMYN_STORAGE_URL", "mysql://x", "storage_url"),
        ("LUMYN_TOP_K", "many", "top_k"),
        ("LUMYN_MODE", "yolo", "mode"),
    ],
)
def test_bad_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                         needle: str) -> None:
    monkeypatch.setenv(var, value)
    assert_one_line_error(_fails("show", "X"), "INVALID_CONFIG", needle)


def test_postgres_url_without_server_is_one_line(tmp_path: Path) -> None:
    result = sub("show", "X", cwd=tmp_path,
                 env={"LUMYN_STORAGE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert result.returncode != 0
    assert_one_line_error(result.stderr)


# -- replay ---------------------------------------------------------------------------------------


def test_replay_missing_and_garbage_packs(tmp_path: Path) -> None:
    assert_one_line_error(_fails("replay", "nope.zip"), "PACK_INVALID", "nope.zip")
    (tmp_path / "garbage.zip").write_bytes(b"PK\x03\x04 definitely not a zip")
    assert_one_line_error(_fails("replay", "garbage.zip"), "PACK_INVALID", "not a zip")
    (tmp_path / "dir.zip").mkdir()
    assert_one_line_error(_fails("replay", "dir.zip"), "PACK_INVALID", "directory")


def test_replay_with_bad_what_if_policy(workspace: Path, tmp_path: Path) -> None:
    record = decide(tmp_path, refund())
    assert cli("export", record["decision_id"], "--pack", "--out", "p.zip").exit_code == 0
    assert_one_line_error(_fails("replay", "p.zip", "--policy", "none.yml"), "FILE_NOT_FOUND",
                          "none.yml")
    (tmp_path / "bad.yml").write_text("rules: [}\n")
    assert_one_line_error(_fails("replay", "p.zip", "--policy", "bad.yml"), "INVALID_POLICY",
                          "bad.yml")


# -- the real entry point, in a fresh interpreter ---------------------------------------------------


def test_entry_point_errors_are_one_line(tmp_path: Path) -> None:
    assert sub("init", cwd=tmp_path).returncode == 0
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "junk.zip").write_text("junk")
    cases = [
        (("show", "01NOPE"), "DECISION_NOT_FOUND"),  # fast path
        (("show", "01NOPE", "--workspace=.lumyn"), "DECISION_NOT_FOUND"),  # fast path, = form
        (("explain", "01NOPE"), "DECISION_NOT_FOUND"),
        (("decide", "--in", "bad.json"), "INVALID_JSON"),
        (("decide", "--in", "absent.json"), "FILE_NOT_FOUND"),
        (("replay", "junk.zip"), "PACK_INVALID"),
    ]
    for args, code in cases:
        result = sub(*args, cwd=tmp_path)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stdout == ""
        assert_one_line_error(result.stderr, code)


def test_unexpected_errors_are_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lumyn.cli.ops as ops

    def boom(*args: object) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(ops, "cmd_show", boom)
    result = cli("show", "X")
    assert result.exit_code == 70
    assert_one_line_error(result.stderr, "INTERNAL_ERROR", "kaboom", "LUMYN_DEBUG")


# -- usage errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["label", "01ARZ3NDEKTSV4RRFFQ69G5FAV"], "--label"),
        (["decide", "--in"], ""),
        (["frobnicate"], ""),
        (["replay"], "pack"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    workspace: Path, tmp_path: Path, args: list[str], field: str
) -> None:
    result = sub(*args, cwd=tmp_path)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert_one_line_error(result.stderr, "USAGE_ERROR", field)
    assert "Traceback" not in result.stderr
