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

__all__ = ["DeviceSource", "INDEX_SPLITMIX64_LINEAR"]

#: the only index layout so far: slot ``mix64(key) & mask`` first, then linear probing (+1, wrapping)
#: until the key or ``EMPTY_KEY``; what tiers/host.py's Numba ``_probe`` does
INDEX_SPLITMIX64_LINEAR = "splitmix64-linear"


@dataclass(frozen=True)
class DeviceSource:
    """A tier's rows as a GPU kernel reads them, valid while the tier's ``lock`` is held.

    Attributes
    ----------
    index : int or device array
        The hash index: ``mask + 1`` int64 keys (``EMPTY_KEY`` in empty slots), as a device array or
        the device address of mapped host memory.
    mask : int
        Slots of the index minus one (the slot count is a power of two).
    rows : int
        Device address of the rows: slot ``h``'s row starts ``h * row_bytes`` bytes in.
    dim : int
        Values per row.
    dtype : numpy.dtype
        Row dtype (float32, float16 or bfloat16).
    layout : str
        How ``index`` is probed; :data:`INDEX_SPLITMIX64_LINEAR` is the one kernels know.
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
