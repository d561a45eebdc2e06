"""Where FIFO's all-hit lookup loses to the stripped probe of benchmarks.probe_bound (a diagnostic, run on a GPU).

    python benchmarks/results/gpu-table/h200-2026-12-01-grid/ab_grid.py [--gib 4.25] [--dims 32,64,128]

For each dim: a full FIFO cache (32 ways, 2^20 cached keys a call) and, as device-event medians (ms) of one
call each: the best gather (gpu_table's ceiling), ``Cache.lookup(out=)``, ``find_and_gather`` (memset +
probe + wait), the probe kernel alone as the backend launches it (grid capped at 16 blocks an SM), the same
probe with one thread group a key and no cap (the stripped probe's grid), other launch shapes uncapped, and
benchmarks.probe_bound's stripped probe (record apart, slot by digests, no touch).  Capped and uncapped
alternate in three pairs.  Reads the backend's private members (a diagnostic beside its results).
"""
import argparse
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import numpy as np
import cupy

from benchmarks import gpu_table as g
from benchmarks import probe_bound as pb
from embcache.autotune import median_ms

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=4.25)
p.add_argument("--dims", default="32,64,128")
p.add_argument("--repeat", type=int, default=20)
a = p.parse_args()
batch = 1 << 20
for dim in map(int, a.dims.split(",")):
    cache = g.filled_cache(dim, "float32", int(a.gib * 2**30), policy="fifo")
    b = cache._backend
    keys = [g.cached_sample(cache, batch, s) for s in range(4)]
    idx = [b.find(k) for k in keys]
    out = b.new_rows(batch)
    turn = iter(range(10**9))
    k = lambda: keys[next(turn) % 4]
    ceiling, name = g.gather_ceiling(b.values, b.values.shape[0], b.row_bytes, idx[0], a.repeat)
    rows = [("ceiling " + name, ceiling)]
    rows.append(("Cache.lookup(out=)", median_ms(lambda: cache.lookup(k(), out=out), a.repeat)))
    rows.append(("find_and_gather", median_ms(lambda: b.find_and_gather(k(), out), a.repeat)))
    capped = b._blocks
    for pair in range(3):
        for cap, label in ((capped, f"capped at {capped} blocks"), (1 << 30, "uncapped")):
            b._blocks = cap
            rows.append((f"probe alone {b.shape['group']}x{b.shape['keys_per_group']}, {label} (pair {pair})",
                         median_ms(lambda: b._probe(k(), out, False, scratch=True), a.repeat)))
    base = dict(b.shape)
    for group, kpg in ((4, 1), (4, 2), (8, 1), (8, 2), (16, 1)):
        if group > b.ways:
            continue
        b.retune(dict(base, group=group, keys_per_group=kpg, split=False))
        for cap, label in ((capped, "capped"), (1 << 30, "uncapped")):
            b._blocks = cap
            ms = median_ms(lambda: b._probe(k(), out, False, scratch=True), a.repeat)
            rows.append((f"probe alone {group}x{kpg}, {label}", ms))
    b.retune(base)
    b._blocks = capped
    # the stripped probe on this very table
    mod = pb._module(b.row_bytes)
    kern = mod.get_function("probe_apart")
    block = g._block()
    slots, old = cupy.empty(batch, cupy.int64), cupy.empty(batch, cupy.int64)
    outw = cupy.empty((batch, b.row_bytes // 4), cupy.uint32)
    args = lambda: (b.table, b.digests, b.values, np.uint64(b.num_sets), k(), np.int64(batch), outw, slots, old,
                    np.int64(1 << 40), np.uint64(0), np.int32(0))
    rows.append(("stripped probe_apart, digests, no touch, full grid",
                 median_ms(lambda: kern((-(-batch * 4 // block),), (block,), args()), a.repeat)))
    rows.append(("stripped probe_apart, digests, no touch, capped grid",
                 median_ms(lambda: kern((capped,), (block,), args()), a.repeat)))
    print(f"dim {dim}, FIFO, shape {b.shape}, 2^20 keys, {b.values.nbytes / 2**30:.2f} GiB", flush=True)
    for label, ms in rows:
        print(f"  {label:<62}{ms:8.3f} ms  {ceiling / ms:.3f} of the ceiling", flush=True)
    cache.close()
    cupy.get_default_memory_pool().free_all_blocks()
