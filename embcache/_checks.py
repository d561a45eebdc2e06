"""Argument checks run before any kernel sees an array, so errors name the argument.

Both take host (NumPy, lists) or device (CuPy) arrays and return them where the
backend works: ``xp`` is ``numpy`` or ``cupy``.
"""
from __future__ import annotations

import numpy as np

from ._dtypes import raw
from .errors import KeyDtypeError, KeyShapeError, NaNRowError, ReservedKeyError, RowDtypeError, RowShapeError
from .layout import LOCKED_KEY, RESERVED_KEYS

# raw bits above these (sign bit cleared) are NaN: float32, float16/bfloat16 by exponent width
_NAN_ABOVE = {"float32": 0x7F800000, "float16": 0x7C00, "bfloat16": 0x7F80}


def _on_device(array) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def _as_array(values, xp):
    """``values`` as an array of the xp that holds it (device arrays stay on the device for cupy)."""
    if _on_device(values):
        return values if xp is not np else values.get()
    return np.asarray(values)


def _native(arr: np.ndarray) -> np.ndarray:
    """A host array in the machine's byte order, converted by value (``>i8`` [1] stays the number 1)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def check_keys(keys, name: str = "keys", xp=np, reserved: bool = True):
    """``keys`` as a contiguous (n,) int64 array of ``xp``, or raise.

    Any integer dtype, in either byte order, is accepted and converted by value.
    uint64 keys are taken as their 64 bits (two's complement), so ``2**64 - 1``
    is the key ``-1``; the two uint64 values whose bits are a reserved key
    (``2**63`` and ``2**63 + 1``) are refused like the reserved keys.
    ``reserved=False`` leaves the reserved-key check to the caller (the GPU hit
    path counts them in its kernel instead of waiting for a separate reduction).
    """
    arr = _as_array(keys, xp)
    if arr.size == 0 and not hasattr(keys, "dtype"):
        arr = arr.astype(np.int64)  # [] becomes float64 in NumPy
    if arr.dtype.kind not in "iu":
        raise KeyDtypeError(
            f"{name} must be integers (int64 preferred), got dtype {arr.dtype}; "
            f"convert with np.asarray({name}, dtype=np.int64) if the values are whole numbers"
        )
    if arr.ndim != 1:
        raise KeyShapeError(f"{name} must be a 1-D array, got shape {arr.shape}; flatten it with .ravel()")
    if isinstance(arr, np.ndarray):
        arr = _native(arr)  # by value: a view of big-endian bytes would read other keys
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        if reserved and arr.size and bool((arr >= np.uint64(2**63)).any()):
            # the bits of 2**63 and 2**63 + 1 are the reserved int64 keys: say so in the caller's terms
            bad = arr[(arr == np.uint64(2**63)) | (arr == np.uint64(2**63 + 1))]
            if bad.size:
                raise ReservedKeyError(
                    f"{name} contains {int(bad[0])} (uint64), whose 64 bits are the reserved int64 key "
                    f"{int(bad[0]) - 2**64} (embcache.RESERVED_KEYS = {RESERVED_KEYS}); uint64 keys are taken "
                    "as their bits, so remap 2**63 and 2**63 + 1 before the call"
                )
        arr = arr.view(np.int64)  # native order by now, so the view keeps each key's 64 bits
    arr = xp.ascontiguousarray(xp.asarray(arr), dtype=np.int64)
    if reserved and arr.size and bool((arr <= LOCKED_KEY).any()):
        raise_reserved(arr, name)
    return arr


def raise_reserved(keys, name: str = "keys"):
    """Raise the ReservedKeyError for ``keys``, which hold a reserved key."""
    bad = keys[keys <= LOCKED_KEY][0]
    raise ReservedKeyError(
        f"{name} contains {int(bad)}, a reserved sentinel (embcache.RESERVED_KEYS = {RESERVED_KEYS}); "
        "remap those keys (for example to another id) before the call"
    )


def check_rows(rows, n: int, dim: int, dtype: np.dtype, reject_nan: bool = False, name: str = "rows", xp=np):
    """``rows`` as a contiguous (n, dim) array of ``dtype``, or raise.

    Any floating dtype is accepted and cast with NumPy's rounding (on the host).
    For ``xp`` = cupy the result is the rows' raw bits (uint32/uint16) on the
    device, and a device uint16 array is taken as bfloat16 bits for a bfloat16
    cache (CuPy has no bfloat16 dtype).
    """
    arr = _as_array(rows, xp)
    bits = _on_device(arr) and dtype.name == "bfloat16" and arr.dtype == np.uint16
    if not bits and arr.dtype != dtype and arr.dtype.kind != "f":
        raise RowDtypeError(
            f"{name} must be floating point (the cache holds {dtype}), got dtype {arr.dtype}; "
            f"convert with {name}.astype(np.float32)"
        )
    if arr.shape != (n, dim):
        raise RowShapeError(f"{name} must have shape (len(keys), dim) = {(n, dim)}, got {arr.shape}")
    if not bits and arr.dtype != dtype:
        arr = (arr.get() if _on_device(arr) else arr).astype(dtype)
    if xp is np:
        arr = np.ascontiguousarray(arr, dtype=dtype)
        words = raw(arr)
    else:
        words = raw(np.ascontiguousarray(arr)) if isinstance(arr, np.ndarray) else arr
        words = xp.ascontiguousarray(xp.asarray(words))
        if words.dtype.kind == "f":
            words = words.view(raw(np.zeros(0, dtype)).dtype)
        arr = words
    if reject_nan and n:
        mask = (1 << (8 * dtype.itemsize - 1)) - 1
        bad_rows = (words & mask) > _NAN_ABOVE[dtype.name]
        if bool(bad_rows.any()):
            bad = int(xp.flatnonzero(bad_rows.any(axis=1))[0])
            raise NaNRowError(f"{name}[{bad}] contains NaN and this cache was made with reject_nan=True")
    return arr
