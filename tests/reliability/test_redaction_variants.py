"""Redaction under the default profile against the probe's variants (issue 14, item 5): key
spellings, look-alike Unicode, trailing spaces, secrets inside values, header pairs; and the
stored context digest, which must not let a redacted value be recovered by guessing."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _support import refund

from lumyn import Lumyn, LumynConfig
from lumyn.contracts.canonical import plain_digest
from lumyn.packs import export_pack
from lumyn.redaction import normalise_key, secret_shape, sensitive_key

# Each value is unique, so a grep of the files finds exactly what leaked.
VARIANT_KEYS = {
    "cardNumber": "zz01", "credit_card_number": "zz02", "cc_number": "zz03", "pan": "zz04",
    "emailAddress": "zz05", "e-mail": "zz06", "userPassword": "zz07", "pwd": "zz08",
    "passphrase": "zz09", "api-key": "zz10", "x-api-key": "zz11", "apiToken": "zz12",
    "aws_secret_access_key": "zz13", "bearer": "zz14", "jwt": "zz15", "social_security": "zz16",
    "раssword": "zz17",  # Cyrillic "р" and "а"
    "ｅｍａｉｌ": "zz18",  # fullwidth
    "token ": "zz19",  # trailing space
    "Pass\u200bword": "zz20",  # zero-width space inside
    "SSN": "zz21",
}
VALUE_SECRETS = {
    "note": "customer pasted Bearer zzAbCdEf0123456789xyz into the chat",
    "headers": [["Authorization", "zz-opaque-credential-22"], ["Accept", "text/plain"]],
    "free_text": "reach me at zz.person@example.org please",
    "card_in_text": "card 4111 1111 1111 1111 exp 12/29",
    "jwt_in_text": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ6ejIzIn0.c2lnbmF0dXJlenoyMw",
    "ssn_in_text": "ssn on file 078-05-1120",
    "aws": "AKIAZZZZZZZZZZZZZZ24",
}
KEPT = {"order_note": "visible-value", "not_a_card": "order 4111 1111 1111 1112",
        "short_number": "12345"}
LEAK_MARKERS = [f"zz{n:02d}".encode() for n in range(1, 22)] + [
    b"zzAbCdEf", b"zz-opaque-credential-22", b"zz.person@", b"4111 1111 1111 1111",
    b"eyJhbGciOiJIUzI1NiJ9", b"078-05-1120", b"AKIAZZZZ"]


def _request(inline: dict[str, Any]) -> dict[str, Any]:
    request = refund(1)
    request["context"] = {"mode": "inline", "digest": plain_digest(inline), "inline": inline}
    return request


def test_variant_keys_and_secret_values_never_reach_disk_or_packs(tmp_path: Path) -> None:
    inline = {**VARIANT_KEYS, **VALUE_SECRETS, **KEPT}
    with Lumyn(LumynConfig(store_path=str(tmp_path / "lumyn.db"))) as lumyn:
        record = lumyn.decide(_request(inline))
        stored = record["request"]["context"]
        files = [p for p in tmp_path.iterdir() if p.is_file()]
        assert any(p.name.endswith("-wal") for p in files)
        on_disk = b"".join(p.read_bytes() for p in files)
        pack = export_pack(lumyn.store, record["decision_id"])
    with zipfile.ZipFile(io.BytesIO(pack)) as archive:
        in_pack = b"".join(archive.read(name) for name in archive.namelist())
    for marker in LEAK_MARKERS:
        assert marker not in on_disk, marker
        assert marker not in in_pack, marker
    assert stored["inline"]["order_note"] == "visible-value"
    assert stored["inline"]["not_a_card"] == KEPT["not_a_card"]  # fails Luhn: kept
    assert stored["inline"]["headers"] == [["Authorization", "[redacted]"],
                                           ["Accept", "text/plain"]]
    removed = stored["redaction"]["fields_removed"]
    assert "/context/inline/headers/0/1" in removed and "/context/inline/note" in removed
    assert len(removed) == len(VARIANT_KEYS) + len(VALUE_SECRETS)


def test_a_redacted_value_cannot_be_recovered_from_the_stored_digest(tmp_path: Path) -> None:
    """The probe's attack: the stored context.digest was the SHA-256 of the unredacted inline
    context, so guessing the SSN (10^9 candidates, far fewer with a known area) and hashing
    found it. The stored digest is now the digest of what is stored."""
    secret = "078-05-1120"
    inline = {"ssn": secret, "plan": "pro"}
    with Lumyn(LumynConfig(store_path=str(tmp_path / "lumyn.db"))) as lumyn:
        record = lumyn.decide(_request(inline))
    context = record["request"]["context"]
    assert context["inline"] == {"plan": "pro"}
    for guess in ("078-05-1119", secret, "078-05-1121"):
        assert plain_digest({"ssn": guess, "plan": "pro"}) != context["digest"]
    assert context["digest"] == plain_digest(context["inline"])  # verifiable from the record
    # nothing else in the record is a digest over the removed value either
    raw = repr(record).encode()
    assert hashlib.sha256(secret.encode()).hexdigest().encode() not in raw


def test_the_caller_digest_is_kept_when_nothing_was_removed(tmp_path: Path) -> None:
    inline = {"plan": "pro"}
    request = _request(inline)
    with Lumyn(LumynConfig(store_path=str(tmp_path / "lumyn.db"))) as lumyn:
        record = lumyn.decide(request)
    assert record["request"]["context"]["digest"] == request["context"]["digest"]


@pytest.mark.parametrize(("key", "name"), [("cardNumber", "cardnumber"), ("e-mail", "email"),
                                           ("ＡＰＩ＿ＫＥＹ", "apikey"), ("раssword", "password"),
                                           ("token ", "token")])
def test_keys_are_normalised_before_matching(key: str, name: str) -> None:
    assert normalise_key(key) == name and sensitive_key(key)


@pytest.mark.parametrize("text", ["plan", "order_id", "customer_tier", "amount", "currency"])
def test_ordinary_keys_are_kept(text: str) -> None:
    assert not sensitive_key(text)


@pytest.mark.parametrize(("text", "kind"), [
    ("4111-1111-1111-1111", "card_number"), ("Basic dXNlcjpwYXNzd29yZA==", "credential"),
    ("ghp_" + "a" * 36, "provider_key"), ("-----BEGIN RSA PRIVATE KEY-----", "private_key"),
    ("sk_live_" + "x" * 24, "provider_key"), ("a.b@c.io", "email"),
])
def test_secret_shapes_in_values(text: str, kind: str) -> None:
    assert secret_shape(text) == kind


@pytest.mark.parametrize("text", ["4111 1111 1111 1112", "2026-12-02", "ZD-4411", "hello"])
def test_ordinary_values_are_not_secrets(text: str) -> None:
    assert secret_shape(text) is None
