from ._base import Policy

__all__ = ["CLOCK"]


class CLOCK(Policy):
    """CLOCK (second chance): a hand goes round each set's ways; a hit sets the key's visited bit, and a
    miss in a full set clears the bits the hand passes and evicts the first key whose bit is clear.

    The score is the visited bit alone (0 or 1): every position of ``victim = "hand"`` is 0, so the walk
    goes round the ways in way order, and a new key takes the victim's way, just behind the hand (see
    ``embcache.policies._base``).  The same decisions as libCacheSim's ``Clock`` (one bit), which keeps a
    queue and moves passed keys to its head.  A hit on a visited key leaves its score unchanged.
    """

    name = "clock"
    victim = "hand"
    new_score = "0"
    hit_score = "1"
