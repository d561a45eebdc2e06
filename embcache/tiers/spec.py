"""Stores named by one string, for the command line: ``rocksdb:PATH``, ``redis://...``, ``redis-cluster://h:p,h:p``."""
from __future__ import annotations

from ._base import Tier

__all__ = ["open_store"]


def open_store(spec: str, dim: int, dtype: str = "float32", password: str | None = None,
               namespace: str = "embcache", create: bool = False) -> Tier:
    """The store ``spec`` names: a RocksStore for ``rocksdb:PATH`` (or a bare path), a RedisStore for
    ``redis://host:port/db``, a Redis Cluster store for ``redis-cluster://host:port[,host:port...]``.

    ``create`` makes the table if the store holds none; without it a missing table is a
    ``StoreNotFoundError``."""
    if spec.startswith(("redis://", "rediss://")):
        from .redis_store import RedisStore

        return RedisStore(spec, dim, dtype, password=password, namespace=namespace, create=create)
    if spec.startswith("redis-cluster://"):
        from .redis_store import RedisStore

        return RedisStore(spec[len("redis-cluster://"):].split(","), dim, dtype, password=password, namespace=namespace, create=create)
    from .rocks import RocksStore

    return RocksStore(spec[len("rocksdb:"):] if spec.startswith("rocksdb:") else spec, dim, dtype, create=create)
