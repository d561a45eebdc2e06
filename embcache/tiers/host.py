"""HostStore: rows in host memory behind a Numba open-addressing hash index."""
from __future__ import annotations

import numba
import numpy as np

from .._dtypes import raw
from ..layout import EMPTY_KEY, mix64
from ..errors import ConfigError
from ._base import Tier

__all__ = ["HostStore"]

_EMPTY = np.int64(EMPTY_KEY)


@numba.njit(inline="always", nogil=True, cache=True)
def _home(key, mask):
    return np.int64(mix64(key) & np.uint64(mask))


@numba.njit(inline="always", nogil=True, cache=True)
def _probe(table, key, mask):
    h = _home(key, mask)
    while table[h] != _EMPTY and table[h] != key:
        h = (h + 1) & mask
    return h


@numba.njit(nogil=True, cache=True)
def _get_many(table, values, keys, out, found):
    mask = table.shape[0] - 1
    for i in range(keys.shape[0]):
        h = _probe(table, keys[i], mask)
        if table[h] == keys[i]:
            out[i, :] = values[h]
            found[i] = True


@numba.njit(nogil=True, cache=True)
def _put_many(table, values, keys, rows):
    mask = table.shape[0] - 1
    added = 0
    for i in range(keys.shape[0]):
        h = _probe(table, keys[i], mask)
        if table[h] == _EMPTY:
            table[h] = keys[i]
            added += 1
        values[h, :] = rows[i]
    return added


@numba.njit(nogil=True, cache=True)
def _delete_many(table, values, keys):
    # linear probing with backward-shift deletion: no tombstones, probes stay short
    mask = table.shape[0] - 1
    removed = 0
    for n in range(keys.shape[0]):
        i = _probe(table, keys[n], mask)
        if table[i] != keys[n]:
            continue
        removed += 1
        j = i
        while True:
            j = (j + 1) & mask
            if table[j] == _EMPTY:
                break
            k = _home(table[j], mask)
            # the entry at j may move to i only if its home is not cyclically in (i, j]
            if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
                continue
            table[i] = table[j]
            values[i, :] = values[j]
            i = j
        table[i] = _EMPTY
    return removed


@numba.njit(nogil=True, cache=True)
def _rehash(old_table, old_values, table, values):
    mask = table.shape[0] - 1
    for i in range(old_table.shape[0]):
        if old_table[i] != _EMPTY:
            h = _probe(table, old_table[i], mask)
            table[h] = old_table[i]
            values[h, :] = old_values[i]


class HostStore(Tier):
    """Rows in host memory, indexed by an open-addressing hash table (load factor <= 1/2).

    Parameters
    ----------
    dim : int
        Values per row.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    initial_rows : int
        Rows to make room for up front; the table doubles as it fills.
    pinned : bool
        Keep the index and rows in page-locked host memory mapped into the GPU's
        address space (needs CuPy), so that a GPU cache reads missed rows
        straight from here over PCIe (zero-copy), with no staging copy.

    Memory is about ``2 * rows * (8 + dim * itemsize)`` bytes.
    """

    def __init__(self, dim: int, dtype="float32", initial_rows: int = 1024, pinned: bool = False):
        super().__init__(dim, dtype)
        self._size = 0
        self.pinned = bool(pinned)
        self._pinned_buffers = ()
        # a power of two at least twice the rows, so the table starts at load factor <= 1/2
        self._alloc(max(16, 1 << (2 * int(initial_rows) - 1).bit_length()))

    def _alloc(self, slots):
        if not self.pinned:
            self._table = np.full(slots, EMPTY_KEY, np.int64)
            self._values = np.zeros((slots, self.dim), self.dtype)
            return
        from ..kernels.gpu import require_cupy

        cupy = require_cupy()
        buffers = tuple(cupy.cuda.PinnedMemory(max(1, nbytes), cupy.cuda.runtime.hostAllocMapped)
                        for nbytes in (slots * 8, slots * self.dim * self.dtype.itemsize))
        views = [cupy.cuda.PinnedMemoryPointer(b, 0) for b in buffers]  # these expose the buffer protocol
        self._table = np.frombuffer(views[0], np.int64, slots)
        self._values = np.frombuffer(views[1], self.dtype, slots * self.dim).reshape(slots, self.dim)
        self._table.fill(EMPTY_KEY)
        self._values.fill(0)
        self._pinned_buffers = buffers  # the arrays above only borrow this memory

    def __len__(self) -> int:
        return self._size

    def _reserve(self, more):
        if 2 * (self._size + more) <= self._table.shape[0]:
            return
        slots = self._table.shape[0]
        while 2 * (self._size + more) > slots:
            slots *= 2
        old_table, old_values = self._table, self._values
        self._alloc(slots)
        _rehash(old_table, raw(old_values), self._table, raw(self._values))

    def _get_many(self, keys):
        out = np.zeros((keys.shape[0], self.dim), self.dtype)
        found = np.zeros(keys.shape[0], np.bool_)
        _get_many(self._table, raw(self._values), keys, raw(out), found)
        return out, found

    def _put_many(self, keys, values):
        self._reserve(keys.shape[0])
        self._size += int(_put_many(self._table, raw(self._values), keys, raw(values)))

    def _delete_many(self, keys):
        self._size -= int(_delete_many(self._table, raw(self._values), keys))

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64, in no particular order."""
        self._check_open("keys")
        return self._table[self._table != EMPTY_KEY].copy()

    def gather_to_device(self, keys, default_row):
        """GPU reads of a pinned store: ``(rows, found)`` of device ``keys`` (n,) int64, on the device.

        ``rows`` (n, dim) holds the raw bits of each stored row (``default_row``,
        a device array of raw bits, where absent).  The GPU walks this store's
        index and copies its rows over PCIe itself; nothing is staged.  Runs on
        CuPy's current stream.
        """
        self._check_open("gather_to_device")
        if not self.pinned:
            raise ConfigError("gather_to_device needs a HostStore made with pinned=True")
        from ..kernels.gpu import launch_grid, compile_module, require_cupy
        from ..kernels.tuning import vector_bytes

        cupy = require_cupy()
        row_bytes = self.dim * self.dtype.itemsize
        words = row_bytes // vector_bytes(row_bytes)
        group = 1 << (min(32, words).bit_length() - 1)  # lanes per row: a power of two, no idle ones
        kernel = compile_module("host_store.cu", ROW_BYTES=row_bytes, VEC=vector_bytes(row_bytes),
                                GROUP=group, BLOCK=256).get_function("host_gather")
        n = keys.shape[0]
        rows = cupy.empty((n, self.dim), default_row.dtype)
        found = cupy.empty(n, cupy.bool_)
        if n:
            kernel((launch_grid(n * group, 256),), (256,), (
                self._device_pointer(self._table), np.int64(self._table.shape[0] - 1),
                self._device_pointer(self._values), keys, np.int64(n), rows, found, default_row))
        return rows, found

    @staticmethod
    def _device_pointer(array) -> np.uint64:
        """Where the GPU sees a mapped pinned array (the host address itself under unified addressing)."""
        import cupy

        return np.uint64(cupy.cuda.runtime.pointerGetAttributes(array.ctypes.data).devicePointer)

    def _close(self):
        self._table = self._values = None
        self._pinned_buffers = ()
