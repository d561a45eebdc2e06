"""A/B of a large stream-ordered lookup's missed rows read on a side stream (GPUBackend.overlap_source_rows)
against the probe reading them itself, on trt_table's 16 GiB DLRM cache (26 tables, dim 128, pinned
store, 20% LFU).  Per batch size, rounds alternate the two; each round captures the lookup in a CUDA
graph, warms it with 3 replays, then times replays on fresh batches: GPU time between events, and the
wall of replay + synchronize.  Medians in us.

    python overlap_ab.py [--gib 16] [--rounds 3]
"""
import argparse
import time

import cupy as cp
import numpy as np

from benchmarks._internals import backend
from benchmarks.trt_table import _zipf_rows, dlrm_cache

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=16.0)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--batches", default="1024,8192,131072")
args = p.parse_args()
t0 = time.perf_counter()
made = dlrm_cache(args.gib, progress=False)
cache, cdfs, offsets = made["cache"], made["cdfs"], made["offsets"]
b = backend(cache)
print(f"cache of {cache.capacity:,} rows over {made['rows']:,} ready in {time.perf_counter() - t0:.0f} s", flush=True)
ITERS = {1024: 60, 8192: 30, 131072: 8}
for batch in map(int, args.batches.split(",")):
    n = batch * 26
    iters = ITERS.get(batch, 20)
    b.reserve(n)
    got = {True: [], False: []}
    for r in range(args.rounds):
        for flag in (True, False):
            b.overlap_source_rows = flag
            keys = (_zipf_rows(cp, cdfs, batch, iters + 1, 1000 * r + batch + flag) - 1 + offsets).reshape(iters + 1, -1)
            kbuf, out = cp.empty(n, cp.int64), cp.empty((n, 128), cp.float32)
            stream = cp.cuda.Stream(non_blocking=True)
            cp.cuda.Device().synchronize()
            with stream:
                kbuf[...] = keys[0]
                stream.begin_capture()
                cache.lookup(kbuf, out=out)
                graph = stream.end_capture()
                for _ in range(3):
                    graph.launch(stream)
                stream.synchronize()
                s0 = cache.stats
                gpu, wall = [], []
                start, end = cp.cuda.Event(), cp.cuda.Event()
                for i in range(1, iters + 1):
                    kbuf[...] = keys[i]
                    stream.synchronize()
                    t = time.perf_counter()
                    start.record(stream)
                    graph.launch(stream)
                    end.record(stream)
                    end.synchronize()
                    wall.append((time.perf_counter() - t) * 1e6)
                    gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
                s1 = cache.stats
            hit = (s1.hits - s0.hits) / max(1, s1.lookups - s0.lookups)
            got[flag].append((float(np.median(gpu)), float(np.median(wall)), hit))
            print(f"batch {batch:>7,} round {r} overlap={flag!s:5}: GPU {np.median(gpu):9.1f} us, wall "
                  f"{np.median(wall):9.1f} us, hit rate {hit:.3f}", flush=True)
            del graph
    for flag in (True, False):
        g = [x[0] for x in got[flag]]
        print(f"batch {batch:>7,} overlap={flag!s:5}: GPU median of rounds {np.median(g):9.1f} us "
              f"(rounds {', '.join(f'{v:.1f}' for v in g)})", flush=True)
b.overlap_source_rows = True
cache.close()
made["store"].close()
