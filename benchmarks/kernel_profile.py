"""Where the DLRM benchmark's lookup spends its time, kernel by kernel (a diagnostic, not a benchmark).

    python -m benchmarks.kernel_profile [--gib 1] [--batches 32,1024,8192] [--policy lfu]

Builds ``benchmarks.trt_table``'s tables and cache, then for each batch size (26 keys a sample)
times eager ``lookup(keys, out=...)`` calls (wall, from Python, waited for), a captured lookup
replayed (GPU time between events around each replay) and lists each kernel's mean GPU time over
the replays, from CUPTI through ``torch.profiler`` (needs PyTorch; without it only the times print).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import _internals
from .trt_table import QUICK, _zipf_rows, dlrm_cache


def _kernel_table(torch, fn, reps: int) -> list[tuple[str, int, float]]:
    """(kernel name, launches per call, mean us per call) of ``fn`` run ``reps`` times, slowest first."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(reps):
            fn(i)
        torch.cuda.synchronize()
    rows = {}
    for e in prof.events():
        if e.device_type.name != "CUDA":
            continue
        name = e.name if len(e.name) < 70 else e.name[:67] + "..."
        count, total = rows.get(name, (0, 0.0))
        rows[name] = (count + 1, total + e.device_time)
    return sorted(((k, round(c / reps), t / reps) for k, (c, t) in rows.items()), key=lambda r: -r[2])


def _one_batch(torch, cache, cdfs, offsets, b: int, reps: int) -> None:
    import cupy as cp

    keys = _zipf_rows(cp, cdfs, b, 3 * reps + 1, b) - 1
    batches = [(keys[i] + offsets).reshape(-1) for i in range(3 * reps + 1)]
    n = batches[0].shape[0]
    out = cp.empty((n, cache.dim), cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    cache.lookup(batches[0], out=out, stream=stream)
    stream.synchronize()
    wall = []
    for i in range(reps):
        t = time.perf_counter()
        cache.lookup(batches[1 + i], out=out, stream=stream)
        returned = time.perf_counter() - t
        stream.synchronize()
        wall.append((returned, time.perf_counter() - t))
    wall = np.array(wall) * 1e6
    s0 = cache.stats
    kbuf = cp.empty_like(batches[0])
    with stream:
        cp.cuda.Device().synchronize()
        stream.begin_capture()
        cache.lookup(kbuf, out=out, stream=stream)
        graph = stream.end_capture()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    gpu = []

    def replay(i, timed=False):
        kbuf[...] = batches[1 + reps + i]  # on ``stream``: the caller entered it
        if timed:
            start.record(stream)
        graph.launch(stream)
        if timed:
            end.record(stream)

    for i in range(reps):
        with stream:
            replay(i, timed=True)
        end.synchronize()
        gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
    s1 = cache.stats
    misses = (s1.unique_misses - s0.unique_misses) / reps
    print(f"batch {b} ({n:,} keys): eager lookup returns after {np.median(wall[:, 0]):.1f} us, done after "
          f"{np.median(wall[:, 1]):.1f} us (medians); graph replay GPU {np.median(gpu):.1f} us; "
          f"{misses:.0f} distinct misses a batch, hit rate {(s1.hits - s0.hits) / (s1.lookups - s0.lookups):.3f}",
          flush=True)
    if torch is None:
        return

    def eager(i):
        cache.lookup(batches[1 + 2 * reps + i % reps], out=out, stream=stream)

    def replayed(i):
        with stream:
            replay(i % reps)

    def repeated(i):
        cache.lookup(batches[1], out=out, stream=stream)

    for label, fn in (("eager", eager), ("graph replay", replayed), ("eager, one batch repeated (hits)", repeated)):
        rows = _kernel_table(torch, fn, reps)
        print(f"  {label}: {sum(r[2] for r in rows):.1f} us of kernels a call, {sum(r[1] for r in rows)} launches")
        for name, count, us in rows[:14]:
            print(f"    {us:8.1f} us  x{count:<3} {name}")


def _python_profile(cache, cdfs, offsets, b: int, calls: int = 300) -> None:
    """cProfile of ``calls`` eager lookups of batch ``b`` on a non-blocking stream (host time only)."""
    import cProfile
    import pstats

    import cupy as cp

    keys = _zipf_rows(cp, cdfs, b, calls, 7) - 1
    batches = [(keys[i] + offsets).reshape(-1) for i in range(calls)]
    out = cp.empty((batches[0].shape[0], cache.dim), cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    cache.lookup(batches[0], out=out, stream=stream)
    stream.synchronize()
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    for k in batches:
        cache.lookup(k, out=out, stream=stream)
    profiler.disable()
    print(f"cProfile, {calls} eager lookups of batch {b}: {(time.perf_counter() - t) / calls * 1e6:.1f} us a call "
          "(profiled)")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(22)
    stream.synchronize()


def _shapes(cache, cdfs, offsets, b: int, reps: int = 20) -> None:
    """GPU time of the eager lookup of batch ``b`` under other launch shapes of the probe (a search for
    the source probe's shape: the tuning table's was timed on all-hit lookups)."""
    import cupy as cp

    keys = _zipf_rows(cp, cdfs, b, reps + 1, 11) - 1
    batches = [(keys[i] + offsets).reshape(-1) for i in range(reps + 1)]
    out = cp.empty((batches[0].shape[0], cache.dim), cp.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    backend = _internals.backend(cache)  # a diagnostic: it retunes the backend in place
    original, query_original = dict(backend.shape), backend.query_shape
    start, end = cp.cuda.Event(), cp.cuda.Event()
    for split in (False, True):
        for group in (4, 8, 16, 32):
            for kpg in (1, 2, 4):
                if group * kpg > 64:
                    continue
                shape = {**original, "group": group, "keys_per_group": kpg, "split": split}
                backend.retune(shape)
                cache.lookup(batches[0], out=out, stream=stream)  # compiles
                times = []
                for k in batches[1:]:
                    start.record(stream)
                    cache.lookup(k, out=out, stream=stream)
                    end.record(stream)
                    end.synchronize()
                    times.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
                print(f"  batch {b}, group {group:>2}, keys/group {kpg}, split {split!s:<5}: eager lookup "
                      f"{np.median(times):7.1f} us (events, median of {reps})", flush=True)
    backend.retune(original, query_original)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=QUICK["total_gib"])
    parser.add_argument("--batches", default="32,1024,8192")
    parser.add_argument("--policy", default="lfu")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--shapes", default="", help="batch sizes at which to time other probe launch shapes")
    parser.add_argument("--cprofile", action="store_true", help="also where an eager lookup's Python time goes")
    args = parser.parse_args()
    try:
        import torch

        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    made = dlrm_cache(args.gib, policy=args.policy, warm=QUICK["warm"])
    cache, cdfs, offsets = made["cache"], made["cdfs"], made["offsets"]
    for b in (int(x) for x in args.batches.split(",")):
        _one_batch(torch, cache, cdfs, offsets, b, args.reps)
    if args.cprofile:
        _python_profile(cache, cdfs, offsets, int(args.batches.split(",")[0]))
    if args.shapes:
        for b in (int(x) for x in args.shapes.split(",")):
            _shapes(cache, cdfs, offsets, b)
    cache.close()
    made["store"].close()


if __name__ == "__main__":
    main()
