from ._base import Policy

__all__ = ["SIEVE"]


class SIEVE(Policy):
    """SIEVE (Zhang et al., NSDI'24): keys stay in admission order; a hit sets the key's visited bit, and a
    miss in a full set moves the set's hand from older to newer keys, clearing the bits it passes, and
    evicts the first key whose bit is clear (the hand then waits there for the next miss).

    ``score = 2 * admission clock + visited`` with ``victim = "hand"`` (see ``embcache.policies._base``):
    passed keys keep their place, unlike CLOCK's.  The same decisions as libCacheSim's ``Sieve`` at one
    key a batch; keys admitted in one batch are in way order among themselves.  A hit on a visited key
    leaves its score unchanged, so most hits write nothing.
    """

    name = "sieve"
    victim = "hand"
    new_score = "2 * clock"
    hit_score = "score + 1 - (score & 1)"
