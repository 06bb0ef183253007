"""Signed decision packs: an Ed25519 signature over the pack's manifest.

The manifest already holds the sha256 of every other file, so signing its exact bytes covers
the whole pack. The signature travels in `signature.json` (outside the manifest):

    {"format": "lumyn_signature.v0", "algorithm": "ed25519", "key_id": "...",
     "signed_file": "manifest.json", "signature": "<base64>"}

Verification fails when the signature is missing or unreadable, made by a key that is not
trusted, or does not match the manifest bytes; together with replay's manifest check (every
file against its digest) a change to any file after signing fails, even when the attacker
recomputed the manifest's digests, because the manifest then no longer matches the signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lumyn.integrity.keys import key_id

SIGNATURE_FORMAT = "lumyn_signature.v0"
SIGNATURE_FILE = "signature.json"
MANIFEST_FILE = "manifest.json"  # lumyn.packs.MANIFEST_FILE (packs imports this module)


def signature_file(manifest: bytes, private: Ed25519PrivateKey) -> bytes:
    body = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "ed25519",
        "key_id": key_id(private.public_key()),
        "signed_file": MANIFEST_FILE,
        "signature": base64.b64encode(private.sign(manifest)).decode("ascii"),
    }
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")


def check_signature(files: dict[str, bytes],
                    trusted: dict[str, Ed25519PublicKey]) -> tuple[bool, str]:
    """(ok, detail) for the pack's signature against the trusted public keys."""
    if SIGNATURE_FILE not in files:
        return False, f"the pack is not signed ({SIGNATURE_FILE} is missing)"
    try:
        body: Any = json.loads(files[SIGNATURE_FILE].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return False, f"{SIGNATURE_FILE} is not valid JSON: {exc}"
    if not isinstance(body, dict) or body.get("format") != SIGNATURE_FORMAT \
            or body.get("algorithm") != "ed25519" or body.get("signed_file") != MANIFEST_FILE:
        return False, f"{SIGNATURE_FILE} is not a {SIGNATURE_FORMAT} ed25519 manifest signature"
    kid = body.get("key_id")
    key = trusted.get(kid) if isinstance(kid, str) else None
    if key is None:
        return False, f"signed by key {kid}, which is not among the trusted keys " \
                      f"({', '.join(sorted(trusted)) or 'none'})"
    try:
        signature = base64.b64decode(str(body.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        return False, f"{SIGNATURE_FILE}: the signature is not base64"
    if MANIFEST_FILE not in files:
        return False, f"{MANIFEST_FILE} is missing"
    try:
        key.verify(signature, files[MANIFEST_FILE])
    except InvalidSignature:
        return False, f"the signature by key {kid} does not match {MANIFEST_FILE}: the pack " \
                      "was changed after it was signed"
    return True, f"manifest signed by trusted key {kid}"
