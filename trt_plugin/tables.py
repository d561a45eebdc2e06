"""A config's tables at run time: their stores, and one embcache.Cache per table shared by every caller.

The plugin (TensorRT), the ONNX Runtime op and the reference evaluator all call :func:`lookup_rows`;
caches are opened on first use and kept for the process, keyed by config file and table.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import warnings
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from embcache import Cache
from embcache.errors import ConfigError, EmbCacheError, KeyDtypeError, RowShapeError, TierError
from embcache.imports import write_rows
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore, Tier, TieredStore, open_store

from .config import MEMORY_STORES, Config, ModelConfig, TableConfig, load_config, store_name
from .fields import LookupFields, output_shape

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
    if spec in MEMORY_STORES:
        return HostStore(table.dim, table.dtype, pinned=spec == "memory:pinned")
    if table.redis and spec.startswith(("redis://", "rediss://", "redis-cluster://")):
        return _open_redis(spec, table, namespace, create)
    return open_store(spec, table.dim, table.dtype, namespace=namespace, create=create)


def write_table(store: Tier, values: np.ndarray, chunk: int = 1 << 16, progress: bool = True,
                name: str = "table") -> int:
    """Write ``values`` (rows, dim) into ``store`` under keys 0..rows-1 (the row numbers); returns rows.

    :func:`embcache.imports.write_rows` with no keys: chunks of ``chunk`` rows, each one ``put_many``.
    """
    return write_rows(store, None, values, chunk_rows=chunk, progress=progress, desc=f"exporting {name}")


def _device_of(array: Any) -> int | None:
    """The CUDA device a CuPy array lives on; None for anything else (NumPy arrays, lists)."""
    if type(array).__module__.split(".")[0] == "cupy":
        return array.data.device_id  # the memory's device id, an int: no Device object made per call
    return None


def _current_device() -> int:
    import cupy

    return cupy.cuda.runtime.getDevice()  # one runtime call, no Device object (the enqueue asks every time)


def _on(device: int | None) -> AbstractContextManager:
    """The context in which CuPy works on ``device`` (nothing for the CPU)."""
    if device is None:
        return contextlib.nullcontext()
    import cupy

    return cupy.cuda.Device(device)


class _Table:
    """One (config file, model, table), resolved once: its configs, whether its caches run on the
    GPU, and its caches by device (None: the CPU's)."""

    def __init__(self, path: str, model: ModelConfig, table: TableConfig, gpu: bool):
        self.path, self.model, self.table, self.gpu = path, model, table, gpu
        self.caches: dict[int | None, Cache] = {}

    def device(self, asked: int | None) -> int | None:
        """The device of the cache that serves a caller on ``asked`` (the current device if None)."""
        if not self.gpu:
            return None
        device = _current_device() if asked is None else int(asked)
        if device not in self.model.devices:
            raise ConfigError(
                f"table {self.table.name!r} of model {self.model.name!r} is deployed on CUDA device(s) "
                f"{list(self.model.devices)} (the config's 'devices', HPS's 'deployed_device_list') but was "
                f"looked up from device {device}; add {device} to that list, or run on one of those devices")
        return device


class _Registry:
    """Process-wide caches: one per (config file, model, table, backend, device), all the caches of one
    table in front of one store.

    A caller's (config spelling, table, model, backend) is resolved once, under the lock, and kept: a
    lookup after the first one costs two dictionary reads (and, on the GPU, reading the current device).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._configs: dict[str, Config] = {}
        self._tables: dict[tuple, _Table] = {}  # by the caller's spelling
        self._resolved: dict[tuple, _Table] = {}  # by (real path, model, table, gpu)
        self._stores: dict[tuple, Tier] = {}
        self._out_of_range: dict[tuple, dict] = {}
        # the plugin's enqueue, by (node fields, keys' device): (cache, index_rows, row width)
        self._enqueue: dict[tuple, tuple] = {}
        self._last_enqueue: tuple = (None, None, None)  # (fields, device, target) of the last enqueue

    def enqueue_target(self, fields: LookupFields, device: int | None) -> tuple:
        """``(cache, index_rows, dim)`` for :func:`lookup_into` on ``device``, resolved on the first call
        (one dictionary read after it: the enqueue runs once per TensorRT layer and batch)."""
        last = self._last_enqueue  # a plugin layer enqueues with its one fields object: no hashing then
        if last[0] is fields and last[1] == device:
            return last[2]
        target = self._enqueue.get((fields, device))
        if target is None:
            cache, entry = self.get(fields.config, fields.table, fields.model or None, "gpu", device)
            t = entry.table
            if t.keys_are_rows and t.rows is None:
                raise ConfigError(f"table {t.name!r}: keys_are_rows needs the table's 'rows' in the config")
            target = (cache, t.rows if t.keys_are_rows else None, t.dim)
            self._enqueue[(fields, device)] = target
        self._last_enqueue = (fields, device, target)
        return target

    def get(self, config_path: str, table: str, model: str | None, backend: str | None,
            device: int | None = None) -> tuple[Cache, _Table]:
        """The cache that serves ``table`` for a caller on ``device``, and its resolved table."""
        entry = self._tables.get((config_path, table, model, backend))
        if entry is None:
            entry = self._resolve(config_path, table, model, backend)
        where = entry.device(device)
        cache = entry.caches.get(where)
        if cache is None:
            cache = self._open(entry, where)
        return cache, entry

    def _resolve(self, config_path: str, table: str, model: str | None, backend: str | None) -> _Table:
        with self._lock:
            path = os.path.realpath(config_path)
            config = self._configs.get(path) or load_config(path)
            self._configs[path] = config
            m, t = config.table(table, model)
            kind = backend or m.backend
            if kind not in ("auto", "cpu", "gpu"):
                raise ConfigError(f"backend must be 'auto', 'cpu' or 'gpu', got {kind!r}")
            gpu = kind == "gpu" or (kind == "auto" and gpu_available())
            key = (path, m.name, t.name, gpu)
            entry = self._resolved.setdefault(key, _Table(path, m, t, gpu))
            self._tables[(config_path, table, model, backend)] = entry
            return entry

    def _open(self, entry: _Table, device: int | None) -> Cache:
        with self._lock:
            if device in entry.caches:
                return entry.caches[device]
            m, t = entry.model, entry.table
            where = (entry.path, m.name, t.name)  # the caches of every backend and device share one store
            if where not in self._stores:
                self._stores[where] = open_table_store(self._configs[entry.path], t, model=m.name)
            with _on(device):
                cache = Cache(t.capacity_rows(), t.dim, t.policy, m.admission_of(t), dtype=t.dtype,
                              backend="gpu" if entry.gpu else "cpu", tier=self._stores[where],
                              default=t.default_value, ways=t.ways, graphs=entry.gpu and m.graphs)
            entry.caches[device] = cache
            return cache

    def note_out_of_range(self, entry: _Table, n: int) -> None:
        """A host lookup of ``entry``'s table replaced ``n`` out-of-range keys: warn the first time."""
        if n:
            self._warn((entry.path, entry.model.name, entry.table.name), entry.table, n)

    def _warn(self, where: tuple, t: Any, n: int) -> None:
        with self._lock:
            if where in self._out_of_range:
                return
            self._out_of_range[where] = {"warned": True}
        warnings.warn(f"EmbCacheLookup table {t.name!r}: {n} key(s) outside rows 0..{t.rows - 1} (or "
                      f"-{t.rows}..-1) got the default row {t.default_value}, where ONNX Runtime's Gather "
                      "raises; trt_plugin.tables.out_of_range() counts them (this warning comes once per table)",
                      OutOfRangeWarning, stacklevel=5)

    def out_of_range(self, config_path: str, table: str, model: str | None) -> int:
        """The table's count of out-of-range keys: the ``stats.invalid`` of its caches (a GPU cache's is
        read from the device now: a wait for its lookups)."""
        path = os.path.realpath(config_path)
        total = 0
        with self._lock:
            entries = [e for e in self._resolved.values() if e.path == path and e.table.name == table
                       and model in (None, "", e.model.name)]
        for entry in entries:
            for device, cache in list(entry.caches.items()):
                with _on(device):
                    n = cache.stats.invalid
                total += n
                if n:
                    self._warn((entry.path, entry.model.name, entry.table.name), entry.table, n)
        return total

    def close(self) -> None:
        """Close every cache and store; the next call reads the config files again."""
        for entry in list(self._resolved.values()):
            if entry.table.keys_are_rows:
                self.out_of_range(entry.path, entry.table.name, entry.model.name)  # warnings before they go
        with self._lock:
            for entry in self._resolved.values():
                for device, cache in entry.caches.items():
                    with _on(device):
                        cache.close()
            for store in self._stores.values():
                store.close()
            self._tables.clear()
            self._resolved.clear()
            self._stores.clear()
            self._configs.clear()
            self._out_of_range.clear()
            self._enqueue.clear()
            self._last_enqueue = (None, None, None)


_registry = _Registry()


def table_cache(config_path: str | os.PathLike, table: str, model: str | None = None,
                backend: str | None = None, device: int | None = None) -> tuple[Cache, TableConfig]:
    """The process's cache for ``table`` (opened on first use) and the table's config.

    Parameters
    ----------
    backend : "auto", "cpu" or "gpu", optional
        Default: the model's ``backend``.
    device : int, optional
        GPU backend: the CUDA device of the caller (default: CuPy's current device).  Each device of
        the model's ``devices`` (HPS's ``deployed_device_list``) gets its own cache (a replica), all
        in front of the table's one store; a device not in that list is a ``ConfigError``.
    """
    cache, entry = _registry.get(str(config_path), table, model, backend, device)
    return cache, entry.table


def _flat_out(out: Any, shape: tuple, dim: int) -> Any:
    """``out`` (``shape + (dim,)``) as the (n, dim) view a lookup writes into, never a copy."""
    if not hasattr(out, "shape") or tuple(out.shape) != output_shape(shape, dim):
        raise RowShapeError(f"out must have shape keys.shape + (dim,) = {output_shape(shape, dim)}, got "
                            f"{getattr(out, 'shape', type(out).__name__)}")
    if not out.flags.c_contiguous:
        raise RowShapeError(f"out must be C-contiguous (rows one after another); got strides {out.strides}")
    return out.reshape(-1, dim)


def lookup_rows(config_path: str | os.PathLike, table: str, keys: Any, model: str | None = None,
                stream: Any = None, backend: str | None = None, out: Any = None) -> Any:
    """Rows of ``keys`` (any shape, int32 or int64 row numbers): an array of shape ``keys.shape + (dim,)``.

    For tables whose keys are row numbers (``keys_are_rows``, as surgery writes them), negative keys
    count from the end of the table, as ONNX Gather's indices do, and keys outside the table get the
    table's default value where ONNX Runtime's Gather raises: they are counted (:func:`out_of_range`)
    and an :class:`OutOfRangeWarning` says so once per table (on the GPU backend the count stays on
    the device, with no sync in the lookup, until :func:`out_of_range` or :func:`close_all` reads
    it).  NumPy in, NumPy out on the CPU backend; CuPy on the GPU, on the cache of the keys' device
    (CuPy keys) or of the current device.

    ``out``, if given, receives the rows (``Cache.lookup(out=...)``: an array of shape
    ``keys.shape + (dim,)`` of the table's dtype, C-contiguous, on the cache's device) and is returned.
    """
    cache, entry = _registry.get(str(config_path), table, model, backend, _device_of(keys))
    return _lookup(cache, entry, keys, stream, out)


def _lookup(cache: Cache, entry: Any, keys: Any, stream: Any, out: Any) -> Any:
    """:func:`lookup_rows` on the cache and table the registry resolved."""
    t = entry.table
    xp = cache.xp
    with _on(cache.device):
        keys = xp.asarray(keys)
        if keys.dtype not in (np.int32, np.int64):
            raise KeyDtypeError(f"EmbCacheLookup keys must be int32 or int64, got {keys.dtype}")
        shape = keys.shape
        rows = None if out is None else _flat_out(out, shape, t.dim)
        flat = keys.reshape(-1)  # int32 as it is: the lookup casts it (on the GPU, in its first kernel)
        index_rows = None
        if t.keys_are_rows:
            if t.rows is None:
                raise ConfigError(f"table {t.name!r}: keys_are_rows needs the table's 'rows' in the config")
            index_rows = t.rows  # Gather's rules, applied by the lookup; out-of-range keys are stats.invalid
        rows = cache.lookup(flat, out=rows, stream=stream, index_rows=index_rows)
        if xp is np and index_rows:
            _registry.note_out_of_range(entry, cache.stats.last.invalid)
        return rows.reshape(output_shape(shape, t.dim)) if out is None else out


def lookup_into(fields: LookupFields, keys: Any, out: Any, stream: Any = None) -> None:
    """The plugin's enqueue: rows of device ``keys`` written into the device buffer ``out``
    (``keys.shape + (dim,)``, float32 or float16) on ``stream``, by the GPU cache of the keys' device.

    When ``out`` has the table's dtype (and is C-contiguous, as TensorRT's outputs are), the lookup
    writes every row straight into it; when TensorRT picked the other precision, the rows are
    looked up and then cast into ``out`` (one more pass over the rows).  The node's cache and table
    are resolved on its first enqueue; after that, for 1-D keys and an (n, dim) ``out`` of the
    table's dtype, the call adds one dictionary read and a few attribute reads to ``Cache.lookup``
    (no device switch when the keys' device is the current one, no reshape).
    """
    device = _device_of(keys)
    cache, index_rows, dim = _registry.enqueue_target(fields, device)
    if (getattr(keys, "ndim", None) == 1 and keys.dtype in _ENQUEUE_KEYS and keys.flags.c_contiguous and out.dtype == cache.dtype
            and out.flags.c_contiguous and out.shape == (keys.shape[0], dim)):
        if device is None or device == _current_device():
            cache.lookup(keys, out=out, stream=stream, index_rows=index_rows)
        else:
            with _on(device):
                cache.lookup(keys, out=out, stream=stream, index_rows=index_rows)
        return
    cache, entry = _registry.get(fields.config, fields.table, fields.model or None, "gpu", device)
    if out.dtype == cache.dtype and out.flags.c_contiguous:
        _lookup(cache, entry, keys, stream, out)
    else:
        out[...] = _lookup(cache, entry, keys, stream, None).astype(out.dtype, copy=False)


#: key dtypes the enqueue passes to Cache.lookup as they are (its first kernel casts int32)
_ENQUEUE_KEYS = (np.dtype(np.int32), np.dtype(np.int64))


def out_of_range(config_path: str | os.PathLike, table: str, model: str | None = None) -> int:
    """How many row-number keys outside ``table`` this process looked up (each got the default row,
    where ONNX Runtime's Gather raises), summed over backends, since the last :func:`close_all`."""
    return _registry.out_of_range(str(config_path), table, model)


def close_all() -> None:
    """Close every cache and store this process opened (tests; a long-lived server need not)."""
    _registry.close()
