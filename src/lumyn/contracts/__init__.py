"""Contracts: JSON Schemas, canonical JSON (RFC 8785), digests and identifiers."""

from lumyn.contracts.canonical import CanonicalizationError, canonical_bytes, digest, sha256_digest
from lumyn.contracts.ids import new_id, utc_now
from lumyn.contracts.schemas import validate_record, validate_request

__all__ = [
    "CanonicalizationError",
    "canonical_bytes",
    "digest",
    "new_id",
    "sha256_digest",
    "utc_now",
    "validate_record",
    "validate_request",
]
