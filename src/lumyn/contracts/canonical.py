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


class CanonicalDict(dict):  # type: ignore[type-arg]
    """A dict parsed from canonical bytes by the fast path: every value in it is already in
    the form orjson writes exactly as JCS does, so later canonicalisations skip its subtree.
    Only additions of strings, booleans, None, or further CanonicalDicts keep that true."""


def _number(value: Any, kind: type) -> Any:
    """A number in the form orjson writes as JCS does, or _Fallback."""
    if kind is int:
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
    elif kind is float:
        if value.is_integer():
            if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return int(value)
        elif 1e-4 <= abs(value) < 1e16:  # also rejects NaN and infinities
            return value
    raise _Fallback  # subclasses and other types: let the reference implementation decide


def _prepare(value: Any) -> Any:
    # Hot: every decision canonicalises its request and record. Leaves are handled inline,
    # containers recurse.
    kind = type(value)
    if kind is dict:
        out = {}
        for key, item in value.items():
            # orjson sorts by code point, JCS by UTF-16 unit: equal below the surrogate range.
            if type(key) is not str or (not key.isascii() and key and max(key) >= "\ud800"):
                raise _Fallback
            kind = type(item)
            if kind is str or kind is bool or item is None or kind is CanonicalDict:
                out[key] = item
            elif kind is int or kind is float:
                out[key] = _number(item, kind)
            else:
                out[key] = _prepare(item)
        return out
    if kind is list or kind is tuple:
        return [
            item if (t := type(item)) is str or t is bool or item is None or t is CanonicalDict
            else _prepare(item)
            for item in value
        ]
    if kind is str or kind is bool or value is None or kind is CanonicalDict:
        return value
    return _number(value, kind)


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


def canonical_copy(value: Any) -> tuple[bytes, Any]:
    """Canonical bytes of `value` and a private copy parsed back from them (a CanonicalDict
    when the fast path applied, so canonicalising it again is nearly free)."""
    try:
        raw = orjson.dumps(_prepare(value), option=_SORT)
    except (_Fallback, orjson.JSONEncodeError, TypeError):
        raw = canonical_bytes(value)
        return raw, _unsafe_ints_to_floats(orjson.loads(raw))
    copy = orjson.loads(raw)
    return raw, CanonicalDict(copy) if isinstance(copy, dict) else copy


def _unsafe_ints_to_floats(value: Any) -> Any:
    # JCS writes large integral floats as bare digits; read back, they must stay floats
    # (integers beyond ±2^53-1 have no canonical form).
    if type(value) is int and not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return float(value)
    if isinstance(value, dict):
        return {k: _unsafe_ints_to_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsafe_ints_to_floats(v) for v in value]
    return value


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
