"""Durations as the CLI takes them: `90s`, `30m`, `24h`, `7d`, `2w`."""

from __future__ import annotations

import re
from datetime import timedelta

from lumyn.errors import LumynError

_DURATION = re.compile(r"^(\d{1,7})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class DurationInvalid(LumynError):
    reason_code = "INVALID_ARGUMENT"


def match_duration(text: str) -> timedelta | None:
    """The duration `text` spells (surrounding blanks allowed), or None."""
    found = _DURATION.match(text.strip())
    if found is None:
        return None
    return timedelta(seconds=int(found.group(1)) * _UNIT_S[found.group(2)])


def parse_duration(text: str, *, field: str) -> timedelta:
    """A positive duration, or a one-line error naming `field`."""
    value = match_duration(text or "")
    if value is None or not value:
        raise DurationInvalid(f"{text!r} is not a duration like 30m, 24h or 7d", field=field)
    return value
