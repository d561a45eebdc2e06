"""query against the fastest all-hit lookup, alternating on one table (a diagnostic, run on a GPU).

    python benchmarks/results/gpu-table/h200-2026-12-01-grid/ab_query.py [--gib 4.25] [--dims 32,64,128]

For each dim: a full FIFO cache and a full LRU cache (32 ways, 4.25 GiB of rows, 2^20 cached keys a call);
device-event medians (ms) of ``Cache.lookup(out=)`` and ``Cache.query(out=)`` on each, in three alternating
rounds, and the same run's gather ceiling (gpu_table's best of five).
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy

from benchmarks import gpu_table as g
from embcache.autotune import median_ms

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=4.25)
p.add_argument("--dims", default="32,64,128")
p.add_argument("--repeat", type=int, default=20)
a = p.parse_args()
batch = 1 << 20
for dim in map(int, a.dims.split(",")):
    for policy in ("fifo", "lru"):
        cache = g.filled_cache(dim, "float32", int(a.gib * 2**30), policy=policy)
        b = cache._backend
        keys = [g.cached_sample(cache, batch, s) for s in range(4)]
        out = b.new_rows(batch)
        turn = iter(range(10**9))
        k = lambda: keys[next(turn) % 4]
        ceiling, name = g.gather_ceiling(b.values, b.values.shape[0], b.row_bytes, b.find(keys[0]), a.repeat)
        line = [f"dim {dim:>3} {policy:<4} ceiling {name} {ceiling:.3f} ms;"]
        for rnd in range(3):
            lk = median_ms(lambda: cache.lookup(k(), out=out), a.repeat)
            q = median_ms(lambda: cache.query(k(), out=out), a.repeat)
            line.append(f"lookup {lk:.3f} ({ceiling / lk:.3f}) query {q:.3f} ({ceiling / q:.3f});")
        print(" ".join(line), flush=True)
        cache.close()
        cupy.get_default_memory_pool().free_all_blocks()
