"""Whether host cores gather a batch's missed rows faster than the GPU reads them in place (a diagnostic).

    python -m benchmarks.host_gather [--gib 16] [--rows 3887,30829,468462] [--threads 1,4,8,15]

Over a 16 GiB pinned store, the GPU reads fresh random 512-byte rows in place at about 18 GB/s
(zero-copy-fresh.txt), where it reads one contiguous block at about 49 GB/s.  HPS gathers the missed
rows on the host into a contiguous staging buffer and copies that.  This measures, for fresh random
rows of the same store, each part of that alternative: the host threads' gather into pinned staging
(Numba ``prange``), the GPU's read of the contiguous staging in place, a ``cudaMemcpyAsync`` of it, and
the two pipelined in chunks (the host gathers chunk k while the copy engine moves chunk k-1), against
the GPU's own read of the same fresh rows in place.  Every rate is bytes of rows per second.
"""
from __future__ import annotations

import argparse
import itertools
import time

import numba
import numpy as np

from .gpu_table import gather_ceiling
from .zero_copy_pages import _huge_registered

ROW_BYTES = 512
_WORDS = ROW_BYTES // 8


@numba.njit(parallel=True, nogil=True, cache=True)
def _gather(rows, idx, out):
    for i in numba.prange(idx.shape[0]):
        r = idx[i]
        for w in range(_WORDS):
            out[i, w] = rows[r, w]


_LANES = 8


@numba.njit(parallel=True, nogil=True, cache=True)
def _gather8(rows, idx, out):
    # eight rows' words in one loop body: eight independent misses in flight per core, not one row's lines
    n = idx.shape[0]
    for j in numba.prange((n + _LANES - 1) // _LANES):
        lo = j * _LANES
        hi = min(lo + _LANES, n)
        for w in range(_WORDS):
            for i in range(lo, hi):
                out[i, w] = rows[idx[i], w]


@numba.njit(parallel=True, nogil=True, cache=True)
def _fill(rows):
    for r in numba.prange(rows.shape[0]):
        for w in range(_WORDS):
            rows[r, w] = r * _WORDS + w


def _huge(nbytes: int):
    """(keep-alive, view) of anonymous memory in transparent huge pages, registered (zero_copy_pages')."""
    view, mapping, _advised = _huge_registered(nbytes)
    return mapping, view


def _pinned(nbytes: int):
    import cupy

    mem = cupy.cuda.PinnedMemory(nbytes, cupy.cuda.runtime.hostAllocMapped)
    view = np.frombuffer(cupy.cuda.PinnedMemoryPointer(mem, 0), np.uint8, nbytes)
    return mem, view


def _median(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> None:
    import cupy

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gib", type=float, default=16.0)
    p.add_argument("--rows", default="3887,30829,468462")
    p.add_argument("--threads", default="1,4,8,15")
    p.add_argument("--chunks", default="4,8,16")
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--huge", action="store_true", help="the store in transparent huge pages + cudaHostRegister")
    a = p.parse_args()
    rows_list = [int(x) for x in a.rows.split(",")]
    total = int(a.gib * 2**30) // ROW_BYTES
    t = time.perf_counter()
    _mem, view = (_huge if a.huge else _pinned)(total * ROW_BYTES)
    table = view.view(np.uint64).reshape(total, _WORDS)
    _fill(table)
    kind = "huge-page" if a.huge else "cudaHostAlloc"
    print(f"{a.gib} GiB {kind} pinned store of {total:,} rows of {ROW_BYTES} B made and filled in "
          f"{time.perf_counter() - t:.1f} s; numba threading layer {numba.threading_layer()}, "
          f"{numba.config.NUMBA_NUM_THREADS} threads available", flush=True)
    ptr = np.uint64(cupy.cuda.runtime.pointerGetAttributes(table.ctypes.data).devicePointer)
    rng = np.random.default_rng(0)
    stream = cupy.cuda.Stream(non_blocking=True)
    for n in rows_list:
        _one_size(n, table, total, ptr, rng, stream, a)


def _one_size(n: int, table, total: int, ptr, rng, stream, a) -> None:
    """Every measurement for ``n`` fresh random rows (a function, so its closures bind its own names)."""
    import cupy

    gb = n * ROW_BYTES / 1e6
    fresh = [rng.integers(0, total, n) for _ in range(a.repeat + 2)]
    fresh_dev = [cupy.asarray(x) for x in fresh]
    ms, kernel = gather_ceiling(ptr, total, ROW_BYTES, fresh_dev, repeat=a.repeat)
    print(f"{n:>8,} fresh rows: GPU reads in place {ms * 1e3:9.1f} us {gb / ms:6.1f} GB/s ({kernel})", flush=True)
    _smem, sview = _pinned(n * ROW_BYTES)
    staging = sview.view(np.uint64).reshape(n, _WORDS)
    sptr = np.uint64(cupy.cuda.runtime.pointerGetAttributes(staging.ctypes.data).devicePointer)
    ms, kernel = gather_ceiling(sptr, n, ROW_BYTES, cupy.arange(n), repeat=a.repeat)
    print(f"{'':>8}  GPU reads the contiguous staging in place {ms * 1e3:9.1f} us {gb / ms:6.1f} GB/s ({kernel})")
    dev = cupy.empty((n, _WORDS), cupy.uint64)

    def copy():
        cupy.cuda.runtime.memcpyAsync(dev.data.ptr, staging.ctypes.data, n * ROW_BYTES, 1, stream.ptr)
        stream.synchronize()

    copy()
    ms = _median(copy, a.repeat)
    print(f"{'':>8}  cudaMemcpyAsync of the staging {ms * 1e3:9.1f} us {gb / ms:6.1f} GB/s (host clock)")
    for threads in [int(x) for x in a.threads.split(",")]:
        numba.set_num_threads(threads)
        turn = iter(range(1 << 30))
        for name, kernel in (("row by row", _gather), ("8 rows at once", _gather8)):
            kernel(table, fresh[0][:16], staging[:16])
            ms = _median(lambda kernel=kernel, turn=turn: kernel(table, fresh[next(turn) % len(fresh)], staging),
                         a.repeat)
            print(f"{'':>8}  host gather {name:<14} {threads:>2} threads {ms * 1e3:9.1f} us {gb / ms:6.1f} GB/s",
                  flush=True)
    for chunks in [int(x) for x in a.chunks.split(",")]:
        if n < 1024 * chunks:
            continue
        bounds = np.linspace(0, n, chunks + 1).astype(np.int64)
        turn = iter(range(1 << 30))

        def pipelined(bounds=bounds, turn=turn):
            idx = fresh[next(turn) % len(fresh)]
            for lo, hi in itertools.pairwise(bounds):
                _gather(table, idx[lo:hi], staging[lo:hi])
                cupy.cuda.runtime.memcpyAsync(dev.data.ptr + int(lo) * ROW_BYTES,
                                              staging.ctypes.data + int(lo) * ROW_BYTES,
                                              int(hi - lo) * ROW_BYTES, 1, stream.ptr)
            stream.synchronize()

        ms = _median(pipelined, a.repeat)
        print(f"{'':>8}  gather + copy pipelined in {chunks:>2} chunks, {numba.get_num_threads()} threads "
              f"{ms * 1e3:9.1f} us {gb / ms:6.1f} GB/s", flush=True)
    _gather8(table, fresh[0], staging)
    ok = np.array_equal(staging, table[fresh[0]])
    print(f"{'':>8}  (a staged row checked against the store: {'equal' if ok else 'DIFFERENT'})")


if __name__ == "__main__":
    main()
