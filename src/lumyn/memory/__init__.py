"""Experience Memory: labeled outcomes turned into similarity signals for new decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumyn.memory.features import memory_features
from lumyn.memory.item import LABELS, MemoryItem

if TYPE_CHECKING:
    from lumyn.memory.index import EMPTY, Match, MemoryIndex, Similarity

__all__ = [
    "EMPTY",
    "LABELS",
    "Match",
    "MemoryIndex",
    "MemoryItem",
    "Similarity",
    "memory_features",
]


def __getattr__(name: str) -> Any:
    # Lazy: the index needs numpy, which `lumyn show` and the store do not.
    if name in ("EMPTY", "Match", "MemoryIndex", "Similarity"):
        from lumyn.memory import index

        return getattr(index, name)
    raise AttributeError(f"module 'lumyn.memory' has no attribute {name!r}")
