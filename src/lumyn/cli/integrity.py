"""`lumyn verify` and `lumyn keys generate`: the CLI side of lumyn.integrity."""

from __future__ import annotations

import json
from typing import Any

from lumyn.cli.common import (
    CliError,
    emit_json,
    err,
    open_existing_store,
    out,
    read_text,
    workspace_config,
)
from lumyn.integrity import keys
from lumyn.integrity.packchain import CHAIN_FILE, match_store
from lumyn.integrity.verify import ChainStore, VerifyReport, parse_heads, verify
from lumyn.packs import read_pack


def cmd_verify(tenant: str | None, as_json: bool, head: bool, against: str | None,
               workspace: str, config_path: str | None, pack: str | None = None) -> int:
    heads = None
    packed = _read_pack_chain(pack) if pack else None
    if packed is not None:
        tenant = packed[2]
    if against is not None:
        text = read_text(against, field="--against")
        try:
            heads = parse_heads(json.loads(text), against)
        except ValueError:
            raise CliError("INVALID_JSON", f"{against} is not JSON", field="--against") from None
    config = workspace_config(workspace, config_path)
    store = open_existing_store(config, workspace)
    try:
        if not hasattr(store, "read_chain"):
            raise CliError("UNSUPPORTED", f"{store.url} has no evidence chain", field="storage_url")
        chain_store: ChainStore = store  # type: ignore[assignment]
        report = verify(chain_store, tenant, heads)
        matched = None
        if packed is not None and report.ok:
            matched = match_store(packed[0], chain_store.chain_entries(packed[1]))
    finally:
        store.close()
    if matched is not None:
        return _pack_result(report, matched, str(pack), heads, as_json)
    if head:
        return _publish_heads(report, as_json)
    if as_json:
        emit_json(report.as_dict())
    else:
        for chain in report.tenants:
            if chain.problem is None:
                out(f"ok      {chain.tenant_id}: {chain.count} entries, head {chain.head_hash}")
            else:
                out(f"BROKEN  {chain.tenant_id}: {chain.problem.kind}: {chain.problem.detail}")
        if not report.tenants:
            out("ok      the store holds no decisions yet")
    return _fail_line(report)


def _read_pack_chain(pack: str) -> tuple[bytes, str, str]:
    """(chain.json bytes, decision id, tenant) of a pack."""
    files, _ = read_pack(pack)
    if CHAIN_FILE not in files:
        raise CliError("PACK_INVALID", f"{pack} has no {CHAIN_FILE} (exported before the "
                       "evidence chain, or not a Lumyn pack)", field="--pack")
    try:
        body = json.loads(files[CHAIN_FILE].decode("utf-8"))
        decision_id, tenant = str(body["entries"][0]["decision_id"]), str(body["tenant_id"])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError):
        raise CliError("PACK_INVALID", f"{pack}: {CHAIN_FILE} is malformed",
                       field="--pack") from None
    return files[CHAIN_FILE], decision_id, tenant


def _pack_result(report: VerifyReport, matched: tuple[bool, str], pack: str,
                 heads: list[dict[str, Any]] | None, as_json: bool) -> int:
    ok, detail = matched
    chain = report.tenants[0]
    head = next((h for h in heads or [] if h["tenant_id"] == chain.tenant_id), None)
    if ok and head is not None:
        detail += f"; covered by the published head of {head['count']} entries ({head.get('at')})"
    if as_json:
        emit_json({**report.as_dict(), "pack": {"source": pack, "ok": ok, "detail": detail}})
    else:
        out(f"{'ok' if ok else 'MISMATCH':8s}{pack}: {detail}")
    if not ok:
        err(f"PACK_NOT_IN_CHAIN: {pack}: {detail}")
        return 1
    return 0


def _publish_heads(report: VerifyReport, as_json: bool) -> int:
    """Heads are printed only for intact chains: publishing a broken one would vouch for it.
    `--head --json` output is what `--against` reads back."""
    heads: list[dict[str, Any]] = [c.head() for c in report.tenants if c.ok]
    if as_json:
        emit_json({"heads": heads})
    else:
        for h in heads:
            out(f"{h['tenant_id']}\t{h['count']}\t{h['hash']}\t{h['at']}")
    return _fail_line(report)


def _fail_line(report: VerifyReport) -> int:
    broken = [c for c in report.tenants if c.problem is not None]
    if not broken:
        return 0
    first = broken[0]
    assert first.problem is not None
    more = f" (+{len(broken) - 1} more tenant(s))" if len(broken) > 1 else ""
    err(f"CHAIN_BROKEN: tenant {first.tenant_id}: {first.problem.kind}: decision "
        f"{first.problem.decision_id}{more}")
    return 1


def cmd_keys_generate(out_dir: str) -> int:
    kid, private_path, public_path = keys.generate(out_dir)
    out(f"key id      {kid}")
    out(f"private key {private_path}  (owner-only; sign with: lumyn export ID --pack --sign "
        f"{private_path})")
    out(f"public key  {public_path}  (give to verifiers: lumyn replay PACK --verify-key "
        f"{public_path})")
    return 0
