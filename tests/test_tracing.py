"""OpenTelemetry spans of decide(), checked with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _builders import support_refund
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lumyn import Lumyn, LumynConfig

STEPS = ("lumyn.validate", "lumyn.memory", "lumyn.evaluate", "lumyn.commit")
_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _provider() -> None:
    # The global provider can be set once per process; every tracing test shares this one.
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def test_decide_opens_one_span_with_a_child_per_step(tmp_path: Path,
                                                     spans: InMemorySpanExporter) -> None:
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"), tracing=True)) as gateway:
        record = gateway.decide(support_refund())
    finished = spans.get_finished_spans()
    [root] = by_name(finished, "lumyn.decide")
    assert root.attributes is not None
    assert root.attributes["lumyn.decision_id"] == record["decision_id"]
    assert root.attributes["lumyn.verdict"] == "TRUST"
    assert root.attributes["lumyn.policy_hash"] == record["policy"]["policy_hash"]
    for name in STEPS:
        [child] = by_name(finished, name)
        assert child.parent is not None and child.parent.span_id == root.context.span_id
        assert child.context.trace_id == root.context.trace_id


def test_decide_joins_the_callers_current_span(tmp_path: Path,
                                               spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("the-agent")
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"), tracing=True)) as gateway, \
            tracer.start_as_current_span("agent.refund") as outer:
        gateway.decide(support_refund(payment_instrument_risk="high"))
    [root] = by_name(spans.get_finished_spans(), "lumyn.decide")
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id
    assert root.attributes is not None and root.attributes["lumyn.verdict"] == "ABSTAIN"


def test_tracing_off_records_no_span(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    with Lumyn(LumynConfig(store_path=str(tmp_path / "l.db"))) as gateway:
        gateway.decide(support_refund())
    assert spans.get_finished_spans() == ()


def test_service_joins_the_callers_traceparent(tmp_path: Path,
                                               spans: InMemorySpanExporter) -> None:
    from fastapi.testclient import TestClient

    from lumyn.service import create_app

    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    config = LumynConfig(store_path=str(tmp_path / "l.db"), tracing=True)
    with TestClient(create_app(config)) as http:
        answer = http.post("/v0/decide", json=support_refund(),
                           headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert answer.status_code == 200
    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.name == "POST /v0/decide"]
    [root] = by_name(finished, "lumyn.decide")
    assert format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and format(server.parent.span_id, "016x") == parent_id
    assert root.parent is not None and root.parent.span_id == server.context.span_id
    assert root.attributes is not None
    assert root.attributes["lumyn.decision_id"] == answer.json()["decision_id"]
    for name in STEPS:
        assert len(by_name(finished, name)) == 1
