"""How fast the GPU reads random rows of host memory in place, by how that memory was made (a diagnostic).

    python -m benchmarks.zero_copy_pages [--gib 1] [--rows 4000,30000,300000]

A pinned HostStore's misses are read by the GPU over PCIe, row by row, at random places of the
store.  This compares, for the same random rows of 512 bytes, memory made with ``cudaHostAlloc``
(what HostStore uses: ``cupy.cuda.PinnedMemory``) and anonymous memory asked for as transparent huge
pages (``madvise(MADV_HUGEPAGE)``), touched, then registered with ``cudaHostRegister``: if the
GPU's translation of host pages limits random reads, fewer, larger pages read faster.  Also the
same rows read in ascending order (sorted indices), one contiguous block (the PCIe ceiling), and fresh
random rows at every repetition ("fresh": what a cache's misses are; the others read the same rows again).
"""
from __future__ import annotations

import argparse
import ctypes
import mmap

import numpy as np

from .gpu_table import gather_ceiling

ROW_BYTES = 512
_MADV_HUGEPAGE = 14


def _huge_registered(nbytes: int):
    """(numpy view, keep-alive) of ``nbytes`` of anonymous memory advised as huge pages, registered."""
    import cupy

    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    view = np.frombuffer(m, np.uint8)
    addr = view.ctypes.data
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    advised = libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(nbytes), _MADV_HUGEPAGE) == 0
    view[::4096] = 1  # touch every page (the kernel backs them with huge pages where it can)
    cupy.cuda.runtime.hostRegister(addr, nbytes, 2)  # cudaHostRegisterMapped
    return view, m, advised


def _anon_huge_kb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _measure(gib: float, rows_list: list[int], huge_too: bool) -> None:
    import cupy

    nbytes = int(gib * 2**30) // ROW_BYTES * ROW_BYTES
    total_rows = nbytes // ROW_BYTES
    before = _anon_huge_kb()
    pinned = cupy.cuda.PinnedMemory(nbytes, cupy.cuda.runtime.hostAllocMapped)
    pinned_view = np.frombuffer(cupy.cuda.PinnedMemoryPointer(pinned, 0), np.uint8, nbytes)
    pinned_view[::4096] = 1
    kinds = [("cudaHostAlloc (HostStore today)", pinned_view)]
    if huge_too:
        huge, _mapping, advised = _huge_registered(nbytes)  # the mapping stays open while huge is read
        kinds.append(("huge pages + cudaHostRegister", huge))
        print(f"{gib} GiB each; madvise(MADV_HUGEPAGE) {'accepted' if advised else 'refused'}; AnonHugePages "
              f"{before:,} kB before, {_anon_huge_kb():,} kB after touching the advised memory", flush=True)
    rng = np.random.default_rng(0)
    for label, view in kinds:
        ptr = np.uint64(cupy.cuda.runtime.pointerGetAttributes(view.ctypes.data).devicePointer)
        for n in rows_list:
            idx = rng.integers(0, total_rows, n)
            # fresh random rows at every repetition, as a cache's misses are (read again, they read faster)
            fresh = [cupy.asarray(rng.integers(0, total_rows, n)) for _ in range(24)]
            for order, rows in (("random", cupy.asarray(idx)), ("sorted", cupy.asarray(np.sort(idx))),
                                ("contiguous", cupy.arange(n)), ("fresh", fresh)):
                ms, kernel = gather_ceiling(ptr, total_rows, ROW_BYTES, rows)
                print(f"{gib:5.1f} GiB {label:<34} {n:>8,} rows {order:<10} {ms * 1e3:9.1f} us  "
                      f"{n / ms / 1e3:7.1f} M rows/s  {n * ROW_BYTES / ms / 1e6:6.1f} GB/s  ({kernel})", flush=True)
    if huge_too:
        cupy.cuda.runtime.hostUnregister(huge.ctypes.data)
    del pinned_view, pinned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", default="1", help="sizes of memory to read from, GiB, comma-separated")
    parser.add_argument("--rows", default="4000,30000,300000")
    parser.add_argument("--huge", action="store_true", help="also huge pages + cudaHostRegister")
    args = parser.parse_args()
    for gib in (float(x) for x in args.gib.split(",")):
        _measure(gib, [int(x) for x in args.rows.split(",")], args.huge)


if __name__ == "__main__":
    main()
