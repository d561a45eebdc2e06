"""Key traces: the Criteo click-log sample and synthetic stand-ins.

A trace is a 1-D int64 array of keys in lookup order.  Criteo's categorical
columns C1..C26 become keys ``(column << 32) | int(value, 16)`` with ``column``
0 for C1; empty fields are skipped.
"""
from __future__ import annotations

import json
import os
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator

import numba
import numpy as np

__all__ = ["data_dir", "criteo_files", "iter_criteo", "read_criteo", "zipf_trace", "CRITEO_COLUMNS",
           "ColumnModel", "TraceModel", "fit_trace", "write_trace", "iter_trace", "describe", "reuse_distances"]

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


def iter_criteo(paths: Iterable[str | os.PathLike], rows_per_batch: int = 4096,
                columns: Iterable[int] | None = None) -> Iterator[np.ndarray]:
    """Stream keys of Criteo TSV files, row by row, C1..C26 within a row, one array per ``rows_per_batch`` rows.

    Both formats are read (train rows: label, I1..I13, C1..C26; test rows: no
    label), any number of rows.  ``columns`` (0 for C1) keeps only those
    tables' keys; all 26 by default.
    """
    keep = None if columns is None else {int(c) for c in columns}
    for path in paths:
        with open(path) as f:
            batch: list[int] = []
            for i, line in enumerate(f, 1):
                keys = _row_keys(line)
                batch.extend(keys if keep is None else [k for k in keys if k >> 32 in keep])
                if i % rows_per_batch == 0:
                    yield np.array(batch, np.int64)
                    batch = []
            if batch:
                yield np.array(batch, np.int64)


def read_criteo(paths: Iterable[str | os.PathLike], columns: Iterable[int] | None = None) -> np.ndarray:
    """All keys of Criteo TSV files as one (n,) int64 trace (``columns``: as ``iter_criteo``)."""
    parts = list(iter_criteo(paths, columns=columns))
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


# ---------------------------------------------------------------- a synthetic model fitted to a real trace


@dataclass
class ColumnModel:
    """One table's keys: how often the table is looked up, how many keys it has, how skewed they are."""

    column: int
    share: float  # fraction of all lookups that go to this column
    cardinality: int  # distinct keys
    exponent: float  # Zipf exponent s: P(rank r) proportional to r**-s over ranks 1..cardinality
    ks: float  # Kolmogorov-Smirnov distance between the observed and fitted rank distributions


@dataclass
class TraceModel:
    """Per-column Zipf model of a key trace; ``generate`` draws traces of any length from it."""

    columns: list[ColumnModel] = field(default_factory=list)

    @property
    def ks(self) -> float:
        """Lookup-weighted mean KS distance of the columns' fits (0 = perfect)."""
        return float(sum(c.share * c.ks for c in self.columns))

    def to_json(self) -> str:
        return json.dumps([asdict(c) for c in self.columns])

    @classmethod
    def from_json(cls, text: str) -> "TraceModel":
        return cls([ColumnModel(**c) for c in json.loads(text)])

    def generate(self, lookups: int, seed: int = 0, chunk: int = 1 << 22, scale: float = 1.0) -> Iterator[np.ndarray]:
        """Yield ``lookups`` keys ``(column << 32) | id`` in chunks, reproducibly from ``seed``.

        Each lookup picks a column by its share, then a key by the column's Zipf
        law; ``scale`` multiplies every cardinality (a bigger table, same skew).
        Ids are a fixed per-column scramble of ranks, so popularity does not
        follow key order.  Lookups are independent (no temporal locality beyond
        popularity): say so when comparing with a real trace.
        """
        rng = np.random.default_rng(seed)
        shares = np.array([c.share for c in self.columns])
        cdfs = [_zipf_cdf(max(1, int(round(c.cardinality * scale))), c.exponent) for c in self.columns]
        tags = np.array([c.column for c in self.columns], np.int64) << 32
        done = 0
        while done < lookups:
            n = min(chunk, lookups - done)
            which = rng.choice(len(self.columns), n, p=shares / shares.sum())
            ranks = np.empty(n, np.int64)
            for j, cdf in enumerate(cdfs):
                at = np.flatnonzero(which == j)
                ranks[at] = np.searchsorted(cdf, rng.random(at.shape[0]), side="right")
            # ids: an odd multiplier mod 2**32 is a bijection, so every rank gets its own id
            ids = (ranks * 2654435761 + 12345) & 0xFFFFFFFF
            yield tags[which] | ids
            done += n


def _zipf_cdf(n: int, s: float) -> np.ndarray:
    p = np.arange(1, n + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def _fit_exponent(counts: np.ndarray) -> float:
    """Maximum-likelihood Zipf exponent of rank counts (descending) over ranks 1..len(counts)."""
    ranks = np.log(np.arange(1, counts.shape[0] + 1, dtype=np.float64))
    total, weighted = counts.sum(), (counts * ranks).sum()

    def nll(s):
        return s * weighted + total * np.log(np.exp(-s * ranks).sum())

    lo, hi = 0.0, 4.0
    for _ in range(60):  # golden-section search: the likelihood is unimodal in s
        a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return (lo + hi) / 2


def fit_trace(trace: np.ndarray) -> TraceModel:
    """Fit a per-column Zipf model to ``trace`` (keys ``(column << 32) | value``) by maximum likelihood."""
    columns = trace >> 32
    model = TraceModel()
    for col in np.unique(columns):
        _, counts = np.unique(trace[columns == col], return_counts=True)
        counts = np.sort(counts)[::-1]
        s = _fit_exponent(counts)
        ks = float(np.abs(np.cumsum(counts) / counts.sum() - _zipf_cdf(counts.shape[0], s)).max())
        model.columns.append(ColumnModel(int(col), counts.sum() / trace.shape[0], int(counts.shape[0]), s, ks))
    return model


# ---------------------------------------------------------------- on-disk traces: a folder of .npy chunks


def write_trace(chunks: Iterable[np.ndarray], folder: str | os.PathLike, source: str = "",
                progress: bool = True, total: int | None = None) -> int:
    """Write key chunks as ``folder/keys-00000.npy, ...`` plus ``meta.json``; returns the lookups written."""
    from tqdm.auto import tqdm

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = i = 0
    with tqdm(total=total, unit="key", unit_scale=True, desc=f"writing {folder.name}", disable=not progress) as bar:
        for i, keys in enumerate(chunks):
            np.save(folder / f"keys-{i:05d}.npy", np.ascontiguousarray(keys, np.int64))
            n += keys.shape[0]
            bar.update(keys.shape[0])
    (folder / "meta.json").write_text(json.dumps({"format": "embcache-trace-v1", "lookups": n, "source": source}))
    return n


def trace_meta(folder: str | os.PathLike) -> dict:
    path = pathlib.Path(folder) / "meta.json"
    if not path.exists():
        from .errors import DataFormatError

        raise DataFormatError(f"{folder} is not an embcache trace folder (no meta.json); make one with "
                              "`embcache trace convert`")
    return json.loads(path.read_text())


def iter_trace(folder: str | os.PathLike) -> Iterator[np.ndarray]:
    """The chunks of a trace folder, in order (each memory-mapped)."""
    trace_meta(folder)
    for path in sorted(pathlib.Path(folder).glob("keys-*.npy")):
        yield np.load(path, mmap_mode="r")


# ---------------------------------------------------------------- describing a trace


@numba.njit(cache=True)
def _stack_distances(inverse, distinct):
    """LRU stack distance of every lookup (distinct keys since the key's last use; -1 on first use).

    A Fenwick tree over time marks each key's latest use; the distance is the
    number of marks after the key's previous use.
    """
    n = inverse.shape[0]
    tree = np.zeros(n + 1, np.int64)
    last = np.full(distinct, -1, np.int64)
    out = np.empty(n, np.int64)
    for t in range(n):
        k = inverse[t]
        p = last[k]
        if p < 0:
            out[t] = -1
        else:
            # marks in (p, t) = prefix(t) - prefix(p + 1)
            total = 0
            i = t
            while i > 0:
                total += tree[i]
                i -= i & -i
            i = p + 1
            while i > 0:
                total -= tree[i]
                i -= i & -i
            out[t] = total
            i = p + 1
            while i <= n:
                tree[i] -= 1
                i += i & -i
        i = t + 1
        while i <= n:
            tree[i] += 1
            i += i & -i
        last[k] = t
    return out


def reuse_distances(trace: np.ndarray) -> np.ndarray:
    """Per lookup, the distinct keys seen since the same key's previous lookup (-1 for a first lookup)."""
    _, inverse = np.unique(trace, return_inverse=True)
    return _stack_distances(inverse.ravel().astype(np.int64), int(inverse.max()) + 1 if trace.shape[0] else 0)


def describe(trace: np.ndarray) -> dict:
    """Lookups, distinct keys, the top 1% / 10% keys' share of lookups, and a log2 reuse-distance histogram.

    ``reuse_histogram[i]`` counts reuses at distances in ``[2**(i-1), 2**i)``
    (bucket 0: distance 0); first lookups are ``cold``.  An LRU cache of
    ``c`` keys, one key at a time, hits exactly the reuses at distance < c.
    """
    _, counts = np.unique(trace, return_counts=True)
    counts = np.sort(counts)[::-1]
    distinct = counts.shape[0]
    dist = reuse_distances(trace)
    reused = dist[dist >= 0]
    buckets = np.bincount(np.where(reused == 0, 0, np.floor(np.log2(np.maximum(reused, 1))).astype(np.int64) + 1))
    top = lambda f: float(counts[:max(1, int(distinct * f))].sum() / trace.shape[0]) if distinct else 0.0  # noqa: E731
    return {"lookups": int(trace.shape[0]), "distinct": int(distinct), "top1_share": top(0.01),
            "top10_share": top(0.10), "cold": int((dist < 0).sum()), "reuse_histogram": buckets.tolist()}
