"""Running the MCP gateway: over stdio (an MCP client starts `lumyn mcp` itself) or over
Streamable HTTP (`--listen HOST:PORT`, for remote clients, behind `lumyn serve`'s tenant keys)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server
from starlette.types import ASGIApp, Receive, Scope, Send

from lumyn.integrations.decisions import Decider
from lumyn.integrations.mapfile import ToolMap
from lumyn.integrations.mcp_gateway import (
    DEFAULT_CALL_TIMEOUT,
    Downstream,
    DownstreamUnavailable,
    Gateway,
    Target,
    TenantOf,
    build_server,
)
from lumyn.service.auth import tenant_for_key
from lumyn.service.errors import ApiError

MCP_PATH = "/mcp"


class GatewayStartError(Exception):
    """The downstream server could not be started or reached at start."""


async def serve(decider: Decider, tool_map: ToolMap, target: Target, *,
                listen: tuple[str, int] | None = None, tenant_keys: Mapping[str, str] | None = None,
                timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
    """Connect to the downstream, then serve until the client goes away (stdio) or the
    process is interrupted (HTTP)."""
    downstream = Downstream(target, timeout=timeout)
    gateway = Gateway(decider, tool_map, downstream, call_timeout=timeout)
    failed: str | None = None
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(downstream.run)
        try:
            client = await downstream.client()
            async with anyio.create_task_group() as writes:  # exits when every write is done
                gateway.background = writes
                if listen is None:
                    await _serve_stdio(gateway, client)
                else:
                    await _serve_http(gateway, client, listen, dict(tenant_keys or {}),
                                      tool_map)
        except DownstreamUnavailable as exc:
            failed = str(exc)
        finally:
            await downstream.close()
            tasks.cancel_scope.cancel()
    if failed is not None:  # raised here, not inside the task group (no exception group)
        raise GatewayStartError(failed)


async def _serve_stdio(gateway: Gateway, client: Any) -> None:
    server = build_server(gateway, client)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def _serve_http(gateway: Gateway, client: Any, listen: tuple[str, int],
                      tenant_keys: dict[str, str], tool_map: ToolMap) -> None:
    host, port = listen
    tenant_of: TenantOf | None = None
    if tenant_keys:
        def tenant_of(ctx: ServerRequestContext[Any]) -> str | None:
            request = ctx.request
            headers = getattr(request, "headers", None)
            return tenant_for_key(tenant_keys, headers) if headers is not None else None

    server = build_server(gateway, client, tenant_of)
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    guarded = TenantKeys(app, tenant_keys, tool_map.subject.get("tenant_id"))
    config = uvicorn.Config(guarded, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on")
    await uvicorn.Server(config).serve()


class TenantKeys:
    """ASGI guard: with tenant keys configured, every request needs a valid one (401 as
    `lumyn serve` answers), and the key's tenant must be the map's (403 TENANT_MISMATCH)."""

    def __init__(self, app: ASGIApp, tenant_keys: Mapping[str, str],
                 map_tenant: str | None) -> None:
        self.app = app
        self.tenant_keys = tenant_keys
        self.map_tenant = map_tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.tenant_keys:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope["headers"]}
            try:
                tenant = tenant_for_key(self.tenant_keys, headers)
                if self.map_tenant is not None and tenant != self.map_tenant:
                    raise ApiError(403, "TENANT_MISMATCH",
                                   "the API key's tenant is not the tool map's tenant",
                                   field="Authorization")
            except ApiError as exc:
                await _answer(send, exc.status, exc.body())
                return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen must be HOST:PORT, got '{value}'")
    return host.strip("[]"), int(port)

