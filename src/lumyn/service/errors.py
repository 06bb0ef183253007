"""The one error shape every route returns: {"error": {"reason_code", "field", "message"}}."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from lumyn.errors import (
    ConfigError,
    DecisionNotFound,
    IdempotencyConflict,
    InvalidEvent,
    LumynError,
    RequestInvalid,
    StorageUnavailable,
)

JSON = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, reason_code: str, message: str, *, field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason_code = reason_code
        self.message = message
        self.field = field
        self.extra = extra or {}

    def body(self) -> bytes:
        return error_body(self.reason_code, self.message, self.field, self.extra)

    def response(self) -> Response:
        return Response(self.body(), status_code=self.status, media_type=JSON)


def error_body(reason_code: str, message: str, field: str | None = None,
               extra: dict[str, Any] | None = None) -> bytes:
    return orjson.dumps({"error": {"reason_code": reason_code, "field": field,
                                   "message": message, **(extra or {})}})


def error_response(status: int, reason_code: str, message: str, field: str | None = None,
                   extra: dict[str, Any] | None = None) -> Response:
    return Response(error_body(reason_code, message, field, extra), status_code=status,
                    media_type=JSON)


def from_core(exc: LumynError) -> ApiError:
    """Map a core error to an HTTP status."""
    extra: dict[str, Any] = {}
    if isinstance(exc, IdempotencyConflict):
        status = 409
        extra["existing_decision_id"] = exc.existing_decision_id
    elif isinstance(exc, DecisionNotFound):
        status = 404
    elif isinstance(exc, RequestInvalid | InvalidEvent | ConfigError):
        status = 422
    elif isinstance(exc, StorageUnavailable):
        status = 503
    else:
        status = 400
    return ApiError(status, exc.reason_code, exc.message, field=exc.field, extra=extra)
