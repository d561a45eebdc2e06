from ._base import Policy

__all__ = ["LFUAged"]


class LFUAged(Policy):
    """LFU with aging: evicts the key with the fewest accesses, every count halved each 4,096 clocks.

    LFU's rules (a new key starts at its multiplicity in the batch, a hit adds its multiplicity,
    saturating), plus the aging pass of ``Policy``: whenever the clock reaches a multiple of
    ``age_period``, every cached count becomes ``count // 2`` before that operation does anything
    else, so keys that were popular long ago lose to keys popular now.  For another period define a
    subclass with its own name, e.g. ``name = "lfu_aged_65536"``, ``age_period = 65536``.
    """

    name = "lfu_aged"
    new_score = "count"
    hit_score = "sat_add(score, count)"
    age_period = 4096
    age_score = "score // 2"
