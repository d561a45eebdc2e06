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

import json
import os
import threading
from typing import Any

import numpy as np

from . import policies as _policies
from ._checks import check_keys, check_rows, unique_last
from ._dtypes import row_dtype
from .errors import ClosedError, ConfigError, MissingDependencyError, PreloadOverflowError, StaticInsertError
from .kernels.cpu import EVICTED, INSERTED, REFUSED, CPUBackend
from .layout import EMPTY_KEY, num_sets_for, sets_of
from .stats import Stats
from .tiers import HostStore, Tier

__all__ = ["Cache"]

_FORMAT = "embcache-cache-v1"


def _make_backend(name: str, **layout) -> Any:
    if name in ("auto", "cpu"):
        return CPUBackend(**layout)
    if name == "gpu":
        raise MissingDependencyError(
            "backend='gpu' is not available in this build yet; use backend='cpu' or 'auto'"
        )
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
    """

    def __init__(self, capacity: int, dim: int, policy="lru", admission="always", dtype="float32",
                 backend: str = "auto", tier: Tier | None = None, default=0.0, ways: int = 32,
                 reject_nan: bool = False):
        for name, value in (("capacity", capacity), ("dim", dim), ("ways", ways)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if ways & (ways - 1):
            raise ConfigError(f"ways must be a power of two (1, 2, 4, ..., 32), got {ways}")
        self._policy = _policies.get_policy(policy)
        self._admission = _policies.get_admission(admission)
        self._dtype = row_dtype(dtype)
        self._dim = int(dim)
        self._ways = int(ways)
        self._num_sets = num_sets_for(int(capacity), self._ways)
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
        sketch = self._admission.sketch
        self._backend = _make_backend(
            backend, num_sets=self._num_sets, ways=self._ways, dim=self._dim, dtype=self._dtype,
            policy=self._policy, sketch_shape=None if sketch is None else (sketch[2], sketch[1]),
            sketch_seed=0 if sketch is None else sketch[3],
        )
        self._clock = 0
        self._size = 0
        self._stats = Stats()
        self._lock = threading.RLock()
        self._closed = False

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int:
        """Slots: ``num_sets * ways`` (the requested capacity rounded up)."""
        return self._num_sets * self._ways

    @property
    def num_sets(self) -> int:
        return self._num_sets

    @property
    def ways(self) -> int:
        return self._ways

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def clock(self) -> int:
        """Batch clock: how many ``lookup``, ``insert`` and ``preload`` calls have run."""
        return self._clock

    @property
    def policy(self):
        return self._policy

    @property
    def admission(self):
        return self._admission

    @property
    def tier(self) -> Tier:
        return self._tier

    @property
    def backend(self) -> str:
        """``"cpu"`` or ``"gpu"``: the backend in use."""
        return self._backend.name

    @property
    def stats(self) -> Stats:
        """Totals since creation; ``stats.last`` is the most recent operation's counts."""
        with self._lock:
            copy = Stats(**self._stats.as_dict())
            copy.last = self._stats.last
            return copy

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return (f"Cache(capacity={self.capacity}, dim={self._dim}, policy={self._policy!r}, "
                f"admission={self._admission!r}, dtype={self._dtype.name!r}, backend={self.backend!r}, "
                f"ways={self._ways}, len={self._size})")

    # ------------------------------------------------------------------ helpers
    def _check_open(self, op: str):
        if self._closed:
            raise ClosedError(f"Cache.{op}: the cache is closed; make a new one or Cache.load a saved one")

    def _finish(self, batch: Stats) -> None:
        batch.occupancy = self._size / self.capacity
        self._stats.add(batch)

    def _place(self, keys, counts, rows, admit, clock, refuse_below_min, batch: Stats) -> None:
        outcome, _ = self._backend.insert_and_evict(keys, counts, rows, admit, clock, refuse_below_min)
        placed = int(np.count_nonzero((outcome == INSERTED) | (outcome == EVICTED)))
        evicted = int(np.count_nonzero(outcome == EVICTED))
        batch.insertions += placed
        batch.evictions += evicted
        batch.refusals += int(np.count_nonzero(outcome == REFUSED))
        self._size += placed - evicted

    def _fetch(self, keys):
        """Rows of unique ``keys`` from the tier, default where absent: (rows, present)."""
        rows, present = self._tier.get_many(keys)
        rows[~present] = self._default
        return rows, present

    # ------------------------------------------------------------------ operations
    def lookup(self, keys) -> np.ndarray:
        """Rows of ``keys``, fetching misses from the tier and admitting them.

        Parameters
        ----------
        keys : (n,) int64 array
            Any length, duplicates allowed, no reserved key.

        Returns
        -------
        (n, dim) array of the cache's dtype: the tier's row of every key (``default`` where absent).
        """
        with self._lock:
            self._check_open("lookup")
            keys = check_keys(keys)
            n = keys.shape[0]
            clock = self._clock + 1
            out = np.empty((n, self._dim), self._dtype)
            slots, hits = self._backend.find_and_gather(keys, out)
            batch = Stats(hits=int(hits), misses=n - int(hits))
            if batch.misses:
                missed = np.flatnonzero(slots < 0)
                ukeys, inverse, counts = np.unique(keys[missed], return_inverse=True, return_counts=True)
                rows, present = self._fetch(ukeys)
                out[missed] = rows[inverse]
                admit = present.copy()
                if not self._policy.inserts_on_lookup or not self._admission.admit_batch(batch.hits, n):
                    admit[:] = False
                elif self._backend.sketch is not None:
                    admit &= self._backend.sketch_add(ukeys, counts) >= self._admission.sketch[0]
                batch.unique_misses = ukeys.shape[0]
                batch.absent = int(np.count_nonzero(~present))
                batch.refusals = int(np.count_nonzero(present & ~admit))
            # everything that can fail has run; from here on the cache changes
            self._clock = clock
            self._backend.touch(slots, clock)
            if batch.misses:
                self._place(ukeys, counts, rows, admit, clock, self._admission.refuse_below_min, batch)
            self._finish(batch)
            return out

    def query(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """Read-only probe of the cache alone: ``(rows (n, dim), found (n,) bool)``.

        Cached rows where found, the default row elsewhere.  No tier access, no
        clock tick, no score change, no insertion, no stats.
        """
        with self._lock:
            self._check_open("query")
            keys = check_keys(keys)
            out = np.empty((keys.shape[0], self._dim), self._dtype)
            slots, _ = self._backend.find_and_gather(keys, out)
            found = slots >= 0
            out[~found] = self._default
            return out, found

    def insert(self, keys, rows) -> None:
        """Write ``rows`` (n, dim) to the tier and place ``keys`` (n,) in the cache, bypassing admission.

        A key already cached gets the new row and counts as a hit for its score.
        With the ``Static`` policy, a key not already cached raises ``StaticInsertError``.
        """
        with self._lock:
            self._check_open("insert")
            keys = check_keys(keys)
            rows = check_rows(rows, keys.shape[0], self._dim, self._dtype, self._reject_nan)
            ukeys, urows, counts = unique_last(keys, rows)
            if not self._policy.inserts_on_lookup and ukeys.shape[0]:
                new = ukeys[self._backend.find(ukeys) < 0]
                if new.shape[0]:
                    raise StaticInsertError(
                        f"insert would add {new.shape[0]} key(s) (first: {int(new[0])}) to a cache with the "
                        "Static policy, whose contents only preload sets; use update() to change cached rows"
                    )
            self._tier.put_many(ukeys, urows)
            self._clock += 1
            batch = Stats()
            self._place(ukeys, counts, urows, np.ones(ukeys.shape[0], np.bool_), self._clock, False, batch)
            self._finish(batch)

    def update(self, keys, rows) -> None:
        """Write ``rows`` (n, dim) to the tier and refresh those ``keys`` (n,) already cached; admits nothing."""
        with self._lock:
            self._check_open("update")
            keys = check_keys(keys)
            rows = check_rows(rows, keys.shape[0], self._dim, self._dtype, self._reject_nan)
            ukeys, urows, _ = unique_last(keys, rows)
            self._tier.put_many(ukeys, urows)
            self._backend.update(ukeys, urows)
            self._finish(Stats())

    def erase(self, keys) -> None:
        """Remove ``keys`` (n,) from the cache (not from the tier)."""
        with self._lock:
            self._check_open("erase")
            ukeys = np.unique(check_keys(keys))
            erased = self._backend.erase(ukeys)
            self._size -= erased
            self._finish(Stats(erased=erased))

    def preload(self, keys) -> None:
        """Fetch ``keys`` (n,) from the tier and place them, bypassing admission, without evicting.

        Keys no tier holds are skipped (counted as ``absent``).  If the new keys
        would need more ways than some set has free, raises
        ``PreloadOverflowError`` and changes nothing.
        """
        with self._lock:
            self._check_open("preload")
            ukeys, counts = np.unique(check_keys(keys), return_counts=True)
            rows, present = self._fetch(ukeys)
            new = present & (self._backend.find(ukeys) < 0)
            if new.any():
                free = self._ways - self._backend.set_occupancy()
                need = np.bincount(sets_of(ukeys[new], self._num_sets), minlength=self._num_sets)
                over = np.flatnonzero(need > free)
                if over.shape[0]:
                    s = int(over[0])
                    raise PreloadOverflowError(
                        f"preload would put {int(need[s])} new keys into set {s}, which has {int(free[s])} free "
                        f"of {self._ways} ways ({over.shape[0]} sets overflow); preload fewer keys, or use a "
                        "larger capacity or more ways (sets fill unevenly: plan on ~70% of capacity)"
                    )
            self._clock += 1
            batch = Stats(absent=int(np.count_nonzero(~present)))
            self._place(ukeys, counts, rows, present, self._clock, False, batch)
            self._finish(batch)

    def clear(self) -> None:
        """Remove every key from the cache (not from the tier); the clock and sketch stay."""
        with self._lock:
            self._check_open("clear")
            self._backend.clear()
            batch = Stats(erased=self._size)
            self._size = 0
            self._finish(batch)

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The cache's contents ascending by key: ``keys (m,) int64, rows (m, dim), scores (m,) int64``."""
        with self._lock:
            self._check_open("export")
            return self._backend.export()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the cache (layout, policies, contents, clock, stats, sketch) to one ``.npz`` file.

        The tier is not saved; give ``Cache.load`` the tier to use.
        """
        with self._lock:
            self._check_open("save")
            meta = {
                "format": _FORMAT, "num_sets": self._num_sets, "ways": self._ways, "dim": self._dim,
                "dtype": self._dtype.name, "policy": [type(self._policy).__name__, self._policy.config()],
                "admission": [type(self._admission).__name__, self._admission.config()],
                "clock": self._clock, "stats": self._stats.as_dict(), "reject_nan": self._reject_nan,
            }
            b = self._backend
            arrays = {"keys": b.keys, "scores": b.scores, "values": b.values.view(np.uint8),
                      "default": self._default.view(np.uint8)}
            if b.sketch is not None:
                arrays["sketch"] = b.sketch
            with open(path, "wb") as f:
                np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, tier: Tier | None = None, backend: str = "auto") -> "Cache":
        """A cache as ``save`` wrote it, in front of ``tier`` (a new HostStore if None)."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("format") != _FORMAT:
                raise ConfigError(f"{path} is not an embcache cache file ({_FORMAT})")
            policy = getattr(_policies, meta["policy"][0])(**meta["policy"][1])
            admission = getattr(_policies, meta["admission"][0])(**meta["admission"][1])
            dtype = row_dtype(meta["dtype"])
            cache = cls(meta["num_sets"] * meta["ways"], meta["dim"], policy, admission, dtype.name, backend,
                        tier, z["default"].view(dtype), meta["ways"], meta["reject_nan"])
            cache._backend.load(z["keys"], z["scores"], z["values"].view(dtype).reshape(-1, meta["dim"]))
            if "sketch" in z:
                cache._backend.sketch[:] = z["sketch"]
        cache._clock = meta["clock"]
        cache._stats = Stats(**meta["stats"])
        cache._size = int(np.count_nonzero(cache._backend.keys != EMPTY_KEY))
        return cache

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Release the arrays (and the tier, if the cache made it).  Later calls raise ``ClosedError``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._owns_tier:
                    self._tier.close()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
