#!/usr/bin/env bash
# The long reliability campaign: the slow tests (25 SDK kills, 20 service kills, long
# schemathesis run) and a soak of SOAK_SECONDS (default 1800) at SOAK_RATE req/s.
# Results go to docs/reliability.md by hand, with the command line used.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LUMYN_RUN_SLOW=1 python -m pytest tests/reliability -q -s
SOAK_SECONDS="${SOAK_SECONDS:-1800}" python scripts/soak.py
