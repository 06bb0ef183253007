"""CLI startup: `lumyn --help` and `lumyn show ID` beside `python -c pass`, in the same run.

    python benchmarks/bench_cli.py [--runs 20]

Each command is a fresh interpreter (subprocess), as a user runs it; the three commands are
interleaved run by run so machine drift hits all alike, and the medians are compared.
Target (issue 3): both below 3 × `python -c pass`. `lumyn explain ID`, which goes through the
Typer app, is printed for context.

`lumyn` is run as `python -m lumyn.cli.main` with PYTHONPATH=src, which is what the installed
console script does (it imports lumyn.cli.main and calls main()), minus the script's own
`importlib.metadata` lookup (none: pip's console scripts import the module directly).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 3.0


def _time(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    runs = max(10, args.runs)

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("LUMYN_STORAGE_URL", None)
    env.pop("LUMYN_CONFIG_PATH", None)
    with tempfile.TemporaryDirectory() as tmp:
        lumyn = [sys.executable, "-m", "lumyn.cli.main"]
        made = subprocess.run([*lumyn, "demo"], env=env, cwd=tmp, capture_output=True, check=True)
        decision_id = made.stderr.decode().split("ESCALATE ")[1].split(",")[0].strip()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "lumyn --help": [*lumyn, "--help"],
            "lumyn show ID": [*lumyn, "show", decision_id],
            # For context only (not a target): a command that goes through the Typer app.
            "lumyn explain ID": [*lumyn, "explain", decision_id],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # warm the OS cache and .pyc files
            _time(cmd, env, tmp)
        for _ in range(runs):
            for name, cmd in commands.items():
                samples[name].append(_time(cmd, env, tmp))

    base = statistics.median(samples["python -c pass"])
    print(f"CLI startup, {runs} runs each, median (python {sys.version.split()[0]})")
    worst = 0.0
    for name, values in samples.items():
        median = statistics.median(values)
        ratio = median / base
        if name in ("lumyn --help", "lumyn show ID"):
            worst = max(worst, ratio)
        note = "   (context: full Typer CLI)" if name == "lumyn explain ID" else ""
        print(f"  {name:<16} {median * 1e3:7.1f} ms   {ratio:4.2f} x python -c pass{note}")
    verdict = "PASS" if worst < TARGET else "FAIL"
    print(f"target < {TARGET:.1f} x: {verdict} (worst {worst:.2f} x)")
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
