"""The CLI commands, as plain functions returning an exit code.

The Typer app (app.py) and the fast path in main.py call these. Errors are raised as
LumynError and turned into one stderr line by `common.guarded`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn.cli.common import (
    DEFAULT_WORKSPACE,
    POLICY_FILE,
    CliError,
    dumps,
    emit_json,
    ensure_writable,
    err,
    fetch_record,
    open_existing_store,
    out,
    policy_target,
    read_json,
    read_text,
    sqlite_path,
    workspace_config,
    write_file,
    ws_flag,
)

if TYPE_CHECKING:
    from lumyn.policy import CompiledPolicy


# -- init ---------------------------------------------------------------------------------------


def template_text(name_or_path: str) -> tuple[Path, str, CompiledPolicy]:
    """Resolve a bundled pack name or a path; read and compile it (fails loudly)."""
    from lumyn.policy import BUNDLED_PACKS, compile_policy, resolve_template

    path = resolve_template(name_or_path)
    if not path.is_file():
        raise CliError(
            "POLICY_TEMPLATE_NOT_FOUND",
            f"no bundled policy pack or file named '{name_or_path}' "
            f"(bundled: {', '.join(BUNDLED_PACKS)})",
            field="--policy-template",
        )
    text = read_text(str(path), field="--policy-template")
    return path, text, compile_policy(text, source=str(path))


def write_policy(workspace: Path, text: str, *, force: bool) -> str:
    """Put `text` at WORKSPACE/policy.yml; returns what was done."""
    if workspace.exists() and not workspace.is_dir():
        raise CliError("WORKSPACE_UNWRITABLE", f"{workspace} exists and is not a directory",
                       field="workspace")
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError("WORKSPACE_UNWRITABLE", f"cannot create {workspace}: {exc.strerror or exc}",
                       field="workspace") from None
    dest = workspace / POLICY_FILE
    if dest.exists():
        try:
            current = dest.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text:
            return f"kept {dest} (already this template)"
        if not force:
            raise CliError(
                "WORKSPACE_EXISTS",
                f"{dest} already exists with a different policy; use --force to replace it",
                field="--force",
            )
        write_file(str(dest), text.encode("utf-8"), field="workspace")
        return f"replaced {dest}"
    write_file(str(dest), text.encode("utf-8"), field="workspace")
    return f"created {dest}"


def prepare_database(workspace: str, config_path: str | None) -> tuple[str, list[str], int | None]:
    from lumyn.store import open_store

    config = workspace_config(workspace, config_path)
    ensure_writable(config, workspace)
    store = open_store(config.url, busy_timeout_ms=config.busy_timeout_ms)
    try:
        done = store.ensure_schema()
        version = store.schema_version()
    finally:
        store.close()
    return config.display_url, done, version


def cmd_init(workspace: str, template: str | None, force: bool, config_path: str | None) -> int:
    from lumyn.cli.samples import EXAMPLE_FILE, write_example

    path, text, policy = template_text(template or "support")
    ws = Path(workspace)
    action = write_policy(ws, text, force=force)
    from lumyn.cli.changes import copy_template_cases

    cases = copy_template_cases(path, policy.policy_id, ws)
    url, done, version = prepare_database(workspace, config_path)
    config = workspace_config(workspace, config_path)
    out(f"Lumyn workspace {ws}")
    out(f"  policy    {action}")
    out(f"            from {path}: {policy.policy_id} {policy.policy_version} ({policy.policy_hash})")
    example = write_example(ws, policy, force=force)
    if cases:
        out(f"  tests     {cases}")
    db_line = "; ".join(done) if done else "schema already up to date"
    out(f"  database  {url} (schema v{version}; {db_line})")
    out(f"  example   {example} (a request this policy decides)")
    if config.policy_path and Path(config.policy_path) != ws / POLICY_FILE:
        out(f"  note      decisions use {config.policy_path} (set by LUMYN_POLICY_PATH or --config)")
    flag = ws_flag(workspace)
    out(f"Next: lumyn policy validate{flag}   lumyn demo --story{flag}   "
        f"lumyn decide --in {ws / EXAMPLE_FILE}{flag}")
    return 0


# -- decide / show / explain / export / label ---------------------------------------------------


def cmd_decide(input_path: str, out_path: str | None, workspace: str,
               config_path: str | None) -> int:
    from lumyn.sdk import Lumyn

    request = read_json(input_path, field="--in")
    config = workspace_config(workspace, config_path)
    ensure_writable(config, workspace)
    with Lumyn(config) as lumyn:
        record = lumyn.decide(request)
    text = dumps(record) + "\n"
    if out_path:
        write_file(out_path, text.encode("utf-8"))
        out(f"{record['decision_id']}  {record['verdict']}  {', '.join(record['reason_codes'])}"
            f"  -> {out_path}")
    else:
        out(text)
    if "STORAGE_UNAVAILABLE" in record["reason_codes"]:
        detail = (record.get("explanation") or {}).get("details", {}).get("storage_error", "")
        err(f"STORAGE_UNAVAILABLE: the decision could not be stored ({detail}); "
            "a fail-closed ABSTAIN record was returned (field storage_url)")
        return 1
    return 0


def cmd_show(decision_id: str, workspace: str = DEFAULT_WORKSPACE,
             config_path: str | None = None, chain: bool = False) -> int:
    record = fetch_record(decision_id, workspace, config_path, with_chain=chain)
    record.setdefault("decision_event_log", [])  # "with its event log", even an empty one
    emit_json(record)
    return 0


def cmd_explain(decision_id: str, markdown: bool, workspace: str, config_path: str | None) -> int:
    from lumyn.cli.render import explain_markdown, explain_text

    record = fetch_record(decision_id, workspace, config_path)
    out(explain_markdown(record) if markdown else explain_text(record))
    return 0


def cmd_export(decision_id: str, pack: bool, out_path: str | None, workspace: str,
               config_path: str | None, sign: str | None = None, chain: bool = False) -> int:
    if sign and not pack:
        raise CliError("USAGE_ERROR", "--sign signs a pack: add --pack", field="--sign")
    if not pack:
        text = dumps(fetch_record(decision_id, workspace, config_path, with_chain=chain)) + "\n"
        if out_path:
            write_file(out_path, text.encode("utf-8"))
            err(f"wrote decision record {decision_id} to {out_path}")
        else:
            out(text)
        return 0
    from lumyn.packs import export_pack, read_pack, sign_pack

    private = None
    if sign:
        from lumyn.integrity.keys import load_private

        private = load_private(sign)  # before any work: a bad key fails first
    config = workspace_config(workspace, config_path)
    store = open_existing_store(config, workspace)
    try:
        data = export_pack(store, decision_id)
    finally:
        store.close()
    if private is not None:
        data = sign_pack(data, private)
    target = out_path or f"decision_pack_{decision_id}.zip"
    write_file(target, data)
    signed = " signed," if private is not None else ""
    out(f"Wrote decision pack {target} ({len(read_pack(data)[0])} files,{signed} {len(data)} "
        f"bytes) for decision {decision_id}")
    out(f"Replay it anywhere: lumyn replay {target} --markdown")
    return 0


def cmd_label(decision_id: str, label: str, summary: str | None, workspace: str,
              config_path: str | None) -> int:
    from lumyn.memory.item import LABELS
    from lumyn.sdk import Lumyn

    if label not in LABELS:  # checked before opening anything; the core checks again
        from lumyn.errors import InvalidEvent

        raise InvalidEvent(f"label must be one of {', '.join(LABELS)} (got '{label}')",
                           field="label")
    config = workspace_config(workspace, config_path)
    open_existing_store(config, workspace).close()  # a missing database is an error, not created
    with Lumyn(config) as lumyn:
        event = lumyn.label(decision_id, label, summary or "")
    memory_id = event["data"]["memory_id"]
    out(f"Labeled {decision_id} as {label} (event {event['event_id']}, memory item {memory_id}).")
    out("Similar requests of this tenant and action type now see this outcome in Experience Memory.")
    return 0


def cmd_memory_prune(older_than: str, tenant: str | None, workspace: str,
                     config_path: str | None) -> int:
    from lumyn.sdk import Lumyn

    days = parse_days(older_than)
    config = workspace_config(workspace, config_path)
    open_existing_store(config, workspace).close()  # a missing database is an error, not created
    with Lumyn(config) as lumyn:
        pruned = lumyn.prune_memory(days, tenant)
    whose = f"tenant {tenant}" if tenant else "every tenant"
    out(f"Pruned memory of {whose}: {pruned['items']} items created before {pruned['before']} "
        "no longer take part in similarity (items and events stay stored).")
    return 0


def parse_days(text: str) -> int:
    """'365d' (or '365') -> 365."""
    digits = text[:-1] if text.endswith("d") else text
    if not digits.isdigit() or not 0 < int(digits) < 100_000:
        from lumyn.errors import InvalidEvent

        raise InvalidEvent(f"--older-than must be a number of days such as 365d (got '{text}')",
                           field="--older-than")
    return int(digits)


# -- replay -------------------------------------------------------------------------------------


def cmd_replay(pack: str, markdown: bool, policy: str | None, as_json: bool,
               workspace: str = DEFAULT_WORKSPACE, config_path: str | None = None,
               verify_key: str | None = None) -> int:
    from lumyn.cli.render import replay_markdown, replay_text
    from lumyn.pack_vs_store import NOT_IN_STORE, compare_with_store
    from lumyn.packs import read_pack, replay_files

    trusted = None
    if verify_key is not None:
        from lumyn.integrity.keys import load_public_keys

        trusted = load_public_keys(verify_key)
    policy_text = read_text(policy, field="--policy") if policy else None
    files, problems = read_pack(pack)
    report = replay_files(files, source=pack, layout_problems=problems, policy_text=policy_text,
                          policy_source=policy or "other policy",
                          trusted_keys=trusted)
    config = workspace_config(workspace, config_path)
    path = sqlite_path(config)
    if path is None or path.exists():  # the workspace's record is the reference, when there
        with contextlib.closing(open_existing_store(config, workspace)) as store:
            compare_with_store(report, files, store)
    else:
        report.notes.append(NOT_IN_STORE)
    if as_json:
        emit_json(report.as_dict())
    else:
        out(replay_markdown(report) if markdown else replay_text(report))
    if not report.ok:
        failures = report.failures()
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        err(" ".join(f"REPLAY_FAILED: {pack}: {failures[0]}{more}".split()))
        return 1
    return 0


# -- policy validate ----------------------------------------------------------------------------


def cmd_policy_validate(path: str | None, workspace: str, config_path: str | None,
                        strict: bool = False, as_json: bool = False) -> int:
    from lumyn.policy import PolicyInvalid, check_policy

    target = policy_target(path, workspace, config_path)
    try:
        policy, warnings = check_policy(target)
    except PolicyInvalid as exc:
        if as_json:
            emit_json({"ok": False, "path": str(target), "policy": None,
                       "problems": [p.as_dict() for p in exc.problems]})
        else:
            for line in exc.lines():
                err(" ".join(line.split()))
        return 1
    failed = strict and bool(warnings)
    if as_json:
        emit_json({"ok": not failed, "path": str(target), "policy": policy.summary(),
                   "problems": [w.as_dict() for w in warnings]})
        return 1 if failed else 0
    for warning in warnings:
        err(" ".join(f"WARNING {warning.format(str(target))}".split()))
    if failed:
        err(f"{len(warnings)} warning(s) in {target} (--strict makes them fatal)")
        return 1
    actions = sorted({*policy.required_evidence})
    out(f"OK {target}: {policy.policy_id} {policy.policy_version}, {len(policy.rules)} rules, "
        f"policy_hash {policy.policy_hash}" + (f", {len(warnings)} warning(s)" if warnings else ""))
    if actions:
        out(f"   action types with required evidence: {', '.join(actions)}")
    return 0


# -- serve --------------------------------------------------------------------------------------


SERVICE_MODULES = ("fastapi", "uvicorn")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def host_problem(host: str) -> str | None:
    """Why `host` cannot be bound, or None: an IPv4/IPv6 address or a DNS host name."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if all(label.isdigit() for label in labels):
        return f"'{host}' is not a valid IP address"
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"'{host}' is not an IP address or host name"
    return None


def service_missing() -> list[str]:
    """The service extra's modules that are not installed (found without importing them)."""
    return [name for name in SERVICE_MODULES if importlib.util.find_spec(name) is None]


def _service_unavailable(detail: str) -> CliError:
    return CliError("SERVICE_UNAVAILABLE",
                    f"`lumyn serve` needs the service extra ({detail}); install it from the Lumyn "
                    "source tree with: pip install '.[service]'", field="serve")


def cmd_serve(dry_run: bool, host: str, port: int, workspace: str, config_path: str | None) -> int:
    config = workspace_config(workspace, config_path)
    missing = service_missing()
    if dry_run:
        effective: dict[str, Any] = {"host": host, "port": port, "workspace": workspace}
        effective.update(config.effective())
        emit_json(effective)
    if missing:
        raise _service_unavailable(f"{', '.join(missing)} not installed")
    if dry_run:
        return 0
    try:
        service = importlib.import_module("lumyn.service")
        run = service.run
    except (ImportError, AttributeError) as exc:
        raise _service_unavailable(str(exc)) from None
    run(config, host=host, port=port)
    return 0
