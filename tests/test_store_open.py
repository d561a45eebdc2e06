"""Opening a store to read it never creates one (issue 19, item 7): a typo is an error, not zero rows."""
import numpy as np
import pytest

from embcache.errors import ConfigError, StoreNotFoundError
from embcache.tiers import RocksStore, open_store

from .redis_servers import needs_redis

pytest.importorskip("rocksdict", reason="needs rocksdict: pip install 'embcache[tiers]'")


def test_rocks_missing_path_is_an_error_and_creates_nothing(tmp_path):
    where = tmp_path / "typo.rocksdb"
    with pytest.raises(StoreNotFoundError, match="create=True"):
        RocksStore(where, 8)
    assert not where.exists()
    with pytest.raises(StoreNotFoundError):
        open_store(f"rocksdb:{where}", 8)
    assert not where.exists()


def test_rocks_create_then_reopen_reads_the_rows(tmp_path):
    where = tmp_path / "db"
    with RocksStore(where, 4, create=True) as store:
        store.put_many(np.array([7]), np.ones((1, 4), np.float32))
    with RocksStore(where, 4) as store:  # opening to read: no create needed
        rows, found = store.get_many(np.array([7, 8]))
    assert found.tolist() == [True, False] and rows[0].tolist() == [1.0] * 4


def test_rocks_database_without_a_table_is_an_error(tmp_path):
    rocksdict = pytest.importorskip("rocksdict")
    where = str(tmp_path / "other")
    db = rocksdict.Rdict(where)
    db["x"] = 1
    db.close()
    with pytest.raises(StoreNotFoundError, match="no embcache table"):
        RocksStore(where, 4)
    assert isinstance(StoreNotFoundError("x"), FileNotFoundError) and not issubclass(StoreNotFoundError, ConfigError)


@needs_redis
def test_redis_namespace_without_a_table_is_an_error(redis_server):
    from embcache.tiers import RedisStore

    with pytest.raises(StoreNotFoundError, match="create=True"):
        RedisStore(redis_server.url, 4, namespace="never-made")
    with RedisStore(redis_server.url, 4, namespace="made", create=True):
        pass
    RedisStore(redis_server.url, 4, namespace="made").close()
