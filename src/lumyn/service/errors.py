"""The one error shape every route returns: {"error": {"reason_code", "field", "message"}}."""

from __future__ import annotations

import copy
import logging
from typing import Any

import orjson
from starlette.responses import Response

from lumyn.errors import (
    ConfigError,
    DecisionNotFound,
    EventIdConflict,
    IdempotencyConflict,
    InvalidEvent,
    LumynError,
    RequestInvalid,
    StorageUnavailable,
)

JSON = "application/json"
_log = logging.getLogger("lumyn.service")
STORAGE_DETAIL = "the store is unavailable; details (paths, driver errors) are in the server log"


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
    elif isinstance(exc, EventIdConflict):
        status = 409
    elif isinstance(exc, DecisionNotFound):
        status = 404
    elif isinstance(exc, RequestInvalid | InvalidEvent | ConfigError):
        status = 422
    elif isinstance(exc, StorageUnavailable):
        _log.warning("storage unavailable: %s", exc.message)
        return ApiError(503, exc.reason_code, STORAGE_DETAIL, field=exc.field)
    else:
        status = 400
    return ApiError(status, exc.reason_code, exc.message, field=exc.field, extra=extra)


def public_record(record: dict[str, Any]) -> dict[str, Any]:
    """A fail-closed STORAGE_UNAVAILABLE record as clients see it: the storage error (file
    paths, driver messages) goes to the server log, keyed by the record's decision_id."""
    details = (record.get("explanation") or {}).get("details") or {}
    if "storage_error" not in details:
        return record
    _log.warning("decision %s: storage unavailable: %s", record.get("decision_id"),
                 details["storage_error"])
    public = copy.copy(record)
    public["explanation"] = {**record["explanation"],
                             "details": {**details, "storage_error": STORAGE_DETAIL}}
    return public
