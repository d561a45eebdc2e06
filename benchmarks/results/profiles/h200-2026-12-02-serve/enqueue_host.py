"""The plugin path's host time, piece by piece: 65,536 all-hit keys of dim 128 from a pinned keys_are_rows table
of 2^20 rows (trt_table's plugin-path case, a smaller table).  Each piece of ``lookup_into`` timed alone (20,000
calls), then the three calls with every kernel launch made a no-op (the Python and the driver calls other than
launches: what the plugin adds to a lookup), then trt_table's own plugin-path measurement (five alternating rounds,
each its best) three times, then cProfile of the launch-free calls.

    python benchmarks/results/profiles/h200-2026-12-02-serve/enqueue_host.py
"""
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

import cupy as cp
import numpy as np

from benchmarks.trt_table import _plugin_path_one
from embcache import _cuda
from trt_plugin import tables
from trt_plugin.config import Config, ModelConfig, TableConfig
from trt_plugin.fields import LookupFields

rows, dim, n = 1 << 20, 128, 1 << 16
values = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)


def per_call(fn, reps=20000):
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


with tempfile.TemporaryDirectory() as tmp:
    t = TableConfig("t", dim, ("memory:pinned",), rows=rows, capacity=rows, keys_are_rows=True)
    path = Config((ModelConfig("m", (t,), backend="gpu"),), base=Path(tmp)).save(os.path.join(tmp, "c.json"))
    cache, _ = tables.table_cache(path, "t", backend="gpu")
    tables.write_table(cache.tier, values, progress=False)
    fields = LookupFields(str(path), "t", dim, "m")
    keys = cp.random.randint(0, rows, n, dtype=cp.int64)
    for _ in range(50):
        before = cache.stats.misses
        cache.lookup(keys)
        if cache.stats.misses == before:
            break
    buf = cp.empty((n, dim), cp.float32)
    cp.cuda.get_current_stream().synchronize()
    dev = tables._device_of(keys)
    pieces = {
        "_device_of(keys)": lambda: tables._device_of(keys),
        "_current_device()": tables._current_device,
        "_registry.enqueue_target(fields, device)": lambda: tables._registry.enqueue_target(fields, dev),
        "the fast path's test": lambda: (keys.ndim == 1 and keys.dtype in tables._ENQUEUE_KEYS
                                         and keys.flags.c_contiguous and buf.dtype == cache.dtype
                                         and buf.flags.c_contiguous and buf.shape == (keys.shape[0], dim)),
        "keys.flags.c_contiguous": lambda: keys.flags.c_contiguous,
        "keys.dtype in (int32, int64)": lambda: keys.dtype in tables._ENQUEUE_KEYS,
        "hash(fields)": lambda: hash(fields),
    }
    for name, fn in pieces.items():
        print(f"{name:<45} {per_call(fn):6.2f} us a call", flush=True)
    go = _cuda.Launcher._go
    _cuda.Launcher._go = lambda self, grid, block, shared_mem: None  # every launch a no-op: host time alone
    try:
        calls = {"direct Cache.lookup(out=)": lambda: cache.lookup(keys, out=buf),
                 "direct Cache.lookup(out=, index_rows=)": lambda: cache.lookup(keys, out=buf, index_rows=rows),
                 "lookup_into": lambda: tables.lookup_into(fields, keys, buf)}
        for rnd in range(3):
            for name, fn in calls.items():
                print(f"launches no-op, round {rnd}: {name:<40} {per_call(fn, 5000):6.2f} us a call", flush=True)
        for name in ("direct Cache.lookup(out=, index_rows=)", "lookup_into"):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(3000):
                calls[name]()
            prof.disable()
            print(f"--- cProfile, launches no-op, {name}, 3000 calls")
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    finally:
        _cuda.Launcher._go = go
    cp.cuda.get_current_stream().synchronize()
    tables.close_all()
for rnd in range(3):
    for r in _plugin_path_one("memory:pinned", "pinned memory, stream-ordered", values, n, 50):
        print(f"trt_table's plugin path, run {rnd}: {r['case']:<85} {r['us']:7.1f} us  {r['ratio_to_direct']:.3f}",
              flush=True)
