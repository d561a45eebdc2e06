"""Where the plugin path's few percent go: host and GPU time of direct ``Cache.lookup(out=)``, the same with
``index_rows=`` (Gather's rules, as the plugin's keys_are_rows table), and ``lookup_into``, 65,536 all-hit keys
of dim 128 from a pinned table (trt_table's plugin-path case, a smaller table).

    python benchmarks/results/profiles/h200-2026-12-02-plugin/plugin_host.py
"""
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import cupy as cp
import numpy as np
from cupyx.profiler import benchmark

from trt_plugin.config import Config, ModelConfig, TableConfig
from trt_plugin.fields import LookupFields
from trt_plugin.tables import lookup_into, table_cache, write_table

rows, dim, n = 1 << 20, 128, 1 << 16
values = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
with tempfile.TemporaryDirectory() as tmp:
    t = TableConfig("t", dim, ("memory:pinned",), rows=rows, capacity=rows, keys_are_rows=True)
    path = Config((ModelConfig("m", (t,), backend="gpu"),), base=Path(tmp)).save(os.path.join(tmp, "c.json"))
    cache, _ = table_cache(path, "t", backend="gpu")
    write_table(cache.tier, values, progress=False)
    fields = LookupFields(str(path), "t", dim, "m")
    keys = cp.random.randint(0, rows, n, dtype=cp.int64)
    for _ in range(50):
        before = cache.stats.misses
        cache.lookup(keys)
        if cache.stats.misses == before:
            break
    buf = cp.empty((n, dim), cp.float32)
    cases = {"direct": lambda: cache.lookup(keys, out=buf),
             "direct index_rows": lambda: cache.lookup(keys, out=buf, index_rows=rows),
             "lookup_into": lambda: lookup_into(fields, keys, buf)}
    stream = cp.cuda.get_current_stream()
    for rnd in range(3):
        for name, fn in cases.items():
            r = benchmark(fn, n_repeat=200, n_warmup=20)
            fn(); stream.synchronize()
            t0 = time.perf_counter()
            for _ in range(100):
                fn()
            t_host = (time.perf_counter() - t0) / 100
            stream.synchronize()
            t_all = (time.perf_counter() - t0) / 100
            print(f"round {rnd} {name:<18} per call (synced): host {np.median(r.cpu_times) * 1e6:6.1f} us, "
                  f"GPU {np.median(r.gpu_times[0]) * 1e6:6.1f} us; 100 back to back: {t_all * 1e6:6.1f} us a call "
                  f"(enqueue alone {t_host * 1e6:6.1f})", flush=True)
    for name in ("direct", "lookup_into"):
        fn = cases[name]
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(2000):
            fn()
        prof.disable()
        stream.synchronize()
        print(f"--- cProfile {name}, 2000 calls")
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)
