"""What an all-hit LRU lookup must cost beyond the gather ceiling, measured on the GPU at hand.

    python -m benchmarks.probe_bound [--json results.json] [--quick]

For each row size, a full embcache GPU table (4.25 GiB of rows, 32 ways, LRU) and 1M cached keys
drawn at random.  Beside the gather ceiling of issue 4's table and the real ``Cache.lookup``, it
times stripped-down probes (benchmarks/probe_bound.cu: no counters, no misses, no host work):

- the record (key, score) apart from the row, as embcache keeps it, or in the 16 bytes before the
  row, so that one access reads both;
- the slot found through the set's digests, or given (``known``): no index read at all, only the
  key's record, which any exact cache must read to check the key;
- with or without the LRU touch (the hit's new score stored into its record, the old one saved).

The slot-known probe with the touch bounds any design that checks each key against its stored copy
and stores each hit's LRU score in device memory: it reads no index at all.
Times are medians of device-event timings (ms) after warm-up.
"""
from __future__ import annotations

import datetime
import pathlib

import numpy as np

from embcache._cuda import SHARED_INCLUDE, launch_grid
from embcache.autotune import median_ms
from embcache.kernels.gpu import CUDA_DIR, defines

from ._internals import backend
from ._internals import kernel as backend_kernel
from .gpu_table import GIB, _block, cached_sample, filled_cache, gather_ceiling, run_cli

_TOUCHED_SCORE = 1 << 40  # any score: the timing does not depend on it


def _module(row_bytes: int):
    import cupy

    text = "".join(f"#define {k} {v}\n" for k, v in defines(WAYS=32, ROW_BYTES=row_bytes, VEC=16).items())
    source = pathlib.Path(__file__).with_name("probe_bound.cu").read_text()
    return cupy.RawModule(code=text + source, options=("-std=c++17", f"-I{CUDA_DIR}", f"-I{SHARED_INCLUDE}"))


def bound_rows(dim: int, table_bytes: int, batch: int, repeat: int) -> list[dict]:
    """One row per probe variant at ``dim`` float32, each with its ratio to the gather ceiling."""
    import cupy

    cache = filled_cache(dim, "float32", table_bytes)
    b = backend(cache)
    row_bytes, slots_total = b.row_bytes, b.keys.shape[0]
    mod = _module(row_bytes)
    kernel = {name: mod.get_function(name) for name in ("probe_apart", "probe_beside", "make_slab")}
    digests = b.digests
    block = _block()
    fill = (launch_grid(slots_total, block),), (block,)
    if digests is None:  # the tuning table turned them off for this row size: the probes need them
        digests = cupy.empty(slots_total, cupy.uint8)
        backend_kernel(cache, "make_digests")(*fill, (b.table, np.int64(slots_total), digests))
    slab = cupy.empty(slots_total * (row_bytes + 16), cupy.uint8)
    kernel["make_slab"](*fill, (b.table, b.values, slab, np.int64(slots_total)))
    keys = [cached_sample(cache, batch, s) for s in range(4)]
    known = [b.find(k) for k in keys]
    out = cupy.empty((batch, row_bytes // 4), cupy.uint32)
    slots, old = cupy.empty(batch, cupy.int64), cupy.empty(batch, cupy.int64)
    grid = (-(-batch * 4 // block),)
    n, score, num_sets = np.int64(batch), np.int64(_TOUCHED_SCORE), np.uint64(b.num_sets)

    def launch(layout: str, by_digests: bool, touch: bool):
        def run(t: int):
            given = np.uint64(0) if by_digests else known[t]
            head = (b.table, digests, b.values) if layout == "apart" else (slab, digests)
            kernel[f"probe_{layout}"](grid, (block,), head + (num_sets, keys[t], n, out, slots, old, score, given,
                                                            np.int32(touch)))
        return run

    variants = {(layout, by_digests, touch): launch(layout, by_digests, touch)
                for layout in ("apart", "beside") for by_digests in (True, False) for touch in (True, False)}
    # every variant finds every key's slot and copies its row (the touch leaves the rows alone)
    expected = [b.values[s].view(cupy.uint32).reshape(batch, -1) for s in known]
    for name, run in variants.items():
        for t in range(4):
            out.fill(0)
            run(t)
            if not (bool((slots == known[t]).all()) and bool((out == expected[t]).all())):
                raise AssertionError(f"probe {name} at dim {dim} found other slots or rows than the cache's")
    ceiling_ms, ceiling_kernel = gather_ceiling(b.values, slots_total, row_bytes, known[0], repeat)
    turn = iter(range(10**9))
    rows = []
    for (layout, by_digests, touch), run in variants.items():
        ms = median_ms(lambda: run(next(turn) % 4), repeat)
        rows.append({"dim": dim, "case": f"record {layout} the row, slot {'by digests' if by_digests else 'known'}, "
                                         f"{'LRU touch' if touch else 'no touch'}",
                     "ms": ms, "ceiling_ms": ceiling_ms, "ratio": ceiling_ms / ms})
    lookup_ms = median_ms(lambda: cache.lookup(keys[next(turn) % 4]), repeat)
    rows.append({"dim": dim, "case": "Cache.lookup (LRU, all hits), for reference", "ms": lookup_ms,
                 "ceiling_ms": ceiling_ms, "ratio": ceiling_ms / lookup_ms, "ceiling": ceiling_kernel})
    cache.close()
    return rows


def measure(quick: bool = False) -> dict:
    import cupy

    table = GIB if quick else 4 * GIB + GIB // 4
    rows = []
    for dim in (32, 64, 128):
        rows += bound_rows(dim, table, 1 << 20, 10 if quick else 20)
        print(*(f"dim {r['dim']:>3}  {r['case']:<62}{r['ms']:8.3f} ms  {r['ratio']:.3f}" for r in rows[-9:]),
              sep="\n", flush=True)
        cupy.get_default_memory_pool().free_all_blocks()
    dev = cupy.cuda.Device()
    return {"device": cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode(),
            "date": datetime.date.today().isoformat(), "table_gib": table / GIB, "batch": 1 << 20, "rows": rows}


def main() -> None:
    run_cli(__doc__, measure)  # measure prints each row size's lines as it goes


if __name__ == "__main__":
    main()
