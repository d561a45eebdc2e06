"""Import embedding tables into a store, in bounded memory, with a progress bar.

Sources: a HugeCTR sparse-model folder (``key``: int64, ``emb_vector``:
float32), a pair of ``.npy`` files (keys (n,), rows (n, dim)), an ONNX model's
initializer (rows (n, dim); key ``i`` is row ``i`` plus ``key_offset``).

Every source is checked whole before the first write (sizes, shapes, dtypes,
every key as it will be stored, NaN rows with ``reject_nan``), so a corrupt,
truncated or unusable file is a ``DataFormatError`` with the store untouched.

Keys and rows are converted by value, whatever their byte order: a
big-endian ``>u8``, ``>i8`` or ``>f4`` array imports the same table as its
little-endian twin.  Keys may be any integer dtype; uint64 keys are taken as
their 64 bits (two's complement), as everywhere in embcache, so ``2**63`` is
the reserved key ``-2**63`` and is refused, and ``2**64 - 5`` is the key ``-5``.

Rows are then written ``chunk_rows`` at a time; each chunk is one
``put_many`` (one synced atomic batch in a RocksStore), so a process killed
mid-import leaves whole chunks, never a half-written row.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataFormatError
from .layout import LOCKED_KEY, RESERVED_KEYS
from .tiers import Tier

__all__ = ["import_hugectr", "import_npy", "import_onnx", "write_rows"]

_SCAN_ROWS = 1 << 20  # keys checked per step of the reserved-key scan
_INT64_MAX = 2**63 - 1


def _as_keys(part: np.ndarray) -> np.ndarray:
    """Keys as the int64 values they are stored as: by value in any byte order, uint64 as their 64 bits."""
    if part.dtype.kind == "u" and part.dtype.itemsize == 8:
        return np.ascontiguousarray(part, np.uint64).view(np.int64)  # native order first, then the same 64 bits
    return np.ascontiguousarray(part, np.int64)


def _as_rows(part: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows in the store's dtype, by value in any byte order."""
    return np.ascontiguousarray(part, part.dtype.newbyteorder("=")).astype(dtype)


def _check_keys(keys: np.ndarray, where: str) -> None:
    for i in range(0, keys.shape[0], _SCAN_ROWS):
        part = np.asarray(keys[i:i + _SCAN_ROWS])
        stored = _as_keys(part)
        bad = np.flatnonzero(stored <= LOCKED_KEY)
        if bad.shape[0]:
            j = int(bad[0])
            as_given = "" if int(part[j]) == int(stored[j]) else f" (given as uint64 {int(part[j])}, taken as its bits)"
            raise DataFormatError(f"{where}: key {int(stored[j])}{as_given} at row {i + j} is reserved "
                                  f"(embcache.RESERVED_KEYS = {RESERVED_KEYS}); remap it before importing")


def _check_rows(rows: np.ndarray, where: str, reject_nan: bool) -> None:
    if not reject_nan:
        return
    for i in range(0, rows.shape[0], _SCAN_ROWS):
        bad = np.flatnonzero(np.isnan(np.asarray(rows[i:i + _SCAN_ROWS])).any(axis=1))
        if bad.shape[0]:
            raise DataFormatError(f"{where}: row {i + int(bad[0])} contains NaN and reject_nan=True; fix the "
                                  "table, or import with reject_nan=False to store it as it is")


def _write(store: Tier, chunks: Iterator[tuple[np.ndarray, np.ndarray]], n: int, desc: str, progress: bool,
           on_chunk: Callable[[int], None] | None) -> int:
    from tqdm.auto import tqdm

    done = 0
    with tqdm(total=n, unit="row", unit_scale=True, desc=desc, disable=not progress) as bar:
        for keys, rows in chunks:
            store.put_many(_as_keys(keys), _as_rows(rows, store.dtype))
            done += keys.shape[0]
            bar.update(keys.shape[0])
            if on_chunk is not None:
                on_chunk(done)  # after the write returned: these rows are acknowledged
    return done


def write_rows(store: Tier, keys: np.ndarray | None, rows: np.ndarray, chunk_rows: int = 1 << 16,
               progress: bool = True, desc: str = "writing", on_chunk: Callable[[int], None] | None = None,
               reject_nan: bool = False) -> int:
    """Write ``rows`` (n, dim) into ``store`` under ``keys`` (n,), ``chunk_rows`` at a time; returns n.

    ``keys`` None means the row numbers ``0..n-1`` (a table cut out of a graph).  Keys and rows are
    converted by value as the imports do (any integer key dtype, uint64 as its bits; any floating
    row dtype, cast to the store's).  Everything is checked before the first write: shapes, dtypes,
    reserved keys, and with ``reject_nan`` NaN rows, each a ``DataFormatError``.  Each chunk is one
    ``put_many``; ``on_chunk(rows_done)`` runs after each chunk's write returned, and ``progress``
    shows a bar labelled ``desc``.  The ``import_*`` functions check their sources and then write
    through the same chunked writer.
    """
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.dtype.kind != "f" or rows.shape[1] != store.dim:
        raise DataFormatError(f"{desc}: rows must be floating point (n, {store.dim}) for this store, got "
                              f"{rows.dtype} shape {rows.shape}")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows <= 0:
        raise DataFormatError(f"{desc}: chunk_rows must be a positive integer, got {chunk_rows!r}")
    n = rows.shape[0]
    if keys is None:
        keys = _RowNumbers(n)
    else:
        keys = np.asarray(keys)
        if keys.ndim != 1 or keys.dtype.kind not in "iu" or keys.shape[0] != n:
            raise DataFormatError(f"{desc}: keys must be a 1-D integer array of the rows' length {n}, got "
                                  f"{keys.dtype} shape {keys.shape}")
        _check_keys(keys, desc)
    _check_rows(rows, desc, reject_nan)
    return _write(store, _chunks(keys, rows, int(chunk_rows)), n, desc, progress, on_chunk)


class _RowNumbers:
    """The keys 0..n-1, sliced as an array would be, made a chunk at a time (never n keys at once)."""

    def __init__(self, n: int):
        self.shape = (n,)

    def __getitem__(self, part: slice) -> np.ndarray:
        start, stop, _ = part.indices(self.shape[0])
        return np.arange(start, stop, dtype=np.int64)


def _chunks(keys: Any, rows: np.ndarray, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(0, keys.shape[0], chunk_rows):
        yield keys[i:i + chunk_rows], rows[i:i + chunk_rows]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise DataFormatError(f"{path} does not exist") from None


def import_hugectr(folder: str | os.PathLike, store: Tier, chunk_rows: int = 1 << 16, progress: bool = True,
                   on_chunk: Callable[[int], None] | None = None, reject_nan: bool = False) -> int:
    """Import a HugeCTR sparse-model folder (files ``key``, int64, and ``emb_vector``, float32, both
    little-endian as HugeCTR writes them) into ``store``.

    The row width is the store's ``dim``; the file sizes must agree with it.
    Returns the number of rows written.  ``on_chunk(rows_done)`` runs after
    each chunk is durably written.  ``reject_nan`` refuses a table with a NaN
    in any row (checked before the first write, like everything else).
    """
    folder = Path(folder)
    key_path, vec_path = folder / "key", folder / "emb_vector"
    key_bytes, vec_bytes = _size(key_path), _size(vec_path)
    if key_bytes % 8:
        raise DataFormatError(f"{key_path}: {key_bytes} bytes is not a whole number of int64 keys (truncated?)")
    n = key_bytes // 8
    if vec_bytes != n * store.dim * 4:
        per_key = vec_bytes / n if n else float("nan")
        raise DataFormatError(f"{vec_path}: {vec_bytes} bytes, but {n} keys of dim={store.dim} float32 need "
                              f"{n * store.dim * 4} ({per_key:g} bytes a key: another dim, or truncated?)")
    if not n:
        return 0
    keys = np.memmap(key_path, "<i8", "r", shape=(n,))
    rows = np.memmap(vec_path, "<f4", "r", shape=(n, store.dim))
    _check_keys(keys, str(key_path))
    _check_rows(rows, str(vec_path), reject_nan)
    return _write(store, _chunks(keys, rows, chunk_rows), n, f"importing {folder.name}", progress, on_chunk)


def _load_npy(path: Path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(f"{path} does not exist") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"{path} is not a readable .npy file (corrupt or truncated?): {exc}") from None


def import_npy(keys_path: str | os.PathLike, rows_path: str | os.PathLike, store: Tier, chunk_rows: int = 1 << 16,
               progress: bool = True, on_chunk: Callable[[int], None] | None = None, reject_nan: bool = False) -> int:
    """Import keys (n,) integer and rows (n, dim) floating point from two ``.npy`` files into ``store``.

    Any integer key dtype and floating row dtype, in either byte order, converted by value (see the
    module's docstring); ``reject_nan`` refuses a table with a NaN in any row.  Everything is
    checked before the first write.  Returns the number of rows written.
    """
    keys, rows = _load_npy(Path(keys_path)), _load_npy(Path(rows_path))
    if keys.ndim != 1 or keys.dtype.kind not in "iu":
        raise DataFormatError(f"{keys_path}: keys must be a 1-D integer array, got {keys.dtype} shape {keys.shape}")
    if rows.ndim != 2 or rows.dtype.kind != "f" or rows.shape != (keys.shape[0], store.dim):
        raise DataFormatError(f"{rows_path}: rows must be float ({keys.shape[0]}, {store.dim}) to match the keys and "
                              f"the store, got {rows.dtype} shape {rows.shape}")
    _check_keys(keys, str(keys_path))
    _check_rows(rows, str(rows_path), reject_nan)
    return _write(store, _chunks(keys, rows, chunk_rows), keys.shape[0], f"importing {Path(rows_path).name}",
                  progress, on_chunk)


def import_onnx(model_path: str | os.PathLike, initializer: str, store: Tier, key_offset: int = 0,
                chunk_rows: int = 1 << 16, progress: bool = True,
                on_chunk: Callable[[int], None] | None = None, reject_nan: bool = False) -> int:
    """Import the ONNX initializer named ``initializer`` (rows (n, dim)); row ``i`` gets key ``key_offset + i``.

    Every key must be an int64 that is not reserved: ``key_offset`` from ``-2**63 + 2`` to
    ``2**63 - n``, else a ``DataFormatError`` before anything is written.
    """
    from .tiers._base import require

    onnx = require("onnx", "trt")
    from onnx import numpy_helper

    try:
        model = onnx.load(os.fspath(model_path))
    except FileNotFoundError:
        raise DataFormatError(f"{model_path} does not exist") from None
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise DataFormatError(f"{model_path} is not a readable ONNX model (corrupt or truncated?): {exc}") from None
    found = [t for t in model.graph.initializer if t.name == initializer]
    if not found:
        names = ", ".join(t.name for t in model.graph.initializer if len(t.dims) == 2) or "none"
        raise DataFormatError(f"{model_path} has no initializer {initializer!r} (2-D initializers: {names})")
    rows = numpy_helper.to_array(found[0])
    if rows.ndim != 2 or rows.dtype.kind != "f" or rows.shape[1] != store.dim:
        raise DataFormatError(f"initializer {initializer!r} is {rows.dtype} shape {rows.shape}; the store holds "
                              f"dim={store.dim} rows")
    n, offset = rows.shape[0], int(key_offset)
    if n and not (LOCKED_KEY < offset and offset + n - 1 <= _INT64_MAX):
        raise DataFormatError(f"key_offset {offset} gives keys {offset}..{offset + n - 1}, outside the int64 keys that "
                              f"are not reserved; for {n} rows give a key_offset from {LOCKED_KEY + 1} to "
                              f"{_INT64_MAX - n + 1}")
    keys = np.arange(n, dtype=np.int64) + np.int64(offset) if n else np.zeros(0, np.int64)
    _check_keys(keys, f"{initializer} + key_offset {key_offset}")
    _check_rows(rows, f"initializer {initializer!r}", reject_nan)
    return _write(store, _chunks(keys, rows, chunk_rows), rows.shape[0], f"importing {initializer}", progress,
                  on_chunk)
