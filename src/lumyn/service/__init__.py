"""The optional HTTP service: FastAPI over the same core as the SDK and CLI.

`pip install '.[service]'` brings FastAPI and uvicorn; nothing here is imported by the SDK or
the CLI until `lumyn serve` runs.
"""

from __future__ import annotations

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
    """Serve with uvicorn until interrupted."""
    import uvicorn

    options: dict[str, Any] = {"log_level": "info", "access_log": False}
    options.update(uvicorn_options)
    uvicorn.run(create_app(config), host=host, port=port, **options)
