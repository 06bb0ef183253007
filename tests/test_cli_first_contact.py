"""A new user's first minutes with the CLI: the sample request `init` leaves, `serve` without the
service extra, bad ports and hosts, workspace options before the command, doctor's advice on
an invalid policy, `show`'s event log, and the message for ids too large for canonical JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _builders import SUPPORT_REFUND
from test_cli_kit import LUMYN_VARS, SRC, assert_one_line_error, clean_env, cli, sub

from lumyn import Lumyn, LumynConfig
from lumyn.errors import RequestInvalid

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


# -- init's sample request ------------------------------------------------------------------------


@pytest.mark.parametrize(("pack", "verdict_code"), [
    ("support", "REFUND_SMALL_LOW_RISK"),
    ("account", "CHANGE_EMAIL_OK"),
    ("billing", "SPEND_SMALL_OK"),
])
def test_init_leaves_a_sample_request_that_decide_accepts(tmp_path: Path, pack: str,
                                                          verdict_code: str) -> None:
    ws = f".lumyn-{pack}"
    made = sub("init", "--workspace", ws, "--policy-template", pack, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    example = f"{ws}/examples/request.json"
    assert (tmp_path / example).is_file()
    assert f"lumyn decide --in {example} --workspace {ws}" in made.stdout  # its own hint
    decided = sub("decide", "--in", example, "--workspace", ws, cwd=tmp_path)
    assert decided.returncode == 0, decided.stderr
    record = json.loads(decided.stdout)
    assert (record["verdict"], record["reason_codes"]) == ("TRUST", [verdict_code])


def test_init_keeps_an_edited_sample_and_a_custom_policy_gets_one_too(tmp_path: Path) -> None:
    custom = tmp_path / "mine.yml"
    custom.write_text((REPO / "tests" / "test_policy_dotted_required_evidence.py").read_text()
                      .split('POLICY = """\\\n')[1].split('"""')[0])
    assert cli("init", "--workspace", "ws", "--policy-template", str(custom)).exit_code == 0
    sample = json.loads((tmp_path / "ws" / "examples" / "request.json").read_text())
    assert sample["action"]["type"] == "support.refund"
    assert sample["evidence"]["address"] == {"country": "example-country"}  # dotted key, nested
    decided = cli("decide", "--in", "ws/examples/request.json", "--workspace", "ws")
    assert decided.exit_code == 0, decided.stderr
    assert json.loads(decided.stdout)["explanation"]["details"]["missing_evidence"] == []
    (tmp_path / "ws" / "examples" / "request.json").write_text("{}")
    again = cli("init", "--workspace", "ws", "--policy-template", str(custom))
    assert "kept ws/examples/request.json" in again.stdout
    assert (tmp_path / "ws" / "examples" / "request.json").read_text() == "{}"


def test_doctor_fix_leaves_the_sample_too(tmp_path: Path) -> None:
    fixed = cli("doctor", "--fix")
    assert fixed.exit_code == 0, fixed.stderr
    assert "created .lumyn/examples/request.json" in fixed.stdout
    decided = cli("decide", "--in", ".lumyn/examples/request.json")
    assert decided.exit_code == 0 and json.loads(decided.stdout)["verdict"] == "TRUST"


@pytest.mark.parametrize("doc", ["README.md", "docs/quickstart.md"])
def test_docs_decide_the_sample_request(doc: str) -> None:
    text = (REPO / doc).read_text(encoding="utf-8")
    assert "lumyn decide --in .lumyn/examples/request.json" in text
    assert "--in request.json" not in text


# -- serve ----------------------------------------------------------------------------------------


def _without_service_extra(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a fresh interpreter where uvicorn cannot be imported, as after
    a plain `pip install .` (a None entry in sys.modules makes its import fail)."""
    env = {k: v for k, v in os.environ.items() if k not in LUMYN_VARS}
    env["PYTHONPATH"] = str(SRC)
    code = ("import sys; sys.modules['uvicorn'] = None; from lumyn.cli.main import main; "
            f"sys.exit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120, check=False)


@pytest.mark.parametrize("args", [("serve",), ("serve", "--dry-run")])
def test_serve_without_the_service_extra_says_how_to_install_it(tmp_path: Path,
                                                                args: tuple[str, ...]) -> None:
    result = _without_service_extra(tmp_path, *args)
    assert result.returncode == 1
    assert_one_line_error(result.stderr, "SERVICE_UNAVAILABLE", "uvicorn not installed",
                          "pip install '.[service]'")
    if "--dry-run" in args:
        assert json.loads(result.stdout)["port"] == 8000  # the configuration is still shown


@pytest.mark.parametrize(("flag", "value", "needle"), [
    ("--port", "99999", "--port"),
    ("--port", "0", "--port"),
    ("--port", "-1", "--port"),
    ("--host", "999.1.1.1", "not a valid IP address"),
    ("--host", "exa mple", "not an IP address or host name"),
    ("--host", "", "not an IP address or host name"),
])
def test_serve_refuses_ports_and_hosts_that_cannot_be_bound(tmp_path: Path, flag: str, value: str,
                                                           needle: str) -> None:
    for args in (("serve", flag, value), ("serve", "--dry-run", flag, value)):
        result = sub(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stdout
        assert_one_line_error(result.stderr, "USAGE_ERROR", needle)
        assert result.stdout == ""


@pytest.mark.parametrize(("host", "port"), [("127.0.0.1", "1"), ("::1", "65535"),
                                            ("localhost", "8000"), ("0.0.0.0", "8080")])
def test_serve_accepts_real_hosts_and_ports(tmp_path: Path, host: str, port: str) -> None:
    result = cli("serve", "--dry-run", "--host", host, "--port", port)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["host"] == host


# -- global options before the command ---------------------------------------------------------


def test_workspace_and_config_options_may_come_before_the_command(tmp_path: Path) -> None:
    assert sub("init", "--workspace", "ws", cwd=tmp_path).returncode == 0
    decided = sub("--workspace", "ws", "decide", "--in", "ws/examples/request.json", cwd=tmp_path)
    assert decided.returncode == 0, decided.stderr
    decision_id = json.loads(decided.stdout)["decision_id"]
    for args in (("--workspace", "ws", "show", decision_id),  # the fast path
                 ("-w", "ws", "explain", decision_id),
                 ("--workspace=ws", "policy", "validate")):
        result = sub(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    (tmp_path / "lumyn.toml").write_text(f'[lumyn]\nstorage_url = "sqlite:///{tmp_path}/ws/lumyn.db"\n')
    shown = sub("--config", "lumyn.toml", "show", decision_id, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    missing = sub("--workspace", "ws", cwd=tmp_path)
    assert missing.returncode == 2
    assert_one_line_error(missing.stderr, "USAGE_ERROR", "missing command after --workspace")


# -- doctor on an invalid policy ----------------------------------------------------------------


def test_doctor_points_at_policy_validate_for_an_invalid_policy(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    policy = tmp_path / ".lumyn" / "policy.yml"
    policy.write_text(policy.read_text().replace("stage: HARD_BLOCKS", "stage: HARD_BLOKS", 1))
    result = sub("doctor", cwd=tmp_path)
    assert result.returncode == 1
    line = assert_one_line_error(result.stderr, "UNHEALTHY", "lumyn policy validate",
                                 "HARD_BLOKS", "--fix cannot repair it")
    assert "Run `lumyn doctor --fix`" not in line
    fixed = sub("doctor", "--fix", cwd=tmp_path)  # --fix does not pretend otherwise
    assert fixed.returncode == 1 and "lumyn policy validate" in fixed.stderr


# -- show's event log ---------------------------------------------------------------------------


def test_show_prints_an_empty_event_log(tmp_path: Path, store_url: str) -> None:
    env = {"LUMYN_STORAGE_URL": store_url}
    assert sub("init", cwd=tmp_path, env=env).returncode == 0
    decided = sub("decide", "--in", ".lumyn/examples/request.json", cwd=tmp_path, env=env)
    decision_id = json.loads(decided.stdout)["decision_id"]
    fast = json.loads(sub("show", decision_id, cwd=tmp_path, env=env).stdout)
    full = json.loads(cli("show", decision_id, env=env).stdout)  # the Typer app
    assert fast["decision_event_log"] == [] and full["decision_event_log"] == []
    assert sub("label", decision_id, "--label", "success", cwd=tmp_path, env=env).returncode == 0
    shown = json.loads(sub("show", decision_id, cwd=tmp_path, env=env).stdout)
    assert [e["type"] for e in shown["decision_event_log"]] == ["label"]


# -- integers beyond 2^53 -------------------------------------------------------------------------


def test_a_huge_integer_id_is_refused_with_advice_to_send_a_string(tmp_path: Path) -> None:
    request = json.loads(json.dumps(SUPPORT_REFUND))
    request["evidence"]["order_id"] = 1234567890123456789
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"))) as lumyn:
        with pytest.raises(RequestInvalid) as caught:
            lumyn.decide(request)
        assert caught.value.field == "evidence.order_id"
        assert "send such ids as strings" in str(caught.value)
        request["evidence"]["order_id"] = "1234567890123456789"
        assert lumyn.decide(request)["verdict"] == "TRUST"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert '"order_id": "1234567890123456789"' in readme


@pytest.mark.parametrize("digits", ["1234567890123456789", "123456789012345678901234567890"])
def test_the_service_refuses_huge_integer_ids_by_name(tmp_path: Path, digits: str) -> None:
    """orjson reads an integer beyond 64 bits as a float; the service must still refuse it
    (not decide on an id with its last digits lost)."""
    from fastapi.testclient import TestClient

    from lumyn.service import create_app

    body = json.dumps(SUPPORT_REFUND).replace('"82731"', digits, 1)
    assert digits in body
    with TestClient(create_app(LumynConfig(store_path=str(tmp_path / "l.db")))) as client:
        response = client.post("/v0/decide", content=body,
                               headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "evidence.order_id"
    assert "send such ids as strings" in error["message"]
