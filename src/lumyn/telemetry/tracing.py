"""OpenTelemetry tracing (the `otel` extra), off by default.

With tracing off nothing here is imported and the decide path tests one attribute for None.
With it on, `Lumyn.decide` opens a `lumyn.decide` span (decision id, verdict, policy hash as
attributes) with children for validate / memory / evaluate / commit, under whatever span is
current — in `lumyn serve`, the server span that joined the caller's W3C `traceparent`.
Spans go to the global tracer provider: an application that embeds the SDK configures its
own; `lumyn serve` installs one (`setup_provider`) when none is set.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from lumyn.errors import ConfigError
from lumyn.telemetry.asgi import StatusSend
from lumyn.version import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer
    from starlette.types import ASGIApp, Receive, Scope, Send

TRACER_NAME = "lumyn"


def get_tracer() -> Tracer:
    try:
        from opentelemetry import trace
    except ImportError:
        raise ConfigError("tracing needs the otel extra: pip install '.[otel]'",
                          field="tracing") from None
    return trace.get_tracer(TRACER_NAME, __version__)


_OFF: AbstractContextManager[None] = nullcontext()


def step(tracer: Tracer | None, name: str) -> AbstractContextManager[Any]:
    """A child span named lumyn.NAME; with tracing off one shared no-op context, so the
    decide path pays a call and a `with`, nothing more."""
    return _OFF if tracer is None else tracer.start_as_current_span("lumyn." + name)


def record_decision(span: Span | None, record: dict[str, Any]) -> None:
    if span is None:
        return
    span.set_attribute("lumyn.decision_id", record.get("decision_id", ""))
    span.set_attribute("lumyn.verdict", record.get("verdict", ""))
    span.set_attribute("lumyn.policy_hash", record.get("policy", {}).get("policy_hash", ""))
    span.set_attribute("lumyn.action_type",
                       record.get("request", {}).get("action", {}).get("type", ""))


def setup_provider() -> None:
    """For `lumyn serve`: when the process has no tracer provider yet, install the SDK's,
    exporting over OTLP when its exporter package is installed (configured by the standard
    OTEL_EXPORTER_OTLP_* variables), else to stderr."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    exporter: SpanExporter
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )

        exporter = OTLPSpanExporter()
    except ImportError:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    name = os.environ.get("OTEL_SERVICE_NAME", "lumyn")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


class TracedApp:
    """Pure ASGI: one SERVER span per HTTP request, joined to an incoming `traceparent`."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import context, propagate
        from opentelemetry.trace import SpanKind

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        token = context.attach(propagate.extract(carrier))
        try:
            with self.tracer.start_as_current_span(
                f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER,
                attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
            ) as span:
                sent = StatusSend(send)
                await self.app(scope, receive, sent)
                span.set_attribute("http.response.status_code", sent.status)
        finally:
            context.detach(token)
