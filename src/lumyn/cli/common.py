"""Helpers shared by the CLI commands: workspace config, one-line errors, input and output.

Kept import-light (stdlib + lumyn.errors): `lumyn show` must start fast, so core modules are
imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumyn import safe_json
from lumyn.errors import LumynError
from lumyn.safe_json import JsonRefused, read_bounded

if TYPE_CHECKING:
    from lumyn.config import LumynConfig
    from lumyn.store.base import Store

DEFAULT_WORKSPACE = ".lumyn"
DB_FILE = "lumyn.db"
POLICY_FILE = "policy.yml"


class CliError(LumynError):
    """An expected CLI failure with its own reason code (missing file, bad JSON, …)."""

    def __init__(self, reason_code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.reason_code = reason_code


# -- output -------------------------------------------------------------------------------------


def out(text: str = "") -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def err_one_line(text: str) -> None:
    """Exactly one line on stderr, whatever the message holds."""
    err(" ".join(text.split()))


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def emit_json(value: Any) -> None:
    out(dumps(value))


def guarded(fn: Callable[..., int | None], *args: Any, **kwargs: Any) -> int:
    """Run a command; expected failures become one stderr line and exit code 1."""
    try:
        return fn(*args, **kwargs) or 0
    except LumynError as exc:
        err_one_line(exc.one_line())
        return 1
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:  # `lumyn show ID | head`: the reader went away, not an error
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except Exception as exc:
        if os.environ.get("LUMYN_DEBUG"):
            raise
        err_one_line(f"INTERNAL_ERROR: {type(exc).__name__}: {exc} "
                     "(set LUMYN_DEBUG=1 to see the traceback)")
        return 70


# -- workspace and config -----------------------------------------------------------------------


def ws_flag(workspace: str) -> str:
    """` --workspace DIR` for commands we suggest, when not the default."""
    return "" if workspace == DEFAULT_WORKSPACE else f" --workspace {workspace}"


def workspace_config(workspace: str, config_path: str | None) -> LumynConfig:
    """The config a workspace command uses.

    Storage: LUMYN_STORAGE_URL / the config file when set, else sqlite:///WORKSPACE/lumyn.db.
    Policy: LUMYN_POLICY_PATH / the config file when set, else WORKSPACE/policy.yml when it
    exists, else the bundled support pack.
    """
    from lumyn.config import LumynConfig

    base = LumynConfig.load(config_path)
    overrides: dict[str, Any] = {}
    if not base.storage_url and not base.store_path:
        overrides["storage_url"] = "sqlite:///" + str(Path(workspace) / DB_FILE)
    if not base.policy_path:
        candidate = Path(workspace) / POLICY_FILE
        if candidate.is_file():
            overrides["policy_path"] = str(candidate)
    return base.with_overrides(**overrides)


def sqlite_path(config: LumynConfig) -> Path | None:
    url = config.url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def open_existing_store(config: LumynConfig, workspace: str) -> Store:
    """The store, for commands that read decisions: a missing SQLite file is an error
    (never silently created)."""
    from lumyn.store import open_store

    path = sqlite_path(config)
    if path is not None and not path.exists():
        raise CliError(
            "WORKSPACE_NOT_FOUND",
            f"no Lumyn database at {path}; create it with `lumyn init{ws_flag(workspace)}`",
            field="workspace",
        )
    return open_store(config.url, busy_timeout_ms=config.busy_timeout_ms)


def ensure_writable(config: LumynConfig, workspace: str) -> None:
    """Fail with one clear line when a SQLite database cannot be created or written."""
    path = sqlite_path(config)
    if path is None:
        return
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise CliError("WORKSPACE_UNWRITABLE", f"{parent} is not a directory", field="workspace")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError("WORKSPACE_UNWRITABLE",
                       f"cannot create {parent}: {exc.strerror or exc}", field="workspace") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CliError("WORKSPACE_UNWRITABLE", f"{parent} is not writable", field="workspace")
    if path.exists() and (path.is_dir() or not os.access(path, os.R_OK | os.W_OK)):
        raise CliError("WORKSPACE_UNWRITABLE", f"{path} is not a writable database file",
                       field="workspace")


def load_record(store: Store, decision_id: str) -> dict[str, Any]:
    """A stored record with its event log (as `Lumyn.get_decision`, without a policy)."""
    import orjson

    from lumyn.errors import DecisionNotFound

    found = store.get_decision(decision_id)
    if found is None:
        raise DecisionNotFound(f"no decision {decision_id}", field="decision_id")
    record: dict[str, Any] = orjson.loads(found[1])
    events = store.list_events(decision_id)
    if events:
        record["decision_event_log"] = events
    return record


def fetch_record(decision_id: str, workspace: str, config_path: str | None,
                 *, with_chain: bool = False) -> dict[str, Any]:
    """The record with its event log; `with_chain` adds its evidence-chain entries under
    "evidence_chain" (position and hash of the decision and of each event)."""
    config = workspace_config(workspace, config_path)
    store = open_existing_store(config, workspace)
    try:
        record = load_record(store, decision_id)
        chain_entries = getattr(store, "chain_entries", None)
        if with_chain and chain_entries is not None:
            from lumyn.integrity.chain import chain_dict

            record["evidence_chain"] = chain_dict(chain_entries(decision_id))
        return record
    finally:
        store.close()


def policy_target(path: str | None, workspace: str, config_path: str | None) -> Path:
    """--path, else the workspace's policy (config, then WORKSPACE/policy.yml)."""
    if path:
        return Path(path)
    config = workspace_config(workspace, config_path)
    target = Path(config.policy_path) if config.policy_path else Path(workspace) / POLICY_FILE
    if not target.exists():
        raise CliError(
            "POLICY_NOT_FOUND",
            f"{target} does not exist; create it with `lumyn init{ws_flag(workspace)}` "
            "or pass --path",
            field="--path",
        )
    return target


# -- input --------------------------------------------------------------------------------------


def read_text(path: str, *, field: str) -> str:
    """A UTF-8 text file, or stdin for '-', read with a size cap (devices and pipes too)."""
    try:
        if path != "-" and Path(path).is_dir():
            raise IsADirectoryError(path)
        return read_bounded(path).decode("utf-8")
    except JsonRefused as exc:
        raise CliError(exc.reason_code, exc.message, field=field) from None
    except FileNotFoundError:
        raise CliError("FILE_NOT_FOUND", f"{path} does not exist", field=field) from None
    except IsADirectoryError:
        raise CliError("FILE_NOT_FOUND", f"{path} is a directory, not a file", field=field) from None
    except UnicodeDecodeError:
        raise CliError("INVALID_JSON", f"{path} is not UTF-8 text", field=field) from None
    except OSError as exc:
        raise CliError("FILE_UNREADABLE", f"cannot read {path}: {exc.strerror or exc}",
                       field=field) from None


def read_json(path: str, *, field: str) -> Any:
    text = read_text(path, field=field)
    name = "standard input" if path == "-" else path
    if not text.strip():
        raise CliError("INVALID_JSON", f"{name} is empty (expected a JSON object)", field=field)
    try:
        return safe_json.loads(text)
    except JsonRefused as exc:
        raise CliError(exc.reason_code, f"{name}: {exc.message}", field=field) from None
    except ValueError as exc:
        raise CliError("INVALID_JSON", f"{name} is not valid JSON: {exc}", field=field) from None


def write_file(path: str, data: bytes, *, field: str = "--out") -> None:
    """Write atomically (temp file + rename) so a failed write leaves no half file."""
    target = Path(path)
    if target.is_dir():
        raise CliError("OUTPUT_UNWRITABLE", f"{path} is a directory", field=field)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CliError("OUTPUT_UNWRITABLE", f"cannot write {path}: {exc.strerror or exc}",
                       field=field) from None
