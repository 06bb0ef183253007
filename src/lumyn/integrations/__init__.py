"""Lumyn in an agent's loop: `gate` for Python tool functions, and the MCP gateway
(`lumyn mcp`, which needs the `mcp` extra and is imported only by that command)."""

from __future__ import annotations

from lumyn.integrations.decisions import Blocked, Escalated, NeedsEvidence, NotTrusted
from lumyn.integrations.gating import Gate, gate

__all__ = ["Blocked", "Escalated", "Gate", "NeedsEvidence", "NotTrusted", "gate"]
