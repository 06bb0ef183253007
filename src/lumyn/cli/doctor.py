"""`lumyn doctor [--fix]`: workspace health, and repairs of what can safely be repaired.

Checks: Python version, configuration, workspace directory, write permission, policy
(present and valid), database (present, integrity, tables, schema version). `--fix` creates a
missing workspace, a missing policy.yml (bundled support pack), a missing sample request
(examples/request.json, as `init` leaves) and a missing database or tables
(`store.ensure_schema()`); it never overwrites or deletes anything that exists. An invalid
policy is not fixable: the summary points at `lumyn policy validate` instead.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lumyn.cli.common import POLICY_FILE, err_one_line, out, sqlite_path, workspace_config, ws_flag
from lumyn.cli.render import table
from lumyn.cli.samples import EXAMPLE_FILE, write_example
from lumyn.errors import LumynError
from lumyn.version import __version__

if TYPE_CHECKING:
    from lumyn.config import LumynConfig

MIN_PYTHON = (3, 11)


@dataclass
class Doctor:
    workspace: str
    fix: bool
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    # Failures `--fix` cannot repair, with what to run instead (printed in the summary line).
    other_remedies: list[str] = field(default_factory=list)

    def ok(self, name: str, detail: str) -> None:
        self.rows.append(("ok", name, detail))

    def fixed(self, name: str, detail: str) -> None:
        self.rows.append(("fixed", name, detail))

    def fail(self, name: str, detail: str, *, remedy: str | None = None) -> None:
        self.rows.append(("FAIL", name, detail))
        if remedy:
            self.other_remedies.append(remedy)

    def warn(self, name: str, detail: str) -> None:
        self.rows.append(("warn", name, detail))

    @property
    def failures(self) -> int:
        return sum(1 for status, _, _ in self.rows if status == "FAIL")


def cmd_doctor(fix: bool, workspace: str, config_path: str | None) -> int:
    doc = Doctor(workspace, fix)
    _check_python(doc)
    config = _check_config(doc, config_path)
    if config is not None:
        ws_ok = _check_workspace(doc)
        if ws_ok:
            _check_permissions(doc)
        _check_policy(doc, config, config_path)
        _check_database(doc, config)

    out(f"Lumyn doctor (workspace {workspace}{', --fix' if fix else ''})")
    out(table([list(row) for row in doc.rows]))
    flag = ws_flag(workspace)
    if doc.failures:
        hints = list(doc.other_remedies)
        if not fix and doc.failures > len(doc.other_remedies):
            hints.insert(0, f"Run `lumyn doctor --fix{flag}` to repair what can be repaired.")
        err_one_line(" ".join([f"UNHEALTHY: {doc.failures} problem(s) found.", *hints]))
        return 1
    out(f"Healthy. Next: lumyn demo --story{flag}")
    return 0


def _check_python(doc: Doctor) -> None:
    version = ".".join(str(v) for v in sys.version_info[:3])
    if sys.version_info[:2] >= MIN_PYTHON:
        doc.ok("python", f"{version} ({sys.executable})")
    else:
        doc.fail("python", f"{version}; Lumyn needs Python {'.'.join(map(str, MIN_PYTHON))}+")
    doc.ok("lumyn", __version__)


def _check_config(doc: Doctor, config_path: str | None) -> LumynConfig | None:
    try:
        config = workspace_config(doc.workspace, config_path)
    except LumynError as exc:
        doc.fail("config", exc.one_line())
        return None
    source = config_path or os.environ.get("LUMYN_CONFIG_PATH") or "defaults + environment"
    doc.ok("config", f"{source}; storage {config.display_url}")
    return config


def _check_workspace(doc: Doctor) -> bool:
    ws = Path(doc.workspace)
    if ws.is_dir():
        doc.ok("workspace", f"{ws} exists")
        return True
    if ws.exists():
        doc.fail("workspace", f"{ws} exists but is not a directory (not fixable automatically)")
        return False
    if not doc.fix:
        doc.fail("workspace", f"{ws} is missing (fix: lumyn doctor --fix, or lumyn init)")
        return False
    try:
        ws.mkdir(parents=True)
    except OSError as exc:
        doc.fail("workspace", f"cannot create {ws}: {exc.strerror or exc}")
        return False
    doc.fixed("workspace", f"created {ws}")
    return True


def _check_permissions(doc: Doctor) -> None:
    ws = Path(doc.workspace)
    try:
        with tempfile.NamedTemporaryFile(dir=ws, prefix=".lumyn-doctor-"):
            pass
    except OSError as exc:
        doc.fail("permissions", f"cannot write in {ws}: {exc.strerror or exc}")
        return
    doc.ok("permissions", f"{ws} is writable")


def _check_policy(doc: Doctor, config: LumynConfig, config_path: str | None) -> None:
    from lumyn.policy import PolicyInvalid, bundled_policy_path, load_policy

    ws_policy = Path(doc.workspace) / POLICY_FILE
    target = Path(config.policy_path) if config.policy_path else ws_policy
    if not target.exists():
        if target != ws_policy:
            doc.fail("policy", f"{target} (from LUMYN_POLICY_PATH or the config) does not exist")
            return
        if not doc.fix or not Path(doc.workspace).is_dir():
            doc.fail("policy", f"{target} is missing (fix: lumyn doctor --fix, or lumyn init "
                               "--policy-template NAME)")
            return
        try:
            target.write_text(bundled_policy_path().read_text(encoding="utf-8"), encoding="utf-8")
        except OSError as exc:
            doc.fail("policy", f"cannot create {target}: {exc.strerror or exc}")
            return
        doc.fixed("policy", f"created {target} from the bundled support pack")
    try:
        policy = load_policy(target)
    except PolicyInvalid as exc:
        first = exc.lines()[0] if exc.problems else exc.message
        validate = f"lumyn policy validate{ws_flag(doc.workspace)}"
        doc.fail("policy", f"{len(exc.problems)} problem(s), first: {first} "
                           f"(see: {validate}; not fixed automatically)",
                 remedy=f"The policy needs editing (--fix cannot repair it); `{validate}` lists "
                        f"every problem, the first: {first}")
        return
    doc.ok("policy", f"{target}: {policy.policy_id} {policy.policy_version}, {len(policy.rules)} "
                     f"rules, {policy.policy_hash}")
    example = Path(doc.workspace) / EXAMPLE_FILE
    if doc.fix and Path(doc.workspace).is_dir() and not example.exists():
        try:
            doc.fixed("example", write_example(Path(doc.workspace), policy) + " (a sample request)")
        except LumynError as exc:
            doc.fail("example", exc.one_line())


def _peek_sqlite(path: Path) -> tuple[list[str] | None, str | None]:
    """Tables of a SQLite file, read-only (never creates or migrates), or an error."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return None, str(exc)
    return names, None


def _check_database(doc: Doctor, config: LumynConfig) -> None:
    from lumyn.store import open_store
    from lumyn.store.base import SCHEMA_VERSION
    from lumyn.store.schema import EXPECTED_TABLES

    path = sqlite_path(config)
    repair_reason: str | None = None
    if path is not None:
        if not path.exists():
            repair_reason = f"{path} is missing"
        elif path.is_dir():
            doc.fail("database", f"{path} is a directory, not a database (not fixable automatically)")
            return
        else:
            names, problem = _peek_sqlite(path)
            if names is None:
                doc.fail("database", f"{path} cannot be read as SQLite: {problem} "
                                     "(not fixable automatically; move it aside and run --fix)")
                return
            missing = [t for t in EXPECTED_TABLES if t not in names]
            if missing:
                repair_reason = f"missing tables: {', '.join(missing)}"
        if repair_reason and not doc.fix:
            doc.fail("database", f"{repair_reason} (fix: lumyn doctor --fix)")
            return
        if repair_reason and path.parent.exists() and not path.parent.is_dir():
            doc.fail("database", f"{path.parent} is not a directory")
            return

    try:
        store = open_store(config.url, busy_timeout_ms=config.busy_timeout_ms)
    except LumynError as exc:
        doc.fail("database", exc.one_line())
        return
    try:
        if doc.fix or repair_reason:
            done = store.ensure_schema()
            if done:
                what = "; ".join(done)
                if path is not None and repair_reason == f"{path} is missing":
                    what = f"created {path} ({what})"
                doc.fixed("database", what)
        problems = store.check()
        version = store.schema_version()
    except LumynError as exc:
        doc.fail("database", exc.one_line())
        return
    finally:
        store.close()
    if problems:
        doc.fail("database", "integrity: " + "; ".join(problems))
        return
    if version is None or version < SCHEMA_VERSION:
        doc.fail("database", f"schema version {version}, expected {SCHEMA_VERSION} "
                             "(fix: lumyn doctor --fix)")
        return
    if version > SCHEMA_VERSION:
        doc.fail("database", f"schema version {version} is newer than this Lumyn "
                             f"({SCHEMA_VERSION}); upgrade lumyn")
        return
    doc.ok("database", f"{config.display_url}: integrity ok, schema version {version}")
