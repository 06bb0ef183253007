"""Validate a raw DecisionRequest and produce the request as it will be persisted."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from lumyn.contracts.canonical import (
    CanonicalizationError,
    canonical_copy,
    canonical_plain_bytes,
    plain_digest,
    sha256_digest,
)
from lumyn.contracts.schemas import validate_request
from lumyn.engine.features import amount_usd
from lumyn.errors import ContextDigestMismatch, RequestInvalid
from lumyn.redaction import escape, redact_tree

REDACTION_PROFILES = ("default", "strict", "off")
MAX_DEPTH = 32  # open objects (evidence, inline context, extensions) may nest this deep


class NormalizedRequest(NamedTuple):
    persisted: dict[str, Any]  # canonical, redacted; what the record stores
    tenant_id: str  # "" means global
    request_digest: str  # digest of `persisted`, the idempotency fingerprint
    canonical: bytes  # canonical JSON of `persisted`


def tenant_of(request: dict[str, Any]) -> str:
    tenant = request.get("tenant")
    if isinstance(tenant, dict) and tenant.get("tenant_id"):
        return str(tenant["tenant_id"])
    subject = request.get("subject")
    if isinstance(subject, dict) and subject.get("tenant_id"):
        return str(subject["tenant_id"])
    return ""


def normalize_request(request: Any, redaction_profile: str = "default") -> NormalizedRequest:
    if not isinstance(request, dict):
        raise RequestInvalid("a DecisionRequest must be a JSON object", field="(root)")
    validate_request(request)
    for name, value in (("evidence", request.get("evidence")), ("extensions", request.get("extensions")),
                        ("context.inline", request["context"].get("inline"))):
        if value is not None and _too_deep(value, MAX_DEPTH):
            raise RequestInvalid(f"{name} nests deeper than {MAX_DEPTH} levels", field=name)
    try:
        raw, persisted = canonical_copy(request)  # a private, canonical copy
    except CanonicalizationError as exc:
        field = exc.path.lstrip("/").replace("/", ".") or "(root)"
        raise RequestInvalid(str(exc), field=field) from None
    context = persisted["context"]
    if context["mode"] == "inline":
        actual = plain_digest(context["inline"])
        if actual != context["digest"]:
            raise ContextDigestMismatch(
                f"context.digest does not match the inline context (expected {actual})",
                field="context.digest",
            )
        removed = _redact(context, redaction_profile)
        context["redaction"] = {"profile": redaction_profile, "fields_removed": removed}
        if removed:
            # The caller's digest covers what was removed, so anyone holding the record could
            # confirm a guess of a removed value (an SSN, say) by hashing: keep instead the
            # digest of the context as stored (docs/reliability.md, "context digest").
            context["digest"] = plain_digest(context["inline"])
        raw = canonical_plain_bytes(persisted)
    usd = amount_usd(persisted)
    if usd is not None and not math.isfinite(usd):
        raise RequestInvalid(
            "action.amount.value × evidence.fx_rate_to_usd is too large to be a number",
            field="evidence.fx_rate_to_usd",
        )
    return NormalizedRequest(persisted, tenant_of(persisted), sha256_digest(raw), raw)


def _too_deep(value: Any, limit: int) -> bool:
    """Iterative, so hostile nesting cannot exhaust the interpreter stack."""
    if type(value) is dict:  # the common case, a flat object, without building a stack
        for child in value.values():
            if isinstance(child, dict | list):
                break
        else:
            return limit < 1
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values()
                         if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _redact(context: dict[str, Any], profile: str) -> list[str]:
    inline = context["inline"]
    if profile == "off":
        return []
    if profile == "strict":
        context["inline"] = {}
        return [f"/context/inline/{escape(k)}" for k in sorted(inline)]
    removed: list[str] = []
    redact_tree(inline, "/context/inline", removed)
    return sorted(removed)
