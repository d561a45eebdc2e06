"""A config's tables at run time: their stores, and one embcache.Cache per table shared by every caller.

The plugin (TensorRT), the ONNX Runtime op and the reference evaluator all call :func:`lookup_rows`;
caches are opened on first use and kept for the process, keyed by config file and table.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import numpy as np

from embcache import Cache
from embcache.errors import ConfigError, KeyDtypeError
from embcache.tiers import HostStore, Tier, TieredStore, open_store

from .config import Config, TableConfig, load_config

__all__ = ["open_table_store", "write_table", "table_cache", "lookup_rows", "lookup_into", "close_all"]


def open_table_store(config: Config, table: TableConfig, create: bool = False) -> Tier:
    """The store (or tiers, fastest first) that holds ``table``'s rows; ``create`` makes missing tables."""
    stores = []
    for spec in table.store:
        spec, _, namespace = config.resolve(spec).partition("#")  # redis "#namespace" suffix
        if spec == "memory":
            stores.append(HostStore(table.dim, table.dtype))
        else:
            stores.append(open_store(spec, table.dim, table.dtype, namespace=namespace or f"embcache.{table.name}",
                                     create=create))
    return stores[0] if len(stores) == 1 else TieredStore(stores)


def _row_chunks(values: np.ndarray, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, values.shape[0], chunk):
        stop = min(start + chunk, values.shape[0])
        yield np.arange(start, stop, dtype=np.int64), values[start:stop]


def write_table(store: Tier, values: np.ndarray, chunk: int = 1 << 16, progress: bool = True,
                name: str = "table") -> int:
    """Write ``values`` (rows, dim) into ``store`` under keys 0..rows-1 (the row numbers); returns rows."""
    from tqdm.auto import tqdm

    with tqdm(total=values.shape[0], unit="row", unit_scale=True, desc=f"exporting {name}",
              disable=not progress) as bar:
        for keys, rows in _row_chunks(values, chunk):
            store.put_many(keys, np.ascontiguousarray(rows))
            bar.update(keys.shape[0])
    return int(values.shape[0])


class _Registry:
    """Process-wide caches, one per (config file, model, table, backend)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._configs: dict[str, Config] = {}
        self._caches: dict[tuple, tuple[Cache, TableConfig]] = {}
        self._stores: dict[tuple, Tier] = {}
        self._paths: dict[str, str] = {}

    def get(self, config_path: str, table: str, model: str | None, backend: str | None):
        path = self._paths.get(config_path)
        if path is None:  # resolved once per spelling: the plugin calls this on every enqueue
            path = self._paths.setdefault(config_path, os.path.realpath(config_path))
        with self._lock:
            config = self._configs.get(path) or load_config(path)
            self._configs[path] = config
            m, t = config.table(table, model)
            key = (path, m.name, t.name, backend or m.backend)
            if key not in self._caches:
                where = (path, m.name, t.name)  # caches of several backends share one store
                if where not in self._stores:
                    self._stores[where] = open_table_store(config, t)
                cache = Cache(t.capacity_rows(), t.dim, t.policy, t.admission, dtype=t.dtype,
                              backend=backend or m.backend, tier=self._stores[where],
                              default=t.default_value, ways=t.ways)
                self._caches[key] = (cache, t)
            return self._caches[key]

    def close(self):
        with self._lock:
            for cache, _ in self._caches.values():
                cache.close()
            for store in self._stores.values():
                store.close()
            self._caches.clear()
            self._stores.clear()
            self._paths.clear()
            self._configs.clear()


_registry = _Registry()


def table_cache(config_path: str | os.PathLike, table: str, model: str | None = None,
                backend: str | None = None) -> tuple[Cache, TableConfig]:
    """The process's cache for ``table`` (opened on first use) and the table's config."""
    return _registry.get(str(config_path), table, model, backend)


def lookup_rows(config_path: str | os.PathLike, table: str, keys, model: str | None = None, stream=None,
                backend: str | None = None):
    """Rows of ``keys`` (any shape, int32 or int64 row numbers): an array of shape ``keys.shape + (dim,)``.

    For tables whose keys are row numbers (``keys_are_rows``, as surgery writes them), negative keys
    count from the end of the table, as ONNX Gather's indices do, and keys outside the table get the
    table's default value.  NumPy in, NumPy out on the CPU backend; CuPy on the GPU.
    """
    cache, t = table_cache(config_path, table, model, backend)
    xp = cache._backend.xp
    keys = xp.asarray(keys)
    if keys.dtype not in (np.int32, np.int64):
        raise KeyDtypeError(f"EmbCacheLookup keys must be int32 or int64, got {keys.dtype}")
    shape = keys.shape
    flat = keys.reshape(-1).astype(np.int64, copy=False)
    if t.keys_are_rows:
        if t.rows is None:
            raise ConfigError(f"table {table!r}: keys_are_rows needs the table's 'rows' in the config")
        flat = xp.where(flat < 0, flat + t.rows, flat)
        flat = xp.where((flat < 0) | (flat >= t.rows), np.int64(t.rows), flat)  # out of range: an absent key
    return cache.lookup(flat, stream=stream).reshape(shape + (t.dim,))


def lookup_into(fields, keys, out, stream=None) -> None:
    """The plugin's enqueue: rows of device ``keys`` written into the device buffer ``out``
    (``keys.shape + (dim,)``, float32 or float16) on ``stream``, the GPU backend's cache behind it."""
    rows = lookup_rows(fields.config, fields.table, keys, model=fields.model or None, stream=stream, backend="gpu")
    out[...] = rows.astype(out.dtype, copy=False)


def close_all() -> None:
    """Close every cache and store this process opened (tests; a long-lived server need not)."""
    _registry.close()
