"""RFC 8785 (JCS) canonical JSON and sha256 digests.

`rfc8785` is the reference implementation. It is pure Python, so hot paths use orjson with
sorted keys, which writes what JCS writes except for some numbers (integral floats, exponent
notation, integers beyond ±2^53-1) and for the order of keys holding characters above U+FFFF.

- `canonical_bytes` takes any value: a pre-pass proves orjson's output will be identical
  (integral floats become ints) or falls back to `rfc8785`, which also names what is wrong.
- `canonical_copy` (requests) and `canonical_plain_bytes` (records the engine builds) skip the
  pre-pass: orjson writes the value and a scan of its output finds any number token JCS would
  write differently. `canonical_copy` also reads its output back and compares it with the
  value, which catches everything orjson writes that is not JSON (NaN as null, datetimes...).

Property tests hold every path equal to the reference implementation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
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


_LONG_DIGITS = re.compile(rb"[0-9]{20}")  # no integer of 64 bits has 20 digits


def loads(data: bytes) -> Any:
    """Parse JSON bytes as orjson does, but keep integers beyond 64 bits integers: orjson reads
    them as floats, silently dropping digits, where canonicalisation must refuse them by name
    (as it refuses every integer beyond ±2^53-1). Raises orjson.JSONDecodeError."""
    value = orjson.loads(data)
    if _LONG_DIGITS.search(data):  # rare: a long number, or a long digit run in a string
        # Deeper than the stdlib parser goes: orjson's value stands, depth limits refuse it.
        with contextlib.suppress(RecursionError):
            value = json.loads(data)
    return value


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
            if kind is str or kind is bool or item is None:
                out[key] = item
            elif kind is int or kind is float:
                out[key] = _number(item, kind)
            else:
                out[key] = _prepare(item)
        return out
    if kind is list or kind is tuple:
        return [
            item if (t := type(item)) is str or t is bool or item is None
            else _prepare(item)
            for item in value
        ]
    if kind is str or kind is bool or value is None:
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


_SORT_STRICT = _SORT | orjson.OPT_STRICT_INTEGER  # integers beyond ±(2^53-1) raise
_DOT_ZERO = re.compile(rb"\.0(?=[,\]}])")  # how orjson ends an integral float: 12.0 (JCS: 12)
_EXPONENT = re.compile(rb"e[-+]\d")  # orjson's exponent form; JCS uses it over other ranges
_BELOW_ASTRAL = bytes(range(0xF0))  # deleted, leaves the lead bytes of characters > U+FFFF
_DIGITS = frozenset(b"0123456789")


def _orjson(value: Any) -> bytes | None:
    """orjson's sorted output of an object or array, or None when it may differ from JCS
    other than by integral floats: an exponent, a key with a character above U+FFFF (orjson
    sorts by code point, JCS by UTF-16 unit) or an integer beyond ±(2^53-1). The characters
    may be inside a string instead; the careful path then settles it."""
    if type(value) is not dict and type(value) is not list:
        return None  # a bare scalar: the scans below look for what follows a number
    try:
        raw = orjson.dumps(value, option=_SORT_STRICT)
    except (orjson.JSONEncodeError, TypeError):
        return None
    if _EXPONENT.search(raw) or (not raw.isascii() and raw.translate(None, _BELOW_ASTRAL)):
        return None
    return raw


def _integral_floats_as_ints(raw: bytes) -> bytes | None:
    """Rewrite each integral float token of orjson's output as JCS writes it (12.0 -> 12,
    -0.0 -> 0); None when one has more than 15 digits."""
    parts = []
    pos = 0
    for match in _DOT_ZERO.finditer(raw):
        end = match.start()
        start = end
        while start and raw[start - 1] in _DIGITS:
            start -= 1
        if not 0 < end - start <= 15:
            return None  # 2^53 has 16 digits: the careful path keeps such values floats
        # A match inside a string is rewritten too; canonical_copy's comparison catches it.
        negative = raw[start - 1 : start] == b"-"
        if negative and raw[start:end] == b"0":
            parts.append(raw[pos : start - 1])
            parts.append(b"0")
        else:
            parts.append(raw[pos:end])
        pos = match.end()
    parts.append(raw[pos:])
    return b"".join(parts)


def canonical_plain_bytes(value: Any) -> bytes:
    """canonical_bytes for a plain value: only dicts, lists, strings, integers within
    ±(2^53-1), finite floats, booleans and None — a canonical_copy, or a record the engine
    builds from one. orjson's output is taken when scanning it finds nothing JCS writes
    differently; anything else goes the careful way."""
    raw = _orjson(value)
    if raw is not None and _DOT_ZERO.search(raw) is None:
        return raw
    return canonical_bytes(value)


def canonical_plain_bytes_with(value: dict[str, Any], key: str, encoded: bytes) -> bytes:
    """canonical_plain_bytes of `value` with `key` set to the value whose canonical bytes are
    `encoded`, without writing or scanning that value again. JCS writes an object's members
    sorted, so the members before and after `key` are written separately around it (each
    scanned like any plain value). The keys must be ASCII, where Python's order is JCS's (the
    engine's record and digest keys are)."""
    write = canonical_plain_bytes
    before = {k: v for k, v in value.items() if k < key}
    after = {k: v for k, v in value.items() if k > key}
    member = orjson.dumps(key) + b":" + encoded
    head = write(before)[:-1] + b"," if before else b"{"
    tail = b"," + write(after)[1:] if after else b"}"
    return head + member + tail


def json_number(value: float) -> float:
    """A float the engine puts in a record, as JCS writes it: integral values become ints, so
    canonical_plain_bytes finds nothing to correct (0.0 and 12.0 are common)."""
    if value.is_integer() and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return int(value)
    return value


def plain_digest(value: Any) -> str:
    return sha256_digest(canonical_plain_bytes(value))


def canonical_copy(value: Any) -> tuple[bytes, Any]:
    """Canonical bytes of any value and a private, plain copy parsed back from them."""
    raw = _orjson(value)
    if raw is not None:
        fixed = raw if _DOT_ZERO.search(raw) is None else _integral_floats_as_ints(raw)
        if fixed is not None:
            copy = orjson.loads(fixed)
            # The copy differs from the value when orjson wrote something that is not JSON
            # (NaN as null, a datetime as a string, a tuple as a list) or rewrote a string
            # that looked like an integral float: take the careful path then.
            if copy == value:
                return fixed, copy
    raw = canonical_bytes(value)
    return raw, _unsafe_ints_to_floats(orjson.loads(raw))


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
        return ("integer outside the IEEE-754 safe range (±2^53-1), which canonical JSON "
                "(RFC 8785) cannot represent exactly; send such ids as strings")
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
