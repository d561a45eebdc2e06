"""The per-architecture tuning table, read: neutral ground for the kernels and the tiers.

The table (``embcache/kernels/tuning.json``, written by ``embcache autotune``; its format is described
in ``embcache/kernels/tuning.py``) gives every launch shape of the package's CUDA kernels.  The cache's
kernels take their shapes from ``embcache.kernels.tuning``; a tier's own kernel (the DeviceSource
gather of ``embcache/tiers/_gather.py``) must not import ``embcache.kernels``, so the reading of the
table and the block every grid-stride kernel uses live here, importing nothing of kernels or tiers.
"""
from __future__ import annotations

import functools
import json
import pathlib

__all__ = ["TABLE_PATH", "load_table", "utility_block", "device_utility_block"]

#: the shipped table (kept beside the kernels whose shapes it mostly holds)
TABLE_PATH = pathlib.Path(__file__).with_name("kernels") / "tuning.json"
_CACHE: dict = {}


def load_table(path: str | pathlib.Path | None = None) -> dict:
    """The tuning table: ``{"entries": {"9.0": {"shapes": [...], ...}, ...}}``."""
    with open(path or TABLE_PATH) as f:
        return json.load(f)


def _table() -> dict:
    if "table" not in _CACHE:
        _CACHE["table"] = load_table()
    return _CACHE["table"]


def _entry(compute_capability: str, table: dict | None) -> tuple[str, dict]:
    """The entry for ``compute_capability``: its own, else the nearest lower architecture's."""
    entries = (table or _table())["entries"]
    want = tuple(int(x) for x in compute_capability.split("."))
    known = sorted((tuple(int(x) for x in cc.split(".")), cc) for cc in entries)
    lower = [cc for version, cc in known if version <= want] or [known[0][1]]
    return lower[-1], entries[lower[-1]]


def utility_block(compute_capability: str, table: dict | None = None) -> int:
    """Threads per block of the utility kernels on a GPU of ``compute_capability`` (a multiple of 32)."""
    cc, entry = _entry(compute_capability, table)
    block = int(entry.get("utility_block", 256))  # tables written before the key existed used 256
    if block <= 0 or block % 32 or block > 1024:
        raise ValueError(f"tuning entry {cc} has utility_block {block}: give a multiple of 32 up to 1024")
    return block


@functools.lru_cache(maxsize=None)
def device_utility_block(device_id: int) -> int:
    """:func:`utility_block` of CUDA device ``device_id`` (its compute capability read once, through CuPy)."""
    from ._cuda import require_cupy

    cc = require_cupy().cuda.Device(device_id).compute_capability  # e.g. "90"
    return utility_block(f"{cc[:-1]}.{cc[-1]}")
