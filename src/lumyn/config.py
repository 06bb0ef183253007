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
}


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
    tenant_keys: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False,
                                           hash=False)

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
        if self.signing_scheme not in ("body", "v1"):
            raise ConfigError("signing_scheme must be 'body' or 'v1'", field="signing_scheme")

    @property
    def url(self) -> str:
        if self.storage_url:
            return self.storage_url
        path = self.store_path or str(Path(DEFAULT_WORKSPACE) / "lumyn.db")
        return f"sqlite:///{path}"

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
        if "top_k" in values:
            try:
                values["top_k"] = int(values["top_k"])
            except (TypeError, ValueError):
                raise ConfigError("top_k must be an integer", field="top_k") from None
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
            "storage_url": _mask_password(self.url),
            "policy_path": self.policy_path or "(bundled) lumyn-support.v0.yml",
            "shadow_policy_path": self.shadow_policy_path,
            "mode": self.mode or "(policy default)",
            "redaction_profile": self.redaction_profile,
            "top_k": self.top_k,
            "signing": "enabled" if self.signing_secret else "disabled",
            "signing_scheme": self.signing_scheme,
            "tenant_keys": len(self.tenant_keys),
            "max_body_bytes": self.max_body_bytes,
        }


def _mask_password(url: str) -> str:
    """postgresql://user:secret@host/db → postgresql://user:***@host/db"""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, location = rest.rpartition("@")
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{location}"


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
