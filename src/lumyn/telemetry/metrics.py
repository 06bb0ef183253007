"""Prometheus metrics for `lumyn serve` (prometheus_client), and the ASGI layer that feeds them.

Every label value comes from a bounded set fixed at start: routes from the app's route table,
action types from the policy, tenants from the configured tenant keys. A value from a request
body that is not in its set is counted as "(other)", so a caller cannot grow the series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from lumyn.telemetry.asgi import StatusSend
from lumyn.telemetry.logs import log_request

OTHER = "(other)"
ALL = "(all)"
UNMATCHED = "(unmatched)"
DECIDE_ROUTE = "/v0/decide"
# decide() through the service: well under a millisecond to a few seconds under storage trouble
DECIDE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """One registry per app (tests and embedders may run several apps in one process)."""

    def __init__(self, action_types: Iterable[str], tenants: Iterable[str] = (),
                 open_cases: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.action_types = frozenset(action_types)
        self.tenants = frozenset(tenants)
        self.decisions = Counter("lumyn_decisions", "Decisions made, by verdict and action type",
                                 ["verdict", "action_type"], registry=self.registry)
        self.decide_seconds = Histogram("lumyn_decide_seconds",
                                        "POST /v0/decide, request received to answer sent",
                                        buckets=DECIDE_BUCKETS, registry=self.registry)
        self.storage_errors = Counter("lumyn_storage_errors",
                                      "Decisions answered ABSTAIN/STORAGE_UNAVAILABLE",
                                      registry=self.registry)
        self.requests = Counter("lumyn_requests", "HTTP requests by route template and status",
                                ["route", "status"], registry=self.registry)
        self.batch_size = Histogram("lumyn_batch_size", "Decisions committed per transaction",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        if open_cases is not None:
            self.registry.register(_OpenCases(open_cases, self.tenants))
        self._decided: dict[tuple[str, str], Any] = {}
        self._requested: dict[tuple[str, int], Any] = {}

    def decided(self, verdict: str, action_type: str, storage_error: bool = False) -> None:
        key = (verdict, action_type if action_type in self.action_types else OTHER)
        child = self._decided.get(key)
        if child is None:  # labels() takes a lock; keep each child once
            child = self._decided[key] = self.decisions.labels(*key)
        child.inc()
        if storage_error:
            self.storage_errors.inc()

    def requested(self, route: str, status: int) -> None:
        key = (route, status)
        child = self._requested.get(key)
        if child is None:
            child = self._requested[key] = self.requests.labels(route, str(status))
        child.inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _OpenCases(Collector):
    """`lumyn_escalations_open{tenant}`, read from the store's open-case index at scrape time.
    Tenants outside the configured ones add up under "(other)"; with no tenant keys there is
    one series, "(all)"."""

    def __init__(self, counts: Callable[[], dict[str, int]], tenants: frozenset[str]) -> None:
        self.counts = counts
        self.tenants = tenants

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("lumyn_escalations_open", "Open escalation and query cases",
                                   labels=["tenant"])
        totals: dict[str, int] = dict.fromkeys(sorted(self.tenants) or [ALL], 0)
        for tenant, n in self.counts().items():
            key = ALL if not self.tenants else tenant if tenant in self.tenants else OTHER
            totals[key] = totals.get(key, 0) + n
        for tenant, n in totals.items():
            family.add_metric([tenant], n)
        yield family


class ObservedApp:
    """Pure ASGI wrapper: writes one log line per request and (with metrics on) counts every
    HTTP request by route template and status and times decides. Handlers may leave `decision_id`, `verdict`
    and `tenant_id` in `scope["state"]["lumyn"]` for the line."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        sent = StatusSend(send)
        try:
            await self.app(scope, receive, sent)
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            if self.metrics is not None:
                self.metrics.requested(route, sent.status)
                if route == DECIDE_ROUTE:
                    self.metrics.decide_seconds.observe(elapsed)
            noted = scope.get("state", {}).get("lumyn", {})
            log_request(method=scope["method"], route=route, status=sent.status,
                        latency_ms=round(elapsed * 1000, 3), **noted)
