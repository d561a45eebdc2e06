"""What every tier provides; the cache needs nothing else from a store."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import check_keys, check_rows
from .._dtypes import row_dtype
from ..errors import ClosedError, ConfigError, EmbCacheError, MissingDependencyError, TierError

if TYPE_CHECKING:  # the annotations only
    from types import ModuleType

    from .._source import DeviceSource

__all__ = ["Tier", "require"]


#: the operations of ``_run`` that change what a device source describes
_WRITES = ("put_many", "delete_many")


def require(module: str, extra: str = "tiers") -> ModuleType:
    """Import an optional dependency, or raise MissingDependencyError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        from .._extras import install_hint

        raise MissingDependencyError(f"this store needs {module}: {install_hint(extra)}") from None


class Tier:
    """A key -> row store behind the cache.

    Subclasses implement ``_get_many``, ``_put_many``, ``_delete_many`` and
    ``_close``; this class checks arguments and the closed state, and turns any
    failure of the store underneath into a :class:`TierError` that names the
    store and the operation.  ``put_many`` returns only once the write is as
    durable as the store promises (a RocksStore's synced write-ahead log, a
    Redis server's append-only file as configured there).

    Thread safety: every store may be shared by any number of threads and
    caches.  Each call (``get_many``, ``put_many``, ``delete_many``, ``keys``,
    ``close``) holds the store's ``lock``, a reentrant lock, for its whole
    run, so calls on one store take effect one at a time, in the order they
    took the lock: no write is lost or torn, a read sees every write that
    returned before it started, and ``close`` waits for the calls under way
    (later ones raise ``ClosedError``).  Hold ``lock`` yourself to make
    several calls one step.  Locks are taken outer store first (a
    TieredStore's, then its tiers'), never the other way, so they cannot
    deadlock.  Separate store objects over one database (two RocksStores of
    a path, two RedisStores of a namespace) are ordered by the database, not
    by these locks.
    """

    def __init__(self, dim: int, dtype: str | np.dtype | type = "float32"):
        if int(dim) <= 0:
            raise ConfigError(f"dim must be a positive number of values per row, got {dim}")
        self.dim = int(dim)
        self.dtype = row_dtype(dtype)
        self.closed = False
        self.lock = threading.RLock()
        self._fences = []  # CUDA events after kernels that read the device source (Cache's stream-ordered lookups)

    #: whether ``device_source`` may return one; a GPU cache takes the tier's lock on each lookup to ask
    #: only when this is true, so tiers that never offer one (RocksDB, Redis, a chain) are not serialized
    offers_device_source: bool = False
    #: whether the memory of ``device_source`` stays as described after ``lock`` is let go until a write or
    #: ``close`` of this object (which wait for the kernels :meth:`_fence` names): then a GPU lookup may
    #: enqueue its kernels and return before they have run (stream-ordered).  A tier whose memory another
    #: process may change once the lock is let go (SharedHostStore) leaves it False: its lookups wait.
    fences_device_reads: bool = False

    def device_source(self) -> DeviceSource | None:
        """Where a GPU kernel can read this tier in place: a :class:`embcache._source.DeviceSource`, valid
        while ``lock`` is held, or ``None`` (the default) when the GPU cannot read it (RocksDB, Redis) or
        the tier must see every read itself.  A tier that offers one declares it here; nobody probes."""
        return None

    def gather_to_device(self, keys: Any, default_row: Any) -> tuple[Any, Any]:
        """GPU reads through :meth:`device_source`: ``(rows, found)`` of device ``keys`` (n,) int64.

        ``rows`` (n, dim) holds the raw bits of each stored row (``default_row``, a device array of
        raw bits, where absent), copied by the GPU from the tier in place; nothing is staged.  Runs
        on CuPy's current stream and waits for it, under ``lock``.  ``ConfigError`` if the tier
        offers no device source.
        """
        with self.lock:
            self._check_open("gather_to_device")
            source = self.device_source()
            if source is None:
                raise ConfigError(f"{self!r} offers no device source to gather from; read it with get_many")
            from ._gather import gather_source

            return gather_source(source, keys, default_row)

    def _fence(self, event: Any) -> None:
        """Keep ``event``, recorded after kernels that read :meth:`device_source`'s memory and may still run:
        the tier's writes and ``close`` wait for it before they change or free that memory."""
        with self.lock:
            if all(e is not event for e in self._fences):
                self._fences.append(event)

    def _wait_fences(self) -> None:
        """Wait (on the host) for the kernels :meth:`_fence` was told of; call with ``lock`` held."""
        while self._fences:
            self._fences.pop().synchronize()

    def _check_open(self, op: str):
        if self.closed:
            raise ClosedError(f"{type(self).__name__}.{op}: the store is closed; open a new one")

    def get_many(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``keys`` (n,) int64: ``(values (n, dim), found (n,) bool)``; missing rows are zero."""
        return self._run("get_many", self._get_many, check_keys(keys))

    def put_many(self, keys: Any, values: Any) -> None:
        """Store ``values`` (n, dim) under ``keys`` (n,); for a repeated key the last row wins."""
        keys = check_keys(keys)
        rows = check_rows(values, keys.shape[0], self.dim, self.dtype, name="values")
        self._run("put_many", self._put_many, keys, rows)

    def delete_many(self, keys: Any) -> None:
        """Remove ``keys`` (n,); keys not stored are ignored."""
        self._run("delete_many", self._delete_many, check_keys(keys))

    def _run(self, op: str, fn, *args):
        """``fn(*args)`` under the store's lock, on an open store; failures of the store underneath as TierError."""
        with self.lock:
            self._check_open(op)
            if op in _WRITES:
                self._wait_fences()
            try:
                return fn(*args)
            except EmbCacheError:
                raise
            except Exception as exc:  # whatever the client library raises, callers catch one type
                raise TierError(f"{self!r}.{op} failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Release the store, once the calls under way have returned; later calls raise ``ClosedError``.
        Closing twice is fine."""
        with self.lock:
            if not self.closed:
                self._wait_fences()
                self._close()
                self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _close(self):
        pass
