"""Tiers: get_many / put_many rows/s at dim 128 in batches of 10k, and a cache at 90% hits in front of each.

RocksDB runs on a temporary folder with synced writes (as shipped); Redis is a
local redis-server on loopback started for the benchmark, as the tests start
it (append-only file, ``appendfsync always``: every acknowledged write is on
disk).  Compare tiers within one run: the host tier is the fastest possible.
"""
import tempfile
import time

import numpy as np

import embcache
from embcache.tiers import HostStore

DIM = 128
BATCH = 10_000
STORED = 100_000


def _rows(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, DIM), np.float32)


def _open(kind, folder):
    if kind == "host":
        return HostStore(DIM, initial_rows=STORED), None
    if kind == "rocksdb":
        from embcache.tiers import RocksStore

        return RocksStore(folder + "/db", DIM, create=True), None
    from tests.redis_servers import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        raise NotImplementedError("no redis-server")
    server = RedisServer(folder + "/redis")
    return embcache.tiers.RedisStore(server.url, DIM, create=True), server


class Tier:
    params = ["host", "rocksdb", "redis"]
    param_names = ["tier"]
    timeout = 300

    def setup(self, kind):
        self.folder = tempfile.TemporaryDirectory()
        self.store, self.server = _open(kind, self.folder.name)
        self.keys = np.arange(STORED, dtype=np.int64) * 7 + 1
        for i in range(0, STORED, BATCH):
            self.store.put_many(self.keys[i:i + BATCH], _rows(BATCH, i))
        self.batch = np.random.default_rng(1).choice(self.keys, BATCH, replace=False)
        self.new_rows = _rows(BATCH, 99)

    def teardown(self, kind):
        self.store.close()
        if self.server:
            self.server.stop()
        self.folder.cleanup()

    def time_get_many(self, kind):
        self.store.get_many(self.batch)

    def time_put_many(self, kind):
        self.store.put_many(self.batch, self.new_rows)

    def _rate(self, fn, repeat=7, items=BATCH):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        return items / best

    def track_get_many_rows_per_s(self, kind):
        return self._rate(lambda: self.store.get_many(self.batch))

    track_get_many_rows_per_s.unit = "rows/s"

    def track_put_many_rows_per_s(self, kind):
        return self._rate(lambda: self.store.put_many(self.batch, self.new_rows))

    track_put_many_rows_per_s.unit = "rows/s"


class CacheInFront(Tier):
    """Lookups of 100k keys at 90% hits through a cache (CPU, and GPU where present) in front of each tier."""

    params = (["host", "rocksdb", "redis"], ["cpu", "gpu"])
    param_names = ["tier", "backend"]

    def setup(self, kind, backend):
        from embcache.kernels.gpu import gpu_available

        if backend == "gpu" and not gpu_available():
            raise NotImplementedError("no GPU")
        super().setup(kind)
        rng = np.random.default_rng(2)
        hot = rng.choice(self.keys, 50_000, replace=False)
        # admission off above 50% hits, so every repetition misses the same 10%
        self.cache = embcache.Cache(65_536, DIM, "lru", embcache.policies.HitRateThreshold(0.5), backend=backend,
                                    tier=self.store)
        for i in range(0, hot.shape[0], BATCH):
            self.cache.insert(hot[i:i + BATCH], _rows(min(BATCH, hot.shape[0] - i), i))
        cold = np.setdiff1d(self.keys, hot)
        self.lookups = [np.concatenate([rng.choice(hot, 90_000), rng.choice(cold, 10_000, replace=False)])
                        for _ in range(3)]

    def teardown(self, kind, backend):
        if hasattr(self, "cache"):  # asv tears down after a setup that skipped (no GPU) too
            self.cache.close()
            super().teardown(kind)

    def time_lookup_90pct_hits(self, kind, backend):
        for keys in self.lookups:
            self.cache.lookup(keys)

    def track_lookup_keys_per_s(self, kind, backend):
        def run():
            for keys in self.lookups:
                self.cache.lookup(keys)
            if backend == "gpu":
                import cupy

                cupy.cuda.get_current_stream().synchronize()
        return self._rate(run, 3, items=sum(k.shape[0] for k in self.lookups))

    track_lookup_keys_per_s.unit = "keys/s"
    time_get_many = time_put_many = track_get_many_rows_per_s = track_put_many_rows_per_s = None
