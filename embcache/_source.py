"""What a tier offers the GPU: its rows and index where a kernel can read them in place.

A tier that keeps its rows in memory the GPU can address (pinned, mapped host memory; a shared-memory
segment registered with CUDA) describes them with one :class:`DeviceSource`; the kernels read that
description and never name a store.  ``Tier.device_source()`` returns one, or ``None`` when the tier
cannot be read from the GPU (RocksDB, Redis) or must see every read itself (a HostStore that counts uses).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DeviceSource", "INDEX_SPLITMIX64_LINEAR", "INDEX_SPLITMIX64_LINEAR_ROWS", "INDEX_LAYOUTS"]

#: slot ``mix64(key) & mask`` first, then linear probing (+1, wrapping) until the key or ``EMPTY_KEY``
#: (tiers/host.py's Numba ``_probe``); the index holds ``mask + 1`` keys and slot ``h``'s row is row ``h``
#: (SharedHostStore)
INDEX_SPLITMIX64_LINEAR = "splitmix64-linear"
#: the same probing over ``mask + 1`` (key, row) pairs of int64: slot ``h``'s row is the row its pair
#: names, so rows are stored densely (HostStore)
INDEX_SPLITMIX64_LINEAR_ROWS = "splitmix64-linear-rows"
#: every layout the kernels read: the int64 words an index slot takes
INDEX_LAYOUTS = {INDEX_SPLITMIX64_LINEAR: 1, INDEX_SPLITMIX64_LINEAR_ROWS: 2}


@dataclass(frozen=True)
class DeviceSource:
    """A tier's rows as a GPU kernel reads them, valid while the tier's ``lock`` is held.

    Attributes
    ----------
    index : int or device array
        The hash index: ``mask + 1`` slots of ``INDEX_LAYOUTS[layout]`` int64 words each (a key,
        ``EMPTY_KEY`` in empty slots, then with ``INDEX_SPLITMIX64_LINEAR_ROWS`` the key's row), as a
        device array or the device address of mapped host memory.
    mask : int
        Slots of the index minus one (the slot count is a power of two).
    rows : int
        Device address of the rows: row ``r`` starts ``r * row_bytes`` bytes in (slot ``h``'s row is ``h``,
        or the row its pair names).
    dim : int
        Values per row.
    dtype : numpy.dtype
        Row dtype (float32, float16 or bfloat16).
    layout : str
        How ``index`` is probed and where its rows are: one of :data:`INDEX_LAYOUTS`.
    owner : object
        What keeps the memory alive (the tier); kernels never touch it.
    """

    index: Any
    mask: int
    rows: int
    dim: int
    dtype: np.dtype
    layout: str = INDEX_SPLITMIX64_LINEAR
    owner: Any = None

    @property
    def row_bytes(self) -> int:
        """Bytes per row: ``dim * dtype.itemsize``."""
        return self.dim * np.dtype(self.dtype).itemsize
