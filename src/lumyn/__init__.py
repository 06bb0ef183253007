"""Lumyn: a deterministic decision gateway with durable, replayable Decision Records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumyn.version import __version__

__all__ = ["Blocked", "Escalated", "Lumyn", "LumynConfig", "NeedsEvidence", "NotTrusted",
           "__version__", "decide", "gate"]
_INTEGRATIONS = ("Blocked", "Escalated", "NeedsEvidence", "NotTrusted", "gate")

if TYPE_CHECKING:
    from lumyn.config import LumynConfig
    from lumyn.integrations import Blocked, Escalated, NeedsEvidence, NotTrusted, gate
    from lumyn.sdk import Lumyn, decide


def __getattr__(name: str) -> Any:
    # Lazy so `lumyn --help` and `import lumyn.contracts` stay cheap.
    if name == "LumynConfig":
        from lumyn.config import LumynConfig

        return LumynConfig
    if name in ("Lumyn", "decide"):
        from lumyn import sdk

        return getattr(sdk, name)
    if name in _INTEGRATIONS:
        from lumyn import integrations

        return getattr(integrations, name)
    raise AttributeError(f"module 'lumyn' has no attribute {name!r}")
