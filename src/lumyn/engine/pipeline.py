"""The engine's two steps of a decision. Both are pure: no I/O, no clock, no randomness.

    admit     raw request + compiled policy -> Admitted (normalized, pinned, its mode, its
              idempotency key and the memory features to look up)
    conclude  Admitted + memory similarity + id and time -> Decided (the record, its
              canonical bytes and the row to store)

The SDK (lumyn.sdk.Lumyn) owns the decide path and its I/O: it looks memory up between the
two steps and writes what `conclude` returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lumyn.contracts.canonical import canonical_plain_bytes_with
from lumyn.engine.assess import assess, request_features, resolve_mode, storage_unavailable_body
from lumyn.engine.normalize import normalize_request
from lumyn.errors import RequestInvalid
from lumyn.memory.index import Similarity
from lumyn.policy.model import CompiledPolicy
from lumyn.store.base import DecisionRow, IdempotencyKey

RECORD_SCHEMA_VERSION = "decision_record.v0"


class Admitted(NamedTuple):
    request: dict[str, Any]  # canonical, redacted: what the record stores
    request_json: bytes  # its canonical bytes
    tenant_id: str  # "" means global
    action_type: str
    mode: str  # enforce | advisory
    dry_run: bool
    key: IdempotencyKey | None  # None for a dry run or a request without request_id
    features: tuple[str, ...]  # Experience Memory tokens


class Decided(NamedTuple):
    record: dict[str, Any]
    record_json: bytes | None  # None for a dry run: nothing is stored
    row: DecisionRow | None


def admit(request: Any, policy: CompiledPolicy, redaction_profile: str,
          configured_mode: str | None) -> Admitted:
    """Validate and normalize a DecisionRequest against the loaded policy. Raises
    RequestInvalid (schema, context digest, policy pin)."""
    normalized = normalize_request(request, redaction_profile)
    persisted, tenant = normalized.persisted, normalized.tenant_id
    _check_policy_pin(persisted, policy)
    dry_run = bool((persisted.get("hints") or {}).get("dry_run"))
    request_id = persisted.get("request_id")
    key = (IdempotencyKey(tenant, request_id, normalized.request_digest)
           if request_id and not dry_run else None)
    return Admitted(persisted, normalized.canonical, tenant, persisted["action"]["type"],
                    resolve_mode(persisted, configured_mode, policy), dry_run, key,
                    request_features(persisted))


def conclude(policy: CompiledPolicy, admitted: Admitted, similarity: Similarity, top_k: int,
             decision_id: str, created_at: str,
             extensions: dict[str, Any] | None = None) -> Decided:
    """The decision on an admitted request, given memory similarity for its features.
    `extensions` become the record's `extensions` (shadow mode's verdict, lumyn.shadow)."""
    body = assess(policy, admitted.request, admitted.tenant_id, similarity, admitted.mode, top_k,
                  admitted.features, admitted.request_json)
    record = _record(decision_id, created_at, body)
    if extensions:
        record["extensions"] = dict(extensions)
    if admitted.dry_run:
        record.setdefault("extensions", {})["lumyn"] = {"dry_run": True, "persisted": False}
        return Decided(record, None, None)
    # The request's canonical bytes are spliced in; everything else is written and scanned,
    # so the bytes are canonical whatever fields a record grows.
    encoded = canonical_plain_bytes_with(record, "request", admitted.request_json)
    return Decided(record, encoded, DecisionRow.from_record(record, admitted.tenant_id, encoded))


def unavailable(policy: CompiledPolicy, request: dict[str, Any], mode: str, detail: str,
                decision_id: str, created_at: str) -> dict[str, Any]:
    """The fail-closed ABSTAIN record returned when a decision cannot be made durable."""
    return _record(decision_id, created_at,
                   storage_unavailable_body(policy, request, mode, detail))


def _record(decision_id: str, created_at: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": RECORD_SCHEMA_VERSION, "decision_id": decision_id,
            "created_at": created_at, **body}


def _check_policy_pin(request: dict[str, Any], policy: CompiledPolicy) -> None:
    pin = request.get("policy") or {}
    for name, actual in (("policy_id", policy.policy_id),
                         ("policy_version", policy.policy_version)):
        if pin.get(name) is not None and pin[name] != actual:
            raise RequestInvalid(
                f"request asks for {name} '{pin[name]}' but the loaded policy is '{actual}'",
                field=f"policy.{name}",
                reason_code="POLICY_MISMATCH",
            )
