"""Argument checks run before any kernel sees an array, so errors name the argument."""
from __future__ import annotations

import numpy as np

from .errors import KeyDtypeError, KeyShapeError, NaNRowError, ReservedKeyError, RowDtypeError, RowShapeError
from .layout import LOCKED_KEY, RESERVED_KEYS


def check_keys(keys, name: str = "keys") -> np.ndarray:
    """``keys`` as a contiguous (n,) int64 array, or raise.

    Any integer dtype is accepted; uint64 keys are taken as their 64 bits
    (two's complement), so ``2**64 - 1`` is the key ``-1``.
    """
    arr = np.asarray(keys)
    if arr.size == 0 and not isinstance(keys, np.ndarray):
        arr = arr.astype(np.int64)  # [] becomes float64 in NumPy
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        arr = arr.view(np.int64)
    elif arr.dtype.kind not in "iu":
        raise KeyDtypeError(
            f"{name} must be integers (int64 preferred), got dtype {arr.dtype}; "
            f"convert with np.asarray({name}, dtype=np.int64) if the values are whole numbers"
        )
    if arr.ndim != 1:
        raise KeyShapeError(f"{name} must be a 1-D array, got shape {arr.shape}; flatten it with .ravel()")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and arr.min() <= LOCKED_KEY:
        bad = arr[arr <= LOCKED_KEY][0]
        raise ReservedKeyError(
            f"{name} contains {int(bad)}, a reserved sentinel (embcache.RESERVED_KEYS = {RESERVED_KEYS}); "
            "remap those keys (for example to another id) before the call"
        )
    return arr


def check_rows(rows, n: int, dim: int, dtype: np.dtype, reject_nan: bool = False, name: str = "rows") -> np.ndarray:
    """``rows`` as a contiguous (n, dim) array of ``dtype``, or raise.

    Any floating dtype is accepted and cast; integers, bools and objects are not.
    """
    arr = np.asarray(rows)
    if arr.dtype != dtype and arr.dtype.kind != "f":
        raise RowDtypeError(
            f"{name} must be floating point (the cache holds {dtype}), got dtype {arr.dtype}; "
            f"convert with {name}.astype(np.float32)"
        )
    if arr.shape != (n, dim):
        raise RowShapeError(f"{name} must have shape (len(keys), dim) = {(n, dim)}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if reject_nan and n and np.isnan(arr.astype(np.float32, copy=False)).any():
        bad = int(np.flatnonzero(np.isnan(arr.astype(np.float32)).any(axis=1))[0])
        raise NaNRowError(f"{name}[{bad}] contains NaN and this cache was made with reject_nan=True")
    return arr


def unique_last(keys: np.ndarray, rows: np.ndarray):
    """Unique ascending keys of a write batch, the last row given for each, and multiplicities."""
    rev = keys[::-1]
    ukeys, first_in_rev, counts = np.unique(rev, return_index=True, return_counts=True)
    return ukeys, rows[keys.shape[0] - 1 - first_in_rev], counts
