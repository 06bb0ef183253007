"""A labeled outcome (no numpy: the store and CLI import this cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LABELS = ("failure", "success", "near_miss")


@dataclass(frozen=True)
class MemoryItem:
    memory_id: str
    tenant_id: str
    action_type: str
    label: str
    summary: str
    features: tuple[str, ...]
    source_decision_id: str | None = None
    created_at: str | None = None
    # The seq of the item this one replaces in memory (the same decision's earlier label), as
    # the store's memory_items_since reports it; not part of the item's identity.
    supersedes_seq: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory_id": self.memory_id,
            "tenant_id": self.tenant_id,
            "action_type": self.action_type,
            "label": self.label,
            "summary": self.summary,
            "features": list(self.features),
            "source_decision_id": self.source_decision_id,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryItem:
        return cls(
            memory_id=data["memory_id"],
            tenant_id=data.get("tenant_id") or "",
            action_type=data["action_type"],
            label=data["label"],
            summary=data.get("summary") or "",
            features=tuple(data["features"]),
            source_decision_id=data.get("source_decision_id"),
            created_at=data.get("created_at"),
        )

    def snapshot_entry(self) -> dict[str, Any]:
        return {"memory_id": self.memory_id, "label": self.label, "summary": self.summary,
                "features": list(self.features)}
