"""Tiers against real stores: RocksDB on disk, redis-server processes on loopback (one node and a cluster)."""
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import embcache
from embcache.errors import ClosedError, ConfigError, TierError
from embcache.tiers import HostStore, TieredStore

from .redis_servers import RedisServer, needs_redis
from .strategies import rows_for

rocksdict = pytest.importorskip("rocksdict", reason="needs rocksdict: pip install 'embcache[tiers]'")
from embcache.tiers import RedisStore, RocksStore  # noqa: E402


def _round_trip(store, dtype="float32"):
    keys = np.array([5, -7, 2**62, 5, 11], np.int64)
    rows = rows_for(keys, store.dim, dtype, seed=3)
    store.put_many(keys, rows)
    got, found = store.get_many(np.array([5, 6, -7, 2**62, 11]))
    assert found.tolist() == [True, False, True, True, True]
    assert got[0].tobytes() == rows[3].tobytes()  # the last row of a repeated key
    assert got[2].tobytes() == rows[1].tobytes() and got[4].tobytes() == rows[4].tobytes()
    assert not got[1].any()
    store.delete_many([5, 999])
    assert store.get_many([5, -7])[1].tolist() == [False, True]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rocks_round_trip_and_persistence(tmp_path, dtype):
    with RocksStore(tmp_path / "db", 7, dtype, create=True) as store:
        _round_trip(store, dtype)
    with RocksStore(tmp_path / "db", 7, dtype, create=True) as store:
        assert sorted(store.keys().tolist()) == [-7, 11, 2**62]


def test_rocks_refuses_another_shape_before_writing(tmp_path):
    RocksStore(tmp_path / "db", 4, create=True).close()
    with pytest.raises(ConfigError, match="dim=4 float32.*dim=8"):
        RocksStore(tmp_path / "db", 8, create=True)
    with pytest.raises(ConfigError, match="float16"):
        RocksStore(tmp_path / "db", 4, "float16", create=True)
    with RocksStore(tmp_path / "db", 4, create=True) as store:
        assert store.keys().shape == (0,)


def test_closed_store_raises(tmp_path):
    store = RocksStore(tmp_path / "db", 2, create=True)
    store.close()
    with pytest.raises(ClosedError):
        store.get_many([1])


@needs_redis
def test_redis_round_trip(redis_server):
    with RedisStore(redis_server.url, 5, namespace="rt", create=True) as store:
        _round_trip(store)


@needs_redis
def test_redis_batches_larger_than_one_round_trip(redis_server):
    keys = np.arange(25_000, dtype=np.int64) * 7919
    with RedisStore(redis_server.url, 3, namespace="big", batch=4096, create=True) as store:
        store.put_many(keys, rows_for(keys, 3, "float32", seed=1))
        got, found = store.get_many(keys[::-1])
        assert found.all() and got.tobytes() == rows_for(keys, 3, "float32", seed=1)[::-1].tobytes()


@needs_redis
def test_redis_refuses_another_shape(redis_server):
    RedisStore(redis_server.url, 4, namespace="shape", create=True).close()
    with pytest.raises(ConfigError, match="dim=4"):
        RedisStore(redis_server.url, 6, namespace="shape", create=True)


@needs_redis
def test_redis_wrong_or_missing_password_is_a_clear_error(tmp_path):
    server = RedisServer(tmp_path / "auth", password="s3cret")
    try:
        with pytest.raises(ConfigError, match="password"):
            RedisStore(server.url, 4, password="wrong", create=True)
        with pytest.raises(ConfigError, match="password"):
            RedisStore(server.url, 4, create=True)
        with RedisStore(server.url, 4, password="s3cret", create=True) as store:
            _round_trip(store)
    finally:
        server.stop()


@needs_redis
def test_redis_cluster_round_trip_across_slots(redis_cluster):
    keys = np.arange(5000, dtype=np.int64) * 104729 - 10**12
    rows = rows_for(keys, 8, "float16", seed=2)
    with RedisStore(redis_cluster.addresses[:1], 8, "float16", namespace="c", create=True) as store:
        assert store.cluster
        store.put_many(keys, rows)
        got, found = store.get_many(keys)
        assert found.all() and got.tobytes() == rows.tobytes()
        store.delete_many(keys[:100])
        assert not store.get_many(keys[:100])[1].any()


@needs_redis
def test_killed_node_fails_lookups_then_nothing_acknowledged_is_lost(tmp_path):
    server = RedisServer(tmp_path / "kill")
    keys = np.arange(1, 2001, dtype=np.int64)
    store = RedisStore(server.url, 4, timeout=2.0, create=True)
    cache = embcache.Cache(256, 4, backend="cpu", tier=store)
    strict = embcache.Cache(256, 4, backend="cpu", tier=store)
    lenient = embcache.Cache(256, 4, backend="cpu", tier=store, on_tier_error="default", default=-1.0)
    acknowledged = {}
    try:
        for start in range(0, 1000, 100):  # a stream of updates and lookups
            batch = keys[start:start + 100]
            rows = rows_for(batch, 4, "float32", seed=start)
            cache.update(batch, rows)
            acknowledged.update(zip(batch.tolist(), rows))
            cache.lookup(keys[max(0, start - 150):start + 50])
        server.kill()
        before = strict.export()
        with pytest.raises(TierError, match=r"RedisStore\('redis://127.0.0.1:\d+/0'.*get_many"):
            strict.lookup(keys[:10])
        assert all(np.array_equal(a, b) for a, b in zip(strict.export(), before))  # nothing changed
        with pytest.raises(TierError, match="put_many"):
            cache.update(keys[:5], rows_for(keys[:5], 4, "float32", seed=99))
        out = lenient.lookup(keys[:10])
        assert (out == -1.0).all() and lenient.stats.last.tier_failures == 10
        server.start()  # same port, same folder: the append-only file replays
        got, found = store.get_many(np.array(list(acknowledged)))
        assert found.all()
        assert got.tobytes() == np.stack(list(acknowledged.values())).tobytes()
        out = strict.lookup(keys[:10])
        assert out.tobytes() == np.stack([acknowledged[k] for k in range(1, 11)]).tobytes()
    finally:
        store.close()
        server.stop()


@needs_redis
def test_killed_cluster_master_fails_then_recovers(redis_cluster):
    keys = np.arange(3000, dtype=np.int64) * 31 + 7
    rows = rows_for(keys, 4, "float32", seed=5)
    store = RedisStore(redis_cluster.addresses, 4, namespace="ck", timeout=2.0, create=True)
    store.put_many(keys, rows)
    cache = embcache.Cache(64, 4, backend="cpu", tier=store)
    victim = redis_cluster.nodes[1]
    victim.kill()
    try:
        with pytest.raises(TierError, match="get_many"):
            cache.lookup(keys)
    finally:
        victim.start()
        redis_cluster.wait_ok()
    got = cache.lookup(keys)
    assert got.tobytes() == rows.tobytes()
    store.close()


class TieredMachine(RuleBasedStateMachine):
    """TieredStore(HostStore, RocksStore[, RedisStore]) against a dict."""

    def __init__(self):
        super().__init__()
        self.model = {}

    @initialize()
    def open(self):
        import tempfile

        self.folder = tempfile.TemporaryDirectory()
        tiers = [HostStore(3), RocksStore(self.folder.name + "/db", 3, create=True)]
        if TieredMachine.redis_url:
            import uuid

            tiers.append(RedisStore(TieredMachine.redis_url, 3, namespace=uuid.uuid4().hex, create=True))
        self.store = TieredStore(tiers)

    keys = st.lists(st.integers(-20, 20), max_size=12)

    @rule(keys=keys, seed=st.integers(0, 2**16))
    def put(self, keys, seed):
        rows = rows_for(np.asarray(keys, np.int64), 3, "float32", seed=seed)
        self.store.put_many(keys, rows)
        for k, r in zip(keys, rows):
            self.model[k] = r

    @rule(keys=keys, depth=st.integers(0, 2))
    def forget_in_faster_tiers(self, keys, depth):
        # rows only a slower tier holds are read through and promoted
        for tier in self.store.tiers[:min(depth, len(self.store.tiers) - 1)]:
            tier.delete_many(keys)

    @rule(keys=keys)
    def delete(self, keys):
        self.store.delete_many(keys)
        for k in keys:
            self.model.pop(k, None)

    @rule(keys=keys)
    def get(self, keys):
        got, found = self.store.get_many(keys)
        assert found.tolist() == [k in self.model for k in keys]
        for k, row, f in zip(keys, got, found):
            assert row.tobytes() == (self.model[k].tobytes() if f else bytes(12))

    @invariant()
    def slowest_tier_holds_everything(self):
        if hasattr(self, "store"):
            assert sorted(self.store.tiers[-1].keys().tolist()) == sorted(self.model)

    def teardown(self):
        if hasattr(self, "store"):
            self.store.close()
            self.folder.cleanup()


TieredMachine.redis_url = None
TestTieredHostRocks = TieredMachine.TestCase
TestTieredHostRocks.settings = settings(deadline=None)


@needs_redis
def test_tiered_host_rocks_redis(redis_server):
    from hypothesis.stateful import run_state_machine_as_test

    TieredMachine.redis_url = redis_server.url
    try:
        run_state_machine_as_test(TieredMachine, settings=settings(deadline=None))
    finally:
        TieredMachine.redis_url = None
