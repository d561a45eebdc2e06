from ._base import Policy

__all__ = ["EpochLRU"]


class EpochLRU(Policy):
    """Epoch LRU: evicts the key whose last access is in the oldest epoch of 16 batches (ties: lowest way).

    HierarchicalKV's ``kEpochLru`` idea: the score is the clock's epoch, ``clock // 16``, so a hit in
    the epoch the key was last seen in leaves its score as it was, and a backend that skips unchanged
    scores writes nothing for it.  The order is LRU's at the grain of an epoch.  For another epoch
    length define a subclass with its own name and rules, e.g. ``name = "epoch_lru_256"``,
    ``new_score = hit_score = "clock // 256"``.
    """

    name = "epoch_lru"
    new_score = "clock // 16"
    hit_score = "clock // 16"
