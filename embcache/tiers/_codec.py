"""Keys and rows as bytes, for stores that hold byte strings (RocksDB, Redis).

A key is its 8 bytes big-endian after a store's prefix; a row is its values'
bytes in the row dtype, little-endian, ``dim * itemsize`` bytes.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .._dtypes import raw
from ..errors import TierError

__all__ = ["encode_keys", "decode_keys", "encode_rows", "decode_rows", "META_FORMAT", "meta_blob", "check_meta"]

_KEY = np.dtype(">i8")


def encode_keys(keys: np.ndarray, prefix: bytes = b"") -> list[bytes]:
    """One blob per key of ``keys`` (n,) int64: ``prefix`` then the key's 8 bytes big-endian."""
    data = keys.astype(_KEY).tobytes()
    return [prefix + data[i:i + 8] for i in range(0, len(data), 8)]


def decode_keys(blobs: Iterable[bytes], prefix: bytes = b"") -> np.ndarray:
    """The (n,) int64 keys of ``encode_keys`` blobs, each with its ``len(prefix)`` leading bytes dropped."""
    cut = len(prefix)
    return np.frombuffer(b"".join(b[cut:] for b in blobs), _KEY).astype(np.int64)


def encode_rows(rows: np.ndarray) -> list[bytes]:
    """One blob per row of ``rows`` (n, dim): its values' bytes in the row dtype, little-endian."""
    data = np.ascontiguousarray(raw(rows)).astype(raw(rows).dtype.newbyteorder("<")).tobytes()
    step = rows.shape[1] * rows.dtype.itemsize
    return [data[i:i + step] for i in range(0, len(data), step)]


def decode_rows(blobs: list, dim: int, dtype: np.dtype, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows (n, dim), found (n,))`` from stored blobs (None where absent); zero rows where absent."""
    n = len(blobs)
    found = np.fromiter((b is not None for b in blobs), np.bool_, n)
    present = [b for b in blobs if b is not None]
    step = dim * dtype.itemsize
    bad = next((len(b) for b in present if len(b) != step), None)
    if bad is not None:
        raise TierError(f"{where}: a stored row has {bad} bytes, but dim={dim} {dtype} rows have {step}; "
                        "the store holds another table")
    rows = np.zeros((n, dim), dtype)
    if present:
        bits = np.frombuffer(b"".join(present), raw(rows).dtype.newbyteorder("<")).reshape(-1, dim)
        raw(rows)[found] = bits
    return rows, found


META_FORMAT = "embcache-rows-v1"


def meta_blob(dim: int, dtype: np.dtype, **extra: Any) -> bytes:
    """The table record: format, dim, dtype, and a store's own ``extra`` fields (``check_meta`` ignores them)."""
    import json

    return json.dumps({"format": META_FORMAT, "dim": dim, "dtype": dtype.name, **extra}).encode()


def check_meta(blob: bytes, dim: int, dtype: np.dtype, where: str) -> None:
    """Raise ConfigError unless the store's recorded table shape is ``dim`` ``dtype`` rows."""
    import json

    from ..errors import ConfigError

    try:
        meta = json.loads(blob)
    except ValueError:
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ConfigError(f"{where} is not an embcache row store (no {META_FORMAT} record); give another path")
    if meta["dim"] != dim or meta["dtype"] != dtype.name:
        raise ConfigError(f"{where} holds dim={meta['dim']} {meta['dtype']} rows, but dim={dim} {dtype.name} "
                          "was asked for; open it with those, or use another store")
