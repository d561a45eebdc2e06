from ._base import Policy

__all__ = ["LFU"]


class LFU(Policy):
    """Least Frequently Used (LFU): evicts the key with the fewest accesses since it entered.

    A new key starts at its multiplicity in the batch; counts saturate at ``MAX_SCORE``.
    """

    name = "lfu"
    new_score = "count"
    hit_score = "sat_add(score, count)"
