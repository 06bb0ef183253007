"""`Client`: a small HTTP client for a remote `lumyn serve`, with the same method names and
return shapes as a `Lumyn` object, so `gate` (or your code) can use either.

Errors come back as the same `lumyn.errors` types the SDK raises (DecisionNotFound,
RequestInvalid, IdempotencyConflict, ...). As with `Lumyn.decide`, storage trouble on the
server is an ABSTAIN record, not an exception; a server that cannot be reached at all raises
`ServiceUnreachable`, so gated code fails closed.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from lumyn.errors import (
    DecisionNotFound,
    IdempotencyConflict,
    InvalidEvent,
    LumynError,
    RequestInvalid,
    StorageUnavailable,
)
from lumyn.signing import body_signature, v1_signature


class ServiceError(LumynError):
    """The service refused the call (authentication, tenant, ...); carries its reason code."""

    def __init__(self, reason_code: str, message: str, *, field: str | None = None,
                 status: int = 0) -> None:
        super().__init__(message, field=field)
        self.reason_code = reason_code
        self.status = status


class ServiceUnreachable(StorageUnavailable):
    reason_code = "SERVICE_UNREACHABLE"


class Client:
    """`Client("http://127.0.0.1:8000", signing_secret=..., tenant_key=...)`."""

    def __init__(
        self,
        base_url: str,
        signing_secret: str | None = None,
        signing_scheme: str = "body",
        tenant_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if signing_scheme not in ("body", "v1"):
            raise ValueError("signing_scheme must be 'body' or 'v1'")
        self.base_url = base_url.rstrip("/")
        self.signing_secret = signing_secret
        self.signing_scheme = signing_scheme
        self.tenant_key = tenant_key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self._write_second = ""  # the timestamp of the signed POSTs below (see _headers)
        self._signed_writes: set[str] = set()

    # -- the Lumyn methods --------------------------------------------------------------------------

    def decide(self, request: Any) -> dict[str, Any]:
        status, body = self._call("POST", "/v0/decide", request)
        if status == 503 and isinstance(body, dict) and "verdict" in body:
            return body  # the ABSTAIN record for storage trouble, as Lumyn.decide returns it
        return self._ok(status, body)

    def get_decision(self, decision_id: str, *, tenant_id: str | None = None,
                     with_events: bool = True) -> dict[str, Any]:
        """The record with its event log. The tenant is the API key's (`tenant_id` is
        accepted for signature compatibility with Lumyn and not sent)."""
        status, body = self._call("GET", f"/v0/decisions/{_segment(decision_id)}")
        record = self._ok(status, body)
        if not with_events:
            record.pop("decision_event_log", None)
        return record

    def append_event(self, decision_id: str, event_type: str, data: dict[str, Any] | None = None,
                     *, tenant_id: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": event_type}
        if data is not None:
            payload["data"] = data
        status, body = self._call("POST", f"/v0/decisions/{_segment(decision_id)}/events",
                                  payload)
        return self._ok(status, body)

    def label(self, decision_id: str, label: Any, summary: Any = "", *,
              tenant_id: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        data = {**(extra or {}), "label": label, "summary": summary}
        return self.append_event(decision_id, "label", data)

    def resolution(self, decision_id: str) -> dict[str, Any]:
        status, body = self._call("GET", f"/v0/decisions/{_segment(decision_id)}/resolution")
        return self._ok(status, body)

    def wait_for_resolution(self, decision_id: str, timeout: float,
                            poll_interval: float = 0.25) -> dict[str, Any]:
        """Poll until the case is no longer pending; the pending dict when `timeout` passes."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.resolution(decision_id)
            left = deadline - time.monotonic()
            if found.get("status") != "pending" or left <= 0:
                return found
            time.sleep(min(poll_interval, left))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- HTTP ---------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
        raw = b"" if payload is None else orjson.dumps(payload)
        headers = self._headers(method, path, raw)
        if payload is not None:
            headers["content-type"] = "application/json"
        try:
            response = self._http.request(method, path, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"cannot reach {self.base_url}: {exc}",
                                     field="base_url") from None
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = None
        return response.status_code, body

    def _headers(self, method: str, path: str, raw: bytes) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.tenant_key:
            headers["authorization"] = f"Bearer {self.tenant_key}"
        if self.signing_secret:
            if self.signing_scheme == "body":
                headers["x-lumyn-signature"] = body_signature(self.signing_secret, raw)
            else:
                stamp = str(int(time.time()))
                signature = v1_signature(self.signing_secret, stamp, method, path, raw)
                if method == "POST":
                    # The service accepts a signed write once (a replay cache): the same
                    # write again within the same second waits for a new timestamp.
                    if self._write_second != stamp:
                        self._write_second, self._signed_writes = stamp, set()
                    if signature in self._signed_writes:
                        time.sleep(max(0.0, int(stamp) + 1 - time.time()))
                        stamp = str(int(time.time()))
                        signature = v1_signature(self.signing_secret, stamp, method, path, raw)
                        self._write_second, self._signed_writes = stamp, set()
                    self._signed_writes.add(signature)
                headers["x-lumyn-timestamp"] = stamp
                headers["x-lumyn-signature"] = signature
        return headers

    def _ok(self, status: int, body: Any) -> dict[str, Any]:
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        raise _error(status, body)


def _segment(decision_id: str) -> str:
    """A decision id as one path segment (an id with a slash must not reach another route)."""
    return quote(str(decision_id), safe="")


def _error(status: int, body: Any) -> LumynError:
    """The SDK's error for the service's error body."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ServiceError("UNEXPECTED_RESPONSE", f"the service answered HTTP {status}",
                            status=status)
    code = str(error.get("reason_code") or "SERVICE_ERROR")
    message = str(error.get("message") or f"HTTP {status}")
    field = error.get("field")
    if status == 409 and code == "IDEMPOTENCY_CONFLICT":
        return IdempotencyConflict(message, existing_decision_id=str(
            error.get("existing_decision_id") or ""))
    if status == 404 and code == "DECISION_NOT_FOUND":
        return DecisionNotFound(message, field=field)
    if code == "INVALID_EVENT":
        return InvalidEvent(message, field=field)
    if status == 422:
        return RequestInvalid(message, field=field, reason_code=code)
    if status == 503:
        return StorageUnavailable(message, field=field)
    return ServiceError(code, message, field=field, status=status)
