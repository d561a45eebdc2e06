from ._base import Policy

__all__ = ["LRU2"]

# score = prev * 2**31 + last: the clocks (their low 31 bits) of the second-to-last and the last access
# since the key entered, prev = 0 while it has been accessed once.  t = min(max(count - 1, 0), 1) is 1
# when the key occurs twice or more in the batch (all of a batch's accesses happen at its clock, so
# both clocks are the batch's) and 0 when it occurs once (the old last becomes prev).  Applied per
# occurrence or once per batch, a hit leaves the same score: the rule composes.
_LOW = "2147483647"  # 2**31 - 1
_T = "min(max(count - 1, 0), 1)"
_LAST = f"(clock & {_LOW})"


class LRU2(Policy):
    """LRU-2: evicts the key whose second-to-last access is the oldest; keys seen once go first, in LRU order.

    Both clocks are packed in the score: ``prev * 2**31 + last``, each a batch clock, ``prev = 0`` until a
    second access (the history is the key's since it entered: an evicted key's is forgotten).  Two
    occurrences in one batch are two accesses at its clock.  Exact while the clock is below ``2**31``
    (2.1e9 lookups, writes included); beyond, the clocks wrap around and the order is no longer LRU-2's
    (the packed score itself never overflows).
    """

    name = "lru2"
    new_score = f"{_LAST} * {_T} * 2147483648 + {_LAST}"
    hit_score = f"((score & {_LOW}) * (1 - {_T}) + {_LAST} * {_T}) * 2147483648 + {_LAST}"
