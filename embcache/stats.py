"""Counters a cache keeps, per batch and in total."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["Stats"]


@dataclass
class Stats:
    """What a cache did.

    ``Cache.stats`` holds the totals since the cache was made (or loaded) and,
    in ``last``, the counts of the most recent operation.

    Attributes
    ----------
    hits, misses : int
        Lookup key occurrences found / not found in the cache as it was at the start of their batch.
    unique_misses : int
        Distinct missed keys per batch (what the tiers were asked for), summed.
    absent : int
        Distinct missed keys that no tier holds: served the default row, never admitted.
    insertions : int
        Keys placed into a slot (by lookup, insert or preload).
    evictions : int
        Keys pushed out of their slot by an insertion.
    refusals : int
        Distinct missed keys that a tier holds but that were not admitted
        (admission policy, ``Static``).  Per lookup batch
        ``unique_misses == absent + insertions + refusals``.
    erased : int
        Keys removed by ``erase`` or ``clear``.  Always
        ``insertions == len(cache) + evictions + erased``.
    tier_failures : int
        Distinct missed keys served the default row because a tier failed
        (``on_tier_error="default"``); they are counted in ``absent`` too.
    invalid : int
        Key occurrences a stream-ordered GPU lookup could not refuse without
        waiting (a reserved key in a device batch): served the default row,
        never admitted, counted in ``misses`` too.  Always 0 on the CPU.
    prefetched : int
        Distinct keys that ``Cache.prefetch`` asked the tier for (those the cache lacked): not lookups,
        so neither hits nor misses.  Per prefetch ``prefetched == absent + insertions + refusals``.
    occupancy : float
        ``len(cache) / capacity`` after the operation.
    """

    hits: int = 0
    misses: int = 0
    unique_misses: int = 0
    absent: int = 0
    insertions: int = 0
    evictions: int = 0
    refusals: int = 0
    erased: int = 0
    tier_failures: int = 0
    invalid: int = 0
    prefetched: int = 0
    occupancy: float = 0.0
    last: "Stats | None" = field(default=None, repr=False, compare=False)

    @property
    def lookups(self) -> int:
        """Key occurrences looked up."""
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float:
        """hits / lookups per key occurrence (0.0 before any lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0

    def add(self, batch: "Stats") -> None:
        """Add ``batch``'s counters to these (occupancy and ``last`` become the batch's)."""
        # spelled out: a loop of getattr/setattr was a tenth of a small lookup's Python time
        # (test_stats_add_sums_every_counter holds it to _COUNTERS)
        self.hits += batch.hits
        self.misses += batch.misses
        self.unique_misses += batch.unique_misses
        self.absent += batch.absent
        self.insertions += batch.insertions
        self.evictions += batch.evictions
        self.refusals += batch.refusals
        self.erased += batch.erased
        self.tier_failures += batch.tier_failures
        self.invalid += batch.invalid
        self.prefetched += batch.prefetched
        self.occupancy = batch.occupancy
        self.last = batch

    def as_dict(self) -> dict:
        """The counters as a plain dict (``last`` left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "last"}


# the counters that add sums (test_stats_add_sums_every_counter holds add to this list)
_COUNTERS = tuple(f.name for f in fields(Stats) if f.name not in ("occupancy", "last"))


def _from_saved(saved, bad: type[Exception]) -> Stats:
    """The Stats that a save file recorded (``Stats.as_dict``), or raise ``bad`` saying what is wrong with it."""
    names = [f.name for f in fields(Stats) if f.name != "last"]
    if isinstance(saved, dict):  # saved before these counters existed
        saved = {"invalid": 0, "prefetched": 0, **saved}
    if not isinstance(saved, dict) or sorted(saved) != sorted(names):
        got = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise bad(f"the statistics must have the fields {names}, got {got}")
    for name in _COUNTERS:
        value = saved[name]
        if type(value) is not int or not 0 <= value < 2**63:
            raise bad(f"the statistic {name} must be a count (an integer >= 0), got {value!r}")
    occupancy = saved["occupancy"]
    if type(occupancy) not in (int, float) or not 0.0 <= occupancy <= 1.0:
        raise bad(f"the statistic occupancy must be a fraction in [0, 1], got {occupancy!r}")
    return Stats(**{**saved, "occupancy": float(occupancy)})
