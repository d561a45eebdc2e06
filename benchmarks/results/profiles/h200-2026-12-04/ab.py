"""gpu_table's 1,024-key rows, one tree's code per process: the GPU time of a replayed graph of the whole
lookup, timed two ways, and each node's mean GPU time.

    EMBCACHE_AB_ROOT=<tree> python benchmarks/results/profiles/h200-2026-12-04/ab.py [--reps 150] [--rows ABF] [--pdl off]

Rows (as h200-2026-12-03b/not_admitted.py's A, B, F; dim 128, 1,024 keys, LRU, a pinned HostStore):
A 102 misses not admitted (HitRateThreshold(0.5), a 408-row store, 4 batches cycled), B 102 fresh misses
admitted ("always"), F all hits.  "idle": events around a graph launch on an idle stream (gpu_table's
figure until 2026-12-04: it includes the wait for the host to submit the graph); "queued": a 40 us spin
kernel ahead of the start event, so the replay is queued when the event passes (the graph's own device time).
``--pdl off`` turns ordered_small's programmatic launch off (a tree that has it).
"""
import argparse
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, os.environ.get("EMBCACHE_AB_ROOT") or str(pathlib.Path(__file__).resolve().parents[4]))
from embcache import _cuda
from benchmarks import gpu_table as g
from benchmarks.kernel_profile import _kernel_table
from embcache.policies import HitRateThreshold
from embcache.tiers import HostStore

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=150)
p.add_argument("--rows", default="ABF")
p.add_argument("--pdl", default="on")
p.add_argument("--label", default="")
args = p.parse_args()
if args.pdl == "off":  # (its name until 2026-12-04's review, then with an underscore)
    _cuda.PROGRAMMATIC_LAUNCH = _cuda._PROGRAMMATIC_LAUNCH = False
import cupy
import torch

DIM, BATCH, MISSES = 128, 1024, 102
SPIN = cupy.RawKernel(r'''
extern "C" __global__ void spin(long long ns) {
    long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do { asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); } while (t - t0 < ns);
}''', "spin")


def timed(graph, keys, stream, take, reps, queued):
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    with stream:
        for _ in range(reps):
            keys[...] = take()
            if queued:
                SPIN((1,), (1,), (np.int64(40_000),))
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3)
    return np.array(times)


def row(label, admission, store_rows, batches_made, fresh):
    reps = args.reps
    store = HostStore(DIM, "float32", initial_rows=store_rows, pinned=True)
    store_keys = g.distinct_keys(10**15, store_rows, np)
    store.put_many(store_keys, np.random.default_rng(0).standard_normal((store_rows, DIM), np.float32))
    cache = g.filled_cache(DIM, "float32", g.GIB, tier=store, admission=admission, policy="lru")
    rng = np.random.default_rng(1)
    batches = []
    for s in range(batches_made):
        new = store_keys[s * MISSES:(s + 1) * MISSES] if fresh else rng.choice(store_keys, MISSES, replace=False)
        k = cupy.concatenate([g.cached_sample(cache, BATCH - MISSES, s), cupy.asarray(new)])
        batches.append(k[cupy.asarray(rng.permutation(BATCH))])
    out = cupy.empty((BATCH, DIM), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    turn = iter(range(10**9))

    def take():
        i = next(turn)
        if fresh and i >= len(batches):
            raise RuntimeError("out of fresh batches")
        return batches[i % len(batches)]

    with stream:
        for _ in range(5):
            cache.lookup(take(), out=out)
        keys = cupy.empty(BATCH, cupy.int64)
        stream.begin_capture()
        cache.lookup(keys, out=out)
        graph = stream.end_capture()
    idle = timed(graph, keys, stream, take, reps, False)
    queued = timed(graph, keys, stream, take, reps, True)

    def replay(i):
        with stream:
            keys[...] = take()
            graph.launch(stream)

    nodes = _kernel_table(torch, replay, 40)
    stream.synchronize()
    last = cache.stats.last
    names = ", ".join(f"{name.split('(')[0]} {us:.2f}" for name, _, us in nodes if "Memcpy" not in name)
    print(f"{args.label} {label}: idle {np.median(idle):.2f} us (p10 {np.percentile(idle, 10):.2f}, p90 "
          f"{np.percentile(idle, 90):.2f}); queued {np.median(queued):.2f} us (p10 {np.percentile(queued, 10):.2f}, "
          f"p90 {np.percentile(queued, 90):.2f}); nodes: {names}; last misses {last.misses}", flush=True)
    cache.close()
    store.close()


big = MISSES * (3 * args.reps + 80)
'A' in args.rows and row("A not admitted", HitRateThreshold(0.5), MISSES * 4, 4, False)
'B' in args.rows and row("B admitted, fresh", "always", big, 3 * args.reps + 80, True)
'F' in args.rows and row("F all hits", "always", MISSES * 4, 4, False)
