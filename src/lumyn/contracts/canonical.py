"""RFC 8785 (JCS) canonical JSON and sha256 digests.

`rfc8785` is the reference implementation. It is pure Python, so hot paths use orjson with
sorted keys after a pre-pass that proves the output is identical: integral floats become ints,
and anything orjson would format differently from JCS (exponent-range floats, keys outside the
BMP-below-surrogates range, huge ints) falls back to `rfc8785`. A property test holds the two
paths equal.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import orjson
import rfc8785

_MAX_SAFE_INT = 2**53 - 1
_SORT = orjson.OPT_SORT_KEYS


class CanonicalizationError(ValueError):
    """The value has no canonical JSON form (NaN, Infinity, huge int, non-JSON type)."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class _Fallback(Exception):
    pass


def _prepare(value: Any) -> Any:
    if isinstance(value, str) or value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        raise _Fallback
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Fallback
        if value.is_integer():
            if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return int(value)
            raise _Fallback
        magnitude = abs(value)
        if 1e-4 <= magnitude < 1e16:
            return value
        raise _Fallback
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            # orjson sorts by code point, JCS by UTF-16 unit: equal below the surrogate range.
            if not isinstance(key, str) or (key and max(key) >= "\ud800"):
                raise _Fallback
            out[key] = _prepare(item)
        return out
    if isinstance(value, list | tuple):
        return [_prepare(item) for item in value]
    raise _Fallback


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON-compatible value."""
    try:
        return orjson.dumps(_prepare(value), option=_SORT)
    except (_Fallback, orjson.JSONEncodeError, TypeError):
        pass
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as exc:  # rfc8785 raises several unrelated types
        raise CanonicalizationError(_describe(value) or str(exc), _find_bad_path(value)) from None


def reference_canonical_bytes(value: Any) -> bytes:
    """The reference implementation, for tests."""
    return bytes(rfc8785.dumps(value))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """`sha256:` + hex of SHA-256 over the canonical bytes of `value`."""
    return sha256_digest(canonical_bytes(value))


def _bad_reason(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and Infinity are not JSON numbers"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_SAFE_INT:
        return "integer outside the IEEE-754 safe range (±2^53-1)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "string is not valid Unicode (lone surrogate)"
        return None
    if value is None or isinstance(value, bool | int | float | dict | list | tuple):
        return None
    return f"{type(value).__name__} is not a JSON type"


def _walk_bad(value: Any, path: str) -> tuple[str, str] | None:
    reason = _bad_reason(value)
    if reason:
        return path, reason
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, "object keys must be strings"
            found = _walk_bad(item, f"{path}/{_escape(key)}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _walk_bad(item, f"{path}/{index}")
            if found:
                return found
    return None


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _find_bad_path(value: Any) -> str:
    found = _walk_bad(value, "")
    return found[0] if found else ""


def _describe(value: Any) -> str:
    found = _walk_bad(value, "")
    return found[1] if found else ""
