"""What every tier provides; the cache needs nothing else from a store."""
from __future__ import annotations

import numpy as np

from .._dtypes import row_dtype
from ..errors import ClosedError, ConfigError, EmbCacheError, MissingDependencyError, TierError

__all__ = ["Tier", "require"]


def require(module: str, extra: str = "tiers"):
    """Import an optional dependency, or raise MissingDependencyError naming the pip extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(f"this store needs {module}: pip install 'embcache[{extra}]'") from None


class Tier:
    """A key -> row store behind the cache.

    Subclasses implement ``_get_many``, ``_put_many``, ``_delete_many`` and
    ``_close``; this class checks arguments and the closed state, and turns any
    failure of the store underneath into a :class:`TierError` that names the
    store and the operation.  ``put_many`` returns only once the write is as
    durable as the store promises (a RocksStore's synced write-ahead log, a
    Redis server's append-only file as configured there).
    """

    def __init__(self, dim: int, dtype="float32"):
        if int(dim) <= 0:
            raise ConfigError(f"dim must be a positive number of values per row, got {dim}")
        self.dim = int(dim)
        self.dtype = row_dtype(dtype)
        self.closed = False

    def _check_open(self, op: str):
        if self.closed:
            raise ClosedError(f"{type(self).__name__}.{op}: the store is closed; open a new one")

    def get_many(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``keys`` (n,) int64: ``(values (n, dim), found (n,) bool)``; missing rows are zero."""
        from .._checks import check_keys

        self._check_open("get_many")
        return self._run("get_many", self._get_many, check_keys(keys))

    def put_many(self, keys, values) -> None:
        """Store ``values`` (n, dim) under ``keys`` (n,); for a repeated key the last row wins."""
        from .._checks import check_keys, check_rows

        self._check_open("put_many")
        keys = check_keys(keys)
        rows = check_rows(values, keys.shape[0], self.dim, self.dtype, name="values")
        self._run("put_many", self._put_many, keys, rows)

    def delete_many(self, keys) -> None:
        """Remove ``keys`` (n,); keys not stored are ignored."""
        from .._checks import check_keys

        self._check_open("delete_many")
        self._run("delete_many", self._delete_many, check_keys(keys))

    def _run(self, op: str, fn, *args):
        try:
            return fn(*args)
        except EmbCacheError:
            raise
        except Exception as exc:  # whatever the client library raises, callers catch one type
            raise TierError(f"{self!r}.{op} failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Release the store; later calls raise ``ClosedError``.  Closing twice is fine."""
        if not self.closed:
            self._close()
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _close(self):
        pass
