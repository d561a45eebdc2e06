"""Why gpu_table's 1,024-key row with misses not admitted replays slower than the admitted one.

    python benchmarks/results/profiles/h200-2026-12-03b/not_admitted.py [--reps 200]

gpu_table.latency_row's two miss rows (before 6321e98, whose admitted row timed reused batches: hits) differ in three ways at once: the admission (HitRateThreshold(0.5)
refusing at 0.9 hits, against "always"), the store (408 rows against 41,820) and the batches (4 cycled,
so the same missed rows are read again, against a fresh batch each replay).  This varies one at a time:
the GPU time of a replayed graph (events, median), and each node's mean GPU time (CUPTI, torch.profiler).
"""
import argparse
import os
import pathlib
import sys

import numpy as np

# EMBCACHE_AB_ROOT: another tree's embcache and benchmarks (an A/B of two commits with one script)
sys.path.insert(0, os.environ.get("EMBCACHE_AB_ROOT") or str(pathlib.Path(__file__).resolve().parents[4]))
from benchmarks import gpu_table as g
from benchmarks.kernel_profile import _kernel_table
from embcache.policies import HitRateThreshold
from embcache.tiers import HostStore

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=200)
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--rows", default="ABCDEF", help="which rows (letters)")
args = p.parse_args()
import cupy
import torch

DIM, BATCH, MISSES = 128, 1024, 102


def row(label: str, admission, store_rows: int, batches_made: int, fresh: bool, policy: str = "lru") -> None:
    reps = args.reps
    store = HostStore(DIM, "float32", initial_rows=store_rows, pinned=True)
    store_keys = g.distinct_keys(10**15, store_rows, np)
    store.put_many(store_keys, np.random.default_rng(0).standard_normal((store_rows, DIM), np.float32))
    cache = g.filled_cache(DIM, "float32", g.GIB, tier=store, admission=admission, policy=policy)
    rng = np.random.default_rng(1)
    batches = []
    for s in range(batches_made):
        new = store_keys[s * MISSES:(s + 1) * MISSES] if fresh else rng.choice(store_keys, MISSES, replace=False)
        k = cupy.concatenate([g.cached_sample(cache, BATCH - MISSES, s), cupy.asarray(new)])
        batches.append(k[cupy.asarray(rng.permutation(BATCH))])
    out = cupy.empty((BATCH, DIM), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    turn = iter(range(10**9))
    with stream:
        for _ in range(5):
            cache.lookup(batches[next(turn) % len(batches)], out=out)
        keys = cupy.empty(BATCH, cupy.int64)
        # (the three calls of 2026-12-03 ran this loop inline, as gpu_table's own did then)
        graph, gpu = g.replay_times(cache, keys, out, stream, lambda: batches[next(turn) % len(batches)], reps)

        def replay(i):
            with stream:
                keys[...] = batches[next(turn) % len(batches)]
                graph.launch(stream)

        rows = _kernel_table(torch, replay, 40)
        stream.synchronize()
    last = cache.stats.last
    nodes = ", ".join(f"{name.split('(')[0]} {us:.2f}" for name, _, us in rows if "Memcpy" not in name)
    print(f"{label}: GPU {np.median(gpu):.2f} us (p10 {np.percentile(gpu, 10):.2f}, p90 {np.percentile(gpu, 90):.2f}); "
          f"nodes: {nodes}; last batch: misses {last.misses}, admitted {getattr(last, 'admitted', '?')}", flush=True)
    cache.close()
    store.close()


big = MISSES * (2 * args.reps + 60)
for rnd in range(args.rounds):
    print(f"round {rnd}")
    'A' in args.rows and row("A gpu_table not admitted: threshold, 408-row store, 4 batches", HitRateThreshold(0.5), MISSES * 4, 4, False)
    'B' in args.rows and row("B gpu_table admitted: always, large store, fresh", "always", big, 2 * args.reps + 60, True)
    'C' in args.rows and row("C threshold, large store, fresh", HitRateThreshold(0.5), big, 2 * args.reps + 60, True)
    'D' in args.rows and row("D threshold, large store, 4 batches", HitRateThreshold(0.5), big, 4, False)
    'E' in args.rows and row("E threshold, 408-row store, 4 batches, FIFO", HitRateThreshold(0.5), MISSES * 4, 4, False, "fifo")
    'F' in args.rows and row("F always, 408-row store, 4 batches (admitted once, then hits)", "always", MISSES * 4, 4, False)
