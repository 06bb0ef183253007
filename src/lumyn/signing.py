"""Request signatures, shared by the service (which checks them) and the HTTP client (which
makes them). Stdlib only, so the client does not need the service's dependencies."""

from __future__ import annotations

import hashlib
import hmac


def body_signature(secret: str, body: bytes) -> str:
    """Scheme "body": `sha256:<hex HMAC-SHA256(secret, body)>`."""
    return "sha256:" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def v1_signature(secret: str, timestamp: str, method: str, target: str, body: bytes) -> str:
    """Scheme "v1": HMAC over timestamp, method, path?query and body."""
    message = f"{timestamp}\n{method.upper()}\n{target}\n".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
