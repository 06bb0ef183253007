"""FastAPI routes. Thin: authenticate, parse, call the core off the event loop, map errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from lumyn.config import LumynConfig
from lumyn.contracts.canonical import loads
from lumyn.engine.normalize import tenant_of
from lumyn.errors import LumynError
from lumyn.integrity.keys import load_private
from lumyn.packs import export_pack, sign_pack
from lumyn.safe_json import JsonRefused, check_keys
from lumyn.sdk import Lumyn
from lumyn.service import docs_page, observe
from lumyn.service import openapi as oa
from lumyn.service.auth import tenant_for_key, verify_signature
from lumyn.service.batch import BatchDecider
from lumyn.service.errors import (
    JSON,
    ApiError,
    error_body,
    error_response,
    from_core,
    public_record,
)
from lumyn.service.nonces import nonce_cache_for, refuse_replay
from lumyn.version import __version__

T = TypeVar("T")
DECIDE_ROUTE = SimpleNamespace(path="/v0/decide")
_log = logging.getLogger("lumyn.service")
WORKER_THREADS = 8  # reads and events; decides go through the evaluate/commit pipeline


def create_app(config: LumynConfig, lumyn: Lumyn | None = None) -> FastAPI:
    # Loaded once, at start-up: a missing or bad key stops `lumyn serve` with one line.
    signer = load_private(config.pack_signing_key) if config.pack_signing_key else None
    owned = lumyn is None
    gateway = lumyn or Lumyn(config)
    limiter = anyio.CapacityLimiter(WORKER_THREADS)
    decider: list[BatchDecider] = []  # started with the app, so no thread outlives it
    replay_guard = bool(config.signing_secret) and config.signing_scheme == "v1"
    nonces = nonce_cache_for(config.url) if replay_guard else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        metrics = app.state.metrics
        decider.append(BatchDecider(gateway, on_commit=metrics.batch_size.observe
                                    if metrics is not None else None))
        try:
            yield
        finally:
            decider.pop().close()
            if nonces is not None:
                nonces.close()
            if owned:
                gateway.close()

    app = LumynApp(
        title="Lumyn decision gateway",
        version=__version__,
        description="Deterministic decide() gateway with durable, replayable Decision Records.",
        lifespan=lifespan,
        # Served below, behind the same authentication as every route, without a CDN.
        openapi_url=None, docs_url=None, redoc_url=None,
    )

    async def core(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)
        except LumynError as exc:
            raise from_core(exc) from None

    async def authenticate(request: Request, body: bytes) -> str | None:
        if config.signing_secret:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            verify_signature(
                secret=config.signing_secret, scheme=config.signing_scheme,
                window_s=config.signature_window_s, headers=request.headers,
                method=request.method, target=target, body=body,
            )
            if nonces is not None and request.method == "POST":  # writes are accepted once
                window = config.signature_window_s
                if nonces.blocking:
                    await core(refuse_replay, nonces, request.headers, window)
                else:
                    refuse_replay(nonces, request.headers, window)
        return tenant_for_key(config.tenant_keys, request.headers)

    async def read_body(request: Request) -> bytes:
        return await receive_body(request.receive, request.headers.get("content-length"),
                                  config.max_body_bytes)

    def parse_json(content_type: str, body: bytes) -> Any:
        media = content_type.split(";")[0].strip().lower()
        if media != JSON:
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json",
                           field="Content-Type")
        try:
            value = loads(body)
            check_keys(body, value)  # no repeated keys, a bounded key count (safe_json)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, "INVALID_JSON", f"body is not valid JSON: {exc}",
                           field="(body)") from None
        except JsonRefused as exc:
            raise ApiError(400, exc.reason_code, exc.message, field="(body)") from None
        return value

    @app.post(
        "/v0/decide",
        summary="Decide on a DecisionRequest; the record is durable when this returns 200",
        openapi_extra={
            **oa.json_body(oa.request_schema()),
            "responses": oa.responses(200, oa.record_schema(), 400, 401, 403, 409, 413, 415, 422,
                                      503, ok="DecisionRecord (durably stored)"),
        },
    )
    async def decide(request: Request) -> Response:
        status, body = await decide_asgi(request.scope, request.receive)
        return Response(body, status_code=status, media_type=JSON)

    async def decide_asgi(scope: Scope, receive: Receive) -> tuple[int, bytes]:
        """POST /v0/decide on the ASGI scope and messages: (status, JSON body)."""
        try:
            return await decide_response(scope, receive)
        except ApiError as exc:
            return exc.status, exc.body()

    async def decide_response(scope: Scope, receive: Receive) -> tuple[int, bytes]:
        content_type = content_length = b""
        for name, value in scope["headers"]:  # names arrive lower-cased (ASGI)
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        body = await receive_body(receive, content_length.decode("latin-1") or None,
                                  config.max_body_bytes)
        tenant = None
        if config.signing_secret or config.tenant_keys:
            tenant = await authenticate(Request(scope, receive), body)
        payload = parse_json(content_type.decode("latin-1"), body)
        if tenant is not None:
            asked = tenant_of(payload) if isinstance(payload, dict) else ""
            if asked != tenant:
                raise ApiError(403, "TENANT_MISMATCH",
                               "request tenant must be the API key's tenant",
                               field="tenant.tenant_id")
        try:
            if config.tracing:  # on a worker thread that carries the request's trace context
                result: dict[str, Any] | bytes = await core(gateway.decide, payload)
            else:
                result = await decider[0].decide(payload)
        except LumynError as exc:
            raise from_core(exc) from None
        observe.note_decision(scope, app.state.metrics, result, tenant or tenant_of(payload),
                              payload["action"]["type"])
        if isinstance(result, bytes):  # stored: the bytes the store holds
            return 200, result
        if "STORAGE_UNAVAILABLE" in result["reason_codes"]:
            return 503, orjson.dumps(public_record(result))
        return 200, orjson.dumps(result)

    app.decide_asgi = decide_asgi
    app.observed = observe.install(app, app.dispatch, config, gateway)

    @app.get(
        "/v0/decisions/{decision_id}",
        summary="Read a Decision Record with its event log",
        openapi_extra={"responses": oa.responses(200, oa.record_schema(), 401, 404, 503)},
    )
    async def get_decision(decision_id: str, request: Request) -> Response:
        tenant = await authenticate(request, await read_body(request))
        record = await core(gateway.get_decision, decision_id, tenant_id=tenant)
        return Response(orjson.dumps(record), media_type=JSON)

    @app.get(
        "/v0/decisions/{decision_id}/pack",
        summary="A replayable decision pack (zip), signed when the service has a signing key",
        openapi_extra={"responses": oa.responses(200, {"type": "string", "format": "binary"},
                                                 401, 404, 503)},
    )
    async def get_pack(decision_id: str, request: Request) -> Response:
        tenant = await authenticate(request, await read_body(request))
        pack = await core(export_pack, gateway.store, decision_id, tenant_id=tenant)
        if signer is not None:
            pack = sign_pack(pack, signer)
        return Response(pack, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="decision_pack_{decision_id}.zip"'})

    @app.post(
        "/v0/decisions/{decision_id}/events",
        summary="Append an outcome, label, note or override; a label feeds Experience Memory",
        status_code=201,
        openapi_extra={
            **oa.json_body(oa.EVENT_REQUEST_SCHEMA),
            "responses": oa.responses(201, oa.EVENT_SCHEMA, 400, 401, 404, 413, 415, 422, 503,
                                      ok="The appended event"),
        },
    )
    async def append_event(decision_id: str, request: Request) -> Response:
        body = await read_body(request)
        tenant = await authenticate(request, body)
        payload = parse_json(request.headers.get("content-type", ""), body)
        if not isinstance(payload, dict):
            raise ApiError(422, "INVALID_EVENT", "event must be a JSON object", field="(body)")
        unknown = sorted(set(payload) - {"type", "data", "event_id"})
        if unknown:
            raise ApiError(422, "INVALID_EVENT", f"unknown field '{unknown[0]}'", field=unknown[0])
        event_type = payload.get("type")
        if not isinstance(event_type, str):
            raise ApiError(422, "INVALID_EVENT", "type must be a string", field="type")
        event = await core(gateway.append_event, decision_id, event_type, payload.get("data"),
                           tenant_id=tenant, event_id=payload.get("event_id"))
        return Response(orjson.dumps(event), status_code=201, media_type=JSON)

    @app.get(
        "/v0/policy",
        summary="The loaded policy's id, version and hash",
        openapi_extra={"responses": oa.responses(200, {
            "type": "object",
            "properties": {"policy_id": {"type": "string"}, "policy_version": {"type": "string"},
                           "policy_hash": {"type": "string"}},
        }, 401)},
    )
    async def policy(request: Request) -> Response:
        await authenticate(request, await read_body(request))
        return Response(orjson.dumps(gateway.policy.summary()), media_type=JSON)

    @app.get(
        "/healthz",
        summary="Readiness: 200 when a decision could be stored now, else 503 (not signed, for "
                "load balancers; the schema version and policy only for authenticated callers)",
        openapi_extra={"responses": oa.responses(200, {"type": "object"}, 503)},
    )
    async def healthz(request: Request) -> Response:
        ready = getattr(gateway.store, "ready", gateway.store.schema_version)
        try:
            await anyio.to_thread.run_sync(ready, limiter=limiter)
            version = await anyio.to_thread.run_sync(gateway.store.schema_version, limiter=limiter)
        except LumynError as exc:
            _log.warning("healthz: store not ready: %s", exc.message)
            return error_response(503, exc.reason_code, "the store cannot take writes now; "
                                  "details in the server log")
        body: dict[str, Any] = {"status": "ok"}
        try:
            await authenticate(request, await read_body(request))
        except ApiError:
            return Response(orjson.dumps(body), media_type=JSON)  # liveness only
        body.update(schema_version=version, **gateway.policy.summary())
        return Response(orjson.dumps(body), media_type=JSON)

    async def docs_guard(request: Request) -> None:
        if not config.public_docs:
            await authenticate(request, await read_body(request))

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> Response:
        await docs_guard(request)
        return Response(orjson.dumps(app.openapi()), media_type=JSON)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        await docs_guard(request)
        return HTMLResponse(docs_page.render(app.openapi()))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "path"))
        return error_response(422, "INVALID_REQUEST", str(first.get("msg", "invalid request")),
                              field or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
        return error_response(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"),
                              str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        # Never leak a traceback; bad input must never get here (tests hold that line).
        return _internal_error(exc)

    return app


class LumynApp(FastAPI):
    """FastAPI, with POST /v0/decide served before the middleware stack.

    The route stays declared (the OpenAPI document describes it, and it shares the handler),
    but routing, dependency solving, the framework's per-request middleware and its request
    and response objects cost more CPU than a decision itself (docs/benchmarks.md), so the
    hottest route is answered on the bare ASGI messages. An error the handler does not map
    is answered as the app's other routes answer it: a JSON 500.
    """

    decide_asgi: Callable[[Scope, Receive], Awaitable[tuple[int, bytes]]] | None = None
    # The request log, metrics and tracing layers (service.observe), around everything.
    observed: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.observed is not None:
            await self.observed(scope, receive, send)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.decide_asgi
        if (handler is not None and scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/v0/decide"):
            scope["route"] = DECIDE_ROUTE  # what the router would have matched
            try:
                status, body = await handler(scope, receive)
            except ClientDisconnect:
                return  # nobody to answer
            except Exception as exc:
                _log.exception("unexpected error in POST /v0/decide")
                status, body = 500, _internal_error_body(exc)
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]})
            await send({"type": "http.response.body", "body": body})
            return
        await super().__call__(scope, receive, send)


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The request body from the ASGI messages, refused past `limit` bytes (by the declared
    Content-Length when there is one, else as it arrives)."""
    if declared is not None and declared.isascii() and declared.isdigit() \
            and (len(declared) > 18 or int(declared) > limit):
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _internal_error_body(exc: Exception) -> bytes:
    return error_body("INTERNAL_ERROR", f"unexpected {type(exc).__name__}")


def _internal_error(exc: Exception) -> Response:
    return Response(_internal_error_body(exc), status_code=500, media_type=JSON)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "BODY_TOO_LARGE", f"body exceeds {limit} bytes", field="(body)")

