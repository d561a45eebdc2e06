"""The host side of a stream-ordered lookup: cProfile of 300 calls (a sync every 10), all hits, for the plugin
path's 65,536 keys and for trt_table's batch 32 (832 keys), both dim 128 over a 2^20-row pinned store; plus the
untraced host enqueue median of each (a diagnostic, run on a GPU).

    python benchmarks/results/profiles/h200-2026-12-02-eve/host_profile.py
"""
import cProfile
import pstats
import time

import cupy as cp
import numpy as np

import embcache
from embcache.tiers import HostStore

rows_n, dim = 1 << 20, 128
store = HostStore(dim, "float32", pinned=True, initial_rows=rows_n)
store.put_many(np.arange(rows_n), np.zeros((rows_n, dim), np.float32))
cache = embcache.Cache(rows_n, dim, "lfu", backend="gpu", tier=store)
stream = cp.cuda.get_current_stream()
for n in (1 << 16, 832):
    keys = cp.random.randint(0, rows_n, n, dtype=cp.int64)
    for _ in range(50):
        before = cache.stats.misses
        cache.lookup(keys)
        if cache.stats.misses == before:
            break
    buf = cp.empty((n, dim), cp.float32)
    for index_rows in (None, rows_n):
        fn = lambda keys=keys, buf=buf, index_rows=index_rows: cache.lookup(keys, out=buf, index_rows=index_rows)
        fn()
        stream.synchronize()
        ts = []
        for i in range(300):
            if i % 10 == 0:
                stream.synchronize()
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        stream.synchronize()
        print(f"\n{n} keys, index_rows={index_rows}: host enqueue median {np.median(ts) * 1e6:.1f} us "
              f"(min {min(ts) * 1e6:.1f})", flush=True)
        pr = cProfile.Profile()
        pr.enable()
        for i in range(300):
            if i % 10 == 0:
                stream.synchronize()
            fn()
        pr.disable()
        stream.synchronize()
        pstats.Stats(pr).sort_stats("tottime").print_stats(28)
cache.close()
store.close()
