"""Startup: `lumyn --help` and `lumyn show ID` load no heavy module; the fast path agrees with
the Typer app. (Timings: benchmarks/bench_cli.py.)"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from test_cli_kit import SRC, clean_env, cli, decide, refund, sub

from lumyn.cli.app import app
from lumyn.cli.catalog import COMMANDS, fast_help
from lumyn.cli.main import _parse_show, main

HEAVY = ("typer", "click", "pydantic", "fastapi", "uvicorn", "numpy", "jsonschema", "yaml", "rich",
         "ulid", "lumyn.sdk", "lumyn.engine", "lumyn.policy", "lumyn.memory.index")

PROBE = """
import json, sys
from lumyn.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m in {heavy} or m.split('.')[0] in {heavy}
               or any(m.startswith(h + '.') for h in {heavy}))
sys.stderr.write('\\nLOADED ' + json.dumps(heavy) + '\\n')
sys.exit(code)
"""


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def _loaded(args: list[str], cwd: Path) -> tuple[int, str, list[str]]:
    code = PROBE.replace("{heavy}", repr(set(HEAVY)))
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    marker = done.stderr.rsplit("LOADED ", 1)[1]
    loaded: list[str] = json.loads(marker)
    return done.returncode, done.stdout, loaded


def test_help_loads_nothing_heavy(tmp_path: Path) -> None:
    code, stdout, loaded = _loaded(["--help"], tmp_path)
    assert code == 0
    assert loaded == []
    assert stdout == fast_help()


def test_show_loads_nothing_heavy(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    record = decide(tmp_path, refund())
    code, stdout, loaded = _loaded(["show", record["decision_id"]], tmp_path)
    assert code == 0
    assert loaded == []
    assert json.loads(stdout) == {**record, "decision_event_log": []}


def test_fast_help_lists_exactly_the_apps_commands() -> None:
    import typer.main

    group = typer.main.get_command(app)
    names = set(group.commands)  # type: ignore[attr-defined]
    assert names == {name for name, _ in COMMANDS}
    assert set(group.commands["policy"].commands) == {"validate", "test"}  # type: ignore[attr-defined]
    for name, summary in COMMANDS:
        assert f"  {name}" in fast_help() and summary in fast_help()


def test_fast_show_matches_the_typer_show(tmp_path: Path) -> None:
    assert cli("init", "--workspace", "ws").exit_code == 0
    record = decide(tmp_path, refund(), "--workspace", "ws")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["show", record["decision_id"], "-w", "ws"]) == 0
    assert buffer.getvalue() == cli("show", record["decision_id"], "--workspace", "ws").stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["ID"], ("ID", ".lumyn", None)),
        (["ID", "--workspace", "w"], ("ID", "w", None)),
        (["--workspace=w", "ID", "--config", "c.toml"], ("ID", "w", "c.toml")),
        (["-w", "w", "ID", "--config=c.toml"], ("ID", "w", "c.toml")),
        (["ID", "--help"], None),
        (["ID", "other"], None),
        (["--workspace", "w"], None),
        (["ID", "--workspace"], None),
        (["ID", "--bogus"], None),
        ([], None),
    ],
)
def test_parse_show(args: list[str], expected: tuple[str, str, str | None] | None) -> None:
    assert _parse_show(args) == expected


def test_unusual_forms_fall_back_to_the_full_cli(tmp_path: Path) -> None:
    help_ = sub("show", "--help", cwd=tmp_path)
    assert help_.returncode == 0 and "Usage: lumyn show" in help_.stdout and "--workspace" in help_.stdout
    bogus = sub("show", "X", "--bogus", cwd=tmp_path)
    assert bogus.returncode == 2 and "--bogus" in bogus.stderr
    nothing = sub(cwd=tmp_path)
    assert nothing.returncode == 0 and nothing.stdout == fast_help()
    version = sub("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("lumyn ")
    unknown = sub("frobnicate", cwd=tmp_path)
    assert unknown.returncode == 2
