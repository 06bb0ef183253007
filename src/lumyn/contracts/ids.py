"""Identifiers and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id() -> str:
    """A new ULID (26 Crockford base32 characters, time-ordered)."""
    return str(ULID())


def utc_now() -> str:
    """RFC 3339 UTC timestamp with millisecond precision, `Z` suffix."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
