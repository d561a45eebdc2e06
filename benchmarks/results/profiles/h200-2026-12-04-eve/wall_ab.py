"""The wall time of a plain ``Cache.lookup`` from Python (gpu_table's three 1,024-key rows, dim 128, a pinned
HostStore: the stream-ordered lookup, which returns without waiting), in the tree named by EMBCACHE_AB_ROOT,
beside the host's own speed (an empty CuPy kernel launch), and optionally where that host time goes (cProfile).

    EMBCACHE_AB_ROOT=<tree> python wall_ab.py [--reps 400] [--profile N] [--label L]
"""
import argparse
import cProfile
import io
import os
import pathlib
import pstats
import sys
import time

sys.path.insert(0, os.environ.get("EMBCACHE_AB_ROOT") or str(pathlib.Path(__file__).resolve().parents[4]))
import cupy  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import gpu_table as g  # noqa: E402
from embcache.policies import HitRateThreshold  # noqa: E402
from embcache.tiers import HostStore  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=400)
p.add_argument("--profile", type=int, default=0)
p.add_argument("--label", default="")
a = p.parse_args()

empty = cupy.RawKernel('extern "C" __global__ void nothing(const long long* a, long long n) {}', "nothing")
dummy = cupy.zeros(1, cupy.int64)
for _ in range(50):
    empty((1,), (32,), (dummy, np.int64(1)))
t = []
for _ in range(2000):
    s = time.perf_counter()
    empty((1,), (32,), (dummy, np.int64(1)))
    t.append((time.perf_counter() - s) * 1e6)
cupy.cuda.Device().synchronize()
print(f"[{a.label}] empty CuPy launch: median {np.median(t):.2f} us (p10 {np.percentile(t, 10):.2f})", flush=True)

dim, batch, misses = 128, 1024, 102
for case, frac, admit in (("all hits", 0, False), ("102 misses not admitted", 0.1, False),
                          ("102 misses admitted", 0.1, True)):
    m = int(batch * frac)
    calls = 10 + a.reps + a.profile
    fresh = m * calls if admit else m * 4
    store = HostStore(dim, "float32", initial_rows=max(fresh, 16), pinned=True)
    sk = g.distinct_keys(10**15, fresh, np)
    if fresh:
        store.put_many(sk, np.random.default_rng(0).standard_normal((fresh, dim), np.float32))
    cache = g.filled_cache(dim, "float32", g.GIB, tier=store, admission="always" if admit else HitRateThreshold(0.5))
    rng = np.random.default_rng(1)
    batches = []
    for s in range(calls if admit else 4):
        new = sk[s * m:(s + 1) * m] if admit else rng.choice(sk, m, replace=False)
        k = cupy.concatenate([g.cached_sample(cache, batch - m, s), cupy.asarray(new, dtype=cupy.int64)])
        batches.append(k[cupy.asarray(rng.permutation(batch))])
    out = cupy.empty((batch, dim), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    turn = iter(range(10**9))
    with stream:
        for _ in range(10):
            cache.lookup(batches[next(turn) % len(batches)], out=out)
        walls = []
        for _ in range(a.reps):
            k = batches[next(turn) % len(batches)]
            s = time.perf_counter()
            cache.lookup(k, out=out)
            walls.append((time.perf_counter() - s) * 1e6)
            if len(walls) % 50 == 0:
                stream.synchronize()  # keep the queue short: the wall, not the queue's back pressure
        stream.synchronize()
        print(f"[{a.label}] {case}: wall median {np.median(walls):.2f} us (p10 {np.percentile(walls, 10):.2f}, "
              f"p90 {np.percentile(walls, 90):.2f}); misses of the last {cache.stats.last.misses}", flush=True)
        if a.profile:
            pr = cProfile.Profile()
            pr.enable()
            for i in range(a.profile):
                cache.lookup(batches[next(turn) % len(batches)], out=out)
                if i % 50 == 49:
                    stream.synchronize()
            pr.disable()
            stream.synchronize()
            buf = io.StringIO()
            st = pstats.Stats(pr, stream=buf)
            st.sort_stats("tottime").print_stats(28)
            print(f"[{a.label}] {case}: cProfile of {a.profile} lookups, by own time", flush=True)
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip()
                            and not line.startswith("   Ordered")), flush=True)
    cache.close()
    store.close()
