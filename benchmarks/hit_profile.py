"""Where a large all-hit lookup spends its time, kernel by kernel (a diagnostic, not a benchmark).

    python -m benchmarks.hit_profile [--gib 4.25] [--dims 32,128] [--policies lru,fifo] [--shapes] [--cprofile]

For each policy and dim: a full cache of ``--gib`` GiB of rows (32 ways), 2^20 cached keys a lookup,
``Cache.lookup(keys, out=)`` on the host path (an unpinned HostStore) and stream-ordered (a pinned
one): the GPU time between events around each call, the wall time, the same run's gather ceiling,
and each kernel's mean GPU time a call from CUPTI through ``torch.profiler`` (needs PyTorch).
``--shapes``: the GPU time of the host-path lookup under other launch shapes of the probe;
``--cprofile``: where the host-path lookup's Python time goes; ``--no-kernels``: no kernel table;
``--flag NAME``: the probe's shape with the flag NAME (``digests``, ``split``) off and on, three pairs
alternating.  The policy ``query`` times ``Cache.query(keys, out=)`` of an LRU cache instead of a lookup.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from embcache.tiers import HostStore

from . import _internals
from .gpu_table import GIB, cached_sample, filled_cache, gather_ceiling
from .kernel_profile import _kernel_table

BATCH = 1 << 20


def _events_us(cp, fn, reps: int) -> tuple[float, float]:
    """(median GPU us between events around ``fn``, median wall us of ``fn`` until done)."""
    start, end = cp.cuda.Event(), cp.cuda.Event()
    gpu, wall = [], []
    for i in range(reps):
        t = time.perf_counter()
        start.record()
        fn(i)
        end.record()
        end.synchronize()
        wall.append((time.perf_counter() - t) * 1e6)
        gpu.append(cp.cuda.get_elapsed_time(start, end) * 1e3)
    return float(np.median(gpu)), float(np.median(wall))


def _one(torch, policy: str, dim: int, table: int, ordered: bool, reps: int, shapes: bool, cprofile: bool,
         no_split: bool = False, flag: str | None = None) -> None:
    import cupy as cp

    query = policy == "query"
    tier = HostStore(dim, "float32", pinned=True) if ordered else None
    cache = filled_cache(dim, "float32", table, tier=tier, policy="lru" if query else policy,
                         max_batch=BATCH if ordered else None)
    b = _internals.backend(cache)
    keys = [cached_sample(cache, BATCH, s) for s in range(4)]
    ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, b.find(keys[0]), 20)
    out = b.new_rows(BATCH)

    def look(i):
        if query:
            cache.query(keys[i % 4], out=out)
        else:
            cache.lookup(keys[i % 4], out=out)

    for i in range(3):
        look(i)
    cp.cuda.Device().synchronize()
    gpu, wall = _events_us(cp, look, reps)
    label = f"{policy}, dim {dim}, {'stream-ordered' if ordered else 'host path'}"
    print(f"{label}: GPU {gpu:.1f} us (events), wall {wall:.1f} us; ceiling ({kernel}) {ceiling_ms * 1e3:.1f} us, "
          f"ratio {ceiling_ms * 1e3 / gpu:.3f} (GPU) / {ceiling_ms * 1e3 / wall:.3f} (wall)", flush=True)
    if torch is not None:
        rows = _kernel_table(torch, look, reps)
        print(f"  {sum(r[2] for r in rows):.1f} us of kernels a call, {sum(r[1] for r in rows)} launches")
        for name, count, us in rows[:10]:
            print(f"    {us:8.1f} us  x{count:<3} {name}")
    if cprofile and not ordered:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(10 * reps):  # enough calls that each line's total is above cProfile's rounding
            look(i)
        profiler.disable()
        print(f"  cProfile of {10 * reps} calls (seconds in total):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    if flag:  # the same shape with a launch-shape flag off and on, three pairs alternating
        original, query_original = dict(b.shape), b.query_shape
        for pair in range(3):
            for on in (False, True):
                b.retune({**original, flag: on}, None if query_original is None else {**query_original, flag: on})
                look(0)  # compiles
                g, _ = _events_us(cp, look, reps)
                print(f"    {flag} {on!s:<5} (pair {pair}): {g:7.1f} us, ratio {ceiling_ms * 1e3 / g:.3f}", flush=True)
        b.retune(original, query_original)
    if shapes and not ordered:  # each shape for the lookup and query alike
        original, query_original = dict(b.shape), b.query_shape
        print(f"  probe shape now: {original}" + ("" if query_original is None else f", query's {query_original}"))
        look(0)
        expected = out.copy()  # every shape must give these rows (groups 1 and 2 are beyond the tests' grid)
        for split in (False,) if no_split else (False, True):
            for group in (1, 2, 4, 8, 16, 32):  # 1 and 2: beyond autotune's grid (a lane reads 32 / 16 digests)
                for kpg in (1, 2, 4):
                    if group * kpg > 64:
                        continue
                    b.retune({**original, "group": group, "keys_per_group": kpg, "split": split})
                    look(0)  # compiles
                    if not bool((out == expected).all()):
                        raise AssertionError(f"group {group}, keys/group {kpg}, split {split}: other rows than "
                                             f"the table's shape gives")
                    g, _ = _events_us(cp, look, 10)
                    print(f"    group {group:>2}, keys/group {kpg}, split {split!s:<5}: {g:7.1f} us, "
                          f"ratio {ceiling_ms * 1e3 / g:.3f}", flush=True)
        b.retune(original, query_original)
    cache.close()
    if tier is not None:
        tier.close()
    cp.get_default_memory_pool().free_all_blocks()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.25)
    parser.add_argument("--dims", default="32,128")
    parser.add_argument("--policies", default="lru,fifo")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--shapes", action="store_true")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--no-split", action="store_true", help="--shapes: the one-kernel shapes only")
    parser.add_argument("--host-only", action="store_true", help="the host path only")
    parser.add_argument("--no-kernels", action="store_true", help="no kernel table (PyTorch's profiler)")
    parser.add_argument("--flag", choices=("digests", "split"),
                        help="a launch-shape flag to time off and on, three pairs")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    table = int(args.gib * GIB)
    for policy in args.policies.split(","):
        for dim in (int(d) for d in args.dims.split(",")):
            for ordered in (False,) if policy == "query" or args.host_only else (False, True):
                _one(None if args.no_kernels else torch, policy, dim, table, ordered, args.reps, args.shapes,
                     args.cprofile, args.no_split, args.flag)


if __name__ == "__main__":
    main()
