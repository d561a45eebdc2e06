"""``embcache demo``: replay the Criteo sample through LRU, LFU and FIFO caches of several sizes."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .cache import Cache
from .tiers import HostStore, RocksStore

__all__ = ["DemoRow", "run_demo", "load_trace", "format_table"]


@dataclass
class DemoRow:
    """One line of the demo's table: a policy at a cache size, its hit rate and lookup speed."""

    policy: str
    fraction: float
    capacity: int  # the cache's real slots, num_sets * ways (the rows asked for rounded up to whole sets)
    hit_rate: float
    lookups_per_s: float
    asked: int = 0  # rows asked for: fraction of the distinct keys


def load_trace(data_root: str | os.PathLike | None = None,
               notify: Callable[[str], None] | None = None) -> tuple[np.ndarray, str]:
    """The Criteo sample trace, or, when it is absent, a synthetic trace of as many lookups fitted to it.

    ``data_root`` (``--data``) must exist and hold the sample; by default it is looked for where
    ``traces.data_dir()`` says, and ``notify`` (a callable taking a sentence) is told of the fallback.
    """
    from .study import load_trace_source

    chunks, source = load_trace_source(None, data_root, notify=notify)
    parts = [np.asarray(c) for c in chunks]
    return (np.concatenate(parts) if parts else np.empty(0, np.int64)), source


def run_demo(trace: np.ndarray, policies: Sequence[str] = ("lru", "lfu", "fifo"),
             fractions: Sequence[float] = (0.01, 0.05, 0.20), dim: int = 32,
             batch: int = 1024, backend: str = "auto", seed: int = 0, progress: bool = True,
             store_path: str | None = None) -> tuple[list[DemoRow], str]:
    """Replay ``trace`` in batches of ``batch`` keys through each policy x capacity.

    Capacities are fractions of the trace's distinct keys.  Rows (``dim`` float32)
    are drawn once from a generator seeded with ``seed`` into the table, a
    RocksStore at ``store_path`` (a temporary folder by default, removed after;
    ``store_path="memory"`` keeps it in a HostStore instead).  Misses are read
    from it.  Returns the table rows and the name of the backend used.
    """
    import tempfile

    from tqdm.auto import tqdm

    distinct = np.unique(trace)
    folder = None
    if store_path == "memory":
        store = HostStore(dim, initial_rows=distinct.shape[0])
    else:
        if store_path is None:
            folder = tempfile.TemporaryDirectory(prefix="embcache-demo-")
            store_path = folder.name
        store = RocksStore(store_path, dim, create=True)
    store.put_many(distinct, np.random.default_rng(seed).standard_normal((distinct.shape[0], dim), np.float32))
    rows, used = [], "cpu"
    runs = [(p, f) for f in fractions for p in policies]
    with tqdm(total=len(runs) * trace.shape[0], unit="key", unit_scale=True, disable=not progress,
              desc=f"replaying the trace {len(runs)} times") as bar:
        for policy, fraction in runs:
            cache = Cache(max(1, int(fraction * distinct.shape[0])), dim, policy, backend=backend, tier=store)
            used = cache.backend
            for i in range(0, 8 * batch, batch):  # compiles the kernels (ours and CuPy's) outside the timing
                cache.lookup(trace[i:i + batch])
            if bar.n == 0:  # the rate and the time left from here: the first compile made them read hours
                bar.reset(total=bar.total)
            cache = Cache(cache.capacity, dim, policy, backend=backend, tier=store)
            start = time.perf_counter()
            for i in range(0, trace.shape[0], batch):
                cache.lookup(trace[i:i + batch])
                bar.update(min(batch, trace.shape[0] - i))
            seconds = time.perf_counter() - start
            s = cache.stats
            rows.append(DemoRow(policy, fraction, cache.capacity, s.hit_rate, s.lookups / seconds,
                                max(1, int(fraction * distinct.shape[0]))))
    store.close()
    if folder is not None:
        folder.cleanup()
    return rows, used


def format_table(rows: list[DemoRow]) -> str:
    """The demo's table: the fraction of distinct keys asked for, the rows that are, and the cache's real slots."""
    lines = [f"{'policy':<8}{'asked':>16}{'slots':>8}{'hit rate':>10}{'lookups/s':>14}"]
    for r in rows:
        lines.append(f"{r.policy:<8}{r.asked:>9,} ({r.fraction:>4.0%}){r.capacity:>8,}{r.hit_rate:>10.3f}"
                     f"{r.lookups_per_s:>14,.0f}")
    return "\n".join(lines)
