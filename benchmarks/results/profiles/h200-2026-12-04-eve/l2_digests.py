"""Does keeping the probe's digests in L2 (an access policy window marked persisting) shorten an all-hit
lookup?  gpu_table's hit rows (4.25 GiB of rows, 2^20 cached keys a lookup, 32 ways, the host path), FIFO and
LRU, dims 32 / 64 / 128: the GPU time between events around ``Cache.lookup(keys, out=)`` on a stream
without a window and on one whose window covers the digests, three pairs alternating, beside the same
run's gather ceiling.  The window and the persisting set-aside are this process's context's (driver API:
cuCtxSetLimit, cuStreamSetAttribute); the set-aside is reset at the end.

    python l2_digests.py [--dims 32,64,128] [--policies fifo,lru]
"""
import argparse
import ctypes
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import _internals  # noqa: E402
from benchmarks.gpu_table import GIB, cached_sample, filled_cache, gather_ceiling  # noqa: E402
from benchmarks.hit_profile import BATCH, _events_us  # noqa: E402


class Window(ctypes.Structure):  # CUaccessPolicyWindow
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]


class Value(ctypes.Union):  # CUstreamAttrValue (CUlaunchAttributeValue): 64 bytes
    _fields_ = [("window", Window), ("pad", ctypes.c_ubyte * 64)]


drv = ctypes.CDLL("libcuda.so.1")
PERSISTING, STREAMING, NORMAL = 2, 1, 0


def check(status, what):
    if status:
        raise RuntimeError(f"{what}: CUresult {status}")


p = argparse.ArgumentParser()
p.add_argument("--dims", default="32,64,128")
p.add_argument("--policies", default="fifo,lru")
p.add_argument("--reps", type=int, default=20)
a = p.parse_args()
rt = cp.cuda.runtime
dev = rt.getDevice()
max_persist = rt.deviceGetAttribute(108, dev)  # cudaDevAttrMaxPersistingL2CacheSize
max_window = rt.deviceGetAttribute(109, dev)  # cudaDevAttrMaxAccessPolicyWindowSize
l2 = rt.deviceGetAttribute(38, dev)  # cudaDevAttrL2CacheSize
print(f"L2 {l2 / 2**20:.1f} MiB, persisting set-aside at most {max_persist / 2**20:.1f} MiB, "
      f"window at most {max_window / 2**20:.1f} MiB", flush=True)
cp.zeros(1).sum()  # makes the primary context current in this thread (the driver calls need it)
check(drv.cuCtxSetLimit(ctypes.c_int(0x06), ctypes.c_size_t(max_persist)), "cuCtxSetLimit")
for policy in a.policies.split(","):
    for dim in map(int, a.dims.split(",")):
        cache = filled_cache(dim, "float32", int(4.25 * GIB), policy=policy)
        b = _internals.backend(cache)
        keys = [cached_sample(cache, BATCH, s) for s in range(4)]
        ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, b.find(keys[0]), 20)
        out = b.new_rows(BATCH)
        digests = b.digests
        if digests is None:
            print(f"{policy}, dim {dim}: this shape probes without digests ({b.shape}); skipped", flush=True)
            cache.close()
            continue
        nbytes = min(digests.nbytes, max_window)
        ratio = min(1.0, max_persist / nbytes)
        plain, windowed = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
        v = Value()
        v.window = Window(digests.data.ptr, nbytes, ratio, PERSISTING, STREAMING)
        check(drv.cuStreamSetAttribute(ctypes.c_void_p(windowed.ptr), ctypes.c_int(1), ctypes.byref(v)),
              "cuStreamSetAttribute")

        def look(i):
            cache.lookup(keys[i % 4], out=out)

        print(f"{policy}, dim {dim}: digests {digests.nbytes / 2**20:.1f} MiB, window {nbytes / 2**20:.1f} MiB at "
              f"hit ratio {ratio:.2f}; ceiling ({kernel}) {ceiling_ms * 1e3:.1f} us", flush=True)
        expected = None
        for pair in range(3):
            for name, s in (("no window", plain), ("digests persisting", windowed)):
                if s is plain:  # lines marked persisting stay so until reset: none left for the plain stream
                    cp.cuda.Device().synchronize()
                    check(drv.cuCtxResetPersistingL2Cache(), "cuCtxResetPersistingL2Cache")
                with s:
                    for i in range(3):
                        look(i)
                    s.synchronize()
                    g, _ = _events_us(cp, look, a.reps)
                    look(0)
                    s.synchronize()
                    got = out.get()
                    if expected is None:
                        expected = got
                    assert (got == expected).all(), "the window changed the rows"
                print(f"  {name:<18} (pair {pair}): {g:7.1f} us, ratio {ceiling_ms * 1e3 / g:.3f}", flush=True)
        cache.close()
        del plain, windowed
        cp.get_default_memory_pool().free_all_blocks()
check(drv.cuCtxResetPersistingL2Cache(), "cuCtxResetPersistingL2Cache")
check(drv.cuCtxSetLimit(ctypes.c_int(0x06), ctypes.c_size_t(0)), "cuCtxSetLimit")
