"""The optional HTTP service: FastAPI over the same core as the SDK and CLI.

`pip install '.[service]'` brings FastAPI and uvicorn; nothing here is imported by the SDK or
the CLI until `lumyn serve` runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from lumyn.config import LumynConfig
    from lumyn.sdk import Lumyn

__all__ = ["create_app", "run"]


def create_app(config: LumynConfig, lumyn: Lumyn | None = None) -> FastAPI:
    from lumyn.service.app import create_app as _create

    return _create(config, lumyn)


def run(config: LumynConfig, host: str = "127.0.0.1", port: int = 8000, **uvicorn_options: Any) -> None:
    """Serve with uvicorn until interrupted, under the configured connection limits."""
    import uvicorn

    from lumyn.service.limits import Limits, server_options
    from lumyn.service.warnings import startup_warnings
    from lumyn.telemetry.logs import configure_logging
    from lumyn.telemetry.tracing import setup_provider

    configure_logging(config.log_level, config.log_format)
    if config.tracing:
        setup_provider()
    limits = Limits(config.max_connections, config.header_timeout_s, config.body_timeout_s,
                    config.max_header_bytes, config.keep_alive_s)
    options: dict[str, Any] = {"log_level": "info", "access_log": False,
                               **server_options(limits)}
    options.update(uvicorn_options)
    app = create_app(config)
    for warning in startup_warnings(config):
        logging.getLogger("lumyn.service").warning(warning)
    uvicorn.run(app, host=host, port=port, **options)
