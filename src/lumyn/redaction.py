"""Redaction of inline context under the `default` profile: keys and values.

Keys are normalised before matching, so spelling variants do not slip through: Unicode NFKC,
common Cyrillic and Greek look-alikes mapped to Latin, case folded, and everything that is not
a letter or digit dropped (`cardNumber`, `credit-card number `, `ｅ-ｍａｉｌ`, `раssword` with a
Cyrillic "р" all normalise to forms below). A key is sensitive when its normalised form is one
of NAMES, contains one of FRAGMENTS, or ends with one of SUFFIXES; the whole value under it is
removed.

String values anywhere in the context are scanned for well-known secret shapes (VALUE_SHAPES:
bearer/basic credentials, JWTs, provider API keys, private-key blocks, e-mail addresses, US
SSNs, and card numbers that pass the Luhn check); a matching string is replaced by
REDACTED_VALUE. A `[name, value]` pair whose name is a sensitive key has its value replaced the
same way (header lists such as `[["Authorization", "…"]]`). Every removal or replacement is
listed in `context.redaction.fields_removed` as a JSON pointer.

What is not caught (docs/reliability.md): secrets under innocuous keys whose value has no
recognisable shape (a bare password under `note`), numbers that are secrets (a PIN stored as an
integer), card numbers split across fields, and anything outside `context.inline` (evidence
and action fields are policy inputs and are stored as sent).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

REDACTED_VALUE = "[redacted]"

# Normalised (see normalise_key) names that are sensitive as a whole.
NAMES = frozenset({
    "apikey", "auth", "authorization", "bearer", "jwt", "pwd", "pass", "passwd", "password",
    "passphrase", "passcode", "pin", "otp", "secret", "token", "cookie", "setcookie", "session",
    "sessionid", "sid", "email", "mail", "emailaddress", "phone", "phonenumber", "mobile", "tel",
    "ssn", "sin", "nino", "socialsecurity", "socialsecuritynumber", "taxid", "tin", "ein",
    "creditcard", "creditcardnumber", "cardnumber", "ccnumber", "ccn", "cc", "pan", "cvv",
    "cvv2", "cvc", "cvc2", "expiry", "iban", "bic", "accountnumber", "routingnumber", "sortcode",
    "dob", "dateofbirth", "birthdate", "address", "streetaddress", "ipaddress", "ip",
    "prompt", "systemprompt", "messages", "transcript", "conversation", "chathistory",
})
# Any key containing one of these is sensitive (x-api-key, aws_secret_access_key, userPassword).
FRAGMENTS = (
    "password", "passwd", "passphrase", "passcode", "secret", "token", "apikey", "privatekey",
    "accesskey", "credential", "authorization", "bearer", "cookie", "creditcard", "cardnumber",
    "ccnumber", "socialsecurity", "email", "phonenumber", "dateofbirth", "iban", "jwt",
)
SUFFIXES = ("ssn", "pwd", "phone", "mobile", "address", "dob", "taxid", "session", "sessionid")

_LOOKALIKES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "ѕ": "s", "т": "t", "у": "y", "х": "x",
    "ԝ": "w", "ӏ": "l",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    # Latin look-alikes NFKC keeps
    "ı": "i", "ɑ": "a", "ɡ": "g", "ʟ": "l",
})


def normalise_key(key: str) -> str:
    folded = unicodedata.normalize("NFKC", key).casefold().translate(_LOOKALIKES)
    return "".join(ch for ch in folded if ch.isascii() and ch.isalnum())


def sensitive_key(key: str) -> bool:
    name = normalise_key(key)
    return (name in NAMES or any(part in name for part in FRAGMENTS)
            or name.endswith(SUFFIXES))


VALUE_SHAPES: dict[str, re.Pattern[str]] = {
    "credential": re.compile(r"(?i)\b(?:bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=-]{8,}"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    "aws_key_id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "provider_key": re.compile(
        r"\b(?:(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}|gh[pousr]_[A-Za-z0-9]{30,}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|sk-[A-Za-z0-9_-]{20,})"),
    "private_key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
}
_CARD = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def secret_shape(text: str) -> str | None:
    """The kind of secret `text` holds, or None."""
    folded = unicodedata.normalize("NFKC", text)
    for kind, pattern in VALUE_SHAPES.items():
        if pattern.search(folded):
            return kind
    for match in _CARD.finditer(folded):
        if _luhn("".join(ch for ch in match.group() if ch.isdigit())):
            return "card_number"
    return None


def _luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def redact_tree(node: Any, pointer: str, removed: list[str]) -> None:
    """Remove sensitive keys and replace secret-shaped strings in place, iteratively (the
    context is already limited in depth, but a stack costs nothing)."""
    stack: list[tuple[Any, str]] = [(node, pointer)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            for key in list(current):
                child = f"{where}/{escape(key)}"
                if sensitive_key(key):
                    del current[key]
                    removed.append(child)
                elif _mask_string(current, key, child, removed):
                    continue
                else:
                    stack.append((current[key], child))
        elif isinstance(current, list):
            pair_name = (current[0] if len(current) == 2 and isinstance(current[0], str)
                         else None)
            for index in range(len(current)):
                child = f"{where}/{index}"
                if index == 1 and pair_name is not None and sensitive_key(pair_name):
                    current[1] = REDACTED_VALUE
                    removed.append(child)
                elif not _mask_string(current, index, child, removed):
                    stack.append((current[index], child))


def _mask_string(container: Any, slot: Any, pointer: str, removed: list[str]) -> bool:
    value = container[slot]
    if isinstance(value, str) and value != REDACTED_VALUE and secret_shape(value):
        container[slot] = REDACTED_VALUE
        removed.append(pointer)
        return True
    return isinstance(value, str)


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
