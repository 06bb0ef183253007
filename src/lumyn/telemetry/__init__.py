"""Seeing the gateway from outside: structured logs, Prometheus metrics, OpenTelemetry traces.

Each piece is optional and costs nothing when off: logs go through the standard `logging`
module, metrics need `prometheus_client` (the `service` extra), traces `opentelemetry-api`
(the `otel` extra).
"""
