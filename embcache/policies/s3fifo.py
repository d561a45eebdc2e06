from ._base import Policy

__all__ = ["S3FIFO"]


class S3FIFO(Policy):
    """S3-FIFO (Yang et al., SOSP'23), per set: a small FIFO (``max(1, ways // 10)`` keys) for new keys, a main
    FIFO for the rest, and a ghost FIFO of the ``ways * 9 // 10`` keys last evicted from small.

    A hit adds one to the key's 2-bit frequency (stopping at 3).  A miss that is in the ghost enters main;
    any other enters small (before the set's first eviction, main once small is full).  A full set evicts
    from main if main holds more than its share or small is empty, else from small: small's oldest key
    moves to main (frequency 0) while its frequency is 2 or more, else it is evicted into the ghost; main's
    oldest key is reinserted at main's head with its frequency less one while that is 1 or more, else it is
    evicted.  libCacheSim's ``S3FIFO`` (``move_to_main_threshold = 2``) decides the same at one key a batch
    in sets of 10 ways or more (below, its small FIFO has no room and it admits nothing; ours has 1).

    ``victim = "s3fifo"`` (``embcache.policies._base``): the score is ``sequence * 8 + main * 4 + frequency``,
    a set's ``sequence`` counting what entered its FIFOs, and the ghost is per-set state; ``new_score`` is
    not used (the placement gives the score) and ``refuse_below_min`` does not apply.
    """

    name = "s3fifo"
    victim = "s3fifo"
    new_score = "0"
    hit_score = "score - (score & 3) + min((score & 3) + count, 3)"
