"""A config's tables at run time: their stores, and one embcache.Cache per table shared by every caller.

The plugin (TensorRT), the ONNX Runtime op and the reference evaluator all call :func:`lookup_rows`;
caches are opened on first use and kept for the process, keyed by config file and table.
"""
from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterator

import numpy as np

from embcache import Cache
from embcache.errors import ConfigError, EmbCacheError, KeyDtypeError, TierError
from embcache.tiers import HostStore, Tier, TieredStore, open_store

from .config import Config, TableConfig, load_config, store_name

__all__ = ["open_table_store", "write_table", "table_cache", "lookup_rows", "lookup_into", "close_all",
           "out_of_range", "OutOfRangeWarning"]


class OutOfRangeWarning(UserWarning):
    """Row-number keys outside a table were looked up (ONNX Runtime's Gather would have raised)."""


def _open_redis(spec: str, table: TableConfig, namespace: str, create: bool) -> Tier:
    """A RedisStore with the table's ``redis`` options (username, TLS, ...), which open_store does not take."""
    from embcache.tiers.redis_store import RedisStore

    target = spec.removeprefix("redis-cluster://").split(",") if spec.startswith("redis-cluster://") else spec
    return RedisStore(target, table.dim, table.dtype, namespace=namespace, create=create, **table.redis)


def open_table_store(config: Config, table: TableConfig, create: bool = False, model: str | None = None) -> Tier:
    """The store (or tiers, fastest first) that holds ``table``'s rows.

    Parameters
    ----------
    create : bool
        Make the table where it is missing (import and surgery).  Without it a store that does not
        exist or holds no table is a ``StoreNotFoundError``: lookups never run on an empty table.
    model : str, optional
        The table's model.  A Redis store spec without ``#namespace`` gets the namespace
        ``embcache.<model>.<table>`` (:func:`trt_plugin.config.store_name`), so that two models'
        tables of one name do not share rows; without ``model`` it is ``embcache.<table>``.

    Raises
    ------
    StoreNotFoundError, ConfigError as the stores raise them; any other failure to open a store (a
    refused login, a server that does not answer) is a TierError naming the table and the store
    (without its password).
    """
    stores: list[Tier] = []
    try:
        for spec in table.store:
            stores.append(_open_one(config, table, spec, create, model))
    except BaseException as e:
        for store in stores:
            store.close()
        if isinstance(e, EmbCacheError) or not isinstance(e, Exception):
            raise
        raise TierError(f"table {table.name!r}: cannot open its store {_redacted(spec)}: {type(e).__name__}: "
                        f"{e}") from e
    return stores[0] if len(stores) == 1 else TieredStore(stores, promote=table.promote)


def _redacted(spec: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", spec)  # redis://user:password@host: never print the password


def _open_one(config: Config, table: TableConfig, spec: str, create: bool, model: str | None) -> Tier:
    spec, _, namespace = config.resolve(spec).partition("#")  # redis "#namespace" suffix
    if not namespace:
        namespace = "embcache." + (store_name(model, table.name) if model else table.name)
    if spec == "memory":
        return HostStore(table.dim, table.dtype)
    if table.redis and spec.startswith(("redis://", "rediss://", "redis-cluster://")):
        return _open_redis(spec, table, namespace, create)
    return open_store(spec, table.dim, table.dtype, namespace=namespace, create=create)


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
        self._out_of_range: dict[tuple, int] = {}

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
                    self._stores[where] = open_table_store(config, t, model=m.name)
                cache = Cache(t.capacity_rows(), t.dim, t.policy, t.admission, dtype=t.dtype,
                              backend=backend or m.backend, tier=self._stores[where],
                              default=t.default_value, ways=t.ways)
                self._caches[key] = (cache, t)
            return self._caches[key]

    def model_of(self, config_path: str, table: str, model: str | None) -> str:
        path = self._paths.get(config_path) or os.path.realpath(config_path)
        return self._configs[path].table(table, model)[0].name

    def count_out_of_range(self, config_path: str, table: TableConfig, model: str, n) -> None:
        """Add ``n`` out-of-range keys (an int, or a 0-d device array, added without a sync) to the
        table's count; warn the first time a host count is seen for the table."""
        where = (self._paths.get(config_path) or os.path.realpath(config_path), model, table.name)
        with self._lock:
            counts = self._out_of_range.setdefault(where, {"host": 0, "device": None, "table": table,
                                                           "warned": False})
            if isinstance(n, int):
                counts["host"] += n
            elif counts["device"] is None:
                counts["device"] = n.astype(np.int64).copy()
            else:
                counts["device"] += n
        self._warn(where)

    def _warn(self, where) -> None:
        with self._lock:
            counts = self._out_of_range.get(where)
            if counts is None or counts["warned"] or not counts["host"]:
                return
            counts["warned"] = True
            n, t = counts["host"], counts["table"]
        warnings.warn(f"EmbCacheLookup table {t.name!r}: {n} key(s) outside rows 0..{t.rows - 1} (or "
                      f"-{t.rows}..-1) got the default row {t.default_value}, where ONNX Runtime's Gather "
                      "raises; trt_plugin.tables.out_of_range() counts them (this warning comes once per table)",
                      OutOfRangeWarning, stacklevel=5)

    def out_of_range(self, config_path: str, table: str, model: str | None) -> int:
        path = os.path.realpath(config_path)
        total = 0
        for where in [w for w in list(self._out_of_range) if w[0] == path and w[2] == table
                      and model in (None, "", w[1])]:
            with self._lock:
                counts = self._out_of_range[where]
                if counts["device"] is not None:  # the GPU's count, read now (a sync)
                    counts["host"] += int(counts["device"].get())
                    counts["device"] = None
                total += counts["host"]
            self._warn(where)
        return total

    def close(self):
        for path, model, table in list(self._out_of_range):
            self.out_of_range(path, table, model)  # the GPU's counts, and their warnings, before they go
        with self._lock:
            for cache, _ in self._caches.values():
                cache.close()
            for store in self._stores.values():
                store.close()
            self._caches.clear()
            self._stores.clear()
            self._paths.clear()
            self._configs.clear()
            self._out_of_range.clear()


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
    table's default value where ONNX Runtime's Gather raises: they are counted (:func:`out_of_range`)
    and an :class:`OutOfRangeWarning` says so once per table (on the GPU backend the count stays on
    the device, with no sync in the lookup, until :func:`out_of_range` or :func:`close_all` reads
    it).  NumPy in, NumPy out on the CPU backend; CuPy on the GPU.
    """
    cache, t = table_cache(config_path, table, model, backend)
    m = _registry.model_of(str(config_path), table, model)
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
        outside = (flat < 0) | (flat >= t.rows)
        if xp is np:
            n = int(np.count_nonzero(outside))
            if n:
                _registry.count_out_of_range(str(config_path), t, m, n)
        else:  # counted on the device, no sync in the lookup; read (and warned about) by out_of_range()
            _registry.count_out_of_range(str(config_path), t, m, outside.sum())
        flat = xp.where(outside, np.int64(t.rows), flat)  # out of range: an absent key, the default row
    return cache.lookup(flat, stream=stream).reshape(shape + (t.dim,))


def lookup_into(fields, keys, out, stream=None) -> None:
    """The plugin's enqueue: rows of device ``keys`` written into the device buffer ``out``
    (``keys.shape + (dim,)``, float32 or float16) on ``stream``, the GPU backend's cache behind it."""
    rows = lookup_rows(fields.config, fields.table, keys, model=fields.model or None, stream=stream, backend="gpu")
    out[...] = rows.astype(out.dtype, copy=False)


def out_of_range(config_path: str | os.PathLike, table: str, model: str | None = None) -> int:
    """How many row-number keys outside ``table`` this process looked up (each got the default row,
    where ONNX Runtime's Gather raises), summed over backends, since the last :func:`close_all`."""
    return _registry.out_of_range(str(config_path), table, model)


def close_all() -> None:
    """Close every cache and store this process opened (tests; a long-lived server need not)."""
    _registry.close()
