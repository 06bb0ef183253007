#!/usr/bin/env bash
# CPU per request of each thread of `lumyn serve` under wrk (16 connections, 10 s after a 2 s
# warm-up), read from /proc/<pid>/task/*/stat. Server pinned to CPU 1, wrk to CPU 0, as in
# bench_service.py. Linux only; needs wrk and taskset.
#
#   benchmarks/service_threads.sh [SRC_DIR]     # default: this checkout's src/
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:-$ROOT/src}
TMP=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; rm -rf "$TMP"' EXIT
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PYTHONPATH=$SRC taskset -c 1 python -m lumyn.cli.main serve --workspace "$TMP/ws" \
  --host 127.0.0.1 --port "$PORT" >/dev/null 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.2; done
# The same request template and wrk script as bench_service.py.
PYTHONPATH=$ROOT/benchmarks python - "$ROOT" > "$TMP/load.lua" <<'PY'
import json, sys
from _common import sample_request
import bench_service
request = sample_request(0)
request["request_id"] = "__RID__"
print("TEMPLATE = " + json.dumps(json.dumps(request)))
print(bench_service.WRK_SCRIPT)
PY
# per thread: name, user ticks, system ticks, voluntary and involuntary context switches
snapshot() { for t in /proc/$PID/task/*; do
  echo "$(cat "$t/comm") $(awk '{print $14, $15}' "$t/stat") $(awk '/ctxt_switches/ {printf "%s ", $2}' "$t/status")"
done; }
taskset -c 0 wrk -t2 -c16 -d2s -s "$TMP/load.lua" "http://127.0.0.1:$PORT" >/dev/null
snapshot > "$TMP/before"
RESULT=$(taskset -c 0 wrk -t2 -c16 -d10s -s "$TMP/load.lua" "http://127.0.0.1:$PORT" | grep RESULT)
snapshot > "$TMP/after"
read -r _ REQUESTS MICROS _ <<< "$RESULT"
TICK=$(getconf CLK_TCK)
echo "requests $REQUESTS ($(( REQUESTS * 1000000 / MICROS ))/s)"
paste "$TMP/before" "$TMP/after" | awk -v n="$REQUESTS" -v tick="$TICK" '
  { u = $7 - $2; s = $8 - $3; us = 1e6 / tick / n
    if (u + s > 0) printf "%-18s %6.1f us/request (user %5.1f, sys %5.1f), context switches %.2f + %.2f involuntary\n", $1, (u + s) * us, u * us, s * us, ($9 - $4) / n, ($10 - $5) / n
    total += u + s }
  END { printf "%-18s %6.1f us/request\n", "all threads", total * 1e6 / tick / n }'
