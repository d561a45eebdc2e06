"""How the persisting-L2 set-aside's size changes a random gather and an all-hit lookup, with and without an
access policy window over the probe's digests (after l2_digests.py: with 37.5 MiB set aside, the same
run's gather ceiling read 226-234 us at dim 32 against 84 us without).  FIFO, host path, 4.25 GiB, 2^20
all-hit keys, 32 ways.  For each set-aside (MiB): the gather ceiling, the lookup on a plain stream, the
lookup on a stream whose window covers the digests (hit ratio set-aside / digests, at most 1).

    python l2_setaside.py [--dims 32,128] [--mib 0,4,8,16,24,37.5]
"""
import argparse
import ctypes
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy as cp  # noqa: E402

from benchmarks import _internals  # noqa: E402
from benchmarks.gpu_table import GIB, cached_sample, filled_cache, gather_ceiling  # noqa: E402
from benchmarks.hit_profile import BATCH, _events_us  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--dims", default="32,128")
p.add_argument("--mib", default="0,4,8,16,24,37.5")
p.add_argument("--reps", type=int, default=20)
a = p.parse_args()

drv = ctypes.CDLL("libcuda.so.1")


class Window(ctypes.Structure):  # CUaccessPolicyWindow
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]


class Value(ctypes.Union):  # CUstreamAttrValue: 64 bytes
    _fields_ = [("window", Window), ("pad", ctypes.c_ubyte * 64)]


def check(status, what):
    if status:
        raise RuntimeError(f"{what}: CUresult {status}")


cp.zeros(1).sum()  # the primary context, current in this thread
max_persist = cp.cuda.runtime.deviceGetAttribute(108, cp.cuda.runtime.getDevice())
for dim in map(int, a.dims.split(",")):
    cache = filled_cache(dim, "float32", int(4.25 * GIB), policy="fifo")
    b = _internals.backend(cache)
    keys = [cached_sample(cache, BATCH, s) for s in range(4)]
    idx = b.find(keys[0])
    out = b.new_rows(BATCH)
    digests = b.digests

    def look(i):
        cache.lookup(keys[i % 4], out=out)

    for rnd in range(2):
        for mib in map(float, a.mib.split(",")):
            size = min(int(mib * 2**20), max_persist)
            cp.cuda.Device().synchronize()
            check(drv.cuCtxResetPersistingL2Cache(), "reset")
            check(drv.cuCtxSetLimit(ctypes.c_int(0x06), ctypes.c_size_t(size)), "cuCtxSetLimit")
            ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, idx, 10)
            plain = cp.cuda.Stream(non_blocking=True)
            with plain:
                look(0)
                g_plain, _ = _events_us(cp, look, a.reps)
            g_win = float("nan")
            if size:
                s = cp.cuda.Stream(non_blocking=True)
                v = Value()
                v.window = Window(digests.data.ptr, digests.nbytes, min(1.0, size / digests.nbytes), 2, 1)
                check(drv.cuStreamSetAttribute(ctypes.c_void_p(s.ptr), ctypes.c_int(1), ctypes.byref(v)), "attr")
                with s:
                    look(0)
                    g_win, _ = _events_us(cp, look, a.reps)
            c = ceiling_ms * 1e3
            print(f"dim {dim} round {rnd} set-aside {size / 2**20:5.1f} MiB: ceiling {c:6.1f} us ({kernel}); "
                  f"lookup {g_plain:6.1f} us (ratio {c / g_plain:.3f}); with the digests' window {g_win:6.1f} us "
                  f"(ratio {c / g_win:.3f}; against the no-set-aside ceiling, see round's 0 MiB row)", flush=True)
    cache.close()
    cp.get_default_memory_pool().free_all_blocks()
check(drv.cuCtxResetPersistingL2Cache(), "reset")
check(drv.cuCtxSetLimit(ctypes.c_int(0x06), ctypes.c_size_t(0)), "cuCtxSetLimit")
