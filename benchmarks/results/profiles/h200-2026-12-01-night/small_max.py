"""The stream-ordered lookup's one-block miss path (ordered_small) against the kernel-per-phase path, by batch
size (a diagnostic, run on a GPU; it sets the backend's private threshold ``_small`` in place).

    python benchmarks/results/profiles/h200-2026-12-01-night/small_max.py [--gib 1] [--batches 16,32,64,128,256]

For the DLRM benchmark's tables and cache (benchmarks.trt_table.dlrm_cache) and fresh Criteo-shaped batches
of 26 keys a sample: eager lookups on a non-blocking stream (median wall until the call returns and until
its kernels are done) and a captured lookup replayed with fresh keys (median GPU time between events around
the replay): the one launch (forced for every size) with one block and with ``--blocks`` blocks, each a
share of the sets, and a kernel per phase (the threshold at 0), two rounds.
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import numpy as np
import cupy as cp

from benchmarks.trt_table import QUICK, _zipf_rows, dlrm_cache

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=1.0)
p.add_argument("--batches", default="16,32,48,64,96,128,192,256,315")
p.add_argument("--reps", type=int, default=30)
p.add_argument("--blocks", type=int, default=8, help="the one launch's blocks to time beside one")
a = p.parse_args()
setup = dlrm_cache(a.gib, warm=QUICK["warm"] if a.gib <= 1 else (1 << 17, 32), progress=False)
cache, cdfs, offsets = setup["cache"], setup["cdfs"], setup["offsets"]
b = cache._backend
tuned = b._small
print(f"one-launch path up to {tuned} keys in {b._small_blocks} blocks (tuning); ORDERED_BLOCK {b._oblock}",
      flush=True)


def measure(batch: int, seed: int) -> tuple[float, float, float]:
    keys = _zipf_rows(cp, cdfs, batch, 2 * a.reps + 2, seed) - 1
    lk = [(keys[i] + offsets).reshape(-1) for i in range(2 * a.reps + 2)]
    n = lk[0].shape[0]
    out = cp.empty((n, cache.dim), cp.float32)
    s = cp.cuda.Stream(non_blocking=True)
    cache.lookup(lk[0], out=out, stream=s)
    s.synchronize()
    ret, done = [], []
    for k in lk[1:a.reps + 1]:
        t = time.perf_counter()
        cache.lookup(k, out=out, stream=s)
        ret.append(time.perf_counter() - t)
        s.synchronize()
        done.append(time.perf_counter() - t)
    kbuf = cp.empty_like(lk[0])
    with s:
        cp.cuda.Device().synchronize()
        s.begin_capture()
        cache.lookup(kbuf, out=out, stream=s)
        graph = s.end_capture()
    e0, e1 = cp.cuda.Event(), cp.cuda.Event()
    gpu = []
    for k in lk[a.reps + 1:]:
        with s:
            kbuf[...] = k
            e0.record(s)
            graph.launch(s)
            e1.record(s)
        e1.synchronize()
        gpu.append(cp.cuda.get_elapsed_time(e0, e1) * 1e3)
    cp.cuda.Device().synchronize()
    return np.median(ret) * 1e6, np.median(done) * 1e6, float(np.median(gpu))


blocks_tuned = b._small_blocks


def path(small: int, blocks: int) -> None:
    b._small, b._small_blocks, b._small_one = small, blocks, small  # one block up to the same size here
    b._ordered = None  # the scratch again, with a region for each block
    b.reserve(1 << 15)


variants = [(tuned, 1, "one block")] + ([(tuned, a.blocks, f"{a.blocks} blocks")] if a.blocks > 1 else []) + \
    [(0, 1, "a kernel a phase")]
for batch in map(int, a.batches.split(",")):
    n = batch * 26
    for rnd in range(2):
        for small, blocks, label in variants:
            path(max(small, n) if small else 0, blocks)  # the one launch forced for every size here
            r, d, g = measure(batch, 1000 * rnd + batch)
            print(f"batch {batch:>4} ({n:>5} keys) {label:<17} round {rnd}: eager returns {r:6.1f} us, done {d:6.1f} us;"
                  f" graph replay GPU {g:6.1f} us", flush=True)
path(tuned, blocks_tuned)
cache.close()
