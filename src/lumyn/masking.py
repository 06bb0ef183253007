"""Credentials never printed: every storage URL shown to a person or a log goes through here."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_PASSWORD_PARAM = re.compile(r"(?i)([?&]password=)[^&]*")


def mask_password(url: str) -> str:
    """postgresql://user:secret@host/db?password=x → postgresql://user:***@host/db?password=***"""
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # an unparsable port or netloc: mask everything before the host
        scheme, sep, rest = url.partition("://")
        if not sep or "@" not in rest:
            return url
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
