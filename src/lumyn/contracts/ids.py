"""Identifiers and timestamps."""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as 2 characters
_LOW40 = (1 << 40) - 1


def encode_time(ms: int) -> str:
    """The first 10 characters of a ULID: 48-bit milliseconds (two leading zero bits)."""
    p = _PAIRS
    return p[ms >> 40] + p[(ms >> 30) & 1023] + p[(ms >> 20) & 1023] + p[(ms >> 10) & 1023] + p[
        ms & 1023]


def encode_random(random: int) -> str:
    """The last 16 characters of a ULID: 80 random bits, as two 40-bit halves (small ints
    shift faster than one 130-bit value)."""
    p, hi, lo = _PAIRS, random >> 40, random & _LOW40
    return (p[hi >> 30] + p[(hi >> 20) & 1023] + p[(hi >> 10) & 1023] + p[hi & 1023]
            + p[lo >> 30] + p[(lo >> 20) & 1023] + p[(lo >> 10) & 1023] + p[lo & 1023])


# (milliseconds, random part, encoded milliseconds) of the previous id from this process
_last = (0, 0, encode_time(0))
_lock = threading.Lock()


def new_id() -> str:
    """A new ULID: 48-bit Unix milliseconds + 80 random bits, 26 Crockford base32 characters.

    Monotonic within a process: an id made in the same millisecond as the previous one (or
    when the clock steps back) increments the previous random part, so ids sort in creation
    order — the decisions' primary key and the memory index rely on that. Encoded 10 bits at
    a time from a table, the time part once per millisecond: several times faster than
    building a ULID object, which matters because every decision and event needs one.
    """
    global _last
    ms = time.time_ns() // 1_000_000
    with _lock:
        last_ms, random, prefix = _last
        if ms > last_ms:
            random, prefix = int.from_bytes(os.urandom(10), "big"), encode_time(ms)
        else:  # same millisecond, or the clock went back: stay after the previous id
            ms, random = last_ms, random + 1
            if random >= 1 << 80:  # 2^80 ids in one millisecond: borrow the next one
                ms, random, prefix = ms + 1, 0, encode_time(ms + 1)
        _last = (ms, random, prefix)
    return prefix + encode_random(random)


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
