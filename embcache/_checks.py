"""Argument checks run before any kernel sees an array, so errors name the argument.

Both take host (NumPy, lists) or device (CuPy) arrays and return them where the
backend works: ``xp`` is ``numpy`` or ``cupy``.
"""
from __future__ import annotations

from typing import Any, NoReturn

import numba
import numpy as np

from ._cuda import vector_bytes
from ._dtypes import raw
from .errors import KeyDtypeError, KeyShapeError, NaNRowError, ReservedKeyError, RowDtypeError, RowShapeError
from .layout import LOCKED_KEY, RESERVED_KEYS

__all__ = ["check_keys", "check_rows", "check_out", "out_dtype", "raise_reserved", "gather_rules"]

# raw bits above these (sign bit cleared) are NaN: float32, float16/bfloat16 by exponent width
_NAN_ABOVE = {"float32": 0x7F800000, "float16": 0x7C00, "bfloat16": 0x7F80}


_INT64 = np.dtype(np.int64)  # native: a big-endian int64 compares unequal
_LOCKED = np.int64(LOCKED_KEY)


_MAX_KEY = np.int64(2**63 - 1)


@numba.njit(nogil=True, cache=True)
def _any_reserved(keys) -> bool:
    """Whether contiguous int64 ``keys`` hold a reserved key (all are <= LOCKED_KEY): one compiled pass,
    ~0.2 us for a short batch where NumPy's ``(keys <= LOCKED_KEY).any()`` costs ~1.2 us.  The pass is
    a minimum, which compiles to vector instructions, where a loop that returns at the first reserved
    key compares one key at a time (1,024 keys 0.43 -> 0.24 us, 65,536 16 -> 4.3 us)."""
    low = _MAX_KEY
    for i in range(keys.shape[0]):
        low = min(low, keys[i])
    return low <= _LOCKED


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


def check_keys(keys: Any, name: str = "keys", xp: Any = np, reserved: bool = True) -> Any:
    """``keys`` as a contiguous (n,) int64 array of ``xp``, or raise.

    Any integer dtype, in either byte order, is accepted and converted by value.
    uint64 keys are taken as their 64 bits (two's complement), so ``2**64 - 1``
    is the key ``-1``; the two uint64 values whose bits are a reserved key
    (``2**63`` and ``2**63 + 1``) are refused like the reserved keys.
    ``reserved=False`` leaves the reserved-key check to the caller (the GPU hit
    path counts them in its kernel instead of waiting for a separate reduction).
    """
    if type(keys) is np.ndarray and keys.dtype == _INT64 and keys.ndim == 1 and keys.flags.c_contiguous:
        # already what is asked for (a server's batches are): the reserved-key check alone, compiled
        if xp is np:
            # one key (a cache's one-key miss asks its tier for one): a compare, not a compiled call
            if reserved and keys.shape[0] and (keys[0] <= _LOCKED if keys.shape[0] == 1 else _any_reserved(keys)):
                raise_reserved(keys, name)
            return keys
    elif xp is not np and type(keys) is xp.ndarray and keys.dtype == _INT64 and keys.ndim == 1 and \
            keys.flags.c_contiguous:
        # device keys as they are asked for: no conversion, so none of the calls below (microseconds each)
        if reserved and keys.shape[0] and bool((keys <= LOCKED_KEY).any()):
            raise_reserved(keys, name)
        return keys
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


def raise_reserved(keys: Any, name: str = "keys") -> NoReturn:
    """Raise the ReservedKeyError for ``keys``, which hold a reserved key."""
    bad = keys[keys <= LOCKED_KEY][0]
    raise ReservedKeyError(
        f"{name} contains {int(bad)}, a reserved sentinel (embcache.RESERVED_KEYS = {RESERVED_KEYS}); "
        "remap those keys (for example to another id) before the call"
    )


def check_rows(rows: Any, n: int, dim: int, dtype: np.dtype, reject_nan: bool = False, name: str = "rows",
               xp: Any = np) -> Any:
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


def out_dtype(dtype: np.dtype, xp: Any = np) -> np.dtype:
    """The dtype of the rows a lookup returns for ``dtype`` rows on ``xp``: the row dtype itself,
    except bfloat16 on the GPU, which CuPy has not: its uint16 bits."""
    got = _OUT_DTYPES.get((dtype, xp is np))
    if got is None:  # ``dtype.name`` costs microseconds: once per dtype
        got = np.dtype(np.uint16) if xp is not np and dtype.name == "bfloat16" else np.dtype(dtype)
        _OUT_DTYPES[(dtype, xp is np)] = got
    return got


_OUT_DTYPES: dict = {}


def check_out(out: Any, n: int, dim: int, dtype: np.dtype, xp: Any = np, device: int | None = None,
              name: str = "out") -> Any:
    """``out`` if a lookup of ``n`` keys can write its rows straight into it, else raise.

    ``out`` must be an array of ``xp`` (NumPy on the CPU, CuPy on the GPU, on CUDA device
    ``device``) of shape ``(n, dim)`` and dtype :func:`out_dtype`, C-contiguous and writeable, its
    first byte aligned as the kernels write rows (the row dtype's size on the CPU; the widest word,
    up to 16 bytes, that tiles a row on the GPU, as CuPy's and TensorRT's allocations are).
    Nothing is converted: a buffer that needs converting is refused, so a lookup never writes
    into a temporary copy that the caller does not see.

    Raises
    ------
    RowDtypeError
        ``out`` is not an array of ``xp`` or has another dtype.
    RowShapeError
        Wrong shape, another device, not C-contiguous, read-only or misaligned.
    """
    want = out_dtype(dtype, xp)
    where = "NumPy" if xp is np else "CuPy"
    if not isinstance(out, xp.ndarray):
        raise RowDtypeError(f"{name} must be a {where} array (this cache's backend is "
                            f"{'the CPU' if xp is np else 'the GPU'}), got {type(out).__module__}."
                            f"{type(out).__name__}; allocate it with {'numpy' if xp is np else 'cupy'}.empty(({n}, "
                            f"{dim}), {want.name})")
    if out.dtype != want:
        raise RowDtypeError(f"{name} must have dtype {want.name} (the rows this cache's lookup returns), got "
                            f"{out.dtype}; nothing is converted into a caller's buffer")
    if out.shape != (n, dim):
        raise RowShapeError(f"{name} must have shape (len(keys), dim) = {(n, dim)}, got {out.shape}")
    if xp is not np and device is not None and out.device.id != device:
        raise RowShapeError(f"{name} is on CUDA device {out.device.id} but this cache is on device {device}; "
                            "allocate it on the cache's device (Cache.device)")
    if not out.flags.c_contiguous:
        raise RowShapeError(f"{name} must be C-contiguous (rows one after another); got strides {out.strides}")
    if xp is np:
        if not out.flags.writeable:
            raise RowShapeError(f"{name} is read-only; give a writeable array")
        if not out.flags.aligned:
            raise RowShapeError(f"{name} is not aligned to its dtype's {want.itemsize} bytes; give an array "
                                "numpy allocated")
    elif n and out.data.ptr % vector_bytes(dim * want.itemsize):
        raise RowShapeError(f"{name} starts at an address that is not a multiple of "
                            f"{vector_bytes(dim * want.itemsize)} bytes, as the kernels write rows; give a whole "
                            "allocation (CuPy's and TensorRT's are 256-byte aligned), not a view into one")
    return out


def gather_rules(xp: Any, keys: Any, index_rows: int) -> tuple[Any, int]:
    """``(keys, invalid)``: checked int64 ``keys`` as row numbers of a table of ``index_rows`` rows, by
    ONNX Gather's rules (``k < 0`` means ``k + index_rows``; one still outside ``[0, index_rows)``
    becomes the key ``index_rows``, which such a table lacks), and how many keys that last rule
    replaced.  The GPU's probe applies the same rules as it reads keys (``probe_body.cuh``)."""
    keys = xp.where(keys < 0, keys + index_rows, keys)
    outside = (keys < 0) | (keys >= index_rows)
    invalid = int(outside.sum())
    if invalid:
        keys = xp.where(outside, np.int64(index_rows), keys)
    return keys, invalid
