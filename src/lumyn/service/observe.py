"""What `lumyn serve` shows an operator: Prometheus metrics at /metrics, one log line per
request, and (with tracing on) a SERVER span per request joined to the caller's traceparent.

Pure-ASGI layers around the whole app (LumynApp.observed), so they see every request,
POST /v0/decide included, plus one route.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from lumyn.config import LumynConfig
from lumyn.sdk import Lumyn
from lumyn.service.errors import error_response
from lumyn.telemetry.metrics import Metrics, ObservedApp

STORAGE_UNAVAILABLE = "STORAGE_UNAVAILABLE"


def install(app: FastAPI, dispatch: ASGIApp, config: LumynConfig, lumyn: Lumyn) -> ASGIApp:
    """Add /metrics to `app`; return `dispatch` wrapped in the request log and metrics layer
    (and the tracing layer when on), for the app to serve every request through."""
    metrics = None
    if config.metrics:
        named = set(lumyn.policy.groups) | set(lumyn.policy.required_evidence)
        metrics = Metrics(named, set(config.tenant_keys.values()))
        app.router.routes.insert(0, Route("/metrics", _scrape, methods=["GET"],
                                          include_in_schema=False))
    app.state.metrics = metrics
    app.state.metrics_key = config.metrics_key
    layered: ASGIApp = ObservedApp(dispatch, metrics)
    if config.tracing:
        from lumyn.telemetry.tracing import TracedApp, get_tracer

        layered = TracedApp(layered, get_tracer())  # outermost: joins traceparent first
    return layered


async def _scrape(request: Request) -> Response:
    app: Any = request.app
    metrics: Metrics = app.state.metrics
    key: str | None = app.state.metrics_key
    if key:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            return error_response(401, "UNAUTHORIZED", "/metrics needs the metrics key",
                                  field="Authorization")
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def note_decision(scope: Scope, metrics: Metrics | None, record: dict[str, Any] | bytes,
                  tenant_id: str | None, action_type: str) -> None:
    """Count a decide's verdict and leave its id and verdict for the request's log line."""
    if isinstance(record, bytes):
        decision_id, verdict = stored_identity(record)
        storage_error = False
    else:
        decision_id, verdict = record.get("decision_id"), str(record.get("verdict", ""))
        storage_error = STORAGE_UNAVAILABLE in record.get("reason_codes", ())
    scope.setdefault("state", {})["lumyn"] = {"decision_id": decision_id, "verdict": verdict,
                                              "tenant_id": tenant_id}
    if metrics is not None:
        metrics.decided(verdict, action_type, storage_error)


_ID_KEY = b'"decision_id":"'
_VERDICT_KEY = b'"verdict":"'


def stored_identity(record_json: bytes) -> tuple[str | None, str]:
    """(decision_id, verdict) of a stored record's canonical JSON without parsing it all.

    RFC 8785 writes keys sorted, so the top level's `verdict` is its last key (no record key
    sorts after it) and `decision_id` comes before any nested object's keys (only
    `created_at` and `decision_event_log`, scalar or absent in a stored record, sort before
    it). tests/test_observability.py holds this against a full parse."""
    at = record_json.rfind(_VERDICT_KEY)
    verdict = record_json[at + len(_VERDICT_KEY):-2].decode() if at >= 0 else ""
    start = record_json.find(_ID_KEY)
    decision_id = (record_json[start + len(_ID_KEY):start + len(_ID_KEY) + 26].decode()
                   if start >= 0 else None)
    return decision_id, verdict
