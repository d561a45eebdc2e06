"""RedisStore: rows in a Redis server or Redis Cluster (redis-py), shared by many inference servers."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, StoreNotFoundError, TierError
from ._base import Tier, require
from ._codec import check_meta, decode_keys, decode_rows, encode_keys, encode_rows, meta_blob

__all__ = ["RedisStore"]


def _node(spec):
    if isinstance(spec, str):
        host, _, port = spec.rpartition(":")
        return host or "127.0.0.1", int(port)
    host, port = spec
    return str(host), int(port)


class RedisStore(Tier):
    """Rows in Redis: one binary value per key, read and written in pipelined multi-key batches.

    Parameters
    ----------
    target : str or sequence
        ``"redis://host:port/db"`` for one server, or Redis Cluster start-up
        nodes as ``["host:port", ...]`` or ``[(host, port), ...]`` (any one
        node is enough; the client discovers the rest).
    dim : int
        Values per row.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    password : str, optional
        AUTH password (a wrong one raises ``ConfigError`` before anything is written).
    namespace : str
        Key prefix: a row is stored under ``b"<namespace>:" + 8 key bytes``, so
        several tables share one server.  ``<namespace>:meta`` records dim and dtype.
    batch : int
        Keys per MGET/MSET round trip.
    timeout : float
        Socket timeout in seconds; a server that does not answer in time is a ``TierError``.
    create : bool
        Record a new table in ``namespace`` if it holds none.  Off by default:
        a namespace with no table is a ``StoreNotFoundError``, not zero rows.

    Writes are as durable as the server makes them (``appendonly yes`` with
    ``appendfsync always`` for no loss on a crash).
    """

    def __init__(self, target: str | Sequence, dim: int, dtype="float32", password: str | None = None,
                 namespace: str = "embcache", batch: int = 10_000, timeout: float = 5.0, *,
                 create: bool = False):
        super().__init__(dim, dtype)
        redis = require("redis")
        self._prefix = namespace.encode() + b":"
        self._step = int(batch)
        self.cluster = not isinstance(target, str)
        common = dict(password=password, socket_timeout=timeout, socket_connect_timeout=timeout)
        if self.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            nodes = [_node(n) for n in target]
            if not nodes:
                raise ConfigError("RedisStore: give at least one cluster node as 'host:port'")
            self._where = ",".join(f"{h}:{p}" for h, p in nodes)
            make = lambda: RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], **common)  # noqa: E731
        else:
            self._where = target
            make = lambda: redis.Redis.from_url(target, **common)  # noqa: E731
        try:
            self._client = make()
            stored = self._client.get(self._prefix + b"meta")
        except redis.AuthenticationError as exc:
            raise ConfigError(f"{self!r}: the server refused the password ({exc}); check password=") from None
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConfigError(f"{self!r}: the server needs a password ({exc}); pass password=") from None
            raise TierError(f"{self!r}: {exc}") from exc
        except redis.RedisError as exc:
            raise TierError(f"{self!r}: cannot reach the server: {exc}") from exc
        if stored is None:
            if not create:
                self._client.close()
                raise StoreNotFoundError(f"{self!r} holds no embcache table; check the address and namespace, "
                                         "or pass create=True to make one")
            self._run("open", self._client.set, self._prefix + b"meta", meta_blob(self.dim, self.dtype))
        else:
            check_meta(stored, self.dim, self.dtype, repr(self))

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, namespace={self._prefix[:-1].decode()!r})"

    def _chunks(self, n):
        return range(0, n, self._step)

    def _get_many(self, keys):
        names = encode_keys(keys, self._prefix)
        get = self._client.mget_nonatomic if self.cluster else self._client.mget
        blobs = []
        for i in self._chunks(len(names)):
            blobs.extend(get(names[i:i + self._step]))
        return decode_rows(blobs, self.dim, self.dtype, repr(self))

    def _put_many(self, keys, values):
        names, rows = encode_keys(keys, self._prefix), encode_rows(values)
        put = self._client.mset_nonatomic if self.cluster else self._client.mset
        for i in self._chunks(len(names)):
            # a dict keeps the last row of a repeated key, as put_many promises
            put(dict(zip(names[i:i + self._step], rows[i:i + self._step])))

    def _delete_many(self, keys):
        names = encode_keys(keys, self._prefix)
        for i in self._chunks(len(names)):
            self._client.delete(*names[i:i + self._step])

    def _close(self):
        self._client.close()

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64 (a SCAN over the namespace)."""
        self._check_open("keys")
        found = self._run("keys", lambda: [k for k in self._client.scan_iter(match=self._prefix + b"*", count=10_000)
                                            if len(k) == len(self._prefix) + 8])
        return decode_keys(found, self._prefix)
