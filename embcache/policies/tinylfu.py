"""W-TinyLFU-style admission: a missed key enters a full set only if it is more frequent than the victim."""
from __future__ import annotations

from ..errors import ConfigError
from ._base import Admission

__all__ = ["TinyLFU"]


class TinyLFU(Admission):
    """Admit a missed key into a full set only if its sketch estimate beats the victim's (TinyLFU's filter).

    A count-min sketch counts every key occurrence of every lookup, hits and misses.  Each lookup, in
    this order: adds its missed keys and then its hit keys to the sketch (multiplicity included);
    halves every counter (``>> 1``: the sketch ages, as TinyLFU's reset does) once for each multiple of
    ``sample * capacity`` (the cache's slots) that its key occurrences take the total looked up since
    the cache was made (``stats.lookups``) past, so the rate is the same at any batch size (``insert``
    and ``preload`` neither count nor age it); then places its missed
    keys set by set in ascending key order, as every admission does: a key takes an empty way if its
    set has one, else the victim the eviction policy names (the lowest ``(score, way)``) is evicted
    only if ``estimate(key) > estimate(victim)``, both read from the sketch as it is then; a tie keeps
    the victim (the key is refused).  Deterministic, and the same on both backends.

    The eviction policy is the cache's own: ``lru`` + ``tinylfu`` is TinyLFU over LRU sets, ``lfu_aged``
    + ``tinylfu`` over aged counts.  The victim compared is the lowest ``(score, way)``: with a policy
    whose ``victim`` is ``"hand"`` (CLOCK, SIEVE) the walk then picks the slot evicted (the comparison is
    against the set's lowest score, not the walk's pick), and S3-FIFO places keys by its own queues and
    ignores the filter.  Unlike Caffeine's W-TinyLFU there is no separate LRU window (a new
    key's first miss is its admission test).  Lookups run on the host path on the GPU (they wait for
    the device, and cannot be captured in a CUDA graph): ``device_rule`` is None.

    Parameters
    ----------
    width : int
        Counters per sketch row, a power of two.  Memory is ``8 * width * depth`` bytes.
    depth : int
        Independent hash rows (as ``MinFrequency``'s); the estimate is the minimum over them.
    seed : int
        Seeds the row hashes ``mix64(key + (row + 1) * 0x9E3779B97F4A7C15 + seed) % width``.
    sample : int
        Looked-up key occurrences per cache slot between two halvings of the sketch (0: never): the
        sketch is halved every ``sample * capacity`` occurrences.  Caffeine halves after ten times its
        capacity in accesses (``sample = 10``); 40, the default, did best on the Criteo sample.
    """

    name = "tinylfu"
    #: the victim comparison at placement (Cache passes it to the backend's insert_and_evict)
    compares_victim = True

    def __init__(self, width: int = 1 << 16, depth: int = 4, seed: int = 0, sample: int = 40):
        if int(width) < 1 or int(width) & (int(width) - 1):
            raise ConfigError(f"TinyLFU(width={width}): width must be a power of two, e.g. {1 << 16}")
        if not 1 <= int(depth) <= 16:
            raise ConfigError(f"TinyLFU(depth={depth}): depth must be between 1 and 16")
        if isinstance(sample, bool) or int(sample) < 0:
            raise ConfigError(f"TinyLFU(sample={sample}): looked-up key occurrences per cache slot between two "
                              "halvings of the sketch, >= 0 (0 never halves)")
        self.width, self.depth, self.seed = int(width), int(depth), int(seed) & (2**64 - 1)
        self.sample = int(sample)
        self.sketch_sample = self.sample
        # threshold 1: every counted miss passes the threshold; the victim comparison decides
        self.sketch = (1, self.width, self.depth, self.seed)

    def device_rule(self) -> None:
        """None: the victim comparison runs on the host path only (not in the stream-ordered lookup)."""
        return None

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"width", "depth", "seed", "sample"}``."""
        return {"width": self.width, "depth": self.depth, "seed": self.seed, "sample": self.sample}
