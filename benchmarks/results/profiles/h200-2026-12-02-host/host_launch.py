"""Where a stream-ordered lookup's host time goes, launch by launch (a diagnostic, run on a GPU).

    python benchmarks/results/profiles/h200-2026-12-02-host/host_launch.py [--calls 2000]

gpu_table's 1,024-key row (dim 128, 102 new missed keys a batch from a pinned HostStore, admitted): the
wall of eager ``Cache.lookup(keys, out=)`` calls that return without waiting, the host time of each
kernel launch inside them (each backend kernel wrapped in a timer), and for each launched kernel the host
cost of launching an empty kernel of the same signature through CuPy's ``RawKernel.__call__`` against the
driver's ``cuLaunchKernel`` with the arguments packed once (``cupy.cuda.driver.launchKernel``).
"""
import argparse
import ctypes
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy
import numpy as np

from benchmarks import _internals
from benchmarks import gpu_table as g
from embcache.tiers import HostStore

p = argparse.ArgumentParser()
p.add_argument("--calls", type=int, default=2000)
p.add_argument("--batch", type=int, default=1024)
a = p.parse_args()

batch, dim, misses = a.batch, 128, a.batch // 10
made = 2 * a.calls + 64
store = HostStore(dim, "float32", initial_rows=misses * made, pinned=True)
store_keys = g.distinct_keys(10**15, misses * made, np)
store.put_many(store_keys, np.random.default_rng(0).standard_normal((misses * made, dim), np.float32))
cache = g.filled_cache(dim, "float32", g.GIB, tier=store, admission="always")
rng = np.random.default_rng(1)
batches = []
for s in range(made):
    k = cupy.concatenate([g.cached_sample(cache, batch - misses, s % 8), cupy.asarray(store_keys[s * misses:(s + 1) * misses])])
    batches.append(k[cupy.asarray(rng.permutation(batch))])
out = cupy.empty((batch, dim), cupy.float32)
stream = cupy.cuda.Stream(non_blocking=True)
turn = iter(range(10**9))
b = _internals.backend(cache)


def run(calls, sync_every=64):
    walls = np.empty(calls)
    for i in range(calls):
        k = batches[next(turn) % made]
        t = time.perf_counter()
        cache.lookup(k, out=out, stream=stream)
        walls[i] = time.perf_counter() - t
        if i % sync_every == sync_every - 1:
            stream.synchronize()
    stream.synchronize()
    return walls * 1e6


run(50)
w = run(a.calls)
print(f"eager lookup of {batch} keys ({misses} new misses admitted), returns after: median {np.median(w):.1f} us, "
      f"p10 {np.percentile(w, 10):.1f}, p90 {np.percentile(w, 90):.1f}", flush=True)


class Timed:
    def __init__(self, name, kernel):
        self.name, self.kernel, self.t, self.n, self.first = name, kernel, 0.0, 0, None

    def __call__(self, grid, block, args, **kw):
        t = time.perf_counter()
        self.kernel(grid, block, args, **kw)
        self.t += time.perf_counter() - t
        self.n += 1
        if self.first is None:
            self.first = (grid, block, args, kw)


timed = {}
for kernels in {id(d): d for d in (b._k, b._launch._k)}.values():
    for name in list(kernels):
        kernels[name] = timed.setdefault(name, Timed(name, kernels[name]))
memset = [0.0, 0]
orig_memset = cupy.cuda.runtime.memsetAsync


def timed_memset(*args):
    t = time.perf_counter()
    orig_memset(*args)
    memset[0] += time.perf_counter() - t
    memset[1] += 1


cupy.cuda.runtime.memsetAsync = timed_memset
w = run(a.calls)
cupy.cuda.runtime.memsetAsync = orig_memset
print(f"with timers: median {np.median(w):.1f} us a call; host time of launches a call:", flush=True)
for t in sorted(timed.values(), key=lambda t: -t.t):
    if t.n:
        print(f"  {t.name:<24} x{t.n / a.calls:.2f} a call  {t.t / t.n * 1e6:6.2f} us a launch  "
              f"({len(t.first[2])} arguments)")
if memset[1]:
    print(f"  memsetAsync              x{memset[1] / a.calls:.2f} a call  {memset[0] / memset[1] * 1e6:6.2f} us")


def ctype_of(x):
    if isinstance(x, cupy.ndarray):
        return "const void*", ctypes.c_void_p(x.data.ptr)
    x = np.asarray(x)
    return {np.dtype(np.int32): ("int", ctypes.c_int32), np.dtype(np.int64): ("long long", ctypes.c_int64),
            np.dtype(np.uint64): ("unsigned long long", ctypes.c_uint64),
            np.dtype(np.float64): ("double", ctypes.c_double), np.dtype(np.float32): ("float", ctypes.c_float),
            }[x.dtype][0], {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.int64): ctypes.c_int64,
                            np.dtype(np.uint64): ctypes.c_uint64, np.dtype(np.float64): ctypes.c_double,
                            np.dtype(np.float32): ctypes.c_float}[x.dtype](x.item())


launch_kernel = getattr(cupy.cuda.driver, "launchKernel", None)
print(f"cupy {cupy.__version__}; driver.launchKernel {'present' if launch_kernel else 'absent'}", flush=True)
reps = 20000
with stream:
    for t in sorted(timed.values(), key=lambda t: -t.t):
        if not t.n:
            continue
        grid, block, args, kw = t.first
        sig = [ctype_of(x) for x in args]
        src = ('extern "C" __global__ void empty(' + ", ".join(f"{c} a{i}" for i, (c, _) in enumerate(sig)) + ") {}")
        empty = cupy.RawKernel(src, "empty")
        empty(grid, block, args)
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            empty(grid, block, args)
        raw_us = (time.perf_counter() - t0) / reps * 1e6
        stream.synchronize()
        line = f"  {t.name:<24} empty kernel, {len(args)} args: RawKernel {raw_us:.2f} us a launch"
        if launch_kernel is not None:
            vals = [v for _, v in sig]
            params = (ctypes.c_void_p * len(vals))(*[ctypes.addressof(v) for v in vals])
            f = empty.kernel.ptr
            gx, bx = grid[0], block[0]
            launch_kernel(f, gx, 1, 1, bx, 1, 1, 0, stream.ptr, ctypes.addressof(params), 0)
            stream.synchronize()
            t0 = time.perf_counter()
            for _ in range(reps):
                launch_kernel(f, gx, 1, 1, bx, 1, 1, 0, stream.ptr, ctypes.addressof(params), 0)
            drv_us = (time.perf_counter() - t0) / reps * 1e6
            stream.synchronize()
            # what a prepared launch pays a call: two pointer fields set, then the launch
            t0 = time.perf_counter()
            for _ in range(reps):
                vals[0].value = args[0].data.ptr if isinstance(args[0], cupy.ndarray) else 0
                vals[1].value = vals[1].value
                launch_kernel(f, gx, 1, 1, bx, 1, 1, 0, stream.ptr, ctypes.addressof(params), 0)
            set_us = (time.perf_counter() - t0) / reps * 1e6
            stream.synchronize()
            line += f"; driver, packed once {drv_us:.2f} us; two fields set + launch {set_us:.2f} us"
        print(line, flush=True)
    t0 = time.perf_counter()
    for _ in range(reps):
        cupy.cuda.runtime.memsetAsync(out.data.ptr, 0, 64, stream.ptr)
    print(f"  memsetAsync of 64 bytes {(time.perf_counter() - t0) / reps * 1e6:.2f} us", flush=True)
    ev = cupy.cuda.Event(disable_timing=True)
    t0 = time.perf_counter()
    for _ in range(reps):
        ev.record(stream)
    print(f"  Event.record {(time.perf_counter() - t0) / reps * 1e6:.2f} us", flush=True)
    t0 = time.perf_counter()
    for _ in range(reps):
        stream.is_capturing()
    print(f"  Stream.is_capturing {(time.perf_counter() - t0) / reps * 1e6:.2f} us", flush=True)
    t0 = time.perf_counter()
    for _ in range(reps):
        cupy.cuda.get_current_stream()
    print(f"  get_current_stream {(time.perf_counter() - t0) / reps * 1e6:.2f} us", flush=True)
    stream.synchronize()

import cProfile
import pstats

prof = cProfile.Profile()
prof.enable()
run(500)
prof.disable()
pstats.Stats(prof).sort_stats("tottime").print_stats(25)
cache.close()
store.close()
