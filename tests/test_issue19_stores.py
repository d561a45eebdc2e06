"""Issue 19, the stores' items: shared stores under threads (1), a failed tiered write (5), strict store
specs (11), whole-file import checks (13) and big-endian imports (10).

Real stores only: HostStore, RocksDB in tmp_path, redis-server processes on loopback; threads are bounded by
join timeouts (a hung Numba probe loop fails the test instead of hanging the suite), never by sleeps.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import embcache
from embcache.errors import ConfigError, DataFormatError, TierError
from embcache.tiers import HostStore, TieredStore, open_store

from .redis_servers import RedisServer, needs_redis

rocksdict = pytest.importorskip("rocksdict", reason="needs rocksdict: pip install 'embcache[tiers]'")
from embcache.tiers import RedisStore, RocksStore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 4
JOIN_S = 60.0  # a worker still running after this is hung (the pre-fix Numba probe loops spun forever)


def _row(key: int, version: int) -> np.ndarray:
    # a row names its key and version, so a wrong row (another key's) or an old one is seen at once
    return np.array([key, version, -key, key + version], np.float32)


def _rows(keys, versions) -> np.ndarray:
    return np.stack([_row(int(k), int(v)) for k, v in zip(keys, versions)]) if len(keys) else np.zeros((0, DIM),
                                                                                                     np.float32)


def _run_threads(workers, timeout=JOIN_S):
    """Run ``workers`` (callables) in daemon threads started together; fail on a hang or any exception."""
    start = threading.Barrier(len(workers))
    errors = []

    def wrap(fn):
        def run():
            try:
                start.wait(timeout)
                fn()
            except BaseException as exc:  # reported to the test below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    hung = sum(t.is_alive() for t in threads)
    assert not hung, f"{hung} of {len(threads)} threads still running after {timeout} s: a store call hung"
    if errors:
        raise errors[0]


def _check_row(key, row, latest, exact):
    assert row[0] == key and row[2] == -key, f"key {key} got another key's row {row}"
    assert row[3] == row[0] + row[1], f"key {key} got a torn row {row}"
    if exact:
        assert row[1] == latest, f"key {key} got version {row[1]}, the last acknowledged is {latest}"
    else:
        assert row[1] <= latest, f"key {key} got version {row[1]}, newer than any written ({latest})"


def _hammer(store, threads=4, keys_each=200, ops=40, batch=40, bounded=False, forget=None, seed=0):
    """Threads writing, deleting and reading disjoint key ranges of ``store``, each checked against its own
    dict model, and reading every range (no wrong or torn row).  ``bounded``: the store may drop rows (a
    capacity), so a row may be missing but never old.  ``forget``: tiers to drop keys from, as a cache tier
    may at any time (their rows must come back through the slower tiers, never older)."""
    models = [dict() for _ in range(threads)]
    versions = [0] * threads

    def worker(t):
        rng = np.random.default_rng(seed * 100 + t)
        own = np.arange(keys_each, dtype=np.int64) + 1 + t * 1_000_000
        model = models[t]
        for _ in range(ops):
            op = rng.integers(0, 10)
            keys = rng.choice(own, batch)
            if op < 5:
                versions[t] += 1
                store.put_many(keys, _rows(keys, [versions[t]] * batch))
                model.update((int(k), versions[t]) for k in keys)
            elif op < 6:
                store.delete_many(keys)
                for k in keys:
                    model.pop(int(k), None)
            elif op < 7 and forget:
                for tier in forget:
                    tier.delete_many(keys)
            else:
                got, found = store.get_many(keys)
                for k, row, f in zip(keys.tolist(), got, found):
                    if k in model:
                        assert f or bounded, f"key {k} was acknowledged but is missing"
                        if f:
                            _check_row(k, row, model[k], exact=True)
                    else:
                        assert not f, f"key {k} was deleted but came back as {row}"
                # another thread's keys: never a wrong or torn row
                other = rng.integers(1, keys_each + 1, batch) + rng.integers(0, threads) * 1_000_000
                got, found = store.get_many(other)
                for k, row in zip(other[found].tolist(), got[found]):
                    _check_row(k, row, max(versions), exact=False)

    _run_threads([lambda t=t: worker(t) for t in range(threads)])
    model = {k: v for m in models for k, v in m.items()}
    keys = np.array(sorted(model), np.int64)
    got, found = store.get_many(keys)
    assert bounded or found.all(), f"{int((~found).sum())} acknowledged keys lost"
    for k, row in zip(keys[found].tolist(), got[found]):
        _check_row(k, row, model[k], exact=True)
    return model


def _every_tier_current(store: TieredStore, model: dict):
    """No tier holds a row older than the last acknowledged one, nor a deleted key."""
    probe = np.array(sorted(model) + [9_999_999_999], np.int64)
    for tier in store.tiers:
        got, found = tier.get_many(probe)
        for k, row, f in zip(probe.tolist(), got, found):
            if f:
                assert k in model, f"{tier!r} still holds deleted key {k}"
                _check_row(k, row, model[k], exact=True)


# ---------------------------------------------------------------- item 1: stores safe to share


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["unbounded", "oldest", "least_used", "random"])
def test_host_store_shared_by_threads_loses_nothing_and_never_hangs(kind):
    if kind == "unbounded":
        store = HostStore(DIM, initial_rows=16)  # grows (rehashes) while the other threads use it
    else:
        store = HostStore(DIM, capacity=300, overflow=kind, initial_rows=16)
    _hammer(store, bounded=kind != "unbounded")
    assert kind == "unbounded" or len(store) <= 300


@pytest.mark.timeout(120)
def test_host_store_of_capacity_1000_with_two_threads_does_not_spin():
    store = HostStore(DIM, capacity=1000)
    _hammer(store, threads=2, keys_each=1500, ops=60, batch=300, bounded=True)
    assert len(store) <= 1000
    assert len(store) == store.keys().shape[0]


@pytest.mark.timeout(120)
def test_host_store_disjoint_writers_keep_every_acknowledged_key():
    # the reproducer of the issue: 4 threads writing disjoint keys lost thousands of them
    store = HostStore(DIM, initial_rows=16)
    per = 5_000

    def writer(t):
        keys = np.arange(per, dtype=np.int64) + 1 + t * per
        for i in range(0, per, 250):
            store.put_many(keys[i:i + 250], _rows(keys[i:i + 250], [t] * 250))

    _run_threads([lambda t=t: writer(t) for t in range(4)])
    keys = np.arange(4 * per, dtype=np.int64) + 1
    got, found = store.get_many(keys)
    assert found.all(), f"{int((~found).sum())} acknowledged keys lost"
    assert (got[:, 0] == keys).all() and (got[:, 1] == (keys - 1) // per).all()
    assert len(store) == 4 * per


@pytest.mark.timeout(120)
def test_rocks_store_shared_by_threads(tmp_path):
    with RocksStore(tmp_path / "db", DIM, create=True) as store:
        _hammer(store, ops=25)


@needs_redis
@pytest.mark.timeout(120)
def test_redis_store_shared_by_threads(redis_server):
    with RedisStore(redis_server.url, DIM, namespace="threads", create=True) as store:
        _hammer(store, ops=25)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fast", ["unbounded", "capacity"])
def test_tiered_store_shared_by_threads_keeps_every_tier_current(tmp_path, fast):
    host = (HostStore(DIM, initial_rows=16) if fast == "unbounded"
            else HostStore(DIM, capacity=300, overflow="random", initial_rows=16))
    store = TieredStore([host, RocksStore(tmp_path / "db", DIM, create=True)])
    with store:
        # forgetting in the fast tier makes reads promote old-looking rows while other threads write new ones
        model = _hammer(store, keys_each=500, ops=40, batch=100, forget=[host])
        _every_tier_current(store, model)


@needs_redis
@pytest.mark.timeout(180)
def test_tiered_host_redis_rocks_shared_by_threads(tmp_path, redis_server):
    host = HostStore(DIM, capacity=200)
    redis = RedisStore(redis_server.url, DIM, namespace="tiered-threads", create=True)
    store = TieredStore([host, redis, RocksStore(tmp_path / "db", DIM, create=True)])
    with store:
        model = _hammer(store, threads=3, ops=20, forget=[host, redis])
        _every_tier_current(store, model)


@pytest.mark.timeout(180)
def test_two_caches_over_one_tiered_store(tmp_path):
    # each Cache locks itself only; the store must hold across caches (this hung, and returned other keys' rows)
    host = HostStore(DIM, capacity=400, initial_rows=16)
    store = TieredStore([host, RocksStore(tmp_path / "db", DIM, create=True)])
    caches = [embcache.Cache(128, DIM, tier=store, backend="cpu", ways=8) for _ in range(2)]
    threads, keys_each = 4, 600
    models = [dict() for _ in range(threads)]
    top = [0]

    def worker(t):
        rng = np.random.default_rng(t)
        cache = caches[t % 2]
        own = np.arange(keys_each, dtype=np.int64) + 1 + t * 1_000_000
        model = models[t]
        version = 0
        for _ in range(60):
            keys = np.unique(rng.choice(own, 150))
            if rng.integers(0, 3) == 0:
                version += 1
                top[0] = max(top[0], version)
                (cache.insert if rng.integers(0, 2) else cache.update)(keys, _rows(keys, [version] * len(keys)))
                model.update((int(k), version) for k in keys)
            else:
                got = cache.lookup(keys)
                for k, row in zip(keys.tolist(), got):
                    if k in model:  # this cache wrote it: the last acknowledged row, from the cache or the store
                        _check_row(k, row, model[k], exact=True)
                    else:
                        assert not row.any(), f"key {k} was never written but got {row}"
            # keys the other cache writes: never another key's row (this cache may hold an older one)
            other = rng.integers(1, keys_each + 1, 100) + ((t + 1) % threads) * 1_000_000
            for k, row in zip(other.tolist(), caches[t % 2].lookup(other)):
                if row.any():
                    _check_row(k, row, top[0], exact=False)

    _run_threads([lambda t=t: worker(t) for t in range(threads)])
    model = {k: v for m in models for k, v in m.items()}
    _every_tier_current(store, model)
    for c in caches:
        c.close()
    store.close()


def test_closing_a_store_while_threads_use_it_is_a_clear_error():
    store = HostStore(DIM)
    store.put_many([1], _rows([1], [1]))
    errors = []

    def user():
        for _ in range(2000):
            try:
                store.get_many(np.arange(1, 200))
                store.put_many(np.arange(1, 200), _rows(np.arange(1, 200), np.ones(199)))
            except embcache.errors.ClosedError:
                return
            except Exception as exc:  # anything else (a None table inside Numba) is the bug
                errors.append(exc)
                return

    def closer():
        store.close()

    _run_threads([user, user, closer])
    assert not errors, errors
    assert store.closed


class ConcurrentStoreMachine(RuleBasedStateMachine):
    """Steps of several threads at once, each on its own key range (so the outcome does not depend on the
    order the store ran them in), checked against a dict model after every step; the stores are a bounded
    HostStore in front of an unbounded one (promotion, overflow and regrowth all under contention)."""

    def __init__(self):
        super().__init__()
        self.model = {}
        self.version = 0
        self.fast = HostStore(DIM, capacity=12, overflow="random", initial_rows=4)
        self.store = TieredStore([self.fast, HostStore(DIM, initial_rows=4)])

    op = st.tuples(st.sampled_from(["put", "put", "delete", "get", "forget"]),
                   st.lists(st.integers(1, 12), min_size=1, max_size=8))

    @rule(plans=st.lists(st.lists(op, max_size=6), min_size=2, max_size=4))
    def concurrently(self, plans):
        base = self.version
        results = [dict() for _ in plans]

        def worker(t, plan):
            model = {k: v for k, v in self.model.items() if k // 100 == t}
            for i, (op, small) in enumerate(plan):
                keys = np.asarray(small, np.int64) + 100 * t
                version = base + 1 + t * 10 + i
                if op == "put":
                    self.store.put_many(keys, _rows(keys, [version] * len(keys)))
                    model.update((int(k), version) for k in keys)
                elif op == "delete":
                    self.store.delete_many(keys)
                    for k in keys.tolist():
                        model.pop(k, None)
                elif op == "forget":
                    self.fast.delete_many(keys)
                else:
                    got, found = self.store.get_many(keys)
                    assert found.tolist() == [k in model for k in keys.tolist()]
                    for k, row, f in zip(keys.tolist(), got, found):
                        if f:
                            _check_row(k, row, model[k], exact=True)
            results[t] = model

        _run_threads([lambda t=t, plan=plan: worker(t, plan) for t, plan in enumerate(plans)], timeout=30)
        for t in range(len(plans)):
            self.model = {k: v for k, v in self.model.items() if k // 100 != t}
            self.model.update(results[t])
        self.version = base + 10 * len(plans) + 10

    @invariant()
    def every_tier_agrees_with_the_model(self):
        _every_tier_current(self.store, self.model)
        keys = np.array(sorted(self.model), np.int64)
        assert self.store.tiers[-1].get_many(keys)[1].all()
        assert len(self.store.tiers[-1]) == len(self.model)
        assert len(self.fast) <= 12


TestConcurrentTieredHost = ConcurrentStoreMachine.TestCase
TestConcurrentTieredHost.settings = settings(max_examples=30, stateful_step_count=15, deadline=None)


# ---------------------------------------------------------------- item 5: a failed write to a faster tier


def _fails_in_fast_tier(tmp_path):
    host = HostStore(DIM, capacity=4, overflow="error")
    rocks = RocksStore(tmp_path / "db", DIM, create=True)
    store = TieredStore([host, rocks])
    store.put_many([1, 2, 3, 4], _rows([1, 2, 3, 4], [1] * 4))
    return store, host, rocks


def test_host_store_overflow_error_refuses_whole_batch():
    store = HostStore(DIM, capacity=3, overflow="error")
    store.put_many([1, 2, 3], _rows([1, 2, 3], [1, 1, 1]))
    store.put_many([3, 2], _rows([3, 2], [2, 2]))  # keys already held take no room
    with pytest.raises(TierError, match=r"capacity 3.*overflow='error'"):
        store.put_many([1, 9], _rows([1, 9], [3, 3]))
    got, found = store.get_many([1, 2, 3, 9])
    assert found.tolist() == [True, True, True, False] and got[:, 1].tolist() == [1, 2, 2, 0]  # nothing written


def test_failed_fast_tier_write_drops_its_old_copies(tmp_path):
    store, host, rocks = _fails_in_fast_tier(tmp_path)
    with pytest.raises(TierError) as err:
        store.put_many([1, 5], _rows([1, 5], [2, 2]))  # 5 does not fit in the full fast tier
    msg = str(err.value)
    assert f"{rocks!r} has the new rows" in msg
    assert f"{host!r} failed" in msg and "its copies were dropped" in msg
    # the fast tier no longer serves the old row of key 1: reads go through to RocksDB's new one
    assert not host.get_many([1])[1][0]
    # the full fast tier cannot take both promoted rows: the read still returns them, and says so
    with pytest.warns(RuntimeWarning, match="did not take 2 promoted rows"):
        got, found = store.get_many([1, 2, 5])
    assert found.all() and got[:, 1].tolist() == [2, 1, 2]
    assert store.promote_failures == 1
    c = embcache.Cache(16, DIM, tier=store, backend="cpu")
    with pytest.warns(RuntimeWarning, match="promoted"):
        assert c.lookup([1, 5])[:, 1].tolist() == [2, 2]
    c.close()
    _every_tier_current(store, {1: 2, 2: 1, 3: 1, 4: 1, 5: 2})
    store.close()


def test_failed_slowest_tier_write_drops_faster_copies(tmp_path):
    host = HostStore(DIM)
    rocks = RocksStore(tmp_path / "db", DIM, create=True)
    store = TieredStore([host, rocks])
    store.put_many([1, 2], _rows([1, 2], [1, 1]))
    rocks.close()  # the durable tier fails for real: every call on it raises
    with pytest.raises(TierError, match=r"nothing was written to the faster tiers") as err:
        store.put_many([1], _rows([1], [2]))
    assert f"{host!r}" in str(err.value) and "copies were dropped" in str(err.value)
    assert host.get_many([1, 2])[1].tolist() == [False, True]


@needs_redis
@pytest.mark.timeout(120)
def test_failed_middle_tier_is_read_past_until_it_drops_its_copies(tmp_path):
    # [HostStore, RedisStore, RocksStore]: the Redis server is down during a write, so its copies of the keys
    # cannot be dropped; when it comes back with its old rows (append-only file), reads must not serve them
    server = RedisServer(tmp_path / "redis")
    try:
        host = HostStore(DIM)
        redis = RedisStore(server.url, DIM, namespace="mid", timeout=2.0, create=True)
        rocks = RocksStore(tmp_path / "db", DIM, create=True)
        store = TieredStore([host, redis, rocks])
        store.put_many([1, 2, 3], _rows([1, 2, 3], [1, 1, 1]))
        server.kill()
        with pytest.raises(TierError) as err:
            store.put_many([1, 2], _rows([1, 2], [2, 2]))
        msg = str(err.value)
        assert f"{rocks!r} has the new rows" in msg
        assert "could not be dropped" in msg and f"{host!r}" in msg
        with pytest.raises(TierError):
            store.delete_many([3])
        server.start()  # the same port and folder: it still holds version 1 of keys 1, 2 and 3
        assert redis.get_many([1, 2, 3])[1].all()
        got, found = store.get_many([1, 2, 3])
        assert found.tolist() == [True, True, False], "a deleted key came back from the restarted tier"
        assert got[:2, 1].tolist() == [2, 2], "the restarted tier served the rows older than the acknowledged"
        _every_tier_current(store, {1: 2, 2: 2})
        store.close()
    finally:
        server.stop()


class FailingFastTierMachine(RuleBasedStateMachine):
    """Writes through [HostStore(capacity=5, overflow="error"), HostStore(), HostStore()]: the fast tier
    refuses, for real, every write whose new keys do not fit, after the slower tiers took it.  Whatever
    fails, no tier may hold a row other than the slowest's, and reads return the slowest's rows."""

    def __init__(self):
        super().__init__()
        self.fast = HostStore(DIM, capacity=5, overflow="error")
        self.store = TieredStore([self.fast, HostStore(DIM), HostStore(DIM)])
        self.model, self.version = {}, 0

    keys = st.lists(st.integers(1, 9), min_size=1, max_size=4)

    @rule(keys=keys)
    def put(self, keys):
        self.version += 1
        try:
            self.store.put_many(keys, _rows(keys, [self.version] * len(keys)))
        except TierError as exc:
            # the error says the slower tiers took it: they are the table now
            assert "have the new rows" in str(exc) and "its copies were dropped" in str(exc)
        self.model.update((k, self.version) for k in keys)

    @rule(keys=keys)
    def delete(self, keys):
        self.store.delete_many(keys)
        for k in keys:
            self.model.pop(k, None)

    @rule(keys=keys)
    def get(self, keys):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the full fast tier refuses promotions too
            got, found = self.store.get_many(keys)
        assert found.tolist() == [k in self.model for k in keys]
        for k, row, f in zip(keys, got, found):
            if f:
                _check_row(k, row, self.model[k], exact=True)

    @rule(keys=keys, depth=st.integers(0, 1))
    def forget(self, keys, depth):
        self.store.tiers[depth].delete_many(keys)

    @invariant()
    def no_tier_serves_an_older_row(self):
        _every_tier_current(self.store, self.model)
        assert len(self.fast) <= 5


TestFailingFastTier = FailingFastTierMachine.TestCase
TestFailingFastTier.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


# ---------------------------------------------------------------- item 11: store specs


@pytest.mark.parametrize("spec, message", [
    ("s3://bucket/x", "unknown scheme 's3'"),
    ("redis:/localhost:6379", "redis://"),
    ("redis://", "no host"),
    ("redis://:6379/0", "no host"),
    ("redis://localhost:63x9/0", "port"),
    ("redis://localhost:6379/zero", "database"),
    ("rocksdb:", "empty path"),
    ("", "empty"),
    ("redis-cluster://", "no node"),
    ("redis-cluster://a:1,b", "'b' is not HOST:PORT"),
    ("redis-cluster://a:1,b:x", "port 'x'"),
    ("http://example.com/db", "unknown scheme 'http'"),
    ("unix://", "no socket path"),
    ("S3://bucket/x", "unknown scheme 's3'"),
    ("data:table", "unknown scheme 'data'"),
])
def test_unknown_or_malformed_spec_is_a_config_error_and_creates_nothing(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message) as err:
        open_store(spec, DIM, create=True)
    assert "rocksdb:PATH" in str(err.value) and "redis://HOST:PORT/DB" in str(err.value)
    assert os.listdir(tmp_path) == []


def test_spec_error_never_prints_the_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        open_store("redis://user:s3cret@localhost:63x9/0", DIM, create=True)
    assert "s3cret" not in str(err.value)


def test_good_specs_still_open(tmp_path):
    for spec in (f"rocksdb:{tmp_path}/a", str(tmp_path / "b"), f"rocksdb:{tmp_path}/c:d"):
        open_store(spec, DIM, create=True).close()
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c:d"]


def test_import_to_unknown_scheme_fails_and_creates_no_folder(tmp_path):
    keys = np.arange(1, 11, dtype=np.int64)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", _rows(keys, np.ones(10)))
    out = subprocess.run([sys.executable, "-m", "embcache", "import", "npy", "k.npy", "r.npy", "--to", "s3://bucket/x",
                          "--dim", str(DIM), "--no-progress"], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert out.returncode != 0, out.stdout
    assert "s3" in out.stderr and "unknown scheme" in out.stderr
    assert "imported" not in out.stdout
    assert sorted(os.listdir(tmp_path)) == ["k.npy", "r.npy"]


# ---------------------------------------------------------------- item 13: every reason to refuse, before any write


def _prefilled(tmp_path):
    store = RocksStore(tmp_path / "db", DIM, create=True)
    store.put_many([7, 8], _rows([7, 8], [1, 1]))
    return store


def _unchanged(store):
    assert sorted(store.keys().tolist()) == [7, 8]
    got, _ = store.get_many([7, 8])
    assert got[:, 1].tolist() == [1, 1]


def _npy_case(tmp_path, case):
    n = 300
    keys = np.arange(100, 100 + n, dtype=np.int64)
    rows = _rows(keys, np.full(n, 5))
    if case == "uint64 2**63":
        keys = keys.astype(np.uint64)
        keys[-1] = np.uint64(2**63)
    elif case == "uint64 2**63 + 1":
        keys = keys.astype(np.uint64)
        keys[-1] = np.uint64(2**63 + 1)
    elif case == "big-endian uint64 2**63":
        keys = keys.astype(">u8")
        keys[-1] = 2**63
    elif case == "reserved key last":
        keys[-1] = embcache.RESERVED_KEYS[1]
    elif case == "nan row last":
        rows[-1, 2] = np.nan
    elif case == "float keys":
        keys = keys.astype(np.float64)
    elif case == "bool keys":
        keys = np.ones(n, bool)
    elif case == "2-D keys":
        keys = keys.reshape(-1, 1)
    elif case == "fewer rows":
        rows = rows[:-1]
    elif case == "wrong dim":
        rows = np.hstack([rows, rows[:, :1]])
    elif case == "integer rows":
        rows = rows.astype(np.int32)
    elif case == "object keys":
        pass
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)


NPY_CASES = {"uint64 2**63": "reserved", "uint64 2**63 + 1": "reserved", "big-endian uint64 2**63": "reserved",
             "reserved key last": "reserved", "nan row last": "NaN", "float keys": "integer",
             "bool keys": "integer", "2-D keys": "1-D", "fewer rows": "299", "wrong dim": r"\(300, 4\)",
             "integer rows": "float"}


@pytest.mark.parametrize("case", sorted(NPY_CASES))
def test_refused_npy_import_leaves_the_store_unchanged(tmp_path, case):
    from embcache.imports import import_npy

    _npy_case(tmp_path, case)
    with _prefilled(tmp_path) as store:
        with pytest.raises(DataFormatError, match=NPY_CASES[case]):
            import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store, chunk_rows=64, progress=False,
                       **({"reject_nan": True} if case == "nan row last" else {}))
        _unchanged(store)


def test_nan_rows_are_imported_unless_refused(tmp_path):
    from embcache.imports import import_npy

    _npy_case(tmp_path, "nan row last")
    with _prefilled(tmp_path) as store:
        assert import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store, progress=False) == 300


def test_refused_hugectr_import_leaves_the_store_unchanged(tmp_path):
    from embcache.imports import import_hugectr

    keys = np.arange(100, 400, dtype=np.int64)
    rows = _rows(keys, np.full(300, 5))
    rows[-1, 0] = np.nan
    (tmp_path / "s").mkdir()
    keys.tofile(tmp_path / "s" / "key")
    rows.tofile(tmp_path / "s" / "emb_vector")
    with _prefilled(tmp_path) as store:
        with pytest.raises(DataFormatError, match="NaN"):
            import_hugectr(tmp_path / "s", store, chunk_rows=64, progress=False, reject_nan=True)
        _unchanged(store)


def test_refused_onnx_import_leaves_the_store_unchanged(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    from embcache.imports import import_onnx

    table = np.ones((50, DIM), np.float32)
    graph = helper.make_graph([], "g", [], [], initializer=[numpy_helper.from_array(table, "emb")])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    with _prefilled(tmp_path) as store:
        for offset in (2**63 - 10, 2**63 + 5, -(2**63)):  # past int64 (wraps today), or onto reserved keys
            with pytest.raises(DataFormatError, match="key_offset"):
                import_onnx(tmp_path / "m.onnx", "emb", store, key_offset=offset, chunk_rows=8, progress=False)
        _unchanged(store)


# ---------------------------------------------------------------- item 10 (imports): big-endian input by value


@pytest.mark.parametrize("key_dtype, row_dtype", [(">u8", ">f4"), (">i8", ">f4"), ("<u8", ">f8"), (">i4", "<f4"),
                                                  (">u8", ">f2")])
def test_big_endian_npy_is_imported_by_value(tmp_path, key_dtype, row_dtype):
    from embcache.imports import import_npy

    keys = np.array([1, 2, 300, 2**40 + 7 if np.dtype(key_dtype).itemsize == 8 else 2**30 + 7], np.int64)
    rows = np.array([[0.5, -1.0, 2.0, 3.0]] * 4) * np.arange(1, 5)[:, None]
    np.save(tmp_path / "k.npy", keys.astype(key_dtype))
    np.save(tmp_path / "r.npy", rows.astype(row_dtype))
    with RocksStore(tmp_path / "db", DIM, create=True) as store:
        import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store, progress=False)
        assert sorted(store.keys().tolist()) == sorted(keys.tolist())
        got, found = store.get_many(keys)
        assert found.all() and np.array_equal(got, rows.astype(np.float32))


def test_big_endian_uint64_above_int64_is_its_64_bits(tmp_path):
    # uint64 keys are taken as their 64 bits everywhere (as check_keys does): 2**64 - 5 is the key -5
    from embcache.imports import import_npy

    keys = np.array([2**64 - 5, 9], np.uint64)
    np.save(tmp_path / "k.npy", keys.astype(">u8"))
    np.save(tmp_path / "r.npy", _rows([1, 2], [1, 1]))
    with RocksStore(tmp_path / "db", DIM, create=True) as store:
        import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store, progress=False)
        assert sorted(store.keys().tolist()) == [-5, 9]


@pytest.mark.parametrize("key_dtype", [">u8", ">i8", "<u8", ">i4", ">u2"])
def test_store_calls_take_big_endian_keys_and_rows_by_value(key_dtype):
    store = HostStore(DIM)
    keys = np.array([1, 2, 300], np.int64)
    store.put_many(keys.astype(key_dtype), _rows(keys, [1, 1, 1]).astype(">f4"))
    assert sorted(store.keys().tolist()) == [1, 2, 300]
    got, found = store.get_many(keys.astype(key_dtype))
    assert found.all() and got[:, 0].tolist() == [1, 2, 300]
    store.delete_many(np.array([2], key_dtype))
    assert store.get_many(keys)[1].tolist() == [True, False, True]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), key_dtype=st.sampled_from(["<u8", ">u8", "<i8", ">i8", ">i4", "<u4", ">u2"]),
       row_dtype=st.sampled_from(["<f4", ">f4", ">f8", "<f2"]), chunk=st.integers(1, 5))
def test_npy_import_is_by_value_and_refuses_before_any_write(tmp_path_factory, data, key_dtype, row_dtype, chunk):
    # any keys the dtype can hold, reserved ones included: either the whole table lands, by value, or nothing does
    from embcache.imports import import_npy

    info = np.iinfo(np.dtype(key_dtype))
    edges = st.sampled_from([info.min, info.max, 2**63, 2**63 + 1, -(2**63), -(2**63) + 1, 0, 1])
    raw_keys = data.draw(st.lists(st.one_of(st.integers(int(info.min), int(info.max)),
                                            edges.filter(lambda k: info.min <= k <= info.max)),
                                  min_size=1, max_size=12))
    keys = np.array(raw_keys, dtype=key_dtype)
    rows = np.arange(len(raw_keys) * DIM, dtype=np.float64).reshape(-1, DIM) / 4
    folder = tmp_path_factory.mktemp("npy")
    np.save(folder / "k.npy", keys)
    np.save(folder / "r.npy", rows.astype(row_dtype))
    stored_as = [k - 2**64 if k >= 2**63 else k for k in raw_keys]  # uint64 keys are their 64 bits
    store = HostStore(DIM)
    store.put_many([7], _rows([7], [1]))
    if any(k in embcache.RESERVED_KEYS for k in stored_as):
        with pytest.raises(DataFormatError, match="reserved"):
            import_npy(folder / "k.npy", folder / "r.npy", store, chunk_rows=chunk, progress=False)
        assert store.keys().tolist() == [7]
        return
    import_npy(folder / "k.npy", folder / "r.npy", store, chunk_rows=chunk, progress=False)
    last = {k: i for i, k in enumerate(stored_as)}  # a repeated key keeps its last row
    expect = {7: _rows([7], [1])[0], **{k: rows[i].astype(np.float32) for k, i in last.items()}}
    assert sorted(store.keys().tolist()) == sorted(expect)
    got, found = store.get_many(list(expect))
    assert found.all() and np.array_equal(got, np.stack(list(expect.values())))
