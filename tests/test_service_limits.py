"""`lumyn serve` under hostile connections, over real sockets (issue 14, item 4): unfinished
headers and bodies time out, oversized headers get 431, and idle connections beyond the cap
are evicted so legitimate clients are still served."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_service_http import start_server

LIMITS = {"LUMYN_MAX_CONNECTIONS": "64", "LUMYN_HEADER_TIMEOUT_S": "1",
          "LUMYN_BODY_TIMEOUT_S": "1", "LUMYN_MAX_HEADER_BYTES": "8192"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    workspace = tmp_path_factory.mktemp("limits") / ".lumyn"
    process, base = start_server(workspace, LIMITS, preexec_fn=_typical_descriptor_limit)
    yield base, int(base.rsplit(":", 1)[1])
    _stop(process)


def _typical_descriptor_limit() -> None:
    """1,024 descriptors, soft and hard, as on a default Linux login: the probe's setting."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, or None if still open after `seconds`."""
    sock.settimeout(seconds)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        return received


def test_unfinished_headers_are_dropped_after_the_header_timeout(served: tuple[str, int]) -> None:
    _, port = served
    with _connect(port) as silent, _connect(port) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
        started = time.monotonic()
        assert _closed_within(silent, 5) is not None
        assert _closed_within(slow, 5) is not None
        assert time.monotonic() - started < 4


def test_unfinished_body_is_dropped_after_the_body_timeout(served: tuple[str, int]) -> None:
    _, port = served
    with _connect(port) as sock:
        sock.sendall(b"POST /v0/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"a\":")
        assert _closed_within(sock, 5) is not None


def test_oversized_headers_get_431_and_are_not_buffered(served: tuple[str, int]) -> None:
    _, port = served
    with _connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # up to 4 MiB of one header value, never finished
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _closed_within(sock, 5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 431"), answer


def test_legitimate_clients_are_served_beside_1100_idle_connections(
    served: tuple[str, int],
) -> None:
    base, port = served
    idle = [_connect(port) for _ in range(1100)]
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            for _ in range(20):
                assert client.get("/healthz").status_code == 200
    finally:
        for sock in idle:
            sock.close()


def test_limits_are_settings_and_serve_dry_run_shows_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMYN_")}
    result = subprocess.run(
        [sys.executable, "-m", "lumyn.cli.main", "serve", "--dry-run",
         "--workspace", str(tmp_path / ".lumyn")],
        env={**env, **LIMITS}, capture_output=True, text=True, check=True,
    )
    assert '"max_connections": 64' in result.stdout and '"header_timeout_s": 1.0' in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lumyn.cli.main", "serve", "--dry-run",
         "--workspace", str(tmp_path / ".lumyn")],
        env={**env, "LUMYN_MAX_CONNECTIONS": "lots"}, capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "max_connections" in bad.stderr
