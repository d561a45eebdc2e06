"""Admission policies: which of a lookup's missed keys enter the cache."""
from __future__ import annotations

from ..errors import ConfigError
from ._base import Admission

__all__ = ["Always", "MinFrequency", "RefuseBelowMin", "HitRateThreshold", "HitRateDeferred"]


class Always(Admission):
    """Admit every missed key that a tier holds."""

    name = "always"


class RefuseBelowMin(Admission):
    """Refuse a missed key whose new score is below the lowest score of its full set.

    As HierarchicalKV does: a cold key cannot push out a hotter one.  A key with
    a score equal to the set's lowest is admitted.
    """

    name = "refuse_below_min"
    refuse_below_min = True


class MinFrequency(Admission):
    """Admit a missed key once a count-min sketch has seen it miss ``n`` times (TinyLFU-like).

    Parameters
    ----------
    n : int
        Occurrences (counted over all batches, multiplicity included) before admission; 1 admits at once.
        A batch adds all its missed keys to the sketch before any estimate is read.
    width : int
        Counters per sketch row, a power of two.  Memory is ``8 * width * depth`` bytes.
    depth : int
        Independent hash rows; the estimate is the minimum over them.
    seed : int
        Seeds the row hashes ``mix64(key + (row + 1) * 0x9E3779B97F4A7C15 + seed) % width``.
    """

    name = "min_frequency"

    def __init__(self, n: int = 2, width: int = 1 << 16, depth: int = 4, seed: int = 0):
        if int(n) < 1:
            raise ConfigError(f"MinFrequency(n={n}): n must be >= 1 (1 admits every missed key)")
        if int(width) < 1 or int(width) & (int(width) - 1):
            raise ConfigError(f"MinFrequency(width={width}): width must be a power of two, e.g. {1 << 16}")
        if not 1 <= int(depth) <= 16:
            raise ConfigError(f"MinFrequency(depth={depth}): depth must be between 1 and 16")
        self.n, self.width, self.depth, self.seed = int(n), int(width), int(depth), int(seed) & (2**64 - 1)
        self.sketch = (self.n, self.width, self.depth, self.seed)

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"n", "width", "depth", "seed"}``."""
        return {"n": self.n, "width": self.width, "depth": self.depth, "seed": self.seed}


class HitRateThreshold(Admission):
    """Insert a batch's misses only while that batch's hit rate is below ``t`` (as HPS does).

    Parameters
    ----------
    t : float
        Hit rate in [0, 1] per key occurrence; at ``t = 1`` every batch with a miss admits.
    """

    name = "hit_rate_threshold"

    def __init__(self, t: float = 0.9):
        if not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"HitRateThreshold(t={t}): t is a hit rate, between 0 and 1")
        self.t = float(t)

    def admit_batch(self, hits: int, lookups: int) -> bool:
        """True when the batch had key occurrences and its hit rate ``hits / lookups`` is below ``t``."""
        return lookups > 0 and hits < self.t * lookups

    def device_rule(self) -> tuple[str, float]:
        """``("below_hit_rate", t)``: ``admit_batch``, which a GPU lookup decides on the device."""
        return ("below_hit_rate", self.t)

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"t"}``."""
        return {"t": self.t}


class HitRateDeferred(Admission):
    """HPS's ``hit_rate_threshold``: every missed key a tier holds is admitted; a batch whose hit rate
    is at or above ``t`` places them after it has returned, off its critical path.

    A lookup below ``t`` inserts its misses before it returns, as ``Always`` does.  One at or above
    ``t`` serves them and returns; they are placed when the cache's next operation begins (before that
    operation does anything; ``query`` and reading ``stats``, ``len`` or ``clock`` are not operations
    that place them), at the clock of their own batch, and counted in the totals of ``stats`` then (in
    no operation's ``stats.last``).  So the CPU and GPU backends agree on every result, and after the
    next operation the cache holds what ``Always`` would.  On the GPU with a tier read in place the
    decision is made on the device and the rows wait in the cache's own memory, so a lookup captured in
    a CUDA graph places the previous replay's misses first.  ``HitRateThreshold`` (refuse the misses of
    a batch at or above ``t``) remains for studies.

    Parameters
    ----------
    t : float
        Hit rate in [0, 1] per key occurrence; ``t = 1`` defers only batches that hit entirely (which
        have nothing to place), ``t = 0`` defers every non-empty batch.
    """

    name = "hit_rate_deferred"

    def __init__(self, t: float = 0.9):
        if not 0.0 <= float(t) <= 1.0:
            raise ConfigError(f"HitRateDeferred(t={t}): t is a hit rate, between 0 and 1")
        self.t = float(t)
        self.defer_at_hit_rate = self.t

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"t"}``."""
        return {"t": self.t}
