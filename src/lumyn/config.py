"""Settings shared by the SDK, the CLI and the service.

Precedence, highest first: explicit arguments, environment variables (LUMYN_*), the TOML file
(`--config` / LUMYN_CONFIG_PATH), built-in defaults.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from lumyn.errors import ConfigError
from lumyn.masking import mask_password
from lumyn.telemetry.logs import check_settings as check_log_settings

DEFAULT_WORKSPACE = ".lumyn"
MODES = ("enforce", "advisory")
REDACTION_PROFILES = ("default", "strict", "off")

_ENV = {
    "storage_url": "LUMYN_STORAGE_URL",
    "policy_path": "LUMYN_POLICY_PATH",
    "shadow_policy_path": "LUMYN_SHADOW_POLICY_PATH",
    "mode": "LUMYN_MODE",
    "redaction_profile": "LUMYN_REDACTION_PROFILE",
    "top_k": "LUMYN_TOP_K",
    "signing_secret": "LUMYN_SIGNING_SECRET",
    "signing_scheme": "LUMYN_SIGNING_SCHEME",
    "public_docs": "LUMYN_PUBLIC_DOCS",
    "max_body_bytes": "LUMYN_MAX_BODY_BYTES",
    "max_connections": "LUMYN_MAX_CONNECTIONS",
    "header_timeout_s": "LUMYN_HEADER_TIMEOUT_S",
    "body_timeout_s": "LUMYN_BODY_TIMEOUT_S",
    "max_header_bytes": "LUMYN_MAX_HEADER_BYTES",
    "keep_alive_s": "LUMYN_KEEP_ALIVE_S",
    "log_level": "LUMYN_LOG_LEVEL",
    "log_format": "LUMYN_LOG_FORMAT",
    "metrics": "LUMYN_METRICS",
    "metrics_key": "LUMYN_METRICS_KEY",
    "tracing": "LUMYN_TRACING",
    "memory_retention_days": "LUMYN_MEMORY_RETENTION_DAYS",
    "memory_index_dir": "LUMYN_MEMORY_INDEX_DIR",
    "pack_signing_key": "LUMYN_PACK_SIGNING_KEY",
}
# Service limits (docs/service.md): a positive number each; strings from the environment.
_NUMBERS = {"max_body_bytes": int, "max_connections": int, "header_timeout_s": float,
            "body_timeout_s": float, "max_header_bytes": int, "keep_alive_s": int}
_FLAGS = ("public_docs", "metrics", "tracing")  # true/false; strings from the environment


@dataclass(frozen=True)
class LumynConfig:
    """Where decisions are stored, which policy decides, and how.

    `store_path` (a SQLite file) and `storage_url` (`sqlite:///path` or `postgresql://…`) are
    two ways to name the store; `storage_url` wins when both are set.
    """

    store_path: str | None = None
    storage_url: str | None = None
    policy_path: str | None = None  # None: the bundled support pack
    shadow_policy_path: str | None = None  # also evaluated and recorded, never enforced
    mode: str | None = None  # None: the policy's default
    redaction_profile: str = "default"
    top_k: int = 5
    busy_timeout_ms: int = 5000
    signing_secret: str | None = field(default=None, repr=False)
    signing_scheme: str = "body"  # "body" (seed scheme) or "v1" (timestamp+method+path+body)
    signature_window_s: int = 300
    max_body_bytes: int = 1024 * 1024
    # /openapi.json and /docs without authentication even when signing or keys are on.
    public_docs: bool = False
    max_connections: int = 1000  # open connections; an idle one is evicted for a new one
    header_timeout_s: float = 10.0  # a request's headers must arrive within this
    body_timeout_s: float = 30.0  # ... and its body within this after the headers
    max_header_bytes: int = 32 * 1024
    keep_alive_s: int = 5
    tenant_keys: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False,
                                           hash=False)
    log_level: str = "INFO"
    log_format: str = "json"  # "json" or "text" (docs/observability.md)
    metrics: bool = True  # GET /metrics of the service
    metrics_key: str | None = field(default=None, repr=False)  # when set, /metrics needs it
    tracing: bool = False  # OpenTelemetry spans (the otel extra)
    # Memory items older than this many days leave similarity (their events stay).
    memory_retention_days: int | None = None
    # Where the memory index files live: None = beside a SQLite store (a per-database cache
    # directory for PostgreSQL), "off" = in memory only.
    memory_index_dir: str | None = None
    pack_signing_key: str | None = None  # Ed25519 private key file: the service signs its packs

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}", field="mode")
        if self.redaction_profile not in REDACTION_PROFILES:
            raise ConfigError(
                f"redaction_profile must be one of {', '.join(REDACTION_PROFILES)}",
                field="redaction_profile",
            )
        if not isinstance(self.top_k, int) or not 0 <= self.top_k <= 100:
            raise ConfigError("top_k must be an integer from 0 to 100", field="top_k")
        retention = self.memory_retention_days
        if retention is not None and (type(retention) is not int or retention < 1):
            raise ConfigError("memory_retention_days must be a whole number of days, at least 1",
                              field="memory_retention_days")
        if self.signing_scheme not in ("body", "v1"):
            raise ConfigError("signing_scheme must be 'body' or 'v1'", field="signing_scheme")
        check_log_settings(self.log_level, self.log_format)

    @property
    def url(self) -> str:
        if self.storage_url:
            return self.storage_url
        path = self.store_path or str(Path(DEFAULT_WORKSPACE) / "lumyn.db")
        return f"sqlite:///{path}"

    @property
    def display_url(self) -> str:
        """The storage URL with any password masked: the only form ever printed or logged."""
        return mask_password(self.url)

    @classmethod
    def load(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> LumynConfig:
        """Merge defaults, the TOML file, LUMYN_* environment variables and `overrides`."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_path or env.get("LUMYN_CONFIG_PATH")
        if path:
            values.update(_read_toml(Path(path)))
        for name, var in _ENV.items():
            if env.get(var):
                values[name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in _FLAGS:
            if isinstance(values.get(name), str):
                values[name] = _flag(values[name], name)
        for name, kind in _NUMBERS.items():
            if name in values:
                values[name] = _positive(values[name], name, kind)
        if "top_k" in values:
            try:
                values["top_k"] = int(values["top_k"])
            except (TypeError, ValueError):
                raise ConfigError("top_k must be an integer", field="top_k") from None
        days = values.get("memory_retention_days")
        if isinstance(days, str):  # from the environment
            try:
                values["memory_retention_days"] = int(days)
            except ValueError:
                raise ConfigError("memory_retention_days must be a whole number of days",
                                  field="memory_retention_days") from None
        if values.get("storage_url") and not str(values["storage_url"]).startswith(
            ("sqlite:///", "postgresql://", "postgres://")
        ):
            raise ConfigError(
                "storage URL must start with sqlite:/// or postgresql://", field="storage_url"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting '{unknown[0]}'", field=unknown[0])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> LumynConfig:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def effective(self) -> dict[str, Any]:
        """Printable settings (secrets masked) for `serve --dry-run` and `doctor`."""
        return {
            "storage_url": self.display_url,
            "policy_path": self.policy_path or "(bundled) lumyn-support.v0.yml",
            "shadow_policy_path": self.shadow_policy_path,
            "mode": self.mode or "(policy default)",
            "redaction_profile": self.redaction_profile,
            "top_k": self.top_k,
            "signing": "enabled" if self.signing_secret else "disabled",
            "signing_scheme": self.signing_scheme,
            "tenant_keys": len(self.tenant_keys),
            "max_body_bytes": self.max_body_bytes,
            "public_docs": self.public_docs,
            "max_connections": self.max_connections,
            "header_timeout_s": self.header_timeout_s,
            "body_timeout_s": self.body_timeout_s,
            "max_header_bytes": self.max_header_bytes,
            "keep_alive_s": self.keep_alive_s,
            "log_level": self.log_level,
            "log_format": self.log_format,
            "metrics": ("on, key required" if self.metrics_key else "on") if self.metrics
            else "off",
            "tracing": "on" if self.tracing else "off",
            "memory_retention_days": self.memory_retention_days or "(keep every item)",
            "pack_signing_key": self.pack_signing_key or "(packs unsigned)",
        }


def _positive(value: Any, name: str, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a positive number", field=name) from None
    if isinstance(value, bool) or not number > 0:
        raise ConfigError(f"{name} must be a positive number", field=name)
    return number


def _flag(text: str, name: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false", field=name)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found", field="config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}", field="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", field="config") from None
    section = data.get("lumyn", data)
    values = {k: v for k, v in section.items() if k != "tenant_keys"}
    keys = section.get("tenant_keys") or data.get("tenant_keys")
    if keys is not None:
        if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keys.items()
        ):
            raise ConfigError("tenant_keys must map API keys to tenant ids", field="tenant_keys")
        values["tenant_keys"] = dict(keys)
    return values
