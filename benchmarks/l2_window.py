"""Would L2 keep the probes' digests if asked to?  An experiment, not a benchmark (nothing here changes the package).

    python -m benchmarks.l2_window [--gib 4.25] [--dims 32,64,128] [--policies fifo,lru] [--reps 20]

An all-hit lookup of 2^20 keys reads, per key, the set's 32 digest bytes, the matching slot's record and
the row: two random sectors more than the gather ceiling's one row.  The digests are one byte a slot
(4.25 GiB of dim-32 rows: 35.6 MB), near H100/H200's L2 (50 MB), where the rows streaming past evict them.
This times ``Cache.lookup(keys, out=)`` on the host path with and without a CUDA access-policy window
over the digest array (``cuStreamSetAttribute``: persisting hits for ``hitRatio`` of its lines, the
set-aside L2 as large as the device allows), three pairs alternating, beside the same run's gather
ceiling.  The set-aside and the window are this process's context settings: both are put back
(window removed, persisting lines reset, the limit restored) before the next case and at exit.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes

from . import _internals
from .gpu_table import GIB, cached_sample, filled_cache, gather_ceiling
from .hit_profile import _events_us

BATCH = 1 << 20
# cuda.h (CUDA 13.0): CU_LAUNCH_ATTRIBUTE_ACCESS_POLICY_WINDOW, CUaccessProperty, CU_LIMIT_PERSISTING_L2_CACHE_SIZE,
# CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE / _MAX_ACCESS_POLICY_WINDOW_SIZE
_ACCESS_POLICY_WINDOW = 1
_NORMAL, _STREAMING, _PERSISTING = 0, 1, 2
_LIMIT_PERSISTING_L2 = 0x06
_ATTR_MAX_PERSISTING_L2, _ATTR_MAX_WINDOW = 108, 109


class _Window(ctypes.Structure):  # CUaccessPolicyWindow
    _fields_ = [("base_ptr", ctypes.c_void_p), ("num_bytes", ctypes.c_size_t), ("hitRatio", ctypes.c_float),
                ("hitProp", ctypes.c_int), ("missProp", ctypes.c_int)]


class _AttrValue(ctypes.Union):  # CUlaunchAttributeValue (CUstreamAttrValue): 64 bytes
    _fields_ = [("window", _Window), ("pad", ctypes.c_char * 64)]


def _driver():
    return ctypes.CDLL("libcuda.so.1")


def _check(code: int, what: str) -> None:
    if code:
        raise RuntimeError(f"{what} returned CUDA error {code}")


def _set_window(stream_ptr: int, base: int, nbytes: int, hit_ratio: float) -> None:
    value = _AttrValue()
    value.window = _Window(base, nbytes, hit_ratio, _PERSISTING if nbytes else _NORMAL,
                           _STREAMING if nbytes else _NORMAL)
    _check(_driver().cuStreamSetAttribute(ctypes.c_void_p(stream_ptr), _ACCESS_POLICY_WINDOW, ctypes.byref(value)),
           "cuStreamSetAttribute(access policy window)")


def _attribute(attribute: int, device: int) -> int:
    out = ctypes.c_int()
    _check(_driver().cuDeviceGetAttribute(ctypes.byref(out), attribute, device), "cuDeviceGetAttribute")
    return out.value


@contextlib.contextmanager
def persisting(stream_ptr: int, base: int, nbytes: int):
    """A window of persisting accesses over ``[base, base + nbytes)`` on the stream (CuPy's current
    device), the set-aside at the device's maximum; yields ``(set-aside bytes, window bytes)``.  The
    window, the persisting lines and the set-aside limit are put back on leaving."""
    import cupy

    driver, device = _driver(), cupy.cuda.Device().id
    most, widest = _attribute(_ATTR_MAX_PERSISTING_L2, device), _attribute(_ATTR_MAX_WINDOW, device)
    before = ctypes.c_size_t()
    _check(driver.cuCtxGetLimit(ctypes.byref(before), _LIMIT_PERSISTING_L2), "cuCtxGetLimit")
    if not most or not widest:
        raise RuntimeError("this GPU has no persisting L2 (an access-policy window needs compute capability 8.0+)")
    nbytes = min(nbytes, widest)
    _check(driver.cuCtxSetLimit(_LIMIT_PERSISTING_L2, ctypes.c_size_t(most)), "cuCtxSetLimit")
    try:
        _set_window(stream_ptr, base, nbytes, min(1.0, most / nbytes))
        try:
            yield most, nbytes
        finally:
            try:
                _set_window(stream_ptr, 0, 0, 0.0)
            finally:
                cupy.cuda.Device().synchronize()
                _check(driver.cuCtxResetPersistingL2Cache(), "cuCtxResetPersistingL2Cache")
    finally:
        _check(driver.cuCtxSetLimit(_LIMIT_PERSISTING_L2, before), "cuCtxSetLimit")


def _one(policy: str, dim: int, table: int, reps: int) -> None:
    import cupy as cp

    cache = filled_cache(dim, "float32", table, policy=policy)
    b = _internals.backend(cache)
    if b.digests is None:
        print(f"{policy}, dim {dim}: this shape has no digests; nothing to keep in L2")
        cache.close()
        return
    keys = [cached_sample(cache, BATCH, s) for s in range(4)]
    ceiling_ms, kernel = gather_ceiling(b.values, b.values.shape[0], b.row_bytes, b.find(keys[0]), 20)
    out = b.new_rows(BATCH)
    stream = cp.cuda.Stream(non_blocking=True)
    cp.cuda.Device().synchronize()  # the keys were made on the legacy stream, which `stream` does not wait for

    def look(i):
        cache.lookup(keys[i % 4], out=out, stream=stream)

    with stream:
        for i in range(3):
            look(i)
    stream.synchronize()
    digest_bytes = int(b.digests.nbytes)
    print(f"{policy}, dim {dim}: digests {digest_bytes / 1e6:.1f} MB; ceiling ({kernel}) {ceiling_ms * 1e3:.1f} us",
          flush=True)
    for pair in range(3):
        for on in (False, True):
            with stream:
                if on:
                    with persisting(stream.ptr, b.digests.data.ptr, digest_bytes) as (aside, window):
                        for i in range(3):
                            look(i)  # warm the set-aside
                        g, _ = _events_us(cp, look, reps)
                else:
                    g, _ = _events_us(cp, look, reps)
            label = f"window {window / 1e6:.1f} MB, set-aside {aside / 1e6:.1f} MB" if on else "no window"
            print(f"    {label:<40} (pair {pair}): {g:7.1f} us, ratio {ceiling_ms * 1e3 / g:.3f}", flush=True)
    cache.close()
    cp.get_default_memory_pool().free_all_blocks()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=4.25)
    parser.add_argument("--dims", default="32,64,128")
    parser.add_argument("--policies", default="fifo,lru")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    for policy in args.policies.split(","):
        for dim in (int(d) for d in args.dims.split(",")):
            _one(policy, dim, int(args.gib * GIB), args.reps)


if __name__ == "__main__":
    main()
