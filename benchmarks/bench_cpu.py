"""CPU backend (Numba, one thread): lookups, misses, insertion; speed against cachetools.LRUCache.

Throughput figures are also reported as ratios: to ``cachetools.LRUCache`` on the same
trace (the Python standard) and to a NumPy row gather of the same rows (what a cache
that did no bookkeeping at all would cost).
"""
import functools
import gc
import time

import numpy as np

import embcache
from embcache.tiers import HostStore

CACHED = 1 << 17  # rows in the cache
BATCH = 1 << 16  # keys a lookup


def _store(dim, rows):
    store = HostStore(dim, initial_rows=rows)
    store.put_many(np.arange(rows), np.random.default_rng(0).standard_normal((rows, dim), np.float32))
    return store


def _full_cache(store, dim, policy="lru"):
    cache = embcache.Cache(CACHED, dim, policy, backend="cpu", tier=store)
    for i in range(0, CACHED // 2, BATCH):  # half full: every key fits its set
        cache.lookup(np.arange(i, min(i + BATCH, CACHED // 2)))
    return cache


def _best(fn, repeat=5):
    """The best of ``repeat`` timed calls of ``fn``, in seconds, with the garbage collector off while
    timing, as timeit does: a collection pass over the 65,536 rows cachetools holds would otherwise land
    in one side's time or the other's, whichever allocated last."""
    best = float("inf")
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    finally:
        if was:
            gc.enable()
    return best


class LookupHits:
    """All-hit lookups of BATCH random keys out of CACHED/2 cached rows."""

    params = ([32, 128], ["lru", "lfu"])
    param_names = ["dim", "policy"]

    def setup(self, dim, policy):
        self.store = _store(dim, CACHED // 2)
        self.cache = _full_cache(self.store, dim, policy)
        self.keys = np.random.default_rng(1).integers(0, CACHED // 2, BATCH)
        self.cache.lookup(self.keys)

    def time_lookup_hits(self, dim, policy):
        self.cache.lookup(self.keys)


class LookupMisses:
    """Lookups with 20% of key occurrences missing the cache and served (and admitted) from a HostStore."""

    number = 1
    repeat = 20
    params = [32, 128]
    param_names = ["dim"]

    def setup(self, dim):
        self.store = _store(dim, 4 * CACHED)
        self.cache = _full_cache(self.store, dim)
        rng = np.random.default_rng(2)
        hot = rng.integers(0, CACHED // 2, BATCH)
        cold = rng.integers(CACHED, 4 * CACHED, BATCH // 4)
        self.keys = np.concatenate([hot[: BATCH - cold.shape[0]], cold])
        rng.shuffle(self.keys)

    def time_lookup_20pct_misses(self, dim):
        self.cache.lookup(self.keys)


class InsertIntoFullCache:
    """insert() of BATCH new keys into a cache whose sets are full: every key evicts one."""

    number = 1
    repeat = 20
    params = [32]
    param_names = ["dim"]

    def setup(self, dim):
        # the store is sized up front so that the timed call does not include its rehash
        self.cache = embcache.Cache(CACHED, dim, "lru", backend="cpu", tier=HostStore(dim, initial_rows=8 * CACHED))
        for i in range(0, 4 * CACHED, BATCH):
            self.cache.insert(np.arange(i, i + BATCH), np.ones((BATCH, dim), np.float32))
        self.keys = np.arange(4 * CACHED, 4 * CACHED + BATCH)
        self.rows = np.ones((BATCH, dim), np.float32)

    def time_insert_full(self, dim):
        self.cache.insert(self.keys, self.rows)


@functools.cache
def _small_batches_state() -> tuple:
    """SmallBatches' store, cache and keys, made once a process (see SmallBatches)."""
    store = _store(32, 1 << 20)
    cache = embcache.Cache(1 << 12, 32, "lru", backend="cpu", tier=store)
    one, many = np.array([7], np.int64), np.arange(64, dtype=np.int64)
    cache.lookup(one)
    cache.lookup(many)
    return store, cache, one, many, iter(range(1 << 10, 1 << 20))  # fresh keys: every call misses


class SmallBatches:
    """One-call costs that a study at one key a batch, or a CPU server, pays (issue 22's bars, dim 32): a lookup
    of 1 key that hits (<= 10 us), of 1 key that misses, read from a HostStore and admitted (<= 20 us), and of
    64 keys that all hit (<= 15 us).

    The state is made once a process and setup only takes it: asv (asv_runner 0.3, asv#966) runs setup again
    before every timed call, and a setup that built a 128 MiB store each time timed every lookup as the first
    one after it, on cold caches (10.7 / 34.2 / 13.2 us under asv at 7762e6d against 3.1 / 14.7 / 3.6 us
    in steady state), which is not what a study's millions of calls pay."""

    def setup(self):
        self.store, self.cache, self.one, self.many, self.fresh = _small_batches_state()

    def time_lookup_1_hit(self):
        self.cache.lookup(self.one)

    def time_lookup_64_hits(self):
        self.cache.lookup(self.many)

    def time_lookup_1_miss(self):
        self.cache.lookup(np.array([next(self.fresh)], np.int64))


class Ratios:
    """Hit lookups at dim 32, as ratios (x) to cachetools.LRUCache and to a NumPy gather of the same rows
    (issue 22's CPU bars: >= 40x cachetools at 1,024 and at 65,536 keys a batch, >= 0.5 of the gather at
    65,536).  The trace is BATCH random keys of CACHED/2 cached rows, looked up whole or in batches of
    1,024; cachetools answers the same keys one by one, its rows stacked per batch as ours come."""

    unit = "x"
    number = 1
    repeat = 1
    timeout = 300

    def setup(self):
        import cachetools

        dim, n = 32, CACHED // 2
        self.store = _store(dim, n)
        self.cache = _full_cache(self.store, dim)
        self.keys = np.random.default_rng(3).integers(0, n, BATCH)
        self.cache.lookup(self.keys)
        self.lru = cachetools.LRUCache(maxsize=n)
        rows, _ = self.store.get_many(np.arange(n))
        self.rows = rows
        for k in range(n):
            self.lru[k] = rows[k]
        self.seconds = {}  # batch size -> (cachetools, ours) in seconds for the whole trace, as last timed

    def _ours(self, batch=BATCH):
        cache, parts = self.cache, [self.keys[i:i + batch] for i in range(0, BATCH, batch)]
        return _best(lambda: [cache.lookup(part) for part in parts])

    def _theirs(self, batch=BATCH):
        lru, keys = self.lru, self.keys.tolist()
        parts = [keys[i:i + batch] for i in range(0, BATCH, batch)]
        return _best(lambda: [np.stack([lru[k] for k in part]) for part in parts], repeat=3)

    def _ratio(self, batch=BATCH):
        theirs, ours = self._theirs(batch), self._ours(batch)
        self.seconds[batch] = (theirs, ours)  # the trace's times behind the ratio, for cpu_bars to print
        return theirs / ours

    def track_speedup_vs_cachetools_lru(self):
        """65,536 keys a batch."""
        return self._ratio()

    def track_speedup_vs_cachetools_lru_1024(self):
        """The same trace at 1,024 keys a batch (64 lookups)."""
        return self._ratio(1024)

    def track_fraction_of_numpy_gather(self):
        """65,536 keys a batch; the gather allocates its output, as a lookup does.  The two are timed in
        alternating rounds, each its best: on a shared machine a gather alone moved 245-535 us from one
        run to the next (benchmarks/results/cpu-bars/README-2026-12-03.md), and back-to-back bests of
        each let such a drift fall on one side only."""
        cache, keys, rows = self.cache, self.keys, self.rows
        gather, ours = float("inf"), float("inf")
        for _ in range(7):
            gather = min(gather, _best(lambda: np.take(rows, keys, axis=0), repeat=3))
            ours = min(ours, _best(lambda: cache.lookup(keys), repeat=3))
        return gather / ours
