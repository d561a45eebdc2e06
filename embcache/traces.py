"""Key traces: the Criteo click-log sample and synthetic stand-ins.

A trace is a 1-D int64 array of keys in lookup order.  Criteo's categorical
columns C1..C26 become keys ``(column << 32) | int(value, 16)`` with ``column``
0 for C1; empty fields are skipped.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator, Sequence

import numba
import numpy as np

__all__ = ["data_dir", "criteo_files", "iter_criteo", "read_criteo", "zipf_trace", "drifting_zipf_trace",
           "CRITEO_COLUMNS",
           "ColumnModel", "TraceModel", "fit_trace", "criteo_model", "write_trace", "iter_trace", "iter_npy_keys",
           "iter_key_file", "describe", "reuse_bins", "reuse_distances", "trace_meta"]

CRITEO_COLUMNS = 26
_CRITEO_FILES = ("train_head10k.txt", "test_head10k.txt")


def data_dir() -> pathlib.Path:
    """Where the shared data folder (holding ``criteo/``) is looked for.

    ``$EMBCACHE_DATA`` if set, else ``shared/data`` beside the clone this package runs from, or was
    installed from with ``pip install .`` (``<clone>/../shared/data``), whatever the working directory.
    """
    from ._extras import clone_root

    if os.environ.get("EMBCACHE_DATA"):
        return pathlib.Path(os.environ["EMBCACHE_DATA"])
    root = clone_root() or pathlib.Path(__file__).resolve().parents[1]
    return (root / ".." / "shared" / "data").resolve()


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


def drifting_zipf_trace(lookups: int, keys: int, exponent: float = 1.0, interval: int = 1_000_000,
                        fraction: float = 0.1, seed: int = 0, chunk: int = 1 << 22) -> Iterator[np.ndarray]:
    """Yield a trace whose popularity drifts: Zipf over ``keys`` keys, its ranking partly reshuffled at intervals.

    Lookup ``t`` draws a rank ``r`` in ``1..keys`` with probability proportional to ``r**-exponent`` and
    looks up the key that holds rank ``r`` now.  Keys are ``0 .. keys - 1``, first ranked in a random
    order; before lookup ``interval``, ``2 * interval``, ... the ranks of ``round(fraction * keys)``
    keys chosen at random (most of them in the long tail) are dealt out again among those keys at
    random, so a popular key may fall into the tail and a tail key jump to the top.  A cache that
    trusts old counts (LFU without aging) keeps the fallen keys: this is the trace where it must lose
    to LRU.

    Parameters
    ----------
    lookups : int
        Length of the trace (key lookups), >= 0.
    keys : int
        Distinct keys the law ranges over, >= 1.
    exponent : float
        Zipf exponent ``s`` (> 0): 1.0 puts ~7% of lookups on the top key of 10^6.
    interval : int
        Lookups between reshuffles, >= 1.
    fraction : float
        Share of the ranking reshuffled each time, in [0, 1].
    seed : int
        The trace is a function of the arguments and ``seed`` alone (not of ``chunk``).
    chunk : int
        Keys per yielded array: memory is ``O(keys + chunk)`` whatever ``lookups`` is
        (10^8 lookups over 10^6 keys take ~10 s and ~100 MB).

    Yields
    ------
    (n,) int64 arrays of keys in lookup order, ``n <= chunk``, ``lookups`` keys in all.
    """
    from .errors import ConfigError

    if int(lookups) != lookups or lookups < 0 or int(keys) != keys or keys < 1:
        raise ConfigError(f"drifting_zipf_trace(lookups={lookups}, keys={keys}): both whole numbers, keys >= 1")
    if not exponent > 0 or int(interval) != interval or interval < 1 or not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"drifting_zipf_trace(exponent={exponent}, interval={interval}, fraction={fraction}): "
                          "exponent > 0, interval a whole number >= 1, fraction in [0, 1]")
    if int(chunk) != chunk or chunk < 1:
        raise ConfigError(f"drifting_zipf_trace(chunk={chunk}): a whole number of keys >= 1")
    return _drift_chunks(int(lookups), int(keys), float(exponent), int(interval), float(fraction), int(seed),
                         int(chunk))


def _drift_chunks(lookups, keys, exponent, interval, fraction, seed, chunk):
    cdf = _zipf_cdf(keys, exponent)
    guide = np.searchsorted(cdf, np.arange(keys) / keys, side="right").astype(np.int64)
    shuffles = np.random.default_rng([seed, 0])
    ranking = shuffles.permutation(keys).astype(np.int64)  # rank - 1 -> key
    moved = int(round(fraction * keys))
    draws = np.random.default_rng([seed, 1])  # one stream, consumed in lookup order: chunking changes nothing
    done = 0
    while done < lookups:
        n = min(chunk, lookups - done)
        out = np.empty(n, np.int64)
        at = 0
        while at < n:
            t = done + at
            if t and t % interval == 0 and moved:
                where = shuffles.choice(keys, moved, replace=False)
                ranking[where] = ranking[shuffles.permutation(where)]
            m = min(n - at, interval - t % interval)
            _zipf_keys(cdf, guide, ranking, draws.random(m), out[at:at + m])
            at += m
        yield out
        done += n


@numba.njit(cache=True, nogil=True)
def _zipf_keys(cdf, guide, ranking, uniforms, out):
    # inverse CDF through a guide table: bucket j of [0, 1) starts its search at the first rank whose
    # CDF passes j / keys, so a draw costs O(1) steps on average instead of a binary search
    keys = cdf.shape[0]
    for i in range(uniforms.shape[0]):
        u = uniforms[i]
        r = guide[min(int(u * keys), keys - 1)]
        while r < keys - 1 and cdf[r] <= u:
            r += 1
        out[i] = ranking[r]


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
        """The columns as JSON (``from_json`` reads it back)."""
        return json.dumps([asdict(c) for c in self.columns])

    @classmethod
    def from_json(cls, text: str) -> "TraceModel":
        """The model ``to_json`` wrote."""
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


#: ``fit_trace`` of the Criteo sample (train_head10k then test_head10k, C1..C26), kept so that a clone
#: without the sample still draws the same synthetic traces: (column, share, cardinality, exponent, ks).
_CRITEO_FIT = (
    (0, 0.04340654570709263, 250, 1.7764692865842613, 0.024662118880788064),
    (1, 0.04340654570709263, 446, 1.0257140448453055, 0.07457131149398011),
    (2, 0.041882975952773675, 10355, 0.7921106721885876, 0.12368263505860622),
    (3, 0.041882975952773675, 7181, 0.8883577189190789, 0.0743712772413121),
    (4, 0.04340654570709263, 80, 2.2228991423917104, 0.013568292038107388),
    (5, 0.03761611250976647, 8, 1.739851636709084, 0.05119187771086875),
    (6, 0.04340654570709263, 4581, 0.7185883758106498, 0.07373229574209594),
    (7, 0.04340654570709263, 128, 2.014827508346355, 0.022520934805771886),
    (8, 0.04340654570709263, 3, 3.5552077835849656, 0.017809413470823654),
    (9, 0.04340654570709263, 4776, 0.9678266251168799, 0.17133730090866567),
    (10, 0.04340654570709263, 2704, 0.7699829433296466, 0.08445245078490304),
    (11, 0.041882975952773675, 9916, 0.8047763299824512, 0.11674984709703273),
    (12, 0.04340654570709263, 2176, 0.7841750137927543, 0.08773459643731685),
    (13, 0.04340654570709263, 25, 1.7203487585382637, 0.1781417008309405),
    (14, 0.04340654570709263, 2860, 0.8051915087041064, 0.10266366889846779),
    (15, 0.041882975952773675, 8697, 0.8319935605849185, 0.09269788371631305),
    (16, 0.04340654570709263, 9, 1.1704212350896652, 0.03212716589486869),
    (17, 0.04340654570709263, 1566, 0.9145296214897596, 0.09497892416807152),
    (18, 0.023838874902335272, 736, 1.450859395460511, 0.22649242590941326),
    (19, 0.023838874902335272, 3, 0.1815200778299887, 5.0824438547869555e-05),
    (20, 0.041882975952773675, 9416, 0.8175239113367542, 0.10778439166229259),
    (21, 0.008038892264953554, 8, 1.9457251892429221, 0.12050639177499312),
    (22, 0.04340654570709263, 14, 1.5569994716771576, 0.05765085091027755),
    (23, 0.041882975952773675, 4167, 1.0102004934277797, 0.06308742051521354),
    (24, 0.023838874902335272, 42, 1.4391651406927695, 0.07662533165441959),
    (25, 0.023838874902335272, 3212, 0.9003333600165118, 0.03158166804719409),
)


def criteo_model(root: str | os.PathLike | None = None) -> tuple[TraceModel, bool]:
    """The per-column Zipf model of the Criteo sample: ``(model, fitted_now)``.

    Fitted to the sample under ``root`` (default :func:`data_dir`) when it is there; otherwise the
    parameters of that same fit, recorded in this module, and ``fitted_now`` is False.
    """
    files = criteo_files(root)
    if files:
        return fit_trace(read_criteo(files)), True
    return TraceModel([ColumnModel(*c) for c in _CRITEO_FIT]), False


# ---------------------------------------------------------------- on-disk traces: a folder of .npy chunks


def write_trace(chunks: Iterable[np.ndarray], folder: str | os.PathLike, source: str = "",
                progress: bool = True, total: int | None = None) -> int:
    """Write key chunks as ``folder/keys-00000.npy, ...`` plus ``meta.json``; returns the lookups written.

    ``folder`` is new, empty, or an earlier trace folder (replaced).  ``meta.json`` is removed first
    and written last, with the number of chunks, so a folder whose writing failed part-way (a bad
    line in a key file, a full disk) is not a trace folder, and chunks left from an earlier, longer
    trace are deleted, never read.
    """
    from tqdm.auto import tqdm

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ours = re.compile(r"keys-\d{5}\.npy|meta\.json")
    if not (folder / "meta.json").exists() and any(not ours.fullmatch(p.name) for p in folder.iterdir()):
        from .errors import ConfigError

        raise ConfigError(f"{folder} holds files but is not a trace folder (no meta.json); write a trace into a "
                          "new or empty folder, or over an earlier trace")
    (folder / "meta.json").unlink(missing_ok=True)
    n = count = 0
    with tqdm(total=total, unit="key", unit_scale=True, desc=f"writing {folder.name}", disable=not progress) as bar:
        for count, keys in enumerate(chunks, 1):
            np.save(folder / f"keys-{count - 1:05d}.npy", np.ascontiguousarray(keys, np.int64))
            n += keys.shape[0]
            bar.update(keys.shape[0])
    for stale in folder.glob("keys-*.npy"):
        if ours.fullmatch(stale.name) and int(stale.stem[5:]) >= count:
            stale.unlink()
    (folder / "meta.json").write_text(json.dumps({"format": "embcache-trace-v1", "lookups": n, "chunks": count,
                                                  "source": source}))
    return n


def trace_meta(folder: str | os.PathLike) -> dict:
    """The ``meta.json`` of a trace folder, or a ``DataFormatError`` saying how to make one."""
    path = pathlib.Path(folder) / "meta.json"
    if not path.exists():
        from .errors import DataFormatError

        raise DataFormatError(f"{folder} is not an embcache trace folder (no meta.json); `embcache trace convert "
                              "SOURCE --out FOLDER` writes one from criteo, synthetic:N, a .npy or a text file "
                              "of keys")
    return json.loads(path.read_text())


def iter_trace(folder: str | os.PathLike) -> Iterator[np.ndarray]:
    """The chunks of a trace folder, in order (each memory-mapped)."""
    meta = trace_meta(folder)
    folder = pathlib.Path(folder)
    if "chunks" in meta:
        paths = [folder / f"keys-{i:05d}.npy" for i in range(int(meta["chunks"]))]
    else:  # folders written before meta.json counted its chunks
        paths = sorted(folder.glob("keys-*.npy"))
    for path in paths:
        yield np.load(path, mmap_mode="r")


# ---------------------------------------------------------------- a user's own keys


def iter_npy_keys(path: str | os.PathLike, chunk: int = 1 << 22) -> Iterator[np.ndarray]:
    """The keys of a ``.npy`` file, in order, ``chunk`` at a time as int64 arrays.

    The file holds a 1-D array of integers (int64 preferred; any integer dtype or byte order is
    converted by value, and uint64 is taken as its 64 bits, as ``Cache`` does).  Reserved keys
    (``embcache.RESERVED_KEYS``), floats, objects or more dimensions are a ``DataFormatError``.
    """
    from ._checks import check_keys
    from .errors import DataFormatError

    try:
        keys = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path}: not a readable .npy file ({exc})") from None
    if keys.dtype.kind not in "iu" or keys.ndim != 1:
        raise DataFormatError(f"{path}: holds a {keys.ndim}-D {keys.dtype} array; a key file is a 1-D array of "
                              "integer keys (np.save(path, np.asarray(keys, np.int64).ravel()))")
    for i in range(0, keys.shape[0], chunk):
        try:
            yield check_keys(np.asarray(keys[i:i + chunk]), name=f"{path} (keys {i:,}..)")
        except (TypeError, ValueError) as exc:
            raise DataFormatError(str(exc)) from None


_VALUE_PARSERS = {"hex": lambda v: int(v, 16), "int": lambda v: int(v, 10)}


def _parse_value(text: str, values: str) -> int:
    if values == "hash":  # a stable 32-bit id of any string (Python's hash() changes per process)
        import hashlib

        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")
    return _VALUE_PARSERS[values](text)


def iter_key_file(path: str | os.PathLike, columns: Sequence[int] | None = None, sep: str | None = None,
                  values: str = "hex", header: bool = False, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
    """The keys of a text file, in order, as int64 arrays of up to ``chunk`` keys.

    Parameters
    ----------
    path : text file
        Without ``columns``: one key a line, a decimal integer (``-5``, ``42``) or hex with ``0x``;
        blank lines are skipped.  With ``columns``: rows of fields split by ``sep``, each chosen
        field one categorical value, as Criteo's click logs.
    columns : 1-based field numbers, optional
        The categorical fields to read, e.g. ``range(15, 41)`` for Criteo's C1..C26 in a training
        row (label, I1..I13 before them).  The ``j``-th chosen field's value ``v`` becomes the key
        ``(j << 32) | v``, row by row and field by field, as :func:`iter_criteo` does; empty fields
        are skipped.
    sep : str, optional
        Field separator; tab by default, comma for a ``.csv`` file.
    values : {"hex", "int", "hash"}
        How a field becomes ``v``: hexadecimal (Criteo's 8-digit hashes), decimal, or a 32-bit
        BLAKE2b hash of the text (any strings, reproducible).  ``v`` must fit in 32 bits.
    header : bool
        Skip the first line.

    Raises
    ------
    DataFormatError
        A line that does not parse, a row with too few fields, or a key out of range; the message
        names the file and the line.
    """
    from ._checks import check_keys
    from .errors import ConfigError, DataFormatError

    if values not in ("hex", "int", "hash"):
        raise ConfigError(f"values must be hex, int or hash, got {values!r}")
    picks = None if columns is None else [int(c) - 1 for c in columns]
    if picks is not None and (not picks or min(picks) < 0 or len(set(picks)) != len(picks)):
        raise ConfigError(f"columns must be distinct field numbers counted from 1, got {list(columns)}")
    if sep is None:
        sep = "," if str(path).lower().endswith(".csv") else "\t"
    batch: list[int] = []
    with open(path, encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(f, 1):
            if header and number == 1:
                continue
            line = line.rstrip("\r\n")
            try:
                if picks is None:
                    text = line.strip()
                    if text:
                        batch.append(int(text, 16) if text.lower().startswith(("0x", "-0x")) else int(text, 10))
                else:
                    fields = line.split(sep)
                    if len(fields) <= max(picks):
                        raise DataFormatError(f"{path}:{number}: {len(fields)} fields, column {max(picks) + 1} "
                                              f"asked for (separator {sep!r})")
                    for j, at in enumerate(picks):
                        v = fields[at].strip()
                        if v:
                            v = _parse_value(v, values)
                            if not 0 <= v < 1 << 32:
                                raise DataFormatError(f"{path}:{number}: value {fields[at]!r} of column {at + 1} "
                                                      "does not fit in 32 bits; use --values hash")
                            batch.append((j << 32) | v)
            except ValueError as exc:
                if isinstance(exc, DataFormatError):
                    raise
                what = "a key (a decimal integer, or hex with 0x)" if picks is None else f"{values} values"
                raise DataFormatError(f"{path}:{number}: {line[:60]!r} is not {what}") from None
            if len(batch) >= chunk:
                yield _checked(batch, path, number, check_keys)
                batch = []
    if batch:
        yield _checked(batch, path, number, check_keys)


def _checked(batch: list[int], path, number: int, check_keys) -> np.ndarray:
    from .errors import DataFormatError

    try:
        keys = np.array(batch, np.int64)
    except OverflowError:
        bad = next(k for k in batch if not -(1 << 63) <= k < 1 << 63)
        raise DataFormatError(f"{path} (before line {number + 1}): key {bad} is outside int64") from None
    try:
        return check_keys(keys, name=f"{path} (before line {number + 1})")
    except ValueError as exc:
        raise DataFormatError(str(exc)) from None


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
    (bucket 0: distance 0), labelled in ``reuse_bins`` (``"2-3"``: distances 2 and 3); first
    lookups are ``cold``.  An LRU cache of
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
            "top10_share": top(0.10), "cold": int((dist < 0).sum()), "reuse_histogram": buckets.tolist(),
            "reuse_bins": reuse_bins(buckets.shape[0])}


def reuse_bins(n: int) -> list[str]:
    """Labels of the first ``n`` buckets of ``describe``'s reuse histogram: ``0``, ``1``, ``2-3``, ``4-7``, ..."""
    return ["0", "1"][:n] + [f"{1 << (i - 1)}-{(1 << i) - 1}" for i in range(2, n)]
