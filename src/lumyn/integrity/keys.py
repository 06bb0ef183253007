"""Ed25519 signing keys for decision packs.

`generate(dir)` writes `lumyn-<key id>.key` (PKCS#8 PEM, unencrypted) and `lumyn-<key id>.pub`
(SubjectPublicKeyInfo PEM), both mode 0600 in a directory of mode 0700. The key id is the first
32 hex digits of sha256 over the raw 32-byte public key, so anyone holding the public key can
compute it; a pack's signature names the key id it was made with.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lumyn.errors import LumynError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"


class SigningKeyError(LumynError):
    """A signing or verification key cannot be used."""

    reason_code = "KEY_INVALID"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def generate(out_dir: str | os.PathLike[str]) -> tuple[str, Path, Path]:
    """A new key pair in `out_dir`: (key id, private key path, public key path)."""
    directory = Path(out_dir)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SigningKeyError(f"cannot create key directory {directory}: {exc.strerror}",
                        field="out") from None
    private = Ed25519PrivateKey.generate()
    kid = key_id(private.public_key())
    private_path = directory / f"lumyn-{kid}{PRIVATE_SUFFIX}"
    public_path = directory / f"lumyn-{kid}{PUBLIC_SUFFIX}"
    pem_private = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    pem_public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    for path, data in ((private_path, pem_private), (public_path, pem_public)):
        _write_owner_only(path, data)
    return kid, private_path, public_path


def _write_owner_only(path: Path, data: bytes) -> None:
    # O_EXCL: never replace a key; the mode is set at creation, so no moment is world-readable.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SigningKeyError(f"cannot write {path}: {exc.strerror}", field="out") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)  # whatever the umask


def load_private(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    data = _read(path, "sign")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}",
                        field="sign") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 private key", field="sign")
    return key


def load_public_keys(path: str | os.PathLike[str]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id: one `.pub` file, or every `.pub` file of a directory
    (several keys: rotation)."""
    source = Path(path)
    files = sorted(source.glob(f"*{PUBLIC_SUFFIX}")) if source.is_dir() else [source]
    if not files:
        raise SigningKeyError(f"no {PUBLIC_SUFFIX} public key files in {source}", field="verify_key")
    keys: dict[str, Ed25519PublicKey] = {}
    for file in files:
        data = _read(file, "verify_key")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SigningKeyError(f"{file} is not a PEM public key: {exc}", field="verify_key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{file} is not an Ed25519 public key", field="verify_key")
        keys[key_id(key)] = key
    return keys


def _read(path: str | os.PathLike[str], field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read key {path}: {exc.strerror}", field=field) from None
