"""Helpers shared by the CLI and pack tests (this module holds no tests itself).

`cli(...)` drives the real Typer app in-process (CliRunner); `sub(...)` runs the real entry
point in a fresh interpreter (`python -m lumyn.cli.main`), as the `lumyn` script does.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _builders import SUPPORT_REFUND
from typer.testing import CliRunner, Result

from lumyn.cli.app import app

SRC = Path(__file__).resolve().parent.parent / "src"
LUMYN_VARS = ("LUMYN_STORAGE_URL", "LUMYN_POLICY_PATH", "LUMYN_SHADOW_POLICY_PATH", "LUMYN_MODE",
              "LUMYN_REDACTION_PROFILE",
              "LUMYN_TOP_K", "LUMYN_SIGNING_SECRET", "LUMYN_SIGNING_SCHEME", "LUMYN_CONFIG_PATH",
              "LUMYN_DEBUG")


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LUMYN_VARS:
        monkeypatch.delenv(name, raising=False)


def cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=input, env=env)


def sub(*args: str, cwd: Path, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in LUMYN_VARS}
    full_env["PYTHONPATH"] = str(SRC) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lumyn.cli.main", *args], cwd=cwd, env=full_env, input=input,
        capture_output=True, text=True, timeout=120, check=False,
    )


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """Exactly one non-empty stderr line, no traceback, containing every needle."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one stderr line, got: {stderr!r}"
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


BASE_REQUEST: dict[str, Any] = SUPPORT_REFUND


def refund(amount: float = 12.0, tenant: str = "acme", **evidence: Any) -> dict[str, Any]:
    """A small clean USD refund; evidence keyword None removes that key."""
    request = copy.deepcopy(BASE_REQUEST)
    request["subject"]["tenant_id"] = tenant
    request["action"]["amount"]["value"] = amount
    for key, value in evidence.items():
        if value is None:
            request["evidence"].pop(key, None)
        else:
            request["evidence"][key] = value
    return request


def write_request(path: Path, request: dict[str, Any]) -> str:
    path.write_text(json.dumps(request), encoding="utf-8")
    return str(path)


def decide(tmp: Path, request: dict[str, Any], *extra: str) -> dict[str, Any]:
    """Decide through the CLI and return the printed record."""
    name = tmp / f"req-{abs(hash(json.dumps(request, sort_keys=True)))}.json"
    result = cli("decide", "--in", write_request(name, request), *extra)
    assert result.exit_code == 0, result.stderr
    record: dict[str, Any] = json.loads(result.stdout)
    return record
