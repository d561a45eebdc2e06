"""Where a GPU lookup's time goes, phase by phase (a diagnostic, not a benchmark).

    python -m benchmarks.phases [--hit-rate 0.9] [--dim 128] [--gib 1] [--repeat 10]

Wraps the backend's methods, the host lookup's plan and the tier fetch in timers that
synchronize the device before and after each call, then runs lookups of
``benchmarks.gpu_table.miss_setup``.  Synchronizing serializes the work, so the
phases add up to more than an unwrapped lookup takes; read them as shares.
"""
from __future__ import annotations

import argparse
import collections
import time

from . import _internals
from .gpu_table import GIB, miss_setup


def timed_phases(cache, totals: dict):
    """Within the block, every backend phase and tier fetch adds its seconds to ``totals`` (the device
    synchronized before and after each)."""
    import cupy

    return _internals.timed_phases(cache, totals, cupy.cuda.Device().synchronize)


def main() -> None:
    import cupy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hit-rate", type=float, default=0.9)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--gib", type=float, default=1.0, help="cache row array size in GiB")
    parser.add_argument("--batch", type=int, default=1 << 20)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    cache, store, batches, _ = miss_setup(args.dim, int(args.gib * GIB), args.batch, args.hit_rate)
    for k in batches:
        cache.lookup(k)  # warm-up: compile and fill CuPy's caches
    totals = collections.defaultdict(float)
    with timed_phases(cache, totals):
        cupy.cuda.Device().synchronize()
        t = time.perf_counter()
        for i in range(args.repeat):
            cache.lookup(batches[i % len(batches)])
        cupy.cuda.Device().synchronize()
        wall = time.perf_counter() - t
    print(f"{args.repeat} lookups of {args.batch:,} keys at {args.hit_rate:.0%} hits, dim {args.dim}: "
          f"{wall / args.repeat * 1e3:.3f} ms each (phases synchronized)")
    for label, sec in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:<32}{sec / args.repeat * 1e3:9.3f} ms  {sec / wall:6.1%}")
    rest = wall - sum(totals.values())
    print(f"  {'everything else (Python, checks)':<32}{rest / args.repeat * 1e3:9.3f} ms  {rest / wall:6.1%}")
    cache.close()
    store.close()


if __name__ == "__main__":
    main()
