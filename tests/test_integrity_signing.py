"""Signed decision packs and the `lumyn verify` / `lumyn keys` commands, through the real CLI."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from test_cli_kit import assert_one_line_error, clean_env, cli, decide, refund, sub

MANIFEST = "manifest.json"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)


def generate(out: Path) -> tuple[str, Path, Path]:
    result = cli("keys", "generate", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    kid = result.stdout.split()[2]  # "key id      <kid>"
    return kid, out / f"lumyn-{kid}.key", out / f"lumyn-{kid}.pub"


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """(signed pack, its public key, the keys directory, the decision id)."""
    assert cli("init").exit_code == 0
    decision_id = decide(tmp_path, refund())["decision_id"]
    _, private, public = generate(tmp_path / "keys")
    pack = tmp_path / "signed.zip"
    result = cli("export", decision_id, "--pack", "--sign", str(private), "--out", str(pack))
    assert result.exit_code == 0, result.stderr
    assert "signed" in result.stdout
    return pack, public, tmp_path / "keys", decision_id


def rewrite(pack: Path, target: Path, change: dict[str, bytes], *, fix_manifest: bool) -> Path:
    with zipfile.ZipFile(pack) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files.update(change)
    if fix_manifest:  # the attacker recomputes every digest in the manifest
        manifest = json.loads(files[MANIFEST])
        for name, entry in manifest["files"].items():
            entry["sha256"] = hashlib.sha256(files[name]).hexdigest()
            entry["bytes"] = len(files[name])
        files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    target.write_bytes(buffer.getvalue())
    return target


def test_keys_generate_writes_an_owner_only_pair_named_by_its_digest(tmp_path: Path) -> None:
    kid, private, public = generate(tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    for path in (private, public):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = serialization.load_pem_public_key(public.read_bytes())
    raw = loaded.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == hashlib.sha256(raw).hexdigest()[:32]
    assert b"PRIVATE KEY" in private.read_bytes()
    again, _, _ = generate(tmp_path / "keys")  # a second pair beside it, nothing replaced
    assert again != kid and len(list((tmp_path / "keys").iterdir())) == 4


def test_a_signed_pack_replays_with_its_key_or_a_directory_of_trusted_keys(
    signed: tuple[Path, Path, Path, str], tmp_path: Path
) -> None:
    pack, public, keys_dir, _ = signed
    for trusted in (public, keys_dir):
        result = cli("replay", str(pack), "--verify-key", str(trusted), "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
        assert checks["signature"]["ok"] and checks["chain"]["ok"]
    generate(keys_dir)  # rotation: a new key beside the old one; old packs still verify
    assert cli("replay", str(pack), "--verify-key", str(keys_dir)).exit_code == 0


def test_replay_with_a_key_fails_for_unsigned_or_other_keys_packs(
    signed: tuple[Path, Path, Path, str], tmp_path: Path
) -> None:
    pack, public, _, decision_id = signed
    unsigned = tmp_path / "unsigned.zip"
    assert cli("export", decision_id, "--pack", "--out", str(unsigned)).exit_code == 0
    assert cli("replay", str(unsigned)).exit_code == 0  # without --verify-key: not required
    result = cli("replay", str(unsigned), "--verify-key", str(public))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "REPLAY_FAILED", "signature", "not signed")
    _, _, stranger = generate(tmp_path / "other-keys")
    result = cli("replay", str(pack), "--verify-key", str(stranger))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "signature", "not among the trusted keys")


def test_any_change_after_signing_fails_even_with_recomputed_digests(
    signed: tuple[Path, Path, Path, str], tmp_path: Path
) -> None:
    pack, public, _, _ = signed
    with zipfile.ZipFile(pack) as archive:
        record = json.loads(archive.read("decision_record.json"))
        signature = json.loads(archive.read("signature.json"))
    record["verdict"] = "ABSTAIN"
    edited = json.dumps(record, indent=2, sort_keys=True).encode() + b"\n"
    cases = {
        "record, manifest recomputed": rewrite(pack, tmp_path / "a.zip",
                                               {"decision_record.json": edited}, fix_manifest=True),
        "readme, manifest recomputed": rewrite(pack, tmp_path / "b.zip",
                                               {"README.txt": b"trust me\n"}, fix_manifest=True),
        "record only": rewrite(pack, tmp_path / "c.zip", {"decision_record.json": edited},
                               fix_manifest=False),
        "signature bytes": rewrite(pack, tmp_path / "d.zip", {"signature.json": json.dumps(
            signature | {"signature": "A" * 86 + "=="}).encode()}, fix_manifest=False),
    }
    for name, changed in cases.items():
        result = cli("replay", str(changed), "--verify-key", str(public), "--json")
        assert result.exit_code == 1, name
        checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
        failed = "manifest" if name == "record only" else "signature"
        assert not checks[failed]["ok"], (name, checks)
        if failed == "signature":
            assert "changed after it was signed" in checks["signature"]["detail"], name


def test_bad_keys_are_one_line_errors(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    decision_id = decide(tmp_path, refund())["decision_id"]
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    result = cli("export", decision_id, "--pack", "--sign", str(tmp_path / "not-a-key.pem"))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "KEY_INVALID", "sign")
    result = cli("export", decision_id, "--sign", str(tmp_path / "not-a-key.pem"))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "--pack")
    result = cli("replay", "x.zip", "--verify-key", str(tmp_path / "missing-dir"))
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "KEY_INVALID", "verify_key")


def test_cli_verify_head_and_against(tmp_path: Path) -> None:
    assert cli("init").exit_code == 0
    ids = [decide(tmp_path, refund(ticket_id=f"T-{i}"))["decision_id"] for i in range(3)]
    done = sub("verify", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ok      acme: 3 entries")
    head = sub("verify", "--head", "--json", cwd=tmp_path)
    assert head.returncode == 0
    (tmp_path / "head.json").write_text(head.stdout)
    assert json.loads(head.stdout)["heads"][0]["decision_id"] == ids[-1]
    assert sub("verify", "--against", "head.json", cwd=tmp_path).returncode == 0
    shown = json.loads(sub("show", ids[1], "--chain", cwd=tmp_path).stdout)
    assert shown["evidence_chain"]["entries"][0]["seq"] == 2
    # A pack's entries are the store's, covered by the published head; a doctored one is not.
    assert cli("export", ids[1], "--pack", "--out", "p.zip").exit_code == 0
    done = sub("verify", "--pack", "p.zip", "--against", "head.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "positions 2" in done.stdout and "covered by the published head of 3" in done.stdout
    chain = json.loads(zipfile.ZipFile(tmp_path / "p.zip").read("chain.json"))
    chain["entries"][0]["entry_hash"] = "0" * 64
    rewrite(tmp_path / "p.zip", tmp_path / "q.zip",
            {"chain.json": json.dumps(chain).encode()}, fix_manifest=True)
    done = sub("verify", "--pack", "q.zip", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "PACK_NOT_IN_CHAIN", "q.zip")
    # Truncate the tail behind Lumyn's back: the chain alone is fine, the head is not.
    conn = sqlite3.connect(tmp_path / ".lumyn" / "lumyn.db")
    conn.executescript("DROP TRIGGER decisions_no_delete; DROP TRIGGER chain_no_delete;")
    conn.execute("DELETE FROM decisions WHERE decision_id = ?", (ids[-1],))
    conn.execute("DELETE FROM chain_entries WHERE decision_id = ?", (ids[-1],))
    conn.commit()
    conn.close()
    assert sub("verify", cwd=tmp_path).returncode == 0
    done = sub("verify", "--against", "head.json", "--json", cwd=tmp_path)
    assert done.returncode == 1
    problem = json.loads(done.stdout)["tenants"][0]["problem"]
    assert (problem["kind"], problem["decision_id"]) == ("truncated", ids[-1])
    assert_one_line_error(done.stderr, "CHAIN_BROKEN", "truncated", ids[-1])
    (tmp_path / "bad.json").write_text('{"tenant_id": "acme", "count": "3"}')
    done = sub("verify", "--against", "bad.json", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "HEAD_INVALID", "count")
