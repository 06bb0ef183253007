"""Identifiers and timestamps."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as 2 characters
_SHIFTS = range(120, -1, -10)


_last = (0, 0)  # (milliseconds, random part) of the previous id from this process
_lock = threading.Lock()


def new_id() -> str:
    """A new ULID: 48-bit Unix milliseconds + 80 random bits, 26 Crockford base32 characters.

    Monotonic within a process: an id made in the same millisecond as the previous one (or
    when the clock steps back) increments the previous random part, so ids sort in creation
    order — the decisions' primary key and the memory index rely on that. Encoded 10 bits at
    a time from a table (130 bits, the top two zero): several times faster than building a
    ULID object, which matters because every decision and event needs one.
    """
    global _last
    ms = time.time_ns() // 1_000_000
    with _lock:
        last_ms, last_random = _last
        if ms > last_ms:
            random = int.from_bytes(os.urandom(10), "big")
        else:  # same millisecond, or the clock went back: stay after the previous id
            ms, random = last_ms, last_random + 1
            if random >= 1 << 80:  # 2^80 ids in one millisecond: borrow the next one
                ms, random = ms + 1, 0
        _last = (ms, random)
    value = ms << 80 | random
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """RFC 3339 UTC timestamp with millisecond precision, `Z` suffix."""
    global _second
    ms = time.time_ns() // 1_000_000
    second, millis = divmod(ms, 1000)
    cached = _second
    if cached[0] != second:  # format the date and time once per second
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{millis:03d}Z"
