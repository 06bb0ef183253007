"""Decision packs (SPEC §7): export a stored decision as a self-contained zip, and replay it.

A pack holds `decision_record.json`, `request.json`, `policy.yml` (the exact policy text whose
hash is in the record), `memory.json` (the Experience Memory items the decision's similarity
considered), `manifest.json` (sha256 of every other file) and `README.txt`.

Replay is a pure function over the pack bytes: it verifies the manifest and the schemas,
recomputes `policy_hash` from `policy.yml`, rebuilds the memory index from `memory.json`,
re-runs the engine's `assess` on the recorded request and compares the outcome with the
record field by field. Nothing is read from a workspace, so a pack replays the same on any
machine, however the workspace that produced it has changed since. `replay_pack(...,
policy_text=...)` additionally answers "what would this other policy have decided?".

The CLI only prints what these functions return; the service and tests reuse them.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn import safe_json
from lumyn.errors import DecisionNotFound, LumynError
from lumyn.integrity.packchain import CHAIN_FILE, chain_file, check_chain
from lumyn.integrity.signing import SIGNATURE_FILE, check_signature, signature_file
from lumyn.safe_json import JsonRefused, read_bounded

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from lumyn.memory.item import MemoryItem
    from lumyn.policy import CompiledPolicy
    from lumyn.store.base import Store

PACK_FORMAT = "lumyn_pack.v0"
RECORD_FILE = "decision_record.json"
REQUEST_FILE = "request.json"
POLICY_FILE = "policy.yml"
MEMORY_FILE = "memory.json"
MANIFEST_FILE = "manifest.json"
README_FILE = "README.txt"
CONTENT_FILES = (RECORD_FILE, REQUEST_FILE, POLICY_FILE, MEMORY_FILE, README_FILE)
PACK_FILES = (*CONTENT_FILES, MANIFEST_FILE)
# Optional: chain.json (the decision's evidence-chain entries, in the manifest) and
# signature.json (an Ed25519 signature over the manifest, lumyn.integrity.signing).
OPTIONAL_FILES = (CHAIN_FILE, SIGNATURE_FILE)

MAX_PACK_BYTES = 64 * 1024 * 1024
MAX_MEMBER_BYTES = 16 * 1024 * 1024
# Room to report duplicates; a zip bomb is refused.
MAX_PACK_MEMBERS = 2 * (len(PACK_FILES) + len(OPTIONAL_FILES))
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so one decision always exports to identical bytes

# Record fields a replay must reproduce exactly (dotted paths into the record).
COMPARED_FIELDS = (
    "policy",
    "verdict",
    "reason_codes",
    "matched_rules",
    "queries",
    "obligations",
    "risk_signals",
    "determinism.evaluation_order",
    "determinism.inputs_digest",
    "determinism.memory_snapshot",
)
# What a different policy is compared on (its hash and digests differ by construction).
WHAT_IF_FIELDS = ("verdict", "reason_codes", "matched_rules", "queries", "obligations", "risk_signals")

_MISSING = object()


class PackError(LumynError):
    """The pack cannot be read at all (not a file, not a zip, too large, unsafe)."""

    reason_code = "PACK_INVALID"


class PackExportError(LumynError):
    """A stored decision cannot be exported as a complete pack."""

    reason_code = "PACK_EXPORT_FAILED"


# -- export -------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _readme(record: dict[str, Any]) -> str:
    policy = record.get("policy") or {}
    return f"""Lumyn decision pack ({PACK_FORMAT})

decision_id : {record.get("decision_id")}
created_at  : {record.get("created_at")}
verdict     : {record.get("verdict")}
reason_codes: {", ".join(record.get("reason_codes") or [])}
policy      : {policy.get("policy_id")} {policy.get("policy_version")} ({policy.get("policy_hash")})

Files
  decision_record.json  the Decision Record as stored (with its event log)
  request.json          the DecisionRequest as persisted (after redaction)
  policy.yml            the exact policy text whose hash is policy.policy_hash
  memory.json           the Experience Memory items this decision's similarity considered
  manifest.json         sha256 of every other file in this pack
  README.txt            this file

Replay (re-evaluates the request with the packed policy and memory, compares with the record):
  lumyn replay <this-pack.zip>
  lumyn replay <this-pack.zip> --markdown            incident-ready summary
  lumyn replay <this-pack.zip> --policy other.yml    what would another policy decide?

Replay exits 0 only when the manifest, schemas, policy hash, inputs digest and memory snapshot
verify and the verdict, reason codes, matched rules, queries and risk signals are reproduced.
"""


def build_pack(record: dict[str, Any], policy_text: str, memory: list[dict[str, Any]],
               extra: dict[str, bytes] | None = None) -> bytes:
    """The zip bytes of a pack for `record`, given the exact policy text and memory items
    (and `extra` files the manifest also lists, such as chain.json)."""
    files: dict[str, bytes] = {
        **(extra or {}),
        RECORD_FILE: _json_bytes(record),
        REQUEST_FILE: _json_bytes(record["request"]),
        POLICY_FILE: policy_text.encode("utf-8"),
        MEMORY_FILE: _json_bytes(sorted(memory, key=lambda item: str(item.get("memory_id")))),
        README_FILE: _readme(record).encode("utf-8"),
    }
    files[MANIFEST_FILE] = _json_bytes(manifest_for(files, record))
    return zip_files(files)


def manifest_for(files: dict[str, bytes], record: dict[str, Any]) -> dict[str, Any]:
    """The manifest of `files` (every file except the manifest itself)."""
    from lumyn import __version__

    return {
        "format": PACK_FORMAT,
        "decision_id": record.get("decision_id"),
        "exported_by": f"lumyn {__version__}",
        "files": {
            name: {"sha256": sha256_hex(data), "bytes": len(data)}
            for name, data in sorted(files.items())
            if name != MANIFEST_FILE
        },
    }


def zip_files(files: dict[str, bytes]) -> bytes:
    """Deterministic zip: pack order, fixed timestamps, deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        order = [name for name in PACK_FILES if name in files] + sorted(
            name for name in files if name not in PACK_FILES
        )
        for name in order:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return buffer.getvalue()


def export_pack(store: Store, decision_id: str, *, tenant_id: str | None = None) -> bytes:
    """Pack a stored decision. `tenant_id` restricts to one tenant (others' ids are not found).

    Reads only the store (record, events, policy snapshot, memory items), so it works whatever
    the workspace's current policy is.
    """
    import orjson

    found = store.get_decision(decision_id)
    if found is None or (tenant_id is not None and found[0] != tenant_id):
        raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
    record: dict[str, Any] = orjson.loads(found[1])
    events = store.list_events(decision_id)
    if events:
        record["decision_event_log"] = events
    policy_hash = record["policy"]["policy_hash"]
    policy_text = store.get_policy_text(policy_hash)
    if policy_text is None:
        raise PackExportError(
            f"the store has no policy snapshot for {policy_hash}", field="policy.policy_hash"
        )
    details = _details(record)
    wanted = [str(m) for m in details.get("memory_considered") or []]
    items = store.get_memory_items(wanted)
    missing = sorted(set(wanted) - {item.memory_id for item in items})
    if missing:
        raise PackExportError(
            f"memory item(s) {', '.join(missing)} considered by the decision are not in the store",
            field="explanation.details.memory_considered",
        )
    extra: dict[str, bytes] = {}
    chain_entries = getattr(store, "chain_entries", None)
    entries = chain_entries(decision_id) if chain_entries is not None else []
    if entries:
        extra[CHAIN_FILE] = chain_file(entries, events)
    return build_pack(record, policy_text, [item.as_dict() for item in items], extra)


def sign_pack(pack: bytes, private: Ed25519PrivateKey) -> bytes:
    """The pack with an Ed25519 signature over its manifest (a previous one is replaced)."""
    files, problems = read_pack(pack)
    if problems or MANIFEST_FILE not in files:
        raise PackError("cannot sign an invalid pack: " + "; ".join(problems or ["no manifest"]))
    files[SIGNATURE_FILE] = signature_file(files[MANIFEST_FILE], private)
    return zip_files(files)


# -- reading ------------------------------------------------------------------------------------


def read_pack(source: str | Path | bytes) -> tuple[dict[str, bytes], list[str]]:
    """The members of a pack and problems with its layout (duplicates, oversize, nested paths).

    Raises PackError when the source is not a readable zip at all.
    """
    name = "pack" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        try:
            if path.is_dir():
                raise PackError(f"{name} is a directory, not a pack", field="pack")
            data = read_bounded(str(path), MAX_PACK_BYTES)  # a device or pipe stops too
        except JsonRefused:
            raise PackError(f"{name} is larger than {MAX_PACK_BYTES} bytes", field="pack") from None
        except FileNotFoundError:
            raise PackError(f"{name} does not exist", field="pack") from None
        except OSError as exc:
            raise PackError(f"cannot read {name}: {exc.strerror}", field="pack") from None
    if len(data) > MAX_PACK_BYTES:
        raise PackError(f"{name} is larger than {MAX_PACK_BYTES} bytes", field="pack")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise PackError(f"{name} is not a zip archive (expected a Lumyn decision pack)",
                        field="pack") from None
    files: dict[str, bytes] = {}
    problems: list[str] = []
    total = 0
    with archive:
        members = archive.infolist()
        if len(members) > MAX_PACK_MEMBERS:
            raise PackError(f"{name} has {len(members)} members; a pack has {len(PACK_FILES)}",
                            field="pack")
        for info in members:
            if info.is_dir():
                continue
            if info.filename in files:
                problems.append(f"duplicate file {info.filename} in the zip")
                continue
            if "/" in info.filename or "\\" in info.filename:
                problems.append(f"unexpected nested path {info.filename!r}")
                continue
            # An unknown member is never read: only its name is reported.
            if info.filename not in PACK_FILES and info.filename not in OPTIONAL_FILES:
                problems.append(f"unexpected file {info.filename!r} in the pack")
                continue
            if info.file_size > MAX_MEMBER_BYTES:
                problems.append(f"{info.filename} is larger than {MAX_MEMBER_BYTES} bytes")
                continue
            try:
                with archive.open(info) as member:
                    content = member.read(MAX_MEMBER_BYTES + 1)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError,
                    NotImplementedError, RuntimeError) as exc:
                problems.append(f"{info.filename} cannot be read from the zip: {exc}")
                continue
            if len(content) > MAX_MEMBER_BYTES:
                problems.append(f"{info.filename} is larger than {MAX_MEMBER_BYTES} bytes")
                continue
            total += len(content)
            if total > MAX_PACK_BYTES:
                raise PackError(f"{name} unpacks to more than {MAX_PACK_BYTES} bytes",
                                field="pack")
            files[info.filename] = content
    return files, problems


# -- replay -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class Difference:
    """One field that differs. `recorded`/`replayed` are None-able; `present` says which exist."""

    path: str
    recorded: Any
    replayed: Any
    recorded_present: bool = True
    replayed_present: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "recorded": self.recorded if self.recorded_present else "(absent)",
            "replayed": self.replayed if self.replayed_present else "(absent)",
        }


@dataclass
class WhatIf:
    """What another policy decides on the packed request and memory."""

    source: str
    policy: dict[str, str]
    outcome: dict[str, Any]
    differences: list[Difference]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "policy": self.policy,
            "verdict": self.outcome.get("verdict"),
            "reason_codes": self.outcome.get("reason_codes"),
            "matched_rules": self.outcome.get("matched_rules"),
            "queries": self.outcome.get("queries"),
            "differences": [d.as_dict() for d in self.differences],
        }


@dataclass
class ReplayReport:
    source: str
    checks: list[Check] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    record: dict[str, Any] | None = None
    replayed: dict[str, Any] | None = None
    memory: list[dict[str, Any]] = field(default_factory=list)
    what_if: WhatIf | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and not self.differences

    @property
    def decision_id(self) -> str | None:
        return None if self.record is None else self.record.get("decision_id")

    def failures(self) -> list[str]:
        """One line per failed check (the re-evaluation check names the differing fields)."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "decision_id": self.decision_id,
            "checks": [c.as_dict() for c in self.checks],
            "differences": [d.as_dict() for d in self.differences],
            "notes": list(self.notes),
            "what_if": self.what_if.as_dict() if self.what_if else None,
        }


def replay_pack(
    source: str | Path | bytes,
    *,
    policy_text: str | None = None,
    policy_source: str = "other policy",
    trusted_keys: dict[str, Ed25519PublicKey] | None = None,
) -> ReplayReport:
    """Verify and re-evaluate a pack. With `policy_text`, also evaluate that policy (what-if);
    with `trusted_keys`, the pack must carry a valid signature by one of them.

    Raises PackError only when the source is not a readable zip; every other problem is a
    failed check or a difference in the report (`report.ok` is False).
    """
    files, layout_problems = read_pack(source)
    name = "pack" if isinstance(source, bytes) else str(source)
    return replay_files(files, source=name, layout_problems=layout_problems,
                        policy_text=policy_text, policy_source=policy_source,
                        trusted_keys=trusted_keys)


def replay_files(
    files: dict[str, bytes],
    *,
    source: str = "pack",
    layout_problems: list[str] | None = None,
    policy_text: str | None = None,
    policy_source: str = "other policy",
    trusted_keys: dict[str, Ed25519PublicKey] | None = None,
) -> ReplayReport:
    """The pure core of replay, over the pack's members."""
    report = ReplayReport(source=source)
    checks = report.checks

    missing = [name for name in PACK_FILES if name not in files]
    problems = list(layout_problems or [])
    if missing:
        problems.insert(0, "missing " + ", ".join(missing))
    checks.append(Check("files", not problems,
                        "; ".join(problems) if problems else f"all {len(PACK_FILES)} files present"))
    checks.append(_check_manifest(files))
    if trusted_keys is not None:
        checks.append(Check("signature", *check_signature(files, trusted_keys)))

    record = _load_json(files, RECORD_FILE, dict, checks, "record")
    if record is None:
        return report
    report.record = record
    record_ok = _check_record_schema(record, checks)
    request = _check_request(files, record, checks)
    policy = _check_policy(files, record, checks)
    memory_items = _check_memory(files, record, checks, report)
    if not record_ok or request is None or policy is None or memory_items is None:
        checks.append(Check("re-evaluation", False, "skipped: the pack did not verify above"))
        return report

    try:
        body = reevaluate(policy, record, memory_items)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        checks.append(Check("re-evaluation", False, f"cannot re-evaluate the request: {exc!r}"))
        return report
    report.replayed = body
    report.differences = diff_fields(record, body, COMPARED_FIELDS)
    checks.append(Check(
        "re-evaluation",
        not report.differences,
        "verdict, reason codes, matched rules, queries, risk signals, inputs digest and "
        "memory snapshot reproduced" if not report.differences
        else f"{len(report.differences)} field(s) differ from the record: "
        + ", ".join(d.path for d in report.differences),
    ))
    engine = (record.get("determinism") or {}).get("engine_version")
    replay_engine = body["determinism"]["engine_version"]
    if engine != replay_engine:
        report.notes.append(f"recorded with engine {engine}, replayed with engine {replay_engine}")

    if CHAIN_FILE in files:  # last: a changed verdict reads as such before as a broken link
        checks.append(Check("chain", *check_chain(files[CHAIN_FILE], record)))
    if policy_text is not None:
        report.what_if = what_if(policy_text, policy_source, record, memory_items)
    return report


def reevaluate(
    policy: CompiledPolicy, record: dict[str, Any], memory_items: list[MemoryItem]
) -> dict[str, Any]:
    """Re-run the engine on the recorded request with `policy` and exactly `memory_items`."""
    from lumyn.engine.assess import assess, request_features
    from lumyn.engine.normalize import tenant_of
    from lumyn.memory.index import MemoryIndex

    request = record["request"]
    tenant = tenant_of(request)
    top_k = int(_details(record)["memory_top_k"])
    index = MemoryIndex(memory_items)
    features = request_features(request)
    similarity = index.query(tenant, request["action"]["type"], features, top_k)
    body: dict[str, Any] = assess(policy, request, tenant, similarity, record["policy"]["mode"],
                                  top_k, features)
    return body


def what_if(
    policy_text: str, source: str, record: dict[str, Any], memory_items: list[MemoryItem]
) -> WhatIf:
    """Evaluate another policy on the packed request and memory. Raises PolicyInvalid."""
    from lumyn.policy import compile_policy

    other = compile_policy(policy_text, source=source)
    body = reevaluate(other, record, memory_items)
    return WhatIf(source, other.summary(), body, diff_fields(record, body, WHAT_IF_FIELDS))


# -- checks -------------------------------------------------------------------------------------


def _load_json(
    files: dict[str, bytes], name: str, kind: type, checks: list[Check], label: str
) -> Any:
    if name not in files:
        checks.append(Check(label, False, f"{name} is missing"))
        return None
    try:
        value = safe_json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        checks.append(Check(label, False, f"{name} is not valid JSON: {exc}"))
        return None
    if not isinstance(value, kind):
        expected = "an object" if kind is dict else "a list"
        checks.append(Check(label, False, f"{name} must hold {expected}"))
        return None
    return value


def _check_manifest(files: dict[str, bytes]) -> Check:
    if MANIFEST_FILE not in files:
        return Check("manifest", False, f"{MANIFEST_FILE} is missing")
    try:
        manifest = safe_json.loads(files[MANIFEST_FILE].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return Check("manifest", False, f"{MANIFEST_FILE} is not valid JSON: {exc}")
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        return Check("manifest", False, f"{MANIFEST_FILE} has no 'files' object")
    if manifest.get("format") != PACK_FORMAT:
        return Check("manifest", False,
                     f"unknown pack format {manifest.get('format')!r} (expected {PACK_FORMAT})")
    problems: list[str] = []
    for name in sorted(set(files) - {MANIFEST_FILE, SIGNATURE_FILE}):
        if name not in listed:
            problems.append(f"{name} is not listed in the manifest")
    for name in sorted(set(CONTENT_FILES) - set(listed)):
        if name in files:
            continue  # reported above
        problems.append(f"{name} is not listed in the manifest")
    for name, entry in sorted(listed.items()):
        expected = entry.get("sha256") if isinstance(entry, dict) else entry
        if name not in files:
            problems.append(f"{name} is listed in the manifest but missing from the pack")
        elif not isinstance(expected, str):
            problems.append(f"{name} has no sha256 in the manifest")
        elif sha256_hex(files[name]) != expected.removeprefix("sha256:"):
            problems.append(
                f"{name} sha256 mismatch: manifest {expected.removeprefix('sha256:')[:12]}…, "
                f"file {sha256_hex(files[name])[:12]}…"
            )
    if problems:
        return Check("manifest", False, "; ".join(problems))
    return Check("manifest", True, f"sha256 of {len(listed)} files verified")


def _check_record_schema(record: dict[str, Any], checks: list[Check]) -> bool:
    from lumyn.contracts.schemas import validate_record

    try:
        validate_record(record)
    except ValueError as exc:
        checks.append(Check("record schema", False, str(exc)))
        return False
    if not isinstance(_details(record).get("memory_top_k"), int):
        checks.append(Check("record schema", False,
                            "explanation.details.memory_top_k is missing: the record cannot be "
                            "replayed (a fail-closed STORAGE_UNAVAILABLE record?)"))
        return False
    checks.append(Check("record schema", True, "decision_record.v0 valid"))
    return True


def _check_request(
    files: dict[str, bytes], record: dict[str, Any], checks: list[Check]
) -> dict[str, Any] | None:
    from lumyn.contracts.canonical import canonical_bytes
    from lumyn.contracts.schemas import validate_request
    from lumyn.errors import RequestInvalid

    request = _load_json(files, REQUEST_FILE, dict, checks, "request")
    if request is None:
        return None
    try:
        validate_request(request)
    except RequestInvalid as exc:
        checks.append(Check("request", False, f"{REQUEST_FILE}: {exc.one_line()}"))
        return None
    try:
        same = canonical_bytes(request) == canonical_bytes(record.get("request"))
    except ValueError as exc:
        checks.append(Check("request", False, f"{REQUEST_FILE} cannot be canonicalised: {exc}"))
        return None
    if not same:
        diffs = diff_values(record.get("request"), request, "request")
        checks.append(Check("request", False, f"{REQUEST_FILE} differs from the record's request: "
                            + ", ".join(d.path for d in diffs)))
        return None
    checks.append(Check("request", True, f"{REQUEST_FILE} equals record.request, schema valid"))
    result: dict[str, Any] = request
    return result


def _check_policy(
    files: dict[str, bytes], record: dict[str, Any], checks: list[Check]
) -> CompiledPolicy | None:
    from lumyn.policy import PolicyInvalid, compile_policy

    if POLICY_FILE not in files:
        checks.append(Check("policy hash", False, f"{POLICY_FILE} is missing"))
        return None
    try:
        text = files[POLICY_FILE].decode("utf-8")
    except UnicodeDecodeError:
        checks.append(Check("policy hash", False, f"{POLICY_FILE} is not UTF-8 text"))
        return None
    try:
        policy = compile_policy(text, source=POLICY_FILE)
    except PolicyInvalid as exc:
        checks.append(Check("policy hash", False, "; ".join(exc.lines())))
        return None
    recorded = (record.get("policy") or {}).get("policy_hash")
    if policy.policy_hash != recorded:
        checks.append(Check(
            "policy hash", False,
            f"{POLICY_FILE} hashes to {policy.policy_hash} but the record says {recorded}",
        ))
        return None
    checks.append(Check("policy hash", True, f"{policy.policy_hash} recomputed from {POLICY_FILE}"))
    return policy


def _check_memory(
    files: dict[str, bytes], record: dict[str, Any], checks: list[Check], report: ReplayReport
) -> list[MemoryItem] | None:
    from lumyn.engine.normalize import tenant_of
    from lumyn.memory.item import LABELS, MemoryItem

    raw = _load_json(files, MEMORY_FILE, list, checks, "memory")
    if raw is None:
        return None
    items: list[MemoryItem] = []
    for position, entry in enumerate(raw):
        try:
            if not isinstance(entry, dict):
                raise TypeError("not an object")
            item = MemoryItem.from_dict(entry)
            if item.label not in LABELS or not all(isinstance(t, str) for t in item.features):
                raise ValueError("bad label or features")
        except (KeyError, TypeError, ValueError) as exc:
            checks.append(Check("memory", False, f"{MEMORY_FILE} item {position} is malformed: "
                                f"{exc!s}"))
            return None
        items.append(item)
    report.memory = [item.as_dict() for item in items]
    request = record.get("request") or {}
    wanted = sorted(str(m) for m in _details(record).get("memory_considered") or [])
    have = sorted(item.memory_id for item in items)
    problems: list[str] = []
    if have != wanted:
        problems.append(
            f"{MEMORY_FILE} holds {', '.join(have) or 'no items'} but the record considered "
            f"{', '.join(wanted) or 'none'}"
        )
    try:
        tenant, action = tenant_of(request), request["action"]["type"]
    except (KeyError, TypeError):
        tenant, action = None, None
    strays = [item.memory_id for item in items
              if (item.tenant_id, item.action_type) != (tenant, action)]
    if strays:
        problems.append(f"item(s) {', '.join(strays)} belong to another tenant or action type")
    if problems:
        checks.append(Check("memory", False, "; ".join(problems)))
        return None
    checks.append(Check("memory", True, f"{len(items)} item(s), as considered by the record"))
    return items


def _details(record: dict[str, Any]) -> dict[str, Any]:
    explanation = record.get("explanation")
    details = explanation.get("details") if isinstance(explanation, dict) else None
    return details if isinstance(details, dict) else {}


# -- diff ---------------------------------------------------------------------------------------


def _get(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


def diff_fields(recorded: dict[str, Any], replayed: dict[str, Any],
                fields: tuple[str, ...]) -> list[Difference]:
    """Field-by-field differences of `fields` (dotted paths) between two records."""
    out: list[Difference] = []
    for dotted in fields:
        out.extend(diff_values(_get(recorded, dotted), _get(replayed, dotted), dotted))
    return out


def _same_leaf(a: Any, b: Any) -> bool:
    # Type-aware: True is not 1, but 12 and 12.0 are the same JSON number.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and bool(a == b)


def diff_values(recorded: Any, replayed: Any, path: str) -> list[Difference]:
    """Leaf-level differences: dicts by key, equal-length lists by index, else whole values."""
    if recorded is _MISSING and replayed is _MISSING:
        return []
    if recorded is _MISSING or replayed is _MISSING:
        return [Difference(path, None if recorded is _MISSING else recorded,
                           None if replayed is _MISSING else replayed,
                           recorded is not _MISSING, replayed is not _MISSING)]
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        out: list[Difference] = []
        for key in sorted(set(recorded) | set(replayed)):
            out.extend(diff_values(recorded.get(key, _MISSING), replayed.get(key, _MISSING),
                                   f"{path}.{key}"))
        return out
    if isinstance(recorded, list) and isinstance(replayed, list):
        key = _list_key(recorded, replayed)
        if key is not None and [i[key] for i in recorded] != [i[key] for i in replayed]:
            return _diff_keyed(recorded, replayed, path, key)
        scalars = not any(isinstance(v, dict | list) for v in (*recorded, *replayed))
        if scalars:  # e.g. reason codes: the whole list reads better than element by element
            same = len(recorded) == len(replayed) and all(
                _same_leaf(a, b) for a, b in zip(recorded, replayed, strict=True))
            return [] if same else [Difference(path, recorded, replayed)]
        if len(recorded) == len(replayed):
            out = []
            for index, (a, b) in enumerate(zip(recorded, replayed, strict=True)):
                out.extend(diff_values(a, b, f"{path}[{index}]"))
            return out
        return [Difference(path, recorded, replayed)]
    if isinstance(recorded, dict | list) or isinstance(replayed, dict | list):
        return [Difference(path, recorded, replayed)]
    return [] if _same_leaf(recorded, replayed) else [Difference(path, recorded, replayed)]


_LIST_KEYS = ("rule_id", "memory_id", "field")


def _list_key(a: list[Any], b: list[Any]) -> str | None:
    """The identifying key of two lists of objects (rules, memory matches, queries), if any."""
    for key in _LIST_KEYS:
        if (all(isinstance(i, dict) and isinstance(i.get(key), str) for i in (*a, *b))
                and len({i[key] for i in a}) == len(a) and len({i[key] for i in b}) == len(b)):
            return key
    return None


def _diff_keyed(recorded: list[Any], replayed: list[Any], path: str, key: str) -> list[Difference]:
    """Lists of identified objects: entries present on one side only, then changed entries,
    then (if the same entries are merely reordered) the order."""
    left = {i[key]: i for i in recorded}
    right = {i[key]: i for i in replayed}
    out: list[Difference] = []
    for ident in [*left, *(k for k in right if k not in left)]:
        out.extend(diff_values(left.get(ident, _MISSING), right.get(ident, _MISSING),
                               f"{path}[{key}={ident}]"))
    if not out:
        out.append(Difference(f"{path} order", [i[key] for i in recorded],
                              [i[key] for i in replayed]))
    return out
