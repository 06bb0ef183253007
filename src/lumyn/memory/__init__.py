"""Experience Memory: labeled outcomes turned into similarity signals for new decisions."""

from lumyn.memory.features import memory_features
from lumyn.memory.index import EMPTY, LABELS, Match, MemoryIndex, MemoryItem, Similarity

__all__ = [
    "EMPTY",
    "LABELS",
    "Match",
    "MemoryIndex",
    "MemoryItem",
    "Similarity",
    "memory_features",
]
