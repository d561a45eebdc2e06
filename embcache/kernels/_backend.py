"""The interface a backend gives ``Cache``: every member, the same names and signatures on both.

``CPUBackend`` (Numba) and ``GPUBackend`` (CuPy) implement all of it; ``Cache`` uses nothing else
of a backend and never asks which one it has (``tests/test_backend_protocol.py`` holds both to this
class and ``embcache/cache.py`` to its members).  Arrays are the backend's (``xp``): NumPy on the CPU,
CuPy on the GPU; rows are of the row dtype (GPU: its raw bits).

Two lookup paths:

* the **stream-ordered** one, ``lookup_ordered``: the whole lookup as one call that waits for
  nothing (GPU with a tier the GPU reads in place: ``reads_device_sources``), its counters read later
  by ``absorb_ordered``; what fails is refused before it (argument checks), so it has nothing to undo
  (a lookup interrupted between its launches leaves its batch's counts, which the next one clears);
* the **host** one, for tiers read on the host: ``plan_lookup`` probes and gathers and returns a
  :class:`LookupPlan`; the Cache fetches the misses from the tier, then commits the plan (the
  clock tick and the hits' scores) and places the admitted keys (``insert_and_evict``), or, if
  anything failed (a tier read, a reserved key), rolls it back: the cache is then as before.
  The plan is one object that knows what its probe changed; ``Cache`` keeps no backend state to undo.

A stream-ordered lookup is the degenerate plan: nothing in it can fail after its checks, so it is
committed as it is enqueued.
"""
from __future__ import annotations

import contextlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import EmbCacheError

__all__ = ["Backend", "LookupPlan"]


class _OncePlan:
    """What both backends' lookup plans share: a plan ends once, by ``commit`` or ``rollback``; ``_end``
    hands over the backend (kept in the subclass's ``_backend`` slot) and forgets it."""

    __slots__ = ()

    def _end(self, how: str) -> Any:
        backend, self._backend = self._backend, None
        if backend is None:
            raise EmbCacheError(f"LookupPlan.{how}: this plan has already been committed or rolled back; "
                                "make a new one with plan_lookup")
        return backend


@runtime_checkable
class LookupPlan(Protocol):
    """A host lookup's hits, probed and gathered, its changes to the cache not yet final (``plan_lookup``).

    Exactly one of ``commit`` or ``rollback`` ends a plan; a second end raises ``EmbCacheError``.
    Until then the caller holds the cache's lock and starts no other operation on the backend.
    """

    slots: Any  #: (n,) int64: the slot of every key, -1 for a miss (below -1: a row found in the source)
    missed: Any  #: (m,) int64: the indices of the missed keys (reserved ones included), in no given order
    reserved: int  #: how many keys were reserved sentinels (the backend counted them, did not refuse them)
    keys: Any  #: (n,) int64: the keys probed (with ``index_rows``, the given ones after Gather's rules)
    invalid: int  #: how many keys Gather's rules replaced (``index_rows``), else 0

    def commit(self) -> None:
        """The lookup goes ahead: advance the clock and apply the hit rule to every hit (what is left of it)."""

    def rollback(self) -> None:
        """The lookup failed: put back whatever the probe changed, so the cache is as before the plan.

        A plan that found every key (no miss, no reserved key) has nothing that can fail after it, and
        the GPU applies it in its probe without waiting for the host: its rollback commits it instead.
        """


@runtime_checkable
class Backend(Protocol):
    """What ``Cache`` calls on its backend (see the module docstring)."""

    name: str  #: "cpu" or "gpu": what ``Cache.backend`` reports, never branched on
    xp: Any  #: numpy or cupy
    device_id: int | None  #: the CUDA device, or None
    clock: int  #: the batch clock as the host knows it (``absorb_ordered`` brings it up to the device's)
    sketch: Any  #: the count-min sketch (depth, width) int64, or None
    hands: Any  #: every set's hand (num_sets, 2) int64 (policies with victim = "hand"), or None
    reads_device_sources: bool  #: lookups may read a tier's DeviceSource in place
    checks_reserved_keys: bool  #: reserved keys are refused on the host before any work
    replay_graphs: bool  #: replay stream-ordered lookups from captured CUDA graphs (the CPU ignores it)

    @property
    def default(self) -> Any:
        """The row misses get, (dim,)."""

    @property
    def max_batch(self) -> int:
        """Keys a stream-ordered lookup may take without growing its scratch."""

    # arrays and streams
    def on_stream(self, stream: Any) -> contextlib.AbstractContextManager:
        """A context in which every operation runs on ``stream`` (GPU: a cupy Stream or a raw handle; CPU: None only)."""

    def capturing(self) -> bool:
        """Whether the current stream is capturing a CUDA graph (always False on the CPU)."""

    def current_stream(self) -> int:
        """The current CUDA stream's handle (0 on the CPU)."""

    def record_event(self) -> Any:
        """An event recorded on the current stream now (None on the CPU, where work is done on return)."""

    def wait_event(self, event: Any) -> None:
        """Make the current stream wait for ``event`` on the device; the host does not wait."""

    def synchronize(self) -> None:
        """Wait for all work on the device (nothing on the CPU)."""

    def to_device(self, array: Any) -> Any:
        """``array`` as a contiguous array where the backend works (GPU rows: their raw bits)."""

    def to_host(self, array: Any) -> np.ndarray:
        """``array`` as a NumPy array (raw row bits become the row dtype)."""

    def new_rows(self, n: int) -> Any:
        """An uninitialised (n, dim) output of the dtype lookups return."""

    def set_default(self, default: np.ndarray) -> None:
        """Keep ``default``, (dim,) of the row dtype: the row misses get."""

    # the clock
    def tick(self) -> None:
        """Advance the batch clock by one."""

    def set_clock(self, clock: int) -> None:
        """Set the batch clock to ``clock`` (``Cache.load``)."""

    # the stream-ordered lookup
    def reserve(self, max_batch: int, deferred: bool = False) -> None:
        """Make the stream-ordered lookup's scratch for ``max_batch`` keys (with ``deferred``, rows too)."""

    def lookup_ordered(self, keys: Any, out: Any, source: Any, admit_mode: int, hit_rate: float,
                       refuse_below_min: bool, sketch_threshold: int, index_rows: int = 0,
                       defer_at: float = -1.0) -> None:
        """The whole lookup of ``keys`` into ``out``, enqueued, waiting for nothing (see GPUBackend)."""

    def flush_pending(self) -> None:
        """Place what a deferred stream-ordered batch left (enqueued; nothing if none)."""

    def absorb_ordered(self) -> tuple[dict, dict | None]:
        """The stream-ordered lookups' counters since last asked, and the last batch's: ``(totals, last)``."""

    # the host lookup
    def plan_lookup(self, keys: Any, out: Any, source: Any = None, index_rows: int = 0) -> LookupPlan:
        """Probe ``keys`` (n,), gather the hits' rows into ``out`` (n, dim) (and, from a device ``source``,
        the misses'): the host lookup's :class:`LookupPlan`, to commit or roll back.  ``index_rows`` > 0:
        ``keys`` are row numbers of a table of that many rows, converted by ``lookup(index_rows=)``'s
        rules (Gather's) before they are probed: ``plan.keys`` and ``plan.invalid``."""

    def plan_or_hits(self, keys: Any, out: Any) -> LookupPlan | None:
        """``plan_lookup(keys, out)`` for ``Cache.lookup``'s plain call, except that a backend may finish a
        batch whose every key hit at once (nothing can fail after such a probe): then None, with the clock
        ticked and the hit rule applied, as the plan's commit would have."""

    def found_in_source(self, slots: Any, at: Any) -> Any:
        """Whether the keys at indices ``at`` were found in a device source."""

    def count_source_misses(self, keys: Any, slots: Any, misses: int) -> tuple[int, int]:
        """``(distinct missed keys, how many of those no source holds)`` after ``plan_lookup``."""

    def scatter(self, out: Any, where: Any, rows: Any, inverse: Any) -> None:
        """``out[where[i]] = rows[inverse[i]]``: missed rows into a lookup's output."""

    def unique(self, keys: Any) -> tuple[Any, Any, Any, Any]:
        """``(ukeys, inverse, counts, last)`` of ``keys``: ascending distinct keys and where each occurs."""

    def sketch_add(self, keys: Any, counts: Any) -> Any:
        """Count ``keys`` ``counts`` times in the sketch, then read their estimates."""

    # placement and the other operations
    def insert_and_evict(self, keys: Any, counts: Any, rows: Any, admit: Any, refuse_below_min: bool,
                         compares_victim: int = 0, protect: Any = None, chance: Any = None) -> None:
        """Place distinct ``keys`` set by set in key order, evicting the lowest (score, way) (``compares_victim``,
        ``Admission.victim_mode``: 1 only for a key whose sketch estimate beats the victim's, 2 the sketch
        picks the victim, 3 with ``chance`` too, the (64,) int64 per-table return chances of
        ``embcache._table_chance``; ``protect``: None or ``(keys, ranks)``, ascending distinct keys (p,)
        that are not victims while their set has another candidate, and where each first occurs in the
        window (p,), ``Cache.lookup(upcoming=)``)."""

    def tally(self) -> np.ndarray:
        """How many keys of the last ``insert_and_evict`` got each outcome code, (5,) int64."""

    def find(self, keys: Any) -> Any:
        """The slot of every key, or -1."""

    def find_and_gather(self, keys: Any, out: Any, fill_misses: bool = False) -> tuple[Any, int, int]:
        """Slots of ``keys`` and their cached rows in ``out``: ``(slots, misses, reserved)``."""

    def query(self, keys: Any, out: Any) -> tuple[Any, int]:
        """``Cache.query``'s work: cached rows of ``keys`` in ``out`` (the default row elsewhere) and
        ``(found, reserved)``, a bool array (n,) and how many keys were reserved; changes nothing."""

    def update(self, keys: Any, rows: Any) -> int:
        """Overwrite the cached rows of distinct ``keys``; how many were cached."""

    def erase(self, keys: Any) -> int:
        """Remove distinct ``keys``; how many were cached."""

    def clear(self) -> None:
        """Empty every slot (the clock and the sketch stay)."""

    def set_occupancy(self) -> np.ndarray:
        """Filled ways per set, (num_sets,) host int64."""

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys, scores, rows)`` copied to the host (save and export)."""

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All cached ``(keys, rows, scores)``, ascending by key, on the host."""

    def load(self, keys: np.ndarray, scores: np.ndarray, values: np.ndarray) -> None:
        """Replace the arrays from host arrays (``Cache.load``)."""

    def release(self) -> None:
        """Drop the arrays (``Cache.close``)."""
