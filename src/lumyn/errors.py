"""Errors raised by the core. Each carries a stable reason code and, where known, a field."""

from __future__ import annotations


class LumynError(Exception):
    reason_code = "LUMYN_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def one_line(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.reason_code}: {self.message}{where}"


class RequestInvalid(LumynError):
    """The DecisionRequest does not match decision_request.v0 or is otherwise unusable."""

    reason_code = "INVALID_REQUEST_SCHEMA"

    def __init__(self, message: str, *, field: str | None = None, reason_code: str | None = None):
        super().__init__(message, field=field)
        if reason_code:
            self.reason_code = reason_code


class ContextDigestMismatch(RequestInvalid):
    reason_code = "CONTEXT_DIGEST_MISMATCH"


class IdempotencyConflict(LumynError):
    """The request_id was already used by this tenant for a different request."""

    reason_code = "IDEMPOTENCY_CONFLICT"

    def __init__(self, message: str, *, existing_decision_id: str, field: str = "request_id"):
        super().__init__(message, field=field)
        self.existing_decision_id = existing_decision_id


class DecisionNotFound(LumynError):
    reason_code = "DECISION_NOT_FOUND"


class InvalidEvent(LumynError):
    reason_code = "INVALID_EVENT"


class StorageUnavailable(LumynError):
    """The store could not durably persist or read; callers must fail closed.

    `salvaged`: the fault was found after a commit, and that commit was made durable anyway
    (SQLite's log files vanished and their content was checkpointed into the database)."""

    reason_code = "STORAGE_UNAVAILABLE"

    def __init__(self, message: str, *, field: str | None = None, salvaged: bool = False) -> None:
        super().__init__(message, field=field)
        self.salvaged = salvaged


class EventIdConflict(LumynError):
    """A caller-chosen event_id already names a different event."""

    reason_code = "EVENT_ID_CONFLICT"


class ConfigError(LumynError):
    reason_code = "INVALID_CONFIG"
