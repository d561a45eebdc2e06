from ._base import Policy

__all__ = ["LRU"]


class LRU(Policy):
    """Least Recently Used (LRU): evicts the key whose last access is the oldest batch."""

    name = "lru"
    new_score = "clock"
    hit_score = "clock"
