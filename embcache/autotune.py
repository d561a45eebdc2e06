"""``embcache autotune``: time the hit path's launch shapes on this GPU and write its tuning entry."""
from __future__ import annotations

import datetime
import itertools
import json

import numpy as np

from .kernels.tuning import TABLE_PATH, load_table

__all__ = ["autotune"]

GROUPS = (4, 8, 16, 32)
KEYS_PER_GROUP = (1, 2, 4)
BLOCKS = (256,)
# rows of these sizes stand for each shape in the table (max_row_bytes: 64, 128, 256, 512, any)
ROW_BYTES = (64, 128, 256, 512, 1024)


def _time_shapes(row_bytes: int, table_bytes: int, batch: int, repeat: int, progress) -> list[tuple[float, dict]]:
    import cupy

    from . import Cache
    from .layout import EMPTY_KEY

    dim = row_bytes // 4
    cache = Cache(table_bytes // row_bytes, dim, "lru", backend="gpu")
    b = cache._backend
    # fill with distinct keys straight through the backend: no tier, no per-batch bookkeeping
    keys = (cupy.arange(1, 2 * b.keys.shape[0], dtype=cupy.uint64) * np.uint64(0x9E3779B97F4A7C15)).view(cupy.int64)
    for part in cupy.array_split(keys[keys > EMPTY_KEY + 1], 8):
        part = cupy.sort(part)
        b.tick()
        b.insert_and_evict(part, cupy.ones(part.shape[0], cupy.int64), cupy.zeros((part.shape[0], dim), b.raw_dtype),
                           cupy.ones(part.shape[0], cupy.bool_), False)
    slots = cupy.random.default_rng(0).integers(0, b.keys.shape[0], 2 * batch)
    sample = b.keys[slots]
    sample = sample[sample != EMPTY_KEY][:batch]
    out = b.new_rows(sample.shape[0])
    results = []
    for group, kpg, block in itertools.product(GROUPS, KEYS_PER_GROUP, BLOCKS):
        shape = {"group": group, "keys_per_group": kpg, "block": block}
        b.retune(shape)
        times = []
        for i in range(repeat + 2):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            b.find_and_gather(sample, out)
            end.record()
            end.synchronize()
            if i >= 2:
                times.append(cupy.cuda.get_elapsed_time(start, end))
        results.append((float(np.median(times)), shape))
        progress.update(1)
    cache.close()
    cupy.get_default_memory_pool().free_all_blocks()
    return sorted(results, key=lambda r: r[0])


def autotune(table_gib: float = 2.0, batch: int = 1 << 20, repeat: int = 10, write: str | None = None,
             progress: bool = True) -> dict:
    """Time every candidate shape for each row size; return (and optionally write) this GPU's entry.

    Parameters
    ----------
    table_gib : float
        Size of the row array the lookups gather from, GiB (larger than L2 by far).
    batch : int
        Keys a timed lookup, all hits.
    repeat : int
        Timed runs per shape (the median counts).
    write : str, optional
        Tuning table to update (``embcache/kernels/tuning.json`` ships with the package).
    """
    import cupy
    from tqdm.auto import tqdm

    dev = cupy.cuda.Device()
    cc = f"{dev.compute_capability[:-1]}.{dev.compute_capability[-1]}"
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
    shapes, report = [], []
    total = len(ROW_BYTES) * len(GROUPS) * len(KEYS_PER_GROUP) * len(BLOCKS)
    with tqdm(total=total, desc=f"autotune sm_{dev.compute_capability}", disable=not progress) as bar:
        for i, row_bytes in enumerate(ROW_BYTES):
            ranked = _time_shapes(row_bytes, int(table_gib * 2**30), batch, repeat, bar)
            best_ms, best = ranked[0]
            shapes.append({"max_row_bytes": row_bytes if i < len(ROW_BYTES) - 1 else None, **best,
                           "ms_per_million_keys": round(best_ms * 2**20 / batch, 4)})
            report.append((row_bytes, ranked))
    entry = {"device": name, "measured": f"{datetime.date.today().isoformat()}, embcache autotune "
             f"(table {table_gib} GiB, {batch} keys a lookup, all hits, median of {repeat})", "shapes": shapes}
    if write:
        table = load_table(write)
        table["entries"][cc] = entry
        with open(write, "w") as f:
            json.dump(table, f, indent=1)
    for row_bytes, ranked in report:
        print(f"rows of {row_bytes} bytes: " + "; ".join(
            f"{r[1]['group']}x{r[1]['keys_per_group']}/{r[1]['block']} {r[0]:.3f} ms" for r in ranked[:4]))
    return {cc: entry}


DEFAULT_TABLE = str(TABLE_PATH)
