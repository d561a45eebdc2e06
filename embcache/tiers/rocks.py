"""RocksStore: rows in an embedded RocksDB (rocksdict), persistent across processes and crashes."""
from __future__ import annotations

import os

import numpy as np

from ..errors import StoreNotFoundError, TierError
from ._base import Tier, require
from ._codec import check_meta, decode_keys, decode_rows, encode_keys, encode_rows, meta_blob

__all__ = ["RocksStore"]

# 8-byte keys are rows; this longer key cannot collide with one
_META = b"embcache:meta"


class RocksStore(Tier):
    """Rows in a RocksDB database at ``path``.

    Parameters
    ----------
    path : str or PathLike
        Database folder.  It records ``dim`` and ``dtype``; opening it with
        others raises ``ConfigError`` before anything is written.
    dim : int
        Values per row.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    sync : bool
        Sync the write-ahead log on every ``put_many``/``delete_many`` (default).
        Each call is one atomic write batch: after a crash, a batch is there
        whole or not at all, and every batch that returned is there.
    create : bool
        Make the database if ``path`` holds none.  Off by default, so that a
        mistyped or moved path is a ``StoreNotFoundError`` instead of an empty
        table that serves zero rows.

    Each row takes ``dim * itemsize`` bytes plus an 8-byte key on disk, before
    RocksDB's compression.
    """

    def __init__(self, path: str | os.PathLike, dim: int, dtype: str | np.dtype | type = "float32",
                 sync: bool = True, *,
                 create: bool = False):
        super().__init__(dim, dtype)
        rocksdict = require("rocksdict")
        self.path = os.fspath(path)
        if not create and not os.path.exists(os.path.join(self.path, "CURRENT")):
            raise StoreNotFoundError(f"{self!r}: no RocksDB table at {os.path.abspath(self.path)!r}; check the path, "
                                     "or pass create=True to make a new one")
        try:
            self._db = rocksdict.Rdict(self.path, rocksdict.Options(raw_mode=True))
        except Exception as exc:
            raise TierError(f"{self!r}: cannot open the database: {exc}") from exc
        self._write = rocksdict.WriteOptions()
        self._write.sync = bool(sync)
        self._batch = lambda: rocksdict.WriteBatch(raw_mode=True)
        try:
            stored = self._db.get(_META)
            if stored is None:
                if not create:
                    raise StoreNotFoundError(f"{self!r} is a RocksDB database with no embcache table in it; "
                                             "check the path, or pass create=True to make one there")
                self._db.put(_META, meta_blob(self.dim, self.dtype), self._write)
            else:
                check_meta(stored, self.dim, self.dtype, repr(self))
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"RocksStore({self.path!r})"

    def _get_many(self, keys):
        blobs = self._db[encode_keys(keys)] if keys.shape[0] else []
        return decode_rows(blobs, self.dim, self.dtype, repr(self))

    def _put_many(self, keys, values):
        batch = self._batch()
        for k, v in zip(encode_keys(keys), encode_rows(values)):
            batch.put(k, v)
        self._db.write(batch, self._write)

    def _delete_many(self, keys):
        batch = self._batch()
        for k in encode_keys(keys):
            batch.delete(k)
        self._db.write(batch, self._write)

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64, in RocksDB's byte order."""
        return self._run("keys", lambda: decode_keys([k for k in self._db.keys() if len(k) == 8]))

    def _close(self):
        self._db.close()
