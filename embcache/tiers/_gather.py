"""The GPU's read of a tier's :class:`~embcache._source.DeviceSource` into device memory (``gather_to_device``).

The tier's own kernel (source_gather.cu, beside this file), compiled through the neutral
``embcache._cuda``, its block the utility block of the device's entry in the tuning table, read through
the neutral ``embcache._tuning``: embcache.tiers imports nothing from embcache.kernels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .._source import INDEX_LAYOUTS, DeviceSource
from ..errors import ConfigError

__all__: list[str] = []

_SOURCE_GATHER_CU = Path(__file__).with_name("source_gather.cu")


def gather_source(source: DeviceSource, keys, default_row):
    """``(rows (n, dim) raw bits, found (n,) bool)`` of device ``keys`` (n,) int64 read from ``source``.

    ``default_row`` (dim,) raw bits fills absent keys.  Runs on CuPy's current stream and waits for
    it, so the caller may let the tier's lock go (and the tier change) as soon as this returns.
    """
    if source.layout not in INDEX_LAYOUTS:
        raise ConfigError(f"the source's index layout {source.layout!r} is not one this gather reads "
                          f"({', '.join(map(repr, INDEX_LAYOUTS))})")
    from .._cuda import compile_source, launch_grid, layout_defines, require_cupy, vector_bytes
    from .._tuning import device_utility_block

    cupy = require_cupy()
    block = device_utility_block(cupy.cuda.Device().id)  # a grid-stride kernel, as the utility kernels
    row_bytes = source.row_bytes
    words = row_bytes // vector_bytes(row_bytes)
    group = 1 << (min(32, words).bit_length() - 1)  # lanes per row: a power of two, no idle ones
    defines = {**layout_defines(), "ROW_BYTES": row_bytes, "VEC": vector_bytes(row_bytes), "GROUP": group,
               "BLOCK": block}
    kernel = compile_source(_SOURCE_GATHER_CU, defines).get_function("source_gather")
    n = keys.shape[0]
    rows = cupy.empty((n, source.dim), default_row.dtype)
    found = cupy.empty(n, cupy.bool_)
    if n:
        # a device array, or the device address of mapped host memory (passed as a 64-bit pointer)
        index = np.uint64(source.index) if isinstance(source.index, (int, np.integer)) else source.index
        kernel((launch_grid(n * group, block),), (block,),
               (index, np.int64(source.mask), np.uint64(source.rows), keys, np.int64(n), rows, found, default_row,
                np.int32(INDEX_LAYOUTS[source.layout])))
        # the kernel reads the index and rows in place: the tier may change them once this returns
        cupy.cuda.get_current_stream().synchronize()
    return rows, found
