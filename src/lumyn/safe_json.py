"""JSON from untrusted hands: bounded reads, bounded nesting, bounded key counts, and no
duplicate keys.

Duplicate keys: RFC 8259 leaves their meaning open, and parsers disagree (Python and orjson keep
the last, many proxies and WAFs the first), so a proxy that vets `{"amount": 5, "amount":
5000}` may approve what Lumyn decides on. Lumyn refuses them (HTTP 400 / CLI exit 1,
`DUPLICATE_KEY`, naming the key), so every reader of a request agrees on what it says.

The service parses with orjson (fast, nesting limited to 1,024 levels) and checks the raw text
here: a walk of the parsed value counts the keys kept (and bounds them, MAX_KEYS). Every key
written is followed by a colon, so when the body holds exactly that many colons no key was
repeated (the common case, one bytes.count); otherwise one regular-expression pass over the
string tokens counts the keys written, and if they differ the slow path finds which.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

MAX_KEYS = 10_000  # object keys per request body: far above any real request
MAX_FILE_BYTES = 64 * 1024 * 1024  # CLI input files (requests, packs, policies)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?', re.S)


class JsonRefused(ValueError):
    """The text is JSON (or near it) that Lumyn will not accept; `reason_code` says why."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


def check_keys(raw: bytes, parsed: Any, max_keys: int = MAX_KEYS) -> None:
    """Raise JsonRefused if `raw` (which parsed to `parsed`) repeats a key in an object or
    holds more than `max_keys` keys."""
    kept = _kept_keys(parsed)
    if kept > max_keys:
        raise JsonRefused("TOO_MANY_KEYS", f"body has {kept} object keys; at most {max_keys}")
    if raw.count(b":") == kept:
        return  # every key is followed by one colon: no colon to spare for a repeated key
    written = sum(1 for match in _STRING.finditer(raw) if match.group(1))
    if written != kept:
        raise JsonRefused("DUPLICATE_KEY", _first_duplicate(raw))


def loads(text: str | bytes, max_keys: int = MAX_KEYS) -> Any:
    """json.loads that refuses duplicate keys, too many keys and nesting Python's parser cannot
    follow, with a one-line reason."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRefused("INVALID_JSON", "nests too deeply to parse") from None
    check_keys(raw, value, max_keys)
    return value


def read_bounded(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a file, a device, a pipe or '-' (stdin), refused past `limit` bytes
    (read in chunks, so /dev/zero or an endless pipe stops at the limit)."""
    if path == "-":
        return _read_capped(sys.stdin.buffer, path, limit)
    with Path(path).open("rb") as handle:
        return _read_capped(handle, path, limit)


def _read_capped(handle: BinaryIO, name: str, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = handle.read(min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise JsonRefused("INPUT_TOO_LARGE", f"{name} is larger than {limit} bytes")
        chunks.append(chunk)


def _kept_keys(value: Any) -> int:
    count = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += len(node)
            stack.extend(v for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return count


def _first_duplicate(raw: bytes) -> str:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    with contextlib.suppress(ValueError, RecursionError):
        json.loads(raw, object_pairs_hook=pairs)
    name = found[0] if found else "?"
    return f"key '{name}' appears more than once in one object"
