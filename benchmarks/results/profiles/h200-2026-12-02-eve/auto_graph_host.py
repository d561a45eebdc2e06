"""What gpu_table's 1,024-key "wall" (the host's enqueue of a stream-ordered lookup, bar 40 us) could become if
Cache.lookup replayed a graph of itself (a diagnostic for the next design step, run on a GPU; it reads private
members).  The 1,024-key rows of gpu_table.latency_row (dim 128, a pinned HostStore behind a 4 GiB-class cache):
all hits, and 10% misses admitted (fresh keys every call).  Host time of each, medians of 200:

- eager: ``cache.lookup(keys, out=out)`` on a stream, as gpu_table times it;
- graph + cudaMemcpyAsync: the same lookup captured once (torch, keep_graph), the keys copied into its static
  buffer by one cudaMemcpyAsync, then one cudaGraphLaunch;
- graph + node update: the capture begins with a memcpy node, pointed at the new keys
  (cudaGraphExecMemcpyNodeSetParams1D), then one cudaGraphLaunch.

The replays skip what Cache.lookup does on the host besides its kernels (the lock, checks, the event the tier's
writes wait on, the stats' absorption), so they are a floor for such a design, not its cost.

    python benchmarks/results/profiles/h200-2026-12-02-eve/auto_graph_host.py
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy as cp
import numpy as np
import torch

from benchmarks.gpu_table import GIB, cached_sample, distinct_keys, filled_cache
from embcache.tiers import HostStore
from trt_plugin import torch_runner

lib = torch_runner._cudart(torch)
assert lib is not None and torch_runner._keeps_graphs(torch)
memcpy, launch = cp.cuda.runtime.memcpyAsync, cp.cuda.runtime.graphLaunch
dim, batch, reps = 128, 1024, 200


def host_us(fn, n=reps):
    ts = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ts.append((time.perf_counter() - t) * 1e6)
        if i % 8 == 7:
            cp.cuda.Device().synchronize()
    cp.cuda.Device().synchronize()
    return float(np.median(ts))


def run(misses: int) -> None:
    made = 3 * reps + 20
    fresh = misses * made
    store = HostStore(dim, "float32", initial_rows=max(fresh, 16), pinned=True)
    store_keys = distinct_keys(10**15, fresh, np)
    if fresh:
        store.put_many(store_keys, np.random.default_rng(0).standard_normal((fresh, dim), np.float32))
    cache = filled_cache(dim, "float32", GIB, tier=store, admission="always")
    batches = []
    for s in range(made):
        new = store_keys[s * misses:(s + 1) * misses]
        k = cp.concatenate([cached_sample(cache, batch - misses, s), cp.asarray(new)])
        batches.append(k[cp.asarray(np.random.default_rng(s).permutation(batch))])
    turn = iter(range(10**9))
    out = cp.empty((batch, dim), cp.float32)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        s = side.cuda_stream
        with cp.cuda.ExternalStream(s):
            for _ in range(5):
                cache.lookup(batches[next(turn)], out=out)
        eager = host_us(lambda i: cache.lookup(batches[next(turn)], out=out, stream=s))
        static, shadow = cp.empty(batch, cp.int64), cp.empty(batch, cp.int64)
        graphs = {}
        for with_node in (False, True):
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph(keep_graph=True)
            g.capture_begin()
            if with_node:
                memcpy(static.data.ptr, shadow.data.ptr, batch * 8, 3, s)
            cache.lookup(static, out=out, stream=s)
            g.capture_end()
            g.instantiate()
            node = 0
            if with_node:
                node = torch_runner._memcpy_nodes(g, lib)[(static.data.ptr, shadow.data.ptr)]
            graphs[with_node] = (g, int(g.raw_cuda_graph_exec()), node)
        _, ea, _ = graphs[False]
        _, eb, nb = graphs[True]

        def by_copy(i):
            memcpy(static.data.ptr, batches[next(turn)].data.ptr, batch * 8, 3, s)
            launch(ea, s)

        def by_node(i):
            if lib.cudaGraphExecMemcpyNodeSetParams1D(eb, nb, static.data.ptr, batches[next(turn)].data.ptr,
                                                      batch * 8, 3):
                raise RuntimeError("the node update was refused")
            launch(eb, s)

        copy_us, node_us = host_us(by_copy), host_us(by_node)
        torch.cuda.synchronize()
    what = "all hits" if not misses else f"{misses} misses admitted"
    print(f"{batch} keys, {what}: host eager lookup {eager:.1f} us; graph + cudaMemcpyAsync {copy_us:.1f} us; "
          f"graph + node update {node_us:.1f} us", flush=True)
    for g, _, _ in graphs.values():
        g.reset()
    cache.close()
    store.close()


for share in (0.0, 0.1):
    run(int(batch * share))
