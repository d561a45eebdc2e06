"""Backing tiers: where rows live when the cache does not hold them.

``HostStore`` (host memory), ``RocksStore`` (embedded RocksDB, persistent),
``RedisStore`` (a Redis server or Redis Cluster), and ``TieredStore``, which
chains them fastest first.  Every store is safe to share between threads
and caches: each call holds the store's ``lock`` (see :class:`Tier`).
"""
from ._base import Tier
from .host import HostStore
from .redis_store import RedisStore, redact
from .rocks import RocksStore
from .spec import open_store
from .tiered import TieredStore

__all__ = ["Tier", "HostStore", "RocksStore", "RedisStore", "TieredStore", "open_store", "redact"]
