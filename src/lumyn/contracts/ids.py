"""Identifiers and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime


def new_id() -> str:
    """A new ULID (26 Crockford base32 characters, time-ordered)."""
    from ulid import ULID  # lazy: importing ulid costs ~10 ms of CLI startup

    return str(ULID())


def utc_now() -> str:
    """RFC 3339 UTC timestamp with millisecond precision, `Z` suffix."""
    now = datetime.now(UTC)
    return (
        f"{now.year:04d}-{now.month:02d}-{now.day:02d}T{now.hour:02d}:{now.minute:02d}:"
        f"{now.second:02d}.{now.microsecond // 1000:03d}Z"
    )
