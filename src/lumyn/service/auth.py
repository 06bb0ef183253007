"""Request authentication: HMAC signatures and per-tenant API keys.

Signing (when a secret is configured) covers every route except /healthz:
- scheme "body" (the seed's): `X-Lumyn-Signature: sha256:<hex HMAC-SHA256(secret, body)>`;
- scheme "v1" (opt-in): `X-Lumyn-Timestamp: <unix seconds>` and
  `X-Lumyn-Signature: v1=<hex HMAC-SHA256(secret, "<ts>\\n<METHOD>\\n<path?query>\\n" + body)>`,
  accepted only within the replay window, so a captured signature is useless on another route
  or later.
All comparisons are constant time.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Mapping

from lumyn.service.errors import ApiError
from lumyn.signing import body_signature, v1_signature

__all__ = ["body_signature", "tenant_for_key", "v1_signature", "verify_signature"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}\Z")  # bounded: int() of 4,301 digits raises


def verify_signature(
    *,
    secret: str,
    scheme: str,
    window_s: int,
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    now: float | None = None,
) -> None:
    """Raise ApiError(401) unless the request carries a valid signature."""
    given = headers.get("x-lumyn-signature")
    if not given:
        raise ApiError(401, "SIGNATURE_MISSING", "X-Lumyn-Signature header is required",
                       field="X-Lumyn-Signature")
    if scheme == "body":
        prefix, _, digest = given.partition(":")
        if prefix != "sha256" or not _HEX64.match(digest):
            raise ApiError(401, "SIGNATURE_MALFORMED", "expected sha256:<64 lowercase hex>",
                           field="X-Lumyn-Signature")
        if not hmac.compare_digest(given, body_signature(secret, body)):
            raise ApiError(401, "SIGNATURE_INVALID", "signature does not match the body",
                           field="X-Lumyn-Signature")
        return
    prefix, _, digest = given.partition("=")
    if prefix != "v1" or not _HEX64.match(digest):
        raise ApiError(401, "SIGNATURE_MALFORMED", "expected v1=<64 lowercase hex>",
                       field="X-Lumyn-Signature")
    stamp = headers.get("x-lumyn-timestamp", "")
    if not _UNIX_SECONDS.match(stamp):  # ASCII digits only: str.isdigit() accepts "²"
        raise ApiError(401, "SIGNATURE_MALFORMED", "X-Lumyn-Timestamp must be unix seconds",
                       field="X-Lumyn-Timestamp")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > window_s:
        raise ApiError(401, "SIGNATURE_EXPIRED", f"timestamp outside the {window_s}s window",
                       field="X-Lumyn-Timestamp")
    expected = v1_signature(secret, stamp, method, target, body)
    if not hmac.compare_digest(given, expected):
        raise ApiError(401, "SIGNATURE_INVALID",
                       "signature does not match timestamp, method, path and body",
                       field="X-Lumyn-Signature")


def tenant_for_key(tenant_keys: Mapping[str, str], headers: Mapping[str, str]) -> str | None:
    """The tenant bound to the caller's API key; None when keys are not configured."""
    if not tenant_keys:
        return None
    key = headers.get("x-lumyn-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        raise ApiError(401, "API_KEY_MISSING", "an API key is required (Authorization: Bearer)",
                       field="Authorization")
    found: str | None = None
    for candidate, tenant in tenant_keys.items():  # look at every key: no early exit timing
        if hmac.compare_digest(candidate.encode(), key.encode()):
            found = tenant
    if found is None:
        raise ApiError(401, "API_KEY_INVALID", "unknown API key", field="Authorization")
    return found
