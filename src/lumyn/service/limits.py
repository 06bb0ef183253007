"""Connection limits for `lumyn serve`: what uvicorn's defaults leave open to a hostile client.

uvicorn (httptools parser) has no header size limit (the parser buffers an unfinished header
without bound), no deadline for a request's headers or body, and no cap on open connections:
idle sockets pile up until the process runs out of descriptors and every client is refused.
The protocol class built here adds, per connection:

- a header deadline: a request's headers must be complete within `header_timeout_s` of its
  first byte (or of the connection opening); otherwise the connection is closed;
- a body deadline: the body must be complete within `body_timeout_s` of the headers;
- a header size limit: more than `max_header_bytes` before the headers end → 431, closed;
- a connection cap: at `max_connections`, a new connection evicts the oldest one still
  waiting for its headers (a slow or idle client); when none is waiting, it is refused.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TOO_LARGE_BODY = (b'{"error": {"reason_code": "HEADERS_TOO_LARGE", "field": "(headers)", '
                   b'"message": "request headers are too large"}}')
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"content-type: application/json\r\nconnection: close\r\n"
              b"content-length: %d\r\n\r\n" % len(_TOO_LARGE_BODY)) + _TOO_LARGE_BODY


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32 * 1024
    keep_alive_s: int = 5


def server_options(limits: Limits) -> dict[str, Any]:
    """Options for uvicorn.run: the guarded protocol and the keep-alive timeout."""
    _raise_descriptor_limit(limits.max_connections)
    return {"http": guarded_protocol(limits), "timeout_keep_alive": limits.keep_alive_s,
            "backlog": max(2048, limits.max_connections)}


def _raise_descriptor_limit(connections: int) -> None:
    """Room for every allowed connection plus the store's files and threads."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    # Connections still waiting for their headers, oldest first (dicts keep insertion order);
    # shared by every connection of this server.
    waiting: dict[GuardedProtocol, None] = {}

    class GuardedProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                if not waiting:
                    transport.abort()  # every slot is busy with a real request
                    return
                oldest = next(iter(waiting))
                oldest._drop()
            super().connection_made(transport)
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            waiting.pop(self, None)
            if self.transport is not None:
                super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self in waiting:
                self._header_bytes += len(data)
                if self._header_bytes > limits.max_header_bytes:
                    self.transport.write(_TOO_LARGE)
                    self._drop(gently=True)
                    return
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self not in waiting:
                self._await_headers()

        def on_headers_complete(self) -> None:
            waiting.pop(self, None)
            self._header_bytes = 0
            self._arm(limits.body_timeout_s)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _await_headers(self) -> None:
            waiting[self] = None
            self._arm(limits.header_timeout_s)

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._drop)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _drop(self, gently: bool = False) -> None:
            self._disarm()
            waiting.pop(self, None)
            if not self.transport.is_closing():
                if gently:
                    self.transport.close()  # flush the 431 first
                else:
                    self.transport.abort()

    return GuardedProtocol
