"""Schemathesis drives the running service from its own OpenAPI document: no 5xx, ever."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _support import start_service


def run_schemathesis(tmp_path: Path, examples: int) -> str:
    process, base = start_service(tmp_path / ".lumyn")
    try:
        executable = shutil.which("schemathesis") or shutil.which("st")
        command = ([executable] if executable else [sys.executable, "-m", "schemathesis.cli"])
        result = subprocess.run(
            [*command, "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
             "-n", str(examples), "--seed", "7"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "generated" in output and " failed" not in output.split("Test cases:")[-1]
    return output


def test_no_server_errors_from_the_openapi_document(tmp_path: Path) -> None:
    run_schemathesis(tmp_path, examples=25)


@pytest.mark.slow
def test_no_server_errors_long_run(tmp_path: Path) -> None:
    output = run_schemathesis(tmp_path, examples=500)
    print(output.split("Test cases:")[-1][:200])
