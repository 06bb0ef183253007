"""One structured line per request through the standard `logging` module.

`LUMYN_LOG_FORMAT=json` (default) writes each line as a JSON object (python-json-logger);
`text` writes `key=value` pairs for a terminal. Only the fields named in REQUEST_FIELDS ever
reach a line: request bodies, headers and evidence are never logged, so neither secrets nor
redacted fields can leak through the logs.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from lumyn.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("json", "text")
REQUEST_LOGGER = "lumyn.request"
# What a request line may carry (`extra=` keys); everything else is dropped.
REQUEST_FIELDS = ("method", "route", "status", "latency_ms", "tenant_id", "decision_id",
                  "verdict", "reason_code")

_handler: logging.Handler | None = None


def check_settings(level: str, fmt: str) -> None:
    if level.upper() not in LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}", field="log_level")
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}", field="log_format")


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...` with only the allowed request fields."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = " ".join(f"{k}={getattr(record, k)}" for k in REQUEST_FIELDS
                         if getattr(record, k, None) is not None)
        head = f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
        line = f"{head} {pairs}" if pairs else head
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    # reserved_attrs left at its default: only `extra=` keys and the named fields are written
    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"})


def configure_logging(level: str = "INFO", fmt: str = "json",
                      stream: Any = None) -> logging.Handler:
    """Send the `lumyn` loggers to `stream` (stderr) in the chosen format; idempotent."""
    global _handler
    check_settings(level, fmt)
    root = logging.getLogger("lumyn")
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
    _handler = handler
    return handler


request_log = logging.getLogger(REQUEST_LOGGER)


def log_request(**fields: Any) -> None:
    """One line for one request, with only the allowed fields (the rest is dropped)."""
    if request_log.isEnabledFor(logging.INFO):
        extra = {k: fields[k] for k in REQUEST_FIELDS if fields.get(k) is not None}
        request_log.info("request", extra=extra)
