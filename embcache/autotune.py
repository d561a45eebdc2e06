"""``embcache autotune``: time the hit path's launch shapes on this GPU and write its tuning entry."""
from __future__ import annotations

import datetime
import itertools
import json

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .kernels.tuning import TABLE_PATH, load_table, utility_block

if TYPE_CHECKING:  # the annotations only
    from .kernels.gpu import GPUBackend

__all__ = ["autotune", "distinct_keys", "fill_every_set", "median_ms"]

GROUPS = (4, 8, 16, 32)
KEYS_PER_GROUP = (1, 2, 4)
BLOCKS = (256,)
DIGESTS = (False, True)
SPLIT = (False, True)
# rows of these sizes stand for each shape in the table (max_row_bytes: 64, 128, 256, 512, any)
ROW_BYTES = (64, 128, 256, 512, 1024)


_ODD = np.uint64(0x9E3779B97F4A7C15)  # multiplying by an odd number permutes uint64: distinct keys


def distinct_keys(start: int, n: int, xp: Any) -> Any:
    """Up to n distinct, well-spread int64 keys (``start + i`` times an odd constant), none reserved: a (<= n,)
    int64 array of ``xp`` (NumPy or CuPy, the module itself)."""
    from .layout import LOCKED_KEY

    k = (xp.arange(start, start + n, dtype=xp.uint64) * _ODD).view(xp.int64)
    return k[k > LOCKED_KEY]


def fill_every_set(backend: GPUBackend, seed: int = 0, max_passes: int = 3) -> None:
    """Insert distinct keys with random rows straight through a GPUBackend until every set is full.

    Stops after ``max_passes`` times the capacity in keys (a set may then still have a free way).
    """
    import cupy

    from .layout import EMPTY_KEY

    chunk, start, slots = 1 << 22, 1 + seed * 2**40, backend.keys.shape[0]
    for first in range(start, start + max_passes * slots, chunk):
        if not bool((backend.keys == EMPTY_KEY).any()):
            break
        keys = cupy.sort(distinct_keys(first, chunk, cupy))
        words = cupy.random.random((keys.shape[0], backend.row_bytes // 4), dtype=cupy.float32).view(cupy.uint32)
        rows = words.view(backend.raw_dtype).reshape(keys.shape[0], backend.dim)
        backend.tick()
        n = keys.shape[0]
        backend.insert_and_evict(keys, cupy.ones(n, cupy.int64), rows, cupy.ones(n, cupy.bool_), False)


def median_ms(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Median device time of ``fn()`` in ms, between events on the current stream, after ``warmup`` calls."""
    import cupy

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))
    return float(np.median(times))


def _time_shapes(row_bytes: int, table_bytes: int, batch: int, repeat: int, progress) -> list[tuple[float, dict]]:
    import cupy

    from . import Cache
    from .layout import EMPTY_KEY

    dim = row_bytes // 4
    cache = Cache(table_bytes // row_bytes, dim, "lru", backend="gpu")
    b = cache._backend
    fill_every_set(b)
    slots = cupy.random.default_rng(0).integers(0, b.keys.shape[0], 2 * batch)
    sample = b.keys[slots]
    sample = sample[sample != EMPTY_KEY][:batch]
    results = []
    for group, kpg, block, digests, split in itertools.product(GROUPS, KEYS_PER_GROUP, BLOCKS, DIGESTS, SPLIT):
        shape = {"group": group, "keys_per_group": kpg, "block": block, "digests": digests, "split": split}
        b.retune(shape)
        # the public all-hit lookup, LRU: the probe stores the hits' scores as it goes
        ms = median_ms(lambda: cache.lookup(sample), repeat, warmup=2)
        results.append((ms, shape))
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
    total = len(ROW_BYTES) * len(GROUPS) * len(KEYS_PER_GROUP) * len(BLOCKS) * len(DIGESTS) * len(SPLIT)
    with tqdm(total=total, desc=f"autotune sm_{dev.compute_capability}", disable=not progress) as bar:
        for i, row_bytes in enumerate(ROW_BYTES):
            ranked = _time_shapes(row_bytes, int(table_gib * 2**30), batch, repeat, bar)
            best_ms, best = ranked[0]
            shapes.append({"max_row_bytes": row_bytes if i < len(ROW_BYTES) - 1 else None, **best,
                           "ms_per_million_keys": round(best_ms * 2**20 / batch, 4)})
            report.append((row_bytes, ranked))
    # the utility kernels' block is not timed here: the entry keeps the one the table gives this GPU
    target = load_table(write) if write else None
    entry = {"device": name, "measured": f"{datetime.date.today().isoformat()}, embcache autotune "
             f"(table {table_gib} GiB, {batch} keys a Cache.lookup, all hits, LRU, median of {repeat})",
             "utility_block": utility_block(cc, target), "shapes": shapes}
    if write:
        table = target
        entry.update(_kept(table["entries"].get(cc, {})))
        table["entries"][cc] = entry
        with open(write, "w") as f:
            json.dump(table, f, indent=1)
    for row_bytes, ranked in report:
        print(f"rows of {row_bytes} bytes: " + "; ".join(
            f"{r[1]['group']}x{r[1]['keys_per_group']}/{r[1]['block']}{' digests' * r[1]['digests']}"
            f"{' split' * r[1]['split']} {r[0]:.3f} ms"
            for r in ranked[:4]))
    return {cc: entry}


# what autotune does not time, so a rewritten entry keeps it: shapes measured on other GPUs of the
# architecture, and the stream-ordered miss path's one-block limits (timed by their own diagnostic)
_UNTIMED = ("devices", "ordered_block", "ordered_small_max", "ordered_small_blocks", "ordered_small_max_one_block",
            "ordered_measured")


def _kept(old: dict) -> dict:
    """The keys of the ``old`` entry that a new one written by autotune keeps."""
    return {k: old[k] for k in _UNTIMED if k in old}


DEFAULT_TABLE = str(TABLE_PATH)
