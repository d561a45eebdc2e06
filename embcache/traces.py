"""Key traces: the Criteo click-log sample and synthetic stand-ins.

A trace is a 1-D int64 array of keys in lookup order.  Criteo's categorical
columns C1..C26 become keys ``(column << 32) | int(value, 16)`` with ``column``
0 for C1; empty fields are skipped.
"""
from __future__ import annotations

import os
import pathlib
from typing import Iterable, Iterator

import numpy as np

__all__ = ["data_dir", "criteo_files", "iter_criteo", "read_criteo", "zipf_trace", "CRITEO_COLUMNS"]

CRITEO_COLUMNS = 26
_CRITEO_FILES = ("train_head10k.txt", "test_head10k.txt")


def data_dir() -> pathlib.Path:
    """``$EMBCACHE_DATA``, else ``../shared/data`` relative to the working directory."""
    return pathlib.Path(os.environ.get("EMBCACHE_DATA", "../shared/data"))


def criteo_files(root: str | os.PathLike | None = None) -> list[pathlib.Path]:
    """The Criteo sample files (train, then test) under ``root/criteo``; [] if absent."""
    folder = pathlib.Path(root if root is not None else data_dir()) / "criteo"
    files = [folder / name for name in _CRITEO_FILES]
    return files if all(f.exists() for f in files) else []


def _row_keys(line: str) -> list[int]:
    fields = line.rstrip("\n").split("\t")
    cats = fields[-CRITEO_COLUMNS:]  # train rows have a label and 13 integer fields before, test rows no label
    return [(c << 32) | int(v, 16) for c, v in enumerate(cats) if v]


def iter_criteo(paths: Iterable[str | os.PathLike], rows_per_batch: int = 4096) -> Iterator[np.ndarray]:
    """Stream keys of Criteo TSV files, row by row, C1..C26 within a row, one array per ``rows_per_batch`` rows."""
    for path in paths:
        with open(path) as f:
            batch: list[int] = []
            for i, line in enumerate(f, 1):
                batch.extend(_row_keys(line))
                if i % rows_per_batch == 0:
                    yield np.array(batch, np.int64)
                    batch = []
            if batch:
                yield np.array(batch, np.int64)


def read_criteo(paths: Iterable[str | os.PathLike]) -> np.ndarray:
    """All keys of Criteo TSV files as one (n,) int64 trace."""
    parts = list(iter_criteo(paths))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def zipf_trace(lookups: int, distinct: int, exponent: float = 1.05, seed: int = 0) -> np.ndarray:
    """A synthetic trace: ``lookups`` keys drawn from ``distinct`` keys with Zipf(``exponent``) popularity.

    Key ids are scrambled so popularity does not follow key order.  Reproducible from ``seed``.
    """
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, distinct + 1) ** exponent
    ranks = rng.choice(distinct, size=lookups, p=p / p.sum())
    ids = rng.permutation(distinct).astype(np.int64)
    return ids[ranks]
