from ..errors import ConfigError
from ._base import Policy

__all__ = ["LFUAged"]

# score = count * 2**32 + (clock & (2**32 - 1)): the count since the key entered, then its last clock, so
# that equal counts go in LRU order (the lowest score is the least recent of the least frequent).  A hit
# adds its multiplicity to the count field and writes the clock; the aging pass halves the count field
# and keeps the clock.  Exact while counts stay below 2**31 and the clock below 2**32.
_FIELD = "4294967296"  # 2**32
_CLOCK = "(clock & 4294967295)"


class LFUAged(Policy):
    """LFU with aging: evicts the least frequent key (ties: the least recent), every count halved each ``period`` clocks.

    A new key starts at its multiplicity in the batch, a hit adds its multiplicity; whenever the
    clock reaches a multiple of ``period`` (``Policy``'s aging pass, ``age_period``), every cached
    count becomes ``count // 2`` before that operation does anything else, so keys that were popular
    long ago lose to keys popular now.  Among equal counts the key accessed least recently goes
    first (LFU's own tie rule in libCacheSim; ``lfu`` takes the lowest way).  The score packs both:
    ``count * 2**32 + clock``, exact while counts stay below ``2**31`` and the clock below ``2**32``.

    Parameters
    ----------
    period : int
        Clocks (batches) between two halvings, >= 1.  The default, 65,536, suits one key a batch on the
        Criteo sample; at batches of 1,024 keys a period of ~1,000 halves about every 10^6 lookups.
    """

    name = "lfu_aged"
    new_score = f"count * {_FIELD} + {_CLOCK}"
    hit_score = f"(score // {_FIELD} + count) * {_FIELD} + {_CLOCK}"
    age_period = 65536
    age_score = f"(score // 8589934592) * {_FIELD} + (score & 4294967295)"

    def __init__(self, period: int = 65536):
        if isinstance(period, bool) or not isinstance(period, int) or not 1 <= period < 2**63:
            raise ConfigError(f"LFUAged(period={period!r}): clocks between two halvings, an int >= 1")
        # the period is this instance's (a kernel argument, not compiled in): rule() and config() record it
        object.__setattr__(self, "age_period", period)

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"period"}``."""
        return {"period": self.age_period}
