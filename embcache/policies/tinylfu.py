"""W-TinyLFU-style admission: a missed key enters a full set only if it is more frequent than the victim."""
from __future__ import annotations

from ..errors import ConfigError
from ._base import Admission

# counters a cache slot in each row of a sketch sized to the cache (width=None), and the widest such row
_COUNTERS_PER_SLOT = 16
_MAX_SIZED_WIDTH = 1 << 26


def _sized_width(capacity: int) -> int:
    """``_COUNTERS_PER_SLOT * capacity`` rounded up to a power of two (at most ``_MAX_SIZED_WIDTH``)."""
    return min(1 << max(int(_COUNTERS_PER_SLOT * max(int(capacity), 1) - 1).bit_length(), 4), _MAX_SIZED_WIDTH)

__all__ = ["TinyLFU", "TinyLFUEvict"]


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
    + ``tinylfu`` over aged counts.  With a policy whose ``victim`` is ``"hand"`` (CLOCK, SIEVE) the
    victim compared is the one the hand's walk picks: the walk runs first (its visited bits cleared,
    the hand moved to the victim), then a refused key leaves the victim in place.  S3-FIFO places keys
    by its own queues and ignores the filter.  Unlike Caffeine's W-TinyLFU there is no separate LRU window (a new
    key's first miss is its admission test).  Lookups run on the host path on the GPU (they wait for
    the device, and cannot be captured in a CUDA graph): ``device_rule`` is None.

    Parameters
    ----------
    width : int or None
        Counters per sketch row, a power of two.  Memory is ``8 * width * depth`` bytes.  None sizes the
        sketch to the cache: ``16 * capacity`` counters a row, rounded up to a power of two (Caffeine
        sizes its sketch to the capacity too), ``128 * depth`` bytes a slot.
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

    def __init__(self, width: int | None = 1 << 16, depth: int = 4, seed: int = 0, sample: int = 40):
        name = type(self).__name__
        if width is not None and (isinstance(width, bool) or int(width) < 1 or int(width) & (int(width) - 1)):
            raise ConfigError(f"{name}(width={width}): width must be a power of two, e.g. {1 << 16}, or None "
                              "(sized to the cache)")
        if not 1 <= int(depth) <= 16:
            raise ConfigError(f"{name}(depth={depth}): depth must be between 1 and 16")
        if isinstance(sample, bool) or int(sample) < 0:
            raise ConfigError(f"{name}(sample={sample}): looked-up key occurrences per cache slot between two "
                              "halvings of the sketch, >= 0 (0 never halves)")
        self.width = None if width is None else int(width)
        self.depth, self.seed = int(depth), int(seed) & (2**64 - 1)
        self.sample = int(sample)
        self.sketch_sample = self.sample
        # threshold 1: every counted miss passes the threshold; the victim comparison decides.  A sketch
        # sized to the cache has its shape once sized() knows the capacity: until then a placeholder
        self.sketch = (1, _sized_width(1) if self.width is None else self.width, self.depth, self.seed)

    def sized(self, capacity: int) -> TinyLFU:
        """This admission for a cache of ``capacity`` slots: itself, or with ``width=None`` a copy whose
        width is ``16 * capacity`` rounded up to a power of two."""
        if self.width is not None:
            return self
        return type(self)(width=_sized_width(capacity), depth=self.depth, seed=self.seed, sample=self.sample)

    def device_rule(self) -> None:
        """None: the victim comparison runs on the host path only (not in the stream-ordered lookup)."""
        return None

    def config(self) -> dict:
        """Constructor arguments, for ``Cache.save``: ``{"width", "depth", "seed", "sample"}``."""
        return {"width": self.width, "depth": self.depth, "seed": self.seed, "sample": self.sample}


class TinyLFUEvict(TinyLFU):
    """TinyLFU whose sketch also picks the victim: the least frequent key of a full set goes, the newcomer included.

    As :class:`TinyLFU` (the same sketch, counted and halved alike), but in a full set the victim is the
    key with the lowest ``(estimate, score, way)``, and the missed key enters only if its ``(estimate,
    new score)`` is greater than that key's ``(estimate, score)``: the newcomer is ranked with the set's
    keys and the least of them leaves (or is refused).  The frequency is the sketch's, over every
    lookup since the last halvings, before the key entered as well as after, so an evicted key keeps
    its history; the eviction policy's scores only break ties of frequency (``lru`` + ``tinylfu_evict``:
    among equally frequent keys the least recent goes, and a newcomer beats an equally frequent
    resident; ``lru2``: a resident seen twice since it entered beats an equally frequent newcomer).
    A ``"hand"`` policy's walk does not run (the hand stays where it is); S3-FIFO places keys by its own
    queues and ignores the filter.  Deterministic, the same on both backends; on the GPU its lookups take
    the host path, as TinyLFU's.

    The sketch is sized to the cache by default (``width=None``: ``16 * capacity`` counters a row,
    rounded up to a power of two; 2^18 at 14,656 slots): an undersized sketch's collisions lift rare
    keys' estimates, which now decide evictions as well as admissions.

    Parameters
    ----------
    width, depth, seed, sample
        As :class:`TinyLFU`'s (``width`` None by default: sized to the cache).
    """

    name = "tinylfu_evict"
    victim_by_frequency = True

    def __init__(self, width: int | None = None, depth: int = 4, seed: int = 0, sample: int = 40):
        super().__init__(width=width, depth=depth, seed=seed, sample=sample)
