"""`lumyn mcp`: an MCP server that sits between an agent's MCP client and a downstream MCP
server, built on the official `mcp` SDK (`pip install 'lumyn[mcp]'`).

Everything but a gated tool call is forwarded unchanged. A `tools/call` for a mapped tool is
decided first: TRUST is forwarded and its outcome appended to the decision; ESCALATE, QUERY and
ABSTAIN are refused with a tool error the model can act on, and nothing reaches the downstream.
Every gated result carries the decision id in `_meta["lumyn/decision_id"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT
from pydantic import BaseModel

from lumyn.contracts.ids import new_id
from lumyn.errors import LumynError
from lumyn.integrations.decisions import (
    DECISION_META_KEY,
    TRUST,
    Decider,
    outcome_data,
    refusal_text,
)
from lumyn.integrations.mapfile import ALLOW, ToolMap, ToolRule
from lumyn.integrations.mapping import arguments_digest

_log = logging.getLogger("lumyn.mcp")
DEFAULT_CALL_TIMEOUT = 60.0

Target = StdioServerParameters | str  # a command to start, or a Streamable HTTP URL


class DownstreamUnavailable(Exception):
    """The downstream server could not be reached or started."""


class Downstream:
    """The downstream server: one connection at a time, reopened on demand after it dies.

    The connection is opened and closed by one owner task (`run`), as anyio requires of the
    SDK's context managers; request handlers ask it for a connection and report a lost one.
    """

    def __init__(self, target: Target, *, timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self.target = target
        self.timeout = timeout  # for the handshake and every request without its own
        self._client: Client | None = None
        self._error = ""
        self._lock = anyio.Lock()
        self._asks, self._asked = anyio.create_memory_object_stream[anyio.Event](1)
        self._lost = anyio.Event()

    async def run(self) -> None:
        """Open a connection each time one is asked for; hold it until it is lost."""
        async with self._asked:
            async for answered in self._asked:
                self._lost = anyio.Event()
                try:
                    async with Client(self.target, cache=None,
                                      read_timeout_seconds=self.timeout) as client:
                        self._client = client
                        answered.set()
                        await self._lost.wait()
                except Exception as exc:  # a downstream that cannot start is reported, not fatal
                    if not answered.is_set():
                        self._error = _describe(exc)
                    _log.debug("downstream connection ended: %s", _describe(exc))
                finally:
                    self._client = None
                    answered.set()

    async def client(self) -> Client:
        """The open connection, reopening it if it died."""
        current = self._client
        if current is not None:
            return current
        async with self._lock:
            if self._client is None:
                answered = anyio.Event()
                await self._asks.send(answered)
                await answered.wait()
            if self._client is None:
                raise DownstreamUnavailable(self._error or "the downstream server is not running")
            return self._client

    def lost(self, client: Client) -> None:
        """A call found the connection dead: close it; the next call reopens."""
        if client is self._client:
            self._client = None
            self._lost.set()

    async def close(self) -> None:
        self._lost.set()
        await self._asks.aclose()


@dataclass
class Refusal:
    """A gated call that was not forwarded."""

    text: str
    verdict: str
    decision_id: str | None
    reason_codes: list[str]
    queries: list[dict[str, Any]] = field(default_factory=list)

    def result(self) -> types.CallToolResult:
        structured = {"verdict": self.verdict, "decision_id": self.decision_id,
                      "reason_codes": self.reason_codes, "queries": self.queries}
        meta = {DECISION_META_KEY: self.decision_id} if self.decision_id else None
        return types.CallToolResult(content=[types.TextContent(type="text", text=self.text)],
                                    structured_content=structured, is_error=True, _meta=meta)


@dataclass
class Escalation:
    """An escalated call waiting for a person; a retry with the same arguments is bound to it."""

    decision_id: str
    inputs_digest: str | None
    record: dict[str, Any]


class Gateway:
    """The decision logic of `lumyn mcp`, independent of transports."""

    def __init__(self, decider: Decider, tool_map: ToolMap, downstream: Downstream, *,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self.decider = decider
        self.map = tool_map
        self.downstream = downstream
        self.call_timeout = call_timeout
        self._escalated: dict[tuple[str, str], Escalation] = {}
        # Where outcome events are written once the answer is on its way back (set by
        # `serve`, which waits for them before exiting); None: written before answering.
        self.background: anyio.abc.TaskGroup | None = None

    # -- tools/call ---------------------------------------------------------------------------------

    async def call_tool(self, params: types.CallToolRequestParams,
                        tenant_id: str | None = None) -> types.CallToolResult:
        rule = self.map.rule_for(params.name)
        if rule == ALLOW:
            return await self.forward_call(params)
        if not isinstance(rule, ToolRule):
            return Refusal(
                f"Lumyn did not run {params.name}: the tool is not allowed through this gateway "
                "(not in its tool map, or mapped to deny).",
                "DENY", None, ["TOOL_NOT_ALLOWED"]).result()
        arguments = dict(params.arguments or {})
        key = (params.name, arguments_digest(arguments))
        escalation = self._escalated.get(key)
        if escalation is not None:
            return await self._retry_after_escalation(params, key, escalation)
        request = rule.request(
            params.name, arguments, self.map.subject, tenant_id=tenant_id,
            request_id=f"mcp:{params.name}:{new_id()}",
            extensions={"mcp": {"tool": params.name}},
        )
        try:
            record = await anyio.to_thread.run_sync(self.decider.decide, request)
        except LumynError as exc:
            return Refusal(f"Lumyn could not decide on {params.name}: {exc.one_line()}",
                           "ERROR", None, [exc.reason_code]).result()
        if record["verdict"] == TRUST:
            return await self._forward_decided(params, record["decision_id"])
        if record["verdict"] == "ESCALATE":
            self._escalated[key] = Escalation(
                record["decision_id"], (record.get("determinism") or {}).get("inputs_digest"),
                record)
        return _refusal(record, params.name).result()

    async def _retry_after_escalation(self, params: types.CallToolRequestParams,
                                      key: tuple[str, str], escalation: Escalation,
                                      ) -> types.CallToolResult:
        """The same call again after an ESCALATE: forwarded once if a person approved this
        very decision (its inputs digest), refused with the reason if denied, else pending."""
        resolution = await self._resolution(escalation.decision_id)
        status = (resolution or {}).get("status")
        if (status == "approved" and resolution is not None
                and resolution.get("inputs_digest") == escalation.inputs_digest):
            del self._escalated[key]  # forwarded once
            return await self._forward_decided(params, escalation.decision_id)
        if status in ("denied", "approved"):
            del self._escalated[key]  # settled: a further retry is decided afresh
        return _refusal(escalation.record, params.name, resolution).result()

    async def _resolution(self, decision_id: str) -> dict[str, Any] | None:
        lookup: Callable[[str], dict[str, Any]] | None = getattr(self.decider, "resolution", None)
        if lookup is None:  # a decider without cases: the escalation stays pending
            return None
        try:
            return await anyio.to_thread.run_sync(lookup, decision_id)
        except LumynError as exc:
            _log.warning("could not read the resolution of %s: %s", decision_id, exc.one_line())
            return None

    async def _forward_decided(self, params: types.CallToolRequestParams,
                               decision_id: str) -> types.CallToolResult:
        """Forward a trusted call and append its outcome to the decision."""
        try:
            result = await self.forward_call(params)
        except MCPError as exc:
            await self._record_outcome(decision_id, params.name, exc.message)
            return _tool_failure(params.name, exc.message, decision_id)
        error = _error_text(result) if result.is_error else None
        if self.background is not None:  # off the answer's path; the decision is durable already
            self.background.start_soon(
                lambda: self._record_outcome(decision_id, params.name, error,
                                             success=not result.is_error))
        else:
            await self._record_outcome(decision_id, params.name, error,
                                       success=not result.is_error)
        result.meta = {**(result.meta or {}), DECISION_META_KEY: decision_id}
        return result

    async def _record_outcome(self, decision_id: str, tool: str, error: str | None, *,
                              success: bool = False) -> None:
        data = outcome_data(success, error, source="mcp", tool=tool)
        try:
            await anyio.to_thread.run_sync(self.decider.append_event, decision_id, "outcome", data)
        except LumynError as exc:
            _log.warning("could not record the outcome of %s: %s", decision_id, exc.one_line())

    async def forward_call(self, params: types.CallToolRequestParams) -> types.CallToolResult:
        result: types.CallToolResult = await self.forward(
            types.CallToolRequest(params=params), types.CallToolResult, timeout=self.call_timeout)
        return result

    # -- pass-through -------------------------------------------------------------------------------

    async def forward(self, request: BaseModel, result_type: type[Any],
                      timeout: float | None = None) -> Any:
        """Send one request to the downstream and return its result unchanged. Its failures
        come back as MCPError (a dead connection is closed and reopened on the next call)."""
        try:
            client = await self.downstream.client()
        except DownstreamUnavailable as exc:
            raise MCPError(INTERNAL_ERROR, f"downstream MCP server unavailable: {exc}") from None
        try:
            return await client.session.send_request(request, result_type,  # type: ignore[arg-type]
                                                     request_read_timeout_seconds=timeout)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self.downstream.lost(client)
                raise MCPError(exc.code, f"downstream MCP server closed the connection "
                               f"({exc.message})") from None
            if exc.code == REQUEST_TIMEOUT:
                raise MCPError(exc.code, f"downstream MCP server did not answer within "
                               f"{timeout:g}s") from None
            raise
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            self.downstream.lost(client)
            raise MCPError(CONNECTION_CLOSED, f"downstream MCP server is gone ({_describe(exc)})"
                           ) from None

    def passthrough(self, request_type: type[Any], result_type: type[Any]
                    ) -> Callable[[ServerRequestContext[Any], Any], Awaitable[Any]]:
        async def handler(ctx: ServerRequestContext[Any], params: Any) -> Any:
            return await self.forward(request_type(params=params), result_type)

        return handler


# What is forwarded as is, when the downstream offers it: method -> (request, result).
PASSTHROUGH: dict[str, tuple[type[Any], type[Any]]] = {
    "tools/list": (types.ListToolsRequest, types.ListToolsResult),
    "resources/list": (types.ListResourcesRequest, types.ListResourcesResult),
    "resources/templates/list": (types.ListResourceTemplatesRequest,
                                 types.ListResourceTemplatesResult),
    "resources/read": (types.ReadResourceRequest, types.ReadResourceResult),
    "resources/subscribe": (types.SubscribeRequest, types.EmptyResult),
    "resources/unsubscribe": (types.UnsubscribeRequest, types.EmptyResult),
    "prompts/list": (types.ListPromptsRequest, types.ListPromptsResult),
    "prompts/get": (types.GetPromptRequest, types.GetPromptResult),
    "completion/complete": (types.CompleteRequest, types.CompleteResult),
}


def offered_methods(capabilities: types.ServerCapabilities) -> list[str]:
    """The pass-through methods the downstream's capabilities say it serves."""
    methods = ["tools/list"]
    if capabilities.resources is not None:
        methods += ["resources/list", "resources/templates/list", "resources/read"]
        if capabilities.resources.subscribe:
            methods += ["resources/subscribe", "resources/unsubscribe"]
    if capabilities.prompts is not None:
        methods += ["prompts/list", "prompts/get"]
    if capabilities.completions is not None:
        methods.append("completion/complete")
    return methods


TenantOf = Callable[[ServerRequestContext[Any]], str | None]


def build_server(gateway: Gateway, client: Client, tenant_of: TenantOf | None = None) -> Server[Any]:
    """A low-level MCP server presenting the downstream's identity and capabilities."""
    info = client.server_info
    server: Server[Any] = Server(
        info.name if info else "lumyn-mcp",
        version=info.version if info else "",
        title=info.title if info else None,
        instructions=client.instructions,
    )
    for method in offered_methods(client.server_capabilities):
        request_type, result_type = PASSTHROUGH[method]
        params_type = request_type.model_fields["params"].annotation
        server.add_request_handler(method, _params_model(params_type),
                                   gateway.passthrough(request_type, result_type))

    async def call_tool(ctx: ServerRequestContext[Any],
                        params: types.CallToolRequestParams) -> types.CallToolResult:
        tenant = tenant_of(ctx) if tenant_of is not None else None
        return await gateway.call_tool(params, tenant)

    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    return server


def _params_model(annotation: Any) -> type[BaseModel]:
    """The params model of a request type (`X | None` for the paginated ones)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return types.RequestParams


def _refusal(record: dict[str, Any], tool: str,
             resolution: dict[str, Any] | None = None) -> Refusal:
    return Refusal(refusal_text(record, action=tool, resolution=resolution), record["verdict"],
                   record["decision_id"], list(record.get("reason_codes") or []),
                   list(record.get("queries") or []))


def _tool_failure(tool: str, message: str, decision_id: str) -> types.CallToolResult:
    text = (f"{tool} was allowed by Lumyn (decision id {decision_id}) but the downstream MCP "
            f"server failed: {message}")
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                is_error=True, _meta={DECISION_META_KEY: decision_id})


def _error_text(result: types.CallToolResult) -> str:
    texts = [block.text for block in result.content if isinstance(block, types.TextContent)]
    return " ".join(texts) or "the tool reported an error"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
