"""``Cache``: a set-associative embedding cache in front of backing tiers.

Semantics (every backend keeps them exactly; DESIGN.md section 3)
------------------------------------------------------------------
* **Layout.** ``capacity`` is rounded up to ``num_sets * ways``; key ``k`` lives in
  set ``mix64(k) % num_sets`` (splitmix64 finalizer).  Each slot holds a key, an
  int64 score and a row.
* **Eviction.** A full set evicts its lowest ``(score, way)``.  The policy only
  says what score a new key gets and how a hit changes a score.
* **Clock.** Starts at 0; ``lookup``, ``insert`` and ``preload`` advance it by one
  before they change anything.  ``query``, ``update``, ``erase`` and ``clear`` do not.
* **Lookup** is one batch-synchronous step: hits and misses are counted per key
  occurrence against the cache as it was at the start of the batch; every hit's
  score is updated as if all hits happened at once (a key occurring m times gets
  ``count = m``); the distinct missed keys are fetched from the tier in one call;
  keys no tier holds get the ``default`` row and are never admitted; the admitted
  keys are inserted set by set in ascending key order, each taking the lowest
  empty way, else evicting the lowest ``(score, way)``.  The output rows are the
  tier's values for every key, hit or miss.
* **Writes.** ``insert`` writes through to the tier and then places the keys
  (bypassing admission; a key already cached gets the new row and a hit);
  ``update`` writes through and refreshes rows already cached, inserting nothing;
  ``erase`` removes keys from the cache only.  A repeated key in a write batch
  takes its last row.  So a lookup never returns a row that differs from the tier's.
* **Threads.** Every public call holds the cache's lock, so calls are atomic.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import struct
import threading
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from . import policies as _policies
from .policies import _registry
from ._checks import _on_device, check_keys, check_out, check_rows, gather_rules, raise_reserved
from ._dtypes import ROW_DTYPES, row_dtype
from ._table_chance import TABLES, chances, count_reached, new_reached
from .errors import (CaptureError, ClosedError, ConfigError, DataFormatError, EmbCacheError, MissingDependencyError,
                     PreloadOverflowError, StaticInsertError, TierError)
from .kernels._shared import ADMIT, EVICTED, INSERTED, REFUSED
from .kernels.cpu import CPUBackend
from .layout import EMPTY_KEY, LOCKED_KEY, num_sets_for, set_state_width, sets_of
from .stats import Stats, _from_saved
from .tiers import HostStore, Tier

if TYPE_CHECKING:  # the annotations only
    from .policies import Admission, Policy

__all__ = ["Cache"]

_FORMAT = "embcache-cache-v1"


def _make_backend(name: str, **layout) -> Any:
    from .kernels import gpu

    if name == "cpu" or (name == "auto" and not gpu.gpu_available()):
        return CPUBackend(**layout)
    if name in ("auto", "gpu"):
        if not gpu.gpu_available():
            gpu.require_cupy()
            raise MissingDependencyError("backend='gpu': CuPy is installed but sees no CUDA device")
        return gpu.GPUBackend(**layout)
    raise ConfigError(f"unknown backend {name!r}; choose 'auto', 'cpu' or 'gpu'")


class Cache:
    """A set-associative embedding cache with a pluggable eviction and admission policy.

    Parameters
    ----------
    capacity : int
        Rows the cache holds, rounded up to whole sets (``Cache.capacity`` says the result).
    dim : int
        Values per row.
    policy : str or Policy
        Eviction policy: ``"lru"``, ``"lfu"``, ``"fifo"``, ``"static"`` or a
        :class:`embcache.policies.Policy` object.
    admission : str or Admission
        ``"always"``, ``"min_frequency"``, ``"refuse_below_min"``,
        ``"hit_rate_threshold"`` or an :class:`embcache.policies.Admission` object.
    dtype : str
        Row dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    backend : str
        ``"cpu"`` (Numba), ``"gpu"`` or ``"auto"``.
    tier : Tier, optional
        Where missed rows come from and writes go to; by default a new
        :class:`embcache.tiers.HostStore` that the cache owns and closes.
    default : float or array of shape (dim,)
        Row returned for keys that no tier holds.
    ways : int
        Slots per set, a power of two.
    reject_nan : bool
        Refuse rows containing NaN in ``insert`` and ``update``.
    on_tier_error : str
        What a lookup does when the tier fails to return missed rows: ``"raise"``
        (the lookup raises the ``TierError`` and changes nothing) or
        ``"default"`` (the missed keys get the default row, are not admitted,
        and are counted in ``stats.tier_failures``).  Writes always raise.
    max_batch : int, optional
        Keys a stream-ordered lookup takes without growing its scratch (GPU backend);
        needed before a lookup of more keys than any before it is captured in a CUDA graph.
    graphs : bool
        GPU backend, stream-ordered lookups (a tier the GPU reads in place, an
        admission decided on the device): replay each lookup from a CUDA graph of
        itself.  A graph is captured on the second lookup of the same length, key
        dtype and ``out`` buffer (pass the same ``out`` to benefit); after that the
        host enqueues one key copy and one graph launch instead of the lookup's
        kernels.  Results, contents and stats are the same.  The first 16 shapes
        captured keep their graphs (until the scratch grows or the tier's source
        changes); lookups of other shapes then run eagerly.  No effect on the CPU
        backend or on the host path.
    """

    def __init__(self, capacity: int, dim: int, policy: str | type | Policy = "lru",
                 admission: str | type | Admission = "always", dtype: str | np.dtype | type = "float32",
                 backend: str = "auto", tier: Tier | None = None, default: Any = 0.0, ways: int = 32,
                 reject_nan: bool = False, on_tier_error: str = "raise", max_batch: int | None = None,
                 graphs: bool = False):
        for name, value in (("capacity", capacity), ("dim", dim), ("ways", ways)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(graphs, (bool, np.bool_)):  # before the backend takes any memory
            raise ConfigError(f"graphs must be True or False, got {graphs!r}")
        if ways & (ways - 1):
            raise ConfigError(f"ways must be a power of two (1, 2, 4, ..., 32), got {ways}")
        self._policy = _policies.get_policy(policy)
        self._admission = _policies.get_admission(admission)
        self._dtype = row_dtype(dtype)
        self._dim = int(dim)
        self._ways = int(ways)
        self._num_sets = num_sets_for(int(capacity), self._ways)
        self._admission = self._admission.sized(self._num_sets * self._ways)  # a sketch sized to the cache
        # the policies' traits the lookup path reads, read once (they are fixed; read at each call they
        # cost a tenth of a microsecond apiece of a one-key miss, issue 22's CPU bar)
        self._inserts = bool(self._policy.inserts_on_lookup)
        self._refuse_below_min = bool(self._admission.refuse_below_min)
        self._victim_mode = self._admission.victim_mode()
        self._compares_victim = bool(self._admission.compares_victim)
        default = np.asarray(default, dtype=np.float64)
        if default.shape not in ((), (1,), (self._dim,)):
            raise ConfigError(f"default must be a number or an array of shape ({self._dim},), got shape {default.shape}")
        self._default = np.ascontiguousarray(np.broadcast_to(default, (self._dim,)), dtype=self._dtype)
        if tier is None:
            tier, self._owns_tier = HostStore(self._dim, self._dtype.name), True
        else:
            self._owns_tier = False
            if tier.dim != self._dim or tier.dtype != self._dtype:
                raise ConfigError(
                    f"the tier holds dim={tier.dim} {tier.dtype} rows but the cache was asked for "
                    f"dim={self._dim} {self._dtype}; make them match"
                )
        self._tier = tier
        self._reject_nan = bool(reject_nan)
        if on_tier_error not in ("raise", "default"):
            raise ConfigError(f"on_tier_error must be 'raise' or 'default', got {on_tier_error!r}")
        self._on_tier_error = on_tier_error
        sketch = self._admission.sketch
        self._backend = _make_backend(
            backend, num_sets=self._num_sets, ways=self._ways, dim=self._dim, dtype=self._dtype,
            policy=self._policy, sketch_shape=None if sketch is None else (sketch[2], sketch[1]),
            sketch_seed=0 if sketch is None else sketch[3],
        )
        self._backend.set_default(self._default)
        self._backend.replay_graphs = bool(graphs)
        # TinyLFUTables: per table, the keys whose estimate reached 1 and 2 (embcache._table_chance)
        self._reached = new_reached(self._backend.xp) if self._admission.victim_mode() == 3 else None
        # a GPU cache reads a tier's rows in place (no host round trip, no staging copy) when the tier
        # offers a device source (tier.device_source(), asked under its lock at each use: a store changes);
        # a tier that declares it never offers one is never locked around a lookup
        self._reads_sources = self._backend.reads_device_sources and bool(self._tier.offers_device_source)
        # a lookup with a source the GPU reads and an admission the device can decide is enqueued whole
        # (stream-ordered: Backend.lookup_ordered); else the host path, which waits for the device
        rule = self._admission.device_rule() if self._policy.inserts_on_lookup else ("never", 0.0)
        self._ordered_rule = None if rule is None or not (self._reads_sources and self._tier.fences_device_reads) else (
            ADMIT[f"ADMIT_{rule[0].upper()}"], float(rule[1]), bool(self._admission.refuse_below_min),
            0 if sketch is None else int(sketch[0]))
        # HitRateDeferred: a batch at or above this hit rate is placed when the next operation begins
        self._defer_at = self._admission.defer_at_hit_rate
        self._pending = None  # such a batch's placement (host path), until then
        self._device_pending = False  # a stream-ordered lookup may have left one on the device
        self._inflight = None  # (stream, event) of the last stream-ordered lookup, until a call follows it
        self._unabsorbed = False  # device counters of stream-ordered lookups not yet in _stats
        self._captured = False  # a lookup was captured: graph replays may run at any time
        self._last_ordered = False  # the last operation was a stream-ordered lookup (stats.last is its)
        if max_batch is not None:
            if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch <= 0:
                raise ConfigError(f"max_batch must be a positive integer, got {max_batch!r}")
            if self._ordered_rule is not None:
                self._backend.reserve(int(max_batch), deferred=self._defer_at is not None)
                with self._tier.lock:  # the source's device copies made now, outside any capture
                    self._source()
        self._size = 0
        self._stats = Stats()
        self._lock = threading.RLock()
        self._closed = False
        # the arrays were made and filled on the current stream, which a first call on another stream
        # would not wait for (_follow orders only after stream-ordered lookups): done before anyone calls
        self._backend.synchronize()

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int:
        """Slots: ``num_sets * ways`` (the requested capacity rounded up)."""
        return self._num_sets * self._ways

    @property
    def num_sets(self) -> int:
        """Number of sets: ``ceil(capacity / ways)`` of the requested capacity."""
        return self._num_sets

    @property
    def ways(self) -> int:
        """Slots per set, a power of two."""
        return self._ways

    @property
    def dim(self) -> int:
        """Values per row."""
        return self._dim

    @property
    def dtype(self) -> np.dtype:
        """Row dtype (float32, float16 or bfloat16)."""
        return self._dtype

    @property
    def clock(self) -> int:
        """Batch clock: how many ``lookup``, ``insert`` and ``preload`` calls have run (graph replays included)."""
        with self._lock:
            self._absorb()
            return self._backend.clock

    @property
    def reject_nan(self) -> bool:
        """Whether ``insert`` and ``update`` refuse rows containing NaN."""
        return self._reject_nan

    @property
    def policy(self) -> Policy:
        """The eviction policy object (a name given to the constructor, resolved)."""
        return self._policy

    @property
    def admission(self) -> Admission:
        """The admission policy object (a name given to the constructor, resolved)."""
        return self._admission

    @property
    def tier(self) -> Tier:
        """The store behind the cache: missed rows come from it, writes go to it."""
        return self._tier

    @property
    def backend(self) -> str:
        """``"cpu"`` or ``"gpu"``: the backend in use."""
        return self._backend.name

    @property
    def xp(self) -> Any:
        """The array module of the backend: ``numpy`` on the CPU, ``cupy`` on the GPU.

        ``lookup`` and ``query`` return arrays of it, and ``lookup(out=...)`` takes one.
        """
        return self._backend.xp

    @property
    def device(self) -> int | None:
        """The CUDA device id the cache's arrays live on (GPU backend), or None (CPU backend).

        Call the cache with that device current, or with arrays on it.
        """
        return None if self._backend.xp is np else int(self._backend.device_id)

    @property
    def stats(self) -> Stats:
        """Totals since creation; ``stats.last`` is the most recent operation's counts.

        Lookups replayed from a captured CUDA graph are counted here in total (as
        hits and misses), not in ``last``.
        """
        with self._lock:
            self._absorb()
            copy = Stats(**self._stats.as_dict())
            copy.last = self._stats.last
            return copy

    def __len__(self) -> int:
        with self._lock:
            self._absorb()
            return self._size

    def __repr__(self) -> str:
        # the length after every queued lookup (a wait for the device), except where waiting is not allowed
        if self._closed:
            size = "closed"
        elif self._backend.capturing():
            size = f"{self._size} before the lookups queued"
        else:
            size = len(self)
        return (f"Cache(capacity={self.capacity}, dim={self._dim}, policy={self._policy!r}, "
                f"admission={self._admission!r}, dtype={self._dtype.name!r}, backend={self.backend!r}, "
                f"ways={self._ways}, len={size})")

    # ------------------------------------------------------------------ helpers
    def _check_open(self, op: str, absorb: bool = True):
        if self._closed:
            raise ClosedError(f"Cache.{op}: the cache is closed; make a new one or Cache.load a saved one")
        if self._backend.capturing() and op != "lookup":
            raise CaptureError(f"Cache.{op} cannot run while its stream captures a CUDA graph: only lookup "
                               "can be captured; end the capture first")
        self._follow()
        if op != "query":  # the one operation that sees the cache without a deferred batch's keys
            self._flush(device=op != "lookup")  # a stream-ordered lookup places the device's itself
        if absorb:
            self._absorb()

    def _flush(self, device: bool = True) -> None:
        """Place what a HitRateDeferred lookup left, before this operation does anything; its counts go
        to the totals (no operation's ``stats.last``)."""
        if self._pending is not None:
            if self._backend.capturing():
                raise CaptureError("a deferred batch (HitRateDeferred) waits to be placed, which needs the host: "
                                   "run one operation outside the capture first")
            (keys, counts, rows, admit, protect), self._pending = self._pending, None
            extra, last = Stats(), self._stats.last
            self._place(keys, counts, rows, admit, False, extra, protect=protect)
            self._stats.add(extra)
            self._stats.last, self._stats.occupancy = last, self._size / self.capacity
        if self._device_pending and device:
            self._backend.flush_pending()  # enqueued; a no-op on the device if that batch placed its own
            self._device_pending = self._captured  # replays may leave one at any time
            self._unabsorbed = True  # what it placed is in the device counters, not yet in len or stats

    def _follow(self) -> None:
        """Order this call's stream after the last stream-ordered lookup's, if it ran on another (no host wait)."""
        if self._inflight is not None:
            stream, event = self._inflight
            # a capture cannot wait for work enqueued outside it: a graph's replays are ordered by whoever
            # launches them (capture after the lookups it follows have run, as CUDA graph users do)
            if self._backend.current_stream() != stream and not self._backend.capturing():
                self._backend.wait_event(event)
                self._inflight = None

    def _absorb(self) -> None:
        """Add the device counters of stream-ordered lookups (graph replays included) to the totals."""
        if not self._unabsorbed or self._closed:
            return
        b = self._backend
        self._follow()
        if self._captured:
            b.synchronize()  # replays may have run on any stream
        totals, last = b.absorb_ordered()
        self._unabsorbed = self._captured
        size_before = self._size
        self._size += int(totals["outcomes"][INSERTED])
        occupancy = self._size / self.capacity
        previous = self._stats.last
        self._stats.add(_ordered_stats(totals, occupancy))
        # the last operation's counts: a stream-ordered lookup's (the device's last batch, its occupancy
        # when it ended: a deferred insertion may have run since) or another's
        self._stats.last = previous if last is None or not self._last_ordered else _ordered_stats(
            last, (size_before + last["inserted_by_then"]) / self.capacity)

    def _finish(self, batch: Stats) -> None:
        self._last_ordered = False
        batch.occupancy = self._size / (self._num_sets * self._ways)  # self.capacity, without its call
        self._stats.add(batch)

    def _place(self, keys, counts, rows, admit, refuse_below_min, batch: Stats, compares_victim: int = 0,
               protect=None) -> None:
        chance = chances(self._backend.xp, self._reached) if compares_victim == 3 else None
        self._backend.insert_and_evict(keys, counts, rows, admit, refuse_below_min, compares_victim, protect,
                                       chance)
        n = self._backend.tally().tolist()  # plain ints in one call, not an int() of each entry
        batch.insertions += n[INSERTED] + n[EVICTED]
        batch.evictions += n[EVICTED]
        batch.refusals += n[REFUSED]
        self._size += n[INSERTED]

    def _fetch(self, keys):
        """Rows of unique ``keys`` from the tier, default where absent: ``(rows, present, absent)``, the
        arrays where the backend works; ``absent`` counts the keys no tier holds (an int read on the
        host, or None when only the device knows it).

        A tier that offers a device source (a pinned HostStore, a SharedHostStore)
        is gathered from in place, straight into device memory; any other tier is
        read on the host and its rows copied over once.
        """
        b = self._backend
        if self._reads_sources:
            with self._tier.lock:
                if self._source() is not None:
                    return (*self._tier.gather_to_device(keys, b.default), None)
        rows, present = self._tier.get_many(b.to_host(keys))
        if present.shape[0] == 1:  # one key (a one-key miss): its flag, not a count over the array
            absent = 0 if present[0] else 1
        else:
            absent = present.shape[0] - int(np.count_nonzero(present))
        if absent:
            rows[~present] = self._default
        return b.to_device(rows), b.to_device(present), absent

    def _keys(self, keys, reserved: bool = True):
        return check_keys(keys, xp=self._backend.xp, reserved=reserved)

    def _protected(self, upcoming, index_rows: int = 0, also=None):
        """Lookahead's window: ``upcoming`` checked as keys are (the argument named in errors; the index
        rules of ``lookup(index_rows=)`` applied), after the checked keys ``also`` (a prefetch's own), as
        ``(keys, ranks)`` where the backend works: the window's distinct keys ascending and where each
        first occurs in it (``Backend.insert_and_evict``'s ``protect``); None when the window is empty or
        nothing can be evicted (a policy that never inserts on lookup).  Refused for a victim rule that
        does not take protected ways (S3-FIFO, the frequency victims of TinyLFUEvict and TinyLFUTables),
        rather than ignored."""
        b, xp = self._backend, self._backend.xp
        window = None if upcoming is None else self._index_rules(
            check_keys(upcoming, "upcoming", xp=xp, reserved=not index_rows), index_rows)[0]
        if also is not None:
            window = also if window is None else xp.concatenate([also, window])
        if window is None or not window.shape[0] or not self._policy.inserts_on_lookup:
            return None
        if self._policy.victim == "s3fifo":
            raise ConfigError(
                f"lookahead (lookup(upcoming=) and prefetch) is not supported with the policy {self._policy!r}: "
                "S3-FIFO's queues and ghost choose its victims, and sparing protected ways is not defined for "
                "them; use another policy (clock, sieve, lru, ...) or leave upcoming out")
        if self._admission.victim_mode() >= 2:
            raise ConfigError(
                f"lookahead (lookup(upcoming=) and prefetch) is not supported with the admission {self._admission!r}: "
                "its sketch picks the victim among every way of a set, and sparing protected ways is not defined "
                "for it; use tinylfu (which compares with the policy's victim) or leave upcoming out")
        # the last occurrence in the reversed window is the first in the window
        keys, _, _, last = b.unique(xp.ascontiguousarray(window[::-1]))
        return keys, (window.shape[0] - 1) - last

    def _rows(self, rows, n: int):
        return check_rows(rows, n, self._dim, self._dtype, self._reject_nan, xp=self._backend.xp)

    # ------------------------------------------------------------------ operations
    def lookup(self, keys: Any, out: Any = None, stream: Any = None, index_rows: int | None = None,
               upcoming: Any = None) -> Any:
        """Rows of ``keys``, fetching misses from the tier and admitting them.

        Parameters
        ----------
        keys : (n,) int64 array (NumPy or CuPy)
            Any length, duplicates allowed, no reserved key.
        out : (n, dim) array, optional
            Where the rows go (TensorRT's output, say): an array of :attr:`xp` on
            :attr:`device`, of the dtype lookup returns (below), C-contiguous,
            writeable, at an address a whole allocation has.  Every row is written
            straight into it, with no temporary in between; it is returned.  A
            buffer that does not fit is a ``RowShapeError`` (shape, device, layout)
            or ``RowDtypeError`` (array kind, dtype) before anything is done.  If
            the lookup raises after its checks (a ``TierError``), ``out``'s
            contents are unspecified; the cache is unchanged, as without ``out``.
        stream : cupy.cuda.Stream or int, optional
            GPU backend: the CUDA stream to run on (a raw ``cudaStream_t`` is
            accepted); default CuPy's current stream.

            **Stream-ordered.** With a tier the GPU reads in place (a pinned
            HostStore, a SharedHostStore) and an admission policy the device can
            decide (every built-in one), the whole lookup (probe, missed rows from
            the tier, admission, insertion and eviction, clock and counters) is
            enqueued on ``stream`` and the call returns without waiting: ``out``
            is complete once the stream reaches that point.  It allocates and
            synchronizes nothing (beyond growing its scratch on the first
            lookups, see ``max_batch``), so it may be captured in a CUDA graph,
            misses included, and replayed; replays tick the clock and count in
            ``stats`` on the device.  A reserved key in device ``keys`` cannot be
            refused without waiting: it gets the default row, is never admitted,
            and is counted in ``stats.invalid`` (host keys are refused with
            ``ReservedKeyError`` as on the CPU).  Later calls on another stream,
            and the tier's writes, wait for the enqueued kernels; a captured
            graph reads the tier's memory at the addresses of its capture, so
            give the store its final size (``initial_rows``) before capturing.

            Otherwise (RocksDB, Redis, a chain of tiers, an admission decided in
            Python) the lookup waits for the device and reads missed rows on the
            host, and under capture it raises ``CaptureError``.

        index_rows : int, optional
            The keys are row numbers of a table of ``index_rows`` rows, with ONNX
            Gather's index rules (a TensorRT/ONNX embedding lookup's): a key
            ``k < 0`` means ``k + index_rows``, and one still outside
            ``[0, index_rows)`` is looked up as the key ``index_rows`` (which a
            table of row numbers does not hold, so it gets the default row and
            counts as absent) and is counted in ``stats.invalid``.  int32 keys are
            taken as they are.  On the stream-ordered path one kernel applies the
            rules, so the plugin's enqueue stays one call with no allocation.
        upcoming : (u,) integer array, optional
            **Lookahead**: the keys the next batches will look up, in the order
            they will be (any length, duplicates allowed, checked as ``keys``
            are: an integer dtype, 1-D, no reserved key; with ``index_rows``, its
            rules apply to them too).  A cached key that is in ``upcoming`` is
            *protected* while this lookup places its admitted misses (a key this
            lookup placed included).  A missed key that meets a full set takes
            the policy's usual victim among the unprotected ways: the lowest
            ``(score, way)``, or for a hand policy (CLOCK, SIEVE) the hand's walk
            over the unprotected ways only (it neither stops at nor clears the
            protected ones; whether the hand becomes none counts every slot);
            ``refuse_below_min`` and TinyLFU compare with that victim.  When every
            way of the set is protected, the cache is Belady within the window:
            the way whose key occurs first the farthest into ``upcoming`` is
            evicted, and only by a missed key that occurs in ``upcoming`` before
            it (the hand, if any, stays); any other missed key is not inserted:
            it is served from the tier and counted in ``refusals``.  Hits, their
            scores and admission are unchanged: only the choice of victims is.
            Deterministic, identical on both backends.  ``None`` or an empty
            array: no lookahead.  Not for S3-FIFO, ``tinylfu_evict`` nor ``tinylfu_tables`` (``ConfigError``: they
            pick victims by rules of their own).  On the GPU such a lookup takes
            the host path (it waits for the device, as TinyLFU's do), so it is
            refused under CUDA graph capture (``CaptureError``).  A batch that
            ``HitRateDeferred`` places later spares the window given with it.
            :meth:`prefetch` brings the window's rows in ahead of time.

        Returns
        -------
        (n, dim) rows: the tier's row of every key (``default`` where absent); ``out``
        if given.  A NumPy array on the CPU backend; a CuPy array on the GPU backend
        (bfloat16 rows as their uint16 bits, as CuPy has no bfloat16).
        """
        if out is None and stream is None and index_rows is None and upcoming is None and not self._reads_sources:
            # the plain call on the host path: what the path below does when there is nothing to flush,
            # follow or absorb (a small batch's cost is mostly Python: issue 22's CPU bars)
            with self._lock:
                b = self._backend
                if not (self._closed or self._pending is not None or self._inflight is not None or
                        self._unabsorbed or self._device_pending or b.capturing()):
                    if type(keys) is np.ndarray and keys.dtype == _INT64:
                        # int64 host keys: their reserved-key check is the probe's (plan.reserved), a pass
                        # fewer; already as the host backend takes them, they are not checked at all
                        if not (keys.ndim == 1 and keys.flags.c_contiguous and b.xp is np):
                            keys = check_keys(keys, xp=b.xp, reserved=False)
                    else:
                        keys = check_keys(keys, xp=b.xp, reserved=b.checks_reserved_keys)
                    n = keys.shape[0]
                    out = b.new_rows(n)
                    if self._compares_victim:  # TinyLFU counts the hits in its sketch too: _lookup's way
                        return self._lookup(keys, 0, n, out, None)
                    plan = b.plan_or_hits(keys, out)
                    if plan is not None:
                        return self._lookup(keys, 0, n, out, None, plan=plan)
                    # every key hit and the backend has committed the batch: _finish's counts, the hits alone
                    self._last_ordered = False
                    occupancy = self._size / (self._num_sets * self._ways)
                    totals = self._stats
                    totals.hits += n
                    totals.occupancy = occupancy
                    totals.last = Stats(n, 0, occupancy=occupancy)
                    return out
        with self._lock, self._backend.on_stream(stream):
            self._check_open("lookup", absorb=False)
            b = self._backend
            if upcoming is not None and _window_given(upcoming) and b.capturing():  # before its checks, which wait
                raise CaptureError("a lookup with upcoming= (lookahead) cannot be captured in a CUDA graph: it takes "
                                   "the host path; capture lookups without upcoming, or run this one uncaptured")
            rows_of = 0 if index_rows is None else _index_rows(index_rows)
            protect = self._protected(upcoming, rows_of)
            ordered = self._ordered_rule is not None and protect is None  # lookahead: the host path
            if ordered and _on_device(keys) and getattr(keys, "dtype", None) in _DEVICE_KEY_DTYPES and \
                    keys.ndim == 1 and keys.flags.c_contiguous:
                pass  # taken as they are: the lookup's first kernel applies the index rules (and casts int32)
            else:
                # device keys of a stream-ordered lookup are checked by its kernels (a reserved key is counted
                # invalid: refusing it would wait for the device); the host path's probe counts them and raises
                keys = self._keys(keys, reserved=not rows_of and (
                    b.checks_reserved_keys or (ordered and not _on_device(keys))))
            n = keys.shape[0]
            if out is None:
                out = b.new_rows(n)
            else:  # before any work: a buffer that does not fit changes nothing
                out = check_out(out, n, self._dim, self._dtype, self.xp, self.device)
            capturing = b.capturing()
            if capturing and self._ordered_rule is None and self._reads_sources and \
                    self._tier.fences_device_reads:
                # refused before the tier is asked for its source (which a first use would copy to the device)
                raise CaptureError(
                    f"this lookup cannot be captured in a CUDA graph: its admission policy {self._admission!r} "
                    "is decided on the host (it has no device rule), so its misses need the host; capture a "
                    "cache whose admission has one (always, min_frequency, refuse_below_min, hit_rate_threshold, "
                    "hit_rate_deferred), or run this lookup uncaptured")
            if not self._reads_sources and not capturing:  # nothing read in place: no tier lock to hold
                self._flush()
                self._absorb()
                return self._lookup(keys, rows_of, n, out, None, protect)
            # a tier with a device source: the probe copies missed rows from it in the same pass; its lock
            # is held while the kernels are enqueued (or, on the host path, until they are done), and the
            # tier's writes wait for the kernels of a stream-ordered lookup (Tier._fence)
            with contextlib.ExitStack() as held:
                source = None
                if self._reads_sources:
                    held.enter_context(self._tier.lock)
                    try:
                        source = self._source()
                    except TierError:
                        if self._on_tier_error == "raise" or capturing:
                            raise
                        source = None  # read on the host instead, where a failure gives default rows
                    if source is None:
                        held.close()  # nothing read in place: the tier's own calls take its lock
                if ordered and source is not None:
                    self._lookup_ordered(keys, n, out, source, capturing, rows_of)
                    return out
                if capturing:
                    raise CaptureError(
                        f"this lookup cannot be captured in a CUDA graph: its misses need the host ({self._tier!r} "
                        "offers no source the GPU reads in place" + ("" if self._reads_sources else
                        ", or the cache runs on the CPU") + (", and the admission policy is decided in Python"
                        if self._ordered_rule is None and self._reads_sources else "") +
                        "); serve from a pinned HostStore or a SharedHostStore, or run this lookup uncaptured")
                self._flush()
                self._absorb()
                return self._lookup(keys, rows_of, n, out, source, protect)

    def _index_rules(self, keys, index_rows: int):
        """``(keys, invalid)``: ``lookup(index_rows=)``'s rules applied to checked keys (lookahead's window;
        a lookup's own keys are converted by its probe, ``plan_lookup(index_rows=)``)."""
        if not index_rows:
            return keys, 0
        return gather_rules(self._backend.xp, keys, index_rows)

    def _lookup_ordered(self, keys, n: int, out, source, capturing: bool, index_rows: int) -> None:
        """Enqueue the whole lookup on the current stream (``Backend.lookup_ordered``); wait for nothing."""
        b = self._backend
        if b.max_batch < max(n, 1):
            if self._captured and self._defer_at is not None:
                # a deferred batch of a replay waits in the scratch its graph reads: one scratch only
                raise CaptureError(f"a lookup of {n} keys needs scratch for {n}, but a CUDA graph captured from this "
                                   f"HitRateDeferred cache uses the scratch made for {b.max_batch}; make the cache "
                                   f"with max_batch={n} (or more) before capturing")
            if capturing:
                raise CaptureError(f"a captured lookup of {n} keys needs scratch for {n}, and the cache has it for "
                                   f"{b.max_batch}: make the cache with max_batch={n} (or look up {n} keys once "
                                   "before capturing)")
            b.reserve(max(n, 2 * b.max_batch), deferred=self._defer_at is not None)
        mode, hit_rate, refuse_below_min, threshold = self._ordered_rule
        b.lookup_ordered(keys, out, source, mode, hit_rate, refuse_below_min, threshold, index_rows,
                         -1.0 if self._defer_at is None else self._defer_at)  # it places a pending batch first
        self._device_pending = self._defer_at is not None
        self._unabsorbed = True
        self._last_ordered = True
        if capturing:
            self._captured = True
            return
        # later calls on another stream, and the tier's writes, wait for these kernels (on the device / host)
        self._tier._fence(self._note_inflight())

    def _note_inflight(self):
        """Record that work is queued on the current stream and not waited for: a later call on another
        stream waits for it on the device (``_follow``).  Returns the event (None on the CPU)."""
        b = self._backend
        event = b.record_event()
        if event is not None:
            self._inflight = (b.current_stream(), event)
        return event

    def _source(self):
        """The tier's :class:`~embcache._source.DeviceSource` if this cache reads it in place now, else
        None; call with the tier's ``lock`` held, for as long as the kernels read the source."""
        if not self._reads_sources or self._tier.closed:
            return None  # a closed tier: its own calls raise ClosedError, as on the CPU
        return self._tier.device_source()

    @property
    def _zero_copy(self) -> bool:
        """Whether lookups read missed rows from the tier in place (GPU backend, tier with a device source)."""
        if not self._reads_sources:
            return False
        with self._tier.lock:
            return self._source() is not None

    def _lookup(self, keys, index_rows: int, n: int, out, source, protect=None, plan=None):
        """The uncaptured lookup of ``keys`` into ``out``, missed rows from ``source`` when it is not None;
        ``index_rows``: ``lookup(index_rows=)``'s (0: none), whose rules the probe applies; ``protect``:
        the keys lookahead spares (``_protected``), or None; ``plan``: the probe's plan if made already
        (``Backend.plan_or_hits``)."""
        b = self._backend
        if plan is None:  # the hits probed and gathered, nothing final yet
            plan = b.plan_lookup(keys, out, source, index_rows)
        keys, invalid = plan.keys, plan.invalid  # Gather's rules applied, with index_rows
        try:
            if plan.reserved:
                raise_reserved(keys)
            slots, missed = plan.slots, plan.missed
            misses = missed.shape[0]
            batch = Stats(n - misses, misses)  # positional: a third less than by keyword
            if invalid:
                batch.invalid = invalid
            placement = None
            if misses:
                admitting = self._inserts and self._admission.admit_batch(batch.hits, n)
                if source is not None and not admitting:
                    # every missed row is in out already and nothing is placed: the counts alone, no sort
                    unique, absent = b.count_source_misses(keys, slots, misses)
                    batch.unique_misses, batch.absent, batch.refusals = unique, absent, unique - absent
                else:
                    placement = self._misses(keys, missed, slots, out, source, admitting, batch)
        except BaseException:
            plan.rollback()  # the cache as before the plan: whatever its probe changed is put back
            raise
        # everything that can fail has run; from here on the cache changes
        plan.commit()
        if self._compares_victim:
            self._count_hits(keys, plan.slots)
        if placement is not None:  # with none admitted every outcome is "not admitted": nothing to place
            if self._defer_at is not None and batch.hits >= self._defer_at * n:
                self._pending = (*placement, protect)  # HitRateDeferred: placed when the next operation begins
            else:
                self._place(*placement, self._refuse_below_min, batch, self._victim_mode, protect)
        self._finish(batch)
        return out

    def _count_hits(self, keys, slots) -> None:
        """A ``compares_victim`` admission's sketch (TinyLFU), after the batch's misses were counted: its hit
        keys counted too, then every counter halved once for each multiple of ``sketch_sample * capacity``
        that the batch's key occurrences take the total of looked-up occurrences past (batch size does not matter)."""
        b = self._backend
        hit = keys[slots >= 0]
        if hit.shape[0]:
            ukeys, _, counts, _ = b.unique(hit)
            estimates = b.sketch_add(ukeys, counts)
            if self._reached is not None:
                count_reached(b.xp, self._reached, ukeys, estimates, counts)
        period = self._admission.sketch_sample * self.capacity
        before = self._stats.lookups  # this batch's are added when it ends
        halvings = (before + keys.shape[0]) // period - before // period if period else 0
        if halvings:
            b.xp.right_shift(b.sketch, min(halvings, 63), out=b.sketch)

    def _misses(self, keys, missed, slots, out, source, admitting: bool, batch: Stats):
        """A lookup's distinct missed keys: their rows into ``out`` (unless the probe read them from
        ``source``), the batch's miss counts, and what to place: ``(keys, counts, rows, admit)``, or
        None when nothing is admitted.  Raises TierError (``on_tier_error="raise"``) before any change.
        """
        b, xp = self._backend, self._backend.xp
        ukeys, inverse, counts, last = b.unique(keys[missed])
        distinct = ukeys.shape[0]
        if source is not None:  # every missed row is in out already
            at = missed[last]  # where each distinct missed key occurs (its last occurrence)
            rows, present, absent = None, b.found_in_source(slots, at), None
        else:
            try:
                rows, present, absent = self._fetch(ukeys)
            except TierError:
                if self._on_tier_error == "raise":
                    raise
                rows = b.to_device(np.broadcast_to(self._default, (distinct, self._dim)))
                present, absent = xp.zeros(distinct, xp.bool_), distinct
                batch.tier_failures = distinct
            b.scatter(out, missed, rows, inverse)
        batch.unique_misses = distinct
        admit, admitted = None, 0  # no device work for a batch that admits nothing
        if not admitting:
            if absent is None:
                absent = distinct - int(present.sum())
        else:
            if rows is None:
                rows = out[at]
            if b.sketch is not None:
                estimates = b.sketch_add(ukeys, counts)
                if self._reached is not None:
                    count_reached(xp, self._reached, ukeys, estimates, counts)
                admit = present & (estimates >= self._admission.sketch[0])
                if absent is None:  # the two counts in one read from the device
                    absent, admitted = (int(x) for x in xp.stack([(~present).sum(), admit.sum()]).tolist())
                else:
                    admitted = int(admit.sum())
            else:
                admit = present  # the placement only reads it
                if absent is None:
                    absent = distinct - int(present.sum())
                admitted = distinct - absent
        batch.absent = absent
        batch.refusals = distinct - absent - admitted
        return (ukeys, counts, rows, admit) if admitted else None

    def prefetch(self, keys: Any, upcoming: Any = None, stream: Any = None) -> None:
        """Bring the rows of ``keys`` that the cache lacks into it now, ahead of the lookup that needs them.

        HPS-style prefetching: call it with the keys of the batch you will look up next.  The keys
        (n,) that the cache does not hold are read from the tier in one call and placed exactly as a
        lookup's misses are (the same admission, counted in its sketch; the same eviction, each new
        key's count its multiplicity in ``keys``), with lookahead over the window ``keys`` then
        ``upcoming`` (see ``lookup``'s ``upcoming``, checked the same way): its own keys occur first in
        that window, so a set full of protected keys gives up an upcoming key before one of them.  The
        clock advances by one, as for ``insert`` and ``preload``, so prefetched keys enter at a clock of
        their own.

        Nothing is looked up: cached keys are not touched (their scores stay), and the reads are counted
        in ``stats.prefetched`` (distinct keys asked of the tier), with their ``absent``,
        ``insertions``, ``evictions`` and ``refusals``, never in ``hits``, ``misses`` or
        ``unique_misses``, so the lookups' hit rate stays theirs (a prefetched key's later lookup is a
        hit).  A TinyLFU sketch does not count the prefetch's cached keys, and its halving schedule
        counts lookups only.  When no key may enter (a policy that never inserts on lookup, Static;
        an admission that refuses the batch, ``admit_batch`` judging the prefetch's already cached
        occurrences as its hits) nothing is read.  ``HitRateDeferred`` does not defer a prefetch.  A
        tier that fails raises ``TierError`` and changes nothing (``on_tier_error="default"``: nothing
        is placed and the keys count in ``tier_failures``).  Not while a CUDA graph is captured
        (``CaptureError``); on the GPU it waits for the device.
        """
        with self._lock, self._backend.on_stream(stream):
            self._check_open("prefetch")
            b, xp = self._backend, self._backend.xp
            keys = self._keys(keys)
            protect = self._protected(upcoming, also=keys)
            n = keys.shape[0]
            slots = b.find(keys)  # the probe of a lookup, without its rows or its hit rule
            missed = xp.flatnonzero(slots < 0)
            batch = Stats()
            placement = None
            misses = missed.shape[0]
            if misses and self._policy.inserts_on_lookup and self._admission.admit_batch(n - misses, n):
                placement = self._misses(keys, missed, slots, b.new_rows(n), None, True, batch)
                batch.prefetched, batch.unique_misses = batch.unique_misses, 0
            b.tick()  # after the tier's read: a prefetch that fails changes nothing
            if placement is not None:
                self._place(*placement, self._admission.refuse_below_min, batch, self._admission.victim_mode(),
                            protect)
            self._finish(batch)

    def query(self, keys: Any, stream: Any = None, out: Any = None) -> tuple[Any, Any]:
        """Read-only probe of the cache alone: ``(rows (n, dim), found (n,) bool)``.

        Cached rows where found, the default row elsewhere.  No tier access, no
        clock tick, no score change, no insertion, no stats.  Arrays are NumPy on
        the CPU backend, CuPy on the GPU backend.  ``out``: a buffer for the rows,
        as ``lookup(out=)`` takes one (checked before any work, written in place,
        returned as the first element).
        """
        with self._lock, self._backend.on_stream(stream):
            self._check_open("query")
            b = self._backend
            # a backend whose probe counts reserved keys is told so after the probe, and the check of
            # the keys beforehand (a pass over them, and a wait) is left out
            keys = self._keys(keys, reserved=b.checks_reserved_keys)
            if out is None:
                out = b.new_rows(keys.shape[0])
            else:
                out = check_out(out, keys.shape[0], self._dim, self._dtype, self.xp, self.device)
            found, reserved = b.query(keys, out)
            if reserved:
                raise_reserved(keys)
            return out, found

    def insert(self, keys: Any, rows: Any, stream: Any = None) -> None:
        """Write ``rows`` (n, dim) to the tier and place ``keys`` (n,) in the cache, bypassing admission.

        A key already cached gets the new row and counts as a hit for its score.
        With the ``Static`` policy, a key not already cached raises ``StaticInsertError``.
        """
        with self._lock, self._backend.on_stream(stream):
            self._check_open("insert")
            b, xp = self._backend, self._backend.xp
            keys = self._keys(keys)
            rows = self._rows(rows, keys.shape[0])
            ukeys, _, counts, last = b.unique(keys)
            urows = rows[last]  # a repeated key takes its last row
            if not self._policy.inserts_on_lookup and ukeys.shape[0]:
                new = ukeys[b.find(ukeys) < 0]
                if new.shape[0]:
                    raise StaticInsertError(
                        f"insert would add {new.shape[0]} key(s) (first: {int(new[0])}) to a cache with the "
                        "Static policy, whose contents only preload sets; use update() to change cached rows"
                    )
            self._write_through(ukeys, urows)
            b.tick()
            batch = Stats()
            self._place(ukeys, counts, urows, xp.ones(ukeys.shape[0], xp.bool_), False, batch)
            self._finish(batch)

    def update(self, keys: Any, rows: Any, stream: Any = None) -> None:
        """Write ``rows`` (n, dim) to the tier and refresh those ``keys`` (n,) already cached; admits nothing."""
        with self._lock, self._backend.on_stream(stream):
            self._check_open("update")
            b = self._backend
            keys = self._keys(keys)
            rows = self._rows(rows, keys.shape[0])
            ukeys, _, _, last = b.unique(keys)
            urows = rows[last]
            self._write_through(ukeys, urows)
            b.update(ukeys, urows)
            self._finish(Stats())

    def _write_through(self, ukeys, urows) -> None:
        """Write distinct keys' rows to the tier.  If the write fails part-way (a faster tier of a
        TieredStore refused it after the slower ones took it), the tier may now hold the new rows: the
        cache drops its own copies of ``ukeys`` before the TierError goes on, so that no lookup serves a
        row older than one a tier holds."""
        b = self._backend
        try:
            self._tier.put_many(b.to_host(ukeys), b.to_host(urows))
        except TierError:
            self._size -= b.erase(ukeys)
            raise

    def erase(self, keys: Any, stream: Any = None) -> None:
        """Remove ``keys`` (n,) from the cache (not from the tier)."""
        with self._lock, self._backend.on_stream(stream):
            self._check_open("erase")
            b = self._backend
            erased = b.erase(b.unique(self._keys(keys))[0])
            self._size -= erased
            self._finish(Stats(erased=erased))

    def preload(self, keys: Any, stream: Any = None) -> None:
        """Fetch ``keys`` (n,) from the tier and place them, bypassing admission, without evicting.

        Keys no tier holds are skipped (counted as ``absent``).  If the new keys
        would need more ways than some set has free, raises
        ``PreloadOverflowError`` and changes nothing.
        """
        with self._lock, self._backend.on_stream(stream):
            self._check_open("preload")
            b = self._backend
            ukeys, _, counts, _ = b.unique(self._keys(keys))
            rows, present, _ = self._fetch(ukeys)
            new = present & (b.find(ukeys) < 0)
            if bool(new.any()):
                free = self._ways - b.set_occupancy()
                need = np.bincount(sets_of(b.to_host(ukeys[new]), self._num_sets), minlength=self._num_sets)
                over = np.flatnonzero(need > free)
                if over.shape[0]:
                    s = int(over[0])
                    raise PreloadOverflowError(
                        f"preload would put {int(need[s])} new keys into set {s}, which has {int(free[s])} free "
                        f"of {self._ways} ways ({over.shape[0]} sets overflow); preload fewer keys, or use a "
                        "larger capacity or more ways (sets fill unevenly: plan on ~70% of capacity)"
                    )
            b.tick()
            batch = Stats(absent=int((~present).sum()))
            self._place(ukeys, counts, rows, present, False, batch)
            self._finish(batch)

    def clear(self) -> None:
        """Remove every key from the cache (not from the tier); the clock and sketch stay."""
        with self._lock:
            self._check_open("clear")
            self._backend.clear()
            self._note_inflight()  # its fills are queued, not waited for
            batch = Stats(erased=self._size)
            self._size = 0
            self._finish(batch)

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cache's contents ascending by key, on the host: ``keys (m,) int64, rows (m, dim), scores (m,) int64``."""
        with self._lock:
            self._check_open("export")
            return self._backend.export()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the cache (layout, policies, contents, clock, stats, sketch) to one ``.npz`` file, atomically.

        The file is written under a temporary name in the same folder
        (``.<name>.<pid>.<random>.tmp``), flushed and fsynced, renamed over
        ``path`` (``os.replace``), and the folder is fsynced: at every moment
        ``path`` holds either the previous save or this one, whole, even if the
        process is killed or the machine loses power.  A save that fails removes
        its temporary file; one killed part-way leaves it behind (delete stale
        ``.*.tmp`` files at leisure).  A symlink at ``path`` is followed (the
        file it points at is replaced); an existing file keeps its permission bits.

        The tier is not saved; give ``Cache.load`` the tier to use.
        """
        with self._lock:
            self._check_open("save")
            self._absorb()
            b = self._backend
            meta = {
                "format": _FORMAT, "num_sets": self._num_sets, "ways": self._ways, "dim": self._dim,
                "dtype": self._dtype.name, "policy": _saved_entry(self._policy),
                "admission": _saved_entry(self._admission),
                "clock": b.clock, "stats": self._stats.as_dict(), "reject_nan": self._reject_nan,
            }
            keys, scores, values = b.host_arrays()
            arrays = {"keys": keys, "scores": scores, "values": values.view(np.uint8),
                      "default": self._default.view(np.uint8)}
            if b.sketch is not None:
                arrays["sketch"] = b.to_host(b.sketch)
            if self._reached is not None:  # TinyLFUTables' per-table counts
                arrays["reached"] = b.to_host(self._reached)
            if b.hands is not None:  # victim = "hand": every set's hand
                arrays["hands"] = b.to_host(b.hands)
            _write_atomically(path, lambda f: np.savez(
                f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike, tier: Tier | None = None, backend: str = "auto") -> Cache:
        """A cache as ``save`` wrote it, in front of ``tier`` (a new HostStore if None).

        The file is checked whole before anything is allocated for it: a file
        that is damaged (truncated, bad checksum, not a zip), that is not an
        embcache save, or whose contents contradict each other (array sizes or
        dtypes that differ from the recorded layout, a key twice or in another
        set than its hash gives, a reserved key in a slot, a policy that does not
        exist, statistics that do not add up) raises ``DataFormatError`` naming
        the file and what is wrong.  Memory is allocated only for arrays the
        file really holds, so a crafted size cannot ask for terabytes.  A
        missing or unreadable file raises the ``OSError`` of ``open``.

        The policies are found through the registry (``embcache.policies``): the
        file records each one's registered name, import path (``module:Class``),
        configuration and rule (score rules and traits).  A name that is not
        registered yet has its module imported (importing runs that module's
        code, so load only files whose module names you trust); the class must
        then be the one registered under that name, and the rule it rebuilds
        must equal the saved one, else ``DataFormatError``.  Files of the
        earlier format (``[class name, config]``) still load, by class name
        among the registered classes.
        """
        saved = _read_save(path)
        meta = saved["meta"]
        dtype = row_dtype(meta["dtype"])
        cache = cls(meta["num_sets"] * meta["ways"], meta["dim"], saved["policy"], saved["admission"], dtype.name,
                    backend, tier, saved["default"].view(dtype), meta["ways"], meta["reject_nan"])
        try:
            cache._backend.load(saved["keys"], saved["scores"], saved["values"].view(dtype))
            if "sketch" in saved:
                cache._backend.sketch[:] = cache._backend.to_device(saved["sketch"])
            if "hands" in saved:
                cache._backend.hands[:] = cache._backend.to_device(saved["hands"])
            if "reached" in saved:
                cache._reached[:] = cache._backend.to_device(saved["reached"])
            cache._size = int(np.count_nonzero(saved["keys"] != EMPTY_KEY))
            cache._backend.set_clock(meta["clock"])
            cache._stats = saved["stats"]
            cache._backend.synchronize()  # the loaded arrays' copies, as __init__'s
        except BaseException:
            cache.close()
            raise
        return cache

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release the arrays (and the tier, if the cache made it).  Later calls raise ``ClosedError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._inflight is not None:  # queued kernels still use the arrays about to be freed
                    self._inflight[1].synchronize()
                self._backend.release()
                if self._owns_tier:
                    self._tier.close()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- saving and loading

_DEVICE_KEY_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))
_INT64 = np.dtype(np.int64)


def _window_given(upcoming) -> bool:
    """Whether ``lookup(upcoming=)`` may ask for lookahead (anything but an empty sequence), read without the
    device."""
    try:
        return len(upcoming) > 0
    except TypeError:  # a scalar: refused by the checks, unless capture refuses it first
        return True


def _index_rows(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 < value < 2**62:
        raise ConfigError(f"index_rows must be a positive number of table rows, got {value!r}")
    return int(value)


def _ordered_stats(words: dict, occupancy: float = 0.0) -> Stats:
    """The Stats of stream-ordered lookups from their device counters (``Backend.absorb_ordered``)."""
    outcomes = words["outcomes"]
    inserted, evicted, refused = int(outcomes[INSERTED]), int(outcomes[EVICTED]), int(outcomes[REFUSED])
    return Stats(hits=words["lookups"] - words["misses"], misses=words["misses"], unique_misses=words["unique"],
                 absent=words["absent"], insertions=inserted + evicted, evictions=evicted,
                 refusals=words["unique"] - words["absent"] - words["admitted"] + refused,
                 invalid=words["invalid"], occupancy=occupancy)


def _write_atomically(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a new file beside ``path``, make it durable, and rename it over ``path``."""
    target = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(target)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never write into someone else's file; mode 0o666 so the umask applies as for open()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(FileNotFoundError):
                if hasattr(os, "fchmod"):
                    os.fchmod(f.fileno(), stat.S_IMODE(os.stat(target).st_mode))
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if os.name == "posix":  # the rename itself is durable only once the folder is synced
        dirfd = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


_META_FIELDS = ("format", "num_sets", "ways", "dim", "dtype", "policy", "admission", "clock", "stats", "reject_nan")
_INT64 = np.dtype(np.int64)
_UINT8 = np.dtype(np.uint8)


class _Bad(Exception):
    """A reason a save file is refused (turned into DataFormatError naming the file)."""


def _no_duplicates(pairs):
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise _Bad(f"the metadata repeats field(s) {sorted({k for k in names if names.count(k) > 1})}")
    return dict(pairs)


def _whole(value, what: str, low: int = 0, high: int = 2**63 - 1) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _Bad(f"{what} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _saved_entry(policy) -> dict:
    """How ``Cache.save`` records an eviction or admission policy: name, import path, config and rule."""
    return {"name": policy.name, "class": _registry.import_path(type(policy)), "config": policy.config(),
            "rule": policy.rule()}


def _saved_policy(entry, base, what: str):
    """The policy object that a saved entry names, through the registry (``_saved_entry``'s format, or
    main's earlier ``[class name, config]``)."""
    table = _registry._TABLES[what]
    if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
        name, config = entry  # the earlier format: a class name, found among the registered classes
        found = [cls for cls in table.values() if cls.__name__ == name]
        if len(found) != 1:
            why = "no registered class has it (import the module that defines it first)" if not found else \
                f"several registered classes have it ({', '.join(_registry.import_path(c) for c in found)})"
            raise _Bad(f"the {what} {name!r} cannot be made: {why}")
        cls, rule = found[0], None
    elif isinstance(entry, dict) and set(entry) == {"name", "class", "config", "rule"} and \
            isinstance(entry["name"], str) and isinstance(entry["class"], str) and \
            isinstance(entry["config"], dict) and isinstance(entry["rule"], dict):
        name, path, config, rule = entry["name"], entry["class"], entry["config"], entry["rule"]
        cls = table.get(name)
        if cls is None:  # not imported yet: the recorded path says where it lives
            if not _registry._PATH.match(path):
                raise _Bad(f"the {what} {name!r} records the import path {path!r}, which is not 'module:Class'")
            try:
                cls = _registry._from_path(path, what)
            except ConfigError as exc:
                raise _Bad(f"the {what} {name!r} cannot be found: {exc}") from None
            if cls.name != name:
                raise _Bad(f"the {what} class {path} is registered as {cls.name!r}, but the file names it {name!r}")
        if _registry.import_path(cls) != path:
            raise _Bad(f"the {what} {name!r} was saved as the class {path}, but {name!r} is registered here as "
                       f"{_registry.import_path(cls)}; load the file where {name!r} is the saved class")
    else:
        raise _Bad(f"the {what} must be saved as {{name, class, config, rule}} (or [class name, config]), "
                   f"got {entry!r}")
    try:
        policy = cls(**config)
    except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
        raise _Bad(f"the {what} {cls.__name__}(**{config!r}) cannot be made: {exc}") from None
    if not isinstance(policy, base):
        raise _Bad(f"the {what} {cls.__name__} is not a {base.__name__}")
    if policy.config() != config:
        raise _Bad(f"the {what} {cls.__name__}(**{config!r}) does not keep its settings: {policy.config()!r}")
    if rule is not None and policy.rule() != rule:
        raise _Bad(f"the {what} {name!r} was saved with the rule {rule!r}, but its class now gives "
                   f"{policy.rule()!r}; load it with the code that saved it")
    return policy


def _check_meta(meta) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _Bad(f"it is not an embcache cache file (no {_FORMAT!r} metadata)")
    missing = [f for f in _META_FIELDS if f not in meta]
    extra = sorted(set(meta) - set(_META_FIELDS))
    if missing or extra:
        raise _Bad(f"the metadata lacks {missing} / has unknown fields {extra}")
    _whole(meta["num_sets"], "num_sets", 1)
    ways = _whole(meta["ways"], "ways", 1, 2**31)
    if ways & (ways - 1):
        raise _Bad(f"ways must be a power of two, got {ways}")
    _whole(meta["dim"], "dim", 1, 2**31)
    _whole(meta["clock"], "the clock")
    if meta["dtype"] not in ROW_DTYPES:
        raise _Bad(f"the row dtype {meta['dtype']!r} is not one of {', '.join(ROW_DTYPES)}")
    if type(meta["reject_nan"]) is not bool:
        raise _Bad(f"reject_nan must be true or false, got {meta['reject_nan']!r}")
    return meta


def _header(z: zipfile.ZipFile, info: zipfile.ZipInfo):
    """(shape, dtype, data offset) from a member's .npy header; nothing but the header is read."""
    with z.open(info) as m:
        version = np.lib.format.read_magic(m)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
        else:
            raise _Bad(f"{info.filename} is .npy version {version}, not 1.0 or 2.0")
        offset = m.tell()
    if fortran and len(shape) > 1:
        raise _Bad(f"{info.filename} is stored in Fortran order")
    return shape, dtype, offset


def _read_save(path) -> dict:
    """Everything ``Cache.load`` needs from ``path``, checked; raises DataFormatError if anything is off."""
    with open(path, "rb") as f:  # a missing or unreadable file is the OSError of open
        try:
            return _read_checked(f, os.fstat(f.fileno()).st_size)
        except EmbCacheError as exc:
            if isinstance(exc, DataFormatError):
                raise DataFormatError(f"{os.fspath(path)!r} is not a loadable embcache cache: {exc}") from None
            raise
        except _Bad as exc:
            raise DataFormatError(f"{os.fspath(path)!r} is not a loadable embcache cache: {exc}; "
                                  "load an intact file written by Cache.save") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, TypeError, KeyError, IndexError,
                struct.error, UnicodeDecodeError, NotImplementedError, OverflowError, RecursionError,
                RuntimeError, OSError) as exc:  # what zipfile (seeks to crafted offsets included), numpy's
            # header parser or json raise on damaged bytes
            raise DataFormatError(f"{os.fspath(path)!r} is damaged or not an embcache cache file "
                                  f"({type(exc).__name__}: {exc}); load an intact file written by Cache.save") from None


def _read_checked(f, size: int) -> dict:
    with zipfile.ZipFile(f) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise _Bad(f"the archive holds member(s) twice: {sorted({n for n in names if names.count(n) > 1})}")
        members = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise _Bad(f"unexpected member {info.filename!r}")
            if info.flag_bits & 0x1:
                raise _Bad(f"{info.filename} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
                raise _Bad(f"{info.filename} is compressed; Cache.save stores members uncompressed")
            if info.header_offset + info.file_size > size:
                raise _Bad(f"{info.filename} claims {info.file_size} bytes, more than the file holds")
            members[info.filename[:-4]] = info

        def read(name: str, shape: tuple, dtypes: tuple):
            """The member ``name``, checked against ``shape`` and ``dtypes`` before its data is read."""
            if name not in members:
                raise _Bad(f"member {name}.npy is missing")
            info = members[name]
            got_shape, dtype, offset = _header(z, info)
            if dtype not in dtypes or dtype.hasobject:
                raise _Bad(f"{name} has dtype {dtype}, expected {dtypes[0]}")
            if tuple(got_shape) != tuple(shape):
                raise _Bad(f"{name} has shape {tuple(got_shape)}, expected {tuple(shape)} from the recorded layout")
            nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if nbytes != info.file_size - offset:
                raise _Bad(f"{name} declares {nbytes} bytes of data but its member holds {info.file_size - offset}")
            data = np.empty(nbytes, np.uint8)
            view, done = memoryview(data), 0
            with z.open(info) as m:
                m.read(offset)
                while done < nbytes:
                    got = m.readinto(view[done:])
                    if not got:
                        raise _Bad(f"{name} is truncated")
                    done += got
                if m.read(1):  # reading to the member's end is also what makes zipfile check its CRC-32
                    raise _Bad(f"{name} has bytes after its data")
            return data.view(dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=False)

        if "meta" not in members:
            raise _Bad("member meta.npy is missing")
        meta_info = members["meta"]
        meta_shape = _header(z, meta_info)[0]
        if len(meta_shape) != 1 or meta_shape[0] > 1 << 20:
            raise _Bad(f"the metadata has shape {meta_shape}, not a short byte string")
        meta = read("meta", meta_shape, (_UINT8,))
        meta = _check_meta(json.loads(meta.tobytes().decode("utf-8"), object_pairs_hook=_no_duplicates))
        policy = _saved_policy(meta["policy"], _policies.Policy, "eviction policy")
        admission = _saved_policy(meta["admission"], _policies.Admission, "admission policy")
        stats = _from_saved(meta["stats"], _Bad)
        expected = {"meta", "keys", "scores", "values", "default"} | ({"sketch"} if admission.sketch else set())
        expected |= {"hands"} if policy.victim != "lowest" else set()
        expected |= {"reached"} if admission.victim_mode() == 3 else set()
        if set(members) != expected:
            raise _Bad(f"the members are {sorted(members)}, expected {sorted(expected)}")
        dtype = row_dtype(meta["dtype"])
        slots, width = meta["num_sets"] * meta["ways"], meta["dim"] * dtype.itemsize
        int64 = (_INT64, _INT64.newbyteorder(">"), _INT64.newbyteorder("<"))
        # shapes are checked against the layout before any array is read, so every array read really is in
        # the file (a few times its size at most is allocated, never what a crafted header claims)
        keys = read("keys", (slots,), int64)
        scores = read("scores", (slots,), int64)
        values = read("values", (slots, width), (_UINT8,))
        default = read("default", (width,), (_UINT8,))
        out = {"meta": meta, "policy": policy, "admission": admission, "stats": stats, "keys": keys,
               "scores": scores, "values": values, "default": default}
        if admission.sketch:
            _, sketch_width, depth, _ = admission.sketch
            out["sketch"] = sketch = read("sketch", (depth, sketch_width), int64)
            if sketch.size and int(sketch.min()) < 0:
                raise _Bad("the admission sketch holds a negative count")
        if admission.victim_mode() == 3:
            out["reached"] = reached = read("reached", (2, TABLES), int64)
            if int(reached.min()) < 0 or int(reached.max()) >= 1 << 43:  # twice << 20 must stay in int64
                raise _Bad("the admission's per-table counts hold a count outside 0 .. 2^43 - 1")
        if policy.victim != "lowest":  # the per-set state of the victim rule: hands, or S3-FIFO's ghosts
            width = set_state_width(policy.victim, meta["ways"])
            out["hands"] = hands = read("hands", (meta["num_sets"], width), int64)
            if policy.victim == "hand" and hands.size and not (
                    -1 <= int(hands[:, 1].min()) and int(hands[:, 1].max()) < meta["ways"]):
                raise _Bad(f"a set's hand is at a way outside -1 .. {meta['ways'] - 1}")
    _check_slots(keys, meta["num_sets"], meta["ways"], stats)
    return out


def _check_slots(keys: np.ndarray, num_sets: int, ways: int, stats: Stats) -> None:
    """Every saved key where a lookup finds it: once, in its own set, not reserved; the counters agree."""
    used = np.flatnonzero(keys != EMPTY_KEY)
    held = keys[used]
    if bool((held == LOCKED_KEY).any()):
        raise _Bad(f"a slot holds the reserved key {LOCKED_KEY}")
    wrong = np.flatnonzero(sets_of(held, num_sets) != used // ways)
    if wrong.shape[0]:
        raise _Bad(f"key {int(held[wrong[0]])} sits in set {int(used[wrong[0]] // ways)}, not in the set its hash "
                   f"gives ({int(sets_of(held[wrong[:1]], num_sets)[0])}); {wrong.shape[0]} key(s) are misplaced")
    if np.unique(held).shape[0] != held.shape[0]:
        raise _Bad("a key is held in two slots")
    if stats.insertions != held.shape[0] + stats.evictions + stats.erased:
        raise _Bad(f"the statistics do not add up: insertions {stats.insertions} != cached keys {held.shape[0]} + "
                   f"evictions {stats.evictions} + erased {stats.erased}")
