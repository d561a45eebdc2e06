"""Backing tiers: where rows live when the cache does not hold them.

``HostStore`` (host memory), ``RocksStore`` (embedded RocksDB, persistent),
``RedisStore`` (a Redis server or Redis Cluster), ``SharedHostStore`` (one
table in shared memory that the processes of a host open at once, one
writer and any number of readers), and ``TieredStore``, which
chains them fastest first.  Every store is safe to share between threads
and caches: each call holds the store's ``lock`` (see :class:`Tier`).
"""
from ._base import Tier
from .host import HostStore
from .redis_store import RedisStore, redact
from .rocks import RocksStore
from .shared_host import SharedHostStore
from .spec import open_store
from .tiered import TieredStore

__all__ = ["Tier", "HostStore", "RocksStore", "RedisStore", "SharedHostStore", "TieredStore", "open_store", "redact"]
