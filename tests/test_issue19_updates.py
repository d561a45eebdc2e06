"""Issue 19, the update stream's part: every server sees every update, a failed batch is retried before later
ones, dead letters keep their reason, an update is checked whole before anything changes, big-endian input."""
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import ClosedError, TierError
from embcache.layout import LOCKED_KEY
from embcache.tiers import HostStore, RedisStore, RocksStore

from .redis_servers import RedisServer, needs_redis
from .strategies import keys as key_values
from .strategies import flawed_batch, rows_for

pytestmark = needs_redis
ROOT = Path(__file__).resolve().parents[1]
DIM = 4
_names = itertools.count()


def _stream() -> str:
    return f"s{next(_names)}"


def _batches(n=10, size=20):
    return [(np.arange(size) + 1000 * b, rows_for(np.arange(size), DIM, "float32", b)) for b in range(n)]


def _drain(consumer) -> int:
    """Poll without waiting until nothing is left; how many messages were handled."""
    handled = 0
    while got := consumer.poll(block_ms=None):
        handled += got
    return handled


def _holds(store, batches) -> bool:
    for k, r in batches:
        got, found = store.get_many(k)
        if not found.all() or got.tobytes() != r.tobytes():
            return False
    return True


# ---------------------------------------------------------------- item 3: every server sees every update

def test_two_servers_following_the_readme_recipe_both_apply_every_update(tmp_path, redis_server):
    from embcache.updates import publish

    stream, batches = _stream(), _batches()
    for k, r in batches:
        publish(redis_server.url, stream, k, r)
    for name in ("a", "b"):
        RocksStore(tmp_path / name, DIM, create=True).close()
    for name in ("a", "b"):  # the README's command line, with no --group or --consumer
        out = subprocess.run(
            [sys.executable, "-m", "embcache", "serve-updates", "--redis", redis_server.url, "--stream", stream,
             "--store", str(tmp_path / name), "--dim", str(DIM), "--idle-polls", "1", "--no-progress"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "applied 10 update batches" in out.stdout, (name, out.stdout)
    for name in ("a", "b"):
        with RocksStore(tmp_path / name, DIM) as store:
            assert _holds(store, batches)


def test_consumers_with_default_names_each_apply_every_batch(tmp_path, redis_server):
    from embcache.updates import UpdateConsumer, publish

    stream, batches = _stream(), _batches()
    stores = [RocksStore(tmp_path / n, DIM, create=True) for n in "ab"]
    tiers = [HostStore(DIM), HostStore(DIM)]
    caches = [embcache.Cache(64, DIM, backend="cpu", tier=t) for t in tiers]
    shared = RocksStore(tmp_path / "shared", DIM, create=True)
    shared_caches = [embcache.Cache(64, DIM, backend="cpu", tier=shared) for _ in range(2)]
    consumers = [UpdateConsumer(redis_server.url, stream, store=s) for s in stores]
    consumers += [UpdateConsumer(redis_server.url, stream, caches=[c]) for c in caches]
    # two caches in one process over one store: each needs every update for its own cached rows
    consumers += [UpdateConsumer(redis_server.url, stream, caches=[c]) for c in shared_caches]
    shared.put_many(batches[-1][0], np.zeros((batches[-1][0].shape[0], DIM), np.float32))
    for c in shared_caches:
        c.lookup(batches[-1][0])  # cached before the updates: they must be refreshed
        assert c.query(batches[-1][0])[1].all()
    assert len({c.group for c in consumers}) == len(consumers)
    assert all(c.group.startswith("embcache:") for c in consumers)
    for k, r in batches:
        publish(redis_server.url, stream, k, r)
    while sum(c.poll(count=1, block_ms=None) for c in consumers):  # interleaved, as servers run side by side
        pass
    assert [c.applied for c in consumers] == [10] * len(consumers)
    assert all(_holds(s, batches) for s in stores + tiers + [shared])
    for c in shared_caches:
        got, found = c.query(batches[-1][0])
        assert found.all() and got.tobytes() == batches[-1][1].tobytes()
    names = [c.group for c in consumers[:2]]
    assert names == [UpdateConsumer(redis_server.url, stream, store=s).group for s in stores], \
        "a store's default group must be the same after a restart, to resume where it stopped"
    for s in stores + [shared]:
        s.close()


def test_an_explicit_group_is_shared_on_purpose(tmp_path, redis_server):
    from embcache.updates import UpdateConsumer, publish

    stream, batches = _stream(), _batches()
    stores = [HostStore(DIM), HostStore(DIM)]
    consumers = [UpdateConsumer(redis_server.url, stream, "pool", f"w{i}", store=s) for i, s in enumerate(stores)]
    for k, r in batches:
        publish(redis_server.url, stream, k, r)
    while sum(c.poll(count=1, block_ms=None) for c in consumers):
        pass
    assert sorted(c.applied for c in consumers) == [5, 5]


def test_default_group_names_hold_no_password(tmp_path):
    server = RedisServer(tmp_path / "auth", password="s3cret-pass")
    try:
        from embcache.updates import UpdateConsumer

        url = f"redis://:s3cret-pass@127.0.0.1:{server.port}/0"
        store = RedisStore(url, DIM, create=True)
        consumer = UpdateConsumer(url, _stream(), store=store)
        assert "s3cret" not in consumer.group and "s3cret" not in consumer.consumer
        other = RedisStore(url, DIM, namespace="other", create=True)
        assert UpdateConsumer(url, _stream(), store=other).group != consumer.group
    finally:
        server.stop()


# ---------------------------------------------------------------- item 4: a failed batch is retried first

def test_after_a_tier_error_the_failed_batch_is_applied_before_any_later_one(tmp_path, redis_server):
    from embcache.updates import UpdateConsumer, publish

    store_server = RedisServer(tmp_path / "store")
    try:
        store = RedisStore(store_server.url, DIM, create=True, timeout=2.0)
        stream = _stream()
        consumer = UpdateConsumer(redis_server.url, stream, "g", "c", store=store)
        key = np.array([7])
        old, new = np.full((1, DIM), 1.0, np.float32), np.full((1, DIM), 2.0, np.float32)
        store_server.kill()  # the store's server is down: its writes fail
        publish(redis_server.url, stream, key, old)
        with pytest.raises(TierError):
            consumer.poll(block_ms=None)
        publish(redis_server.url, stream, key, new)  # a newer row of the same key
        for _ in range(3):  # polling on while the tier is down applies nothing later than the failed batch
            with pytest.raises(TierError):
                consumer.poll(block_ms=None)
        assert consumer.applied == 0
        store_server.start()  # back, with everything its append-only file held
        for attempt in range(20):  # the client may need a call or two to reconnect
            try:
                while consumer.poll(block_ms=None):
                    pass
                break
            except TierError:
                assert attempt < 19
        assert consumer.applied == 2
        got, found = store.get_many(key)
        assert found.all() and got.tobytes() == new.tobytes(), "an old row overwrote a newer one"
        assert consumer.client.xpending(stream, consumer.group)["pending"] == 0
        # a restart replays nothing: the old batch cannot come back after the new one
        again = UpdateConsumer(redis_server.url, stream, "g", "c", store=store)
        assert again.group == consumer.group and _drain(again) == 0
        assert store.get_many(key)[0].tobytes() == new.tobytes()
        store.close()
    finally:
        store_server.stop()


def test_a_closed_store_is_not_a_bad_message(tmp_path, redis_server):
    from embcache.updates import UpdateConsumer, publish

    stream = _stream()
    store = RocksStore(tmp_path / "db", DIM, create=True)
    consumer = UpdateConsumer(redis_server.url, stream, "g", "c", store=store)
    keys, rows = _batches(1)[0]
    publish(redis_server.url, stream, keys, rows)
    store.close()  # closed under the consumer
    with pytest.raises(ClosedError):
        consumer.poll(block_ms=None)
    with pytest.raises(ClosedError):
        consumer.run(idle_polls=1, progress=False)  # run stops with the error too
    assert consumer.rejected == 0 and consumer.client.xlen(f"{stream}:dead") == 0
    assert consumer.client.xpending(stream, consumer.group)["pending"] == 1
    with RocksStore(tmp_path / "db", DIM) as reopened:  # the restarted server applies it
        again = UpdateConsumer(redis_server.url, stream, "g", "c", store=reopened)
        assert again.group == consumer.group and _drain(again) == 1
        assert _holds(reopened, [(keys, rows)])


# ---------------------------------------------------------------- item 17: dead letters keep their reason

def test_a_message_cannot_overwrite_the_dead_letter_reason(redis_server):
    from embcache.updates import UpdateConsumer

    stream = _stream()
    store = HostStore(DIM)
    consumer = UpdateConsumer(redis_server.url, stream, "g", "c", store=store)
    fields = {b"keys": np.arange(2, dtype="<i8").tobytes(), b"rows": b"\0" * 2 * 8 * 4, b"dim": b"8",
              b"dtype": b"float32", b"error": b"all is well", b"id": b"0-1", b"embcache.error": b"forged",
              b"embcache.id": b"0-2"}
    msg_id = consumer.client.xadd(stream, fields)
    assert _drain(consumer) == 1 and consumer.rejected == 1
    [(_, dead)] = consumer.client.xrange(f"{stream}:dead")
    assert b"dim=8" in dead[b"embcache.error"] and dead[b"embcache.id"] == msg_id
    assert dead[b"error"] == b"all is well" and dead[b"id"] == b"0-1"  # the message's own fields, kept
    assert dead[b"embcache.message.embcache.error"] == b"forged"
    assert dead[b"embcache.message.embcache.id"] == b"0-2"
    assert dead[b"keys"] == fields[b"keys"] and dead[b"dim"] == b"8"


# ---------------------------------------------------------------- item 6: an update is checked whole

FLAWS = st.sampled_from(["none", "nan", "reserved", "short rows", "dim", "dtype", "not an update"])


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(key_values, min_size=1, max_size=10), flaw=FLAWS, at=st.integers(0, 9),
       seed=st.integers(0, 3))
def test_a_rejected_update_leaves_every_store_and_cache_byte_identical(redis_server, batch, flaw, at, seed):
    from embcache.updates import UpdateConsumer

    universe = np.array(sorted(set(batch) | set(range(-3, 4))), np.int64)
    store, other = HostStore(DIM), HostStore(DIM)
    for s in (store, other):
        s.put_many(universe, rows_for(universe, DIM, "float32", 5))
    strict = embcache.Cache(64, DIM, backend="cpu", tier=store, reject_nan=True)
    lenient = embcache.Cache(64, DIM, backend="cpu", tier=other)
    for c in (strict, lenient):
        c.lookup(universe)
    stream = _stream()
    consumer = UpdateConsumer(redis_server.url, stream, "g", "c", store=store, caches=[lenient, strict])
    keys, rows, _ = flawed_batch(batch, flaw, at, DIM, seed)
    fields = {b"keys": keys.astype("<i8").tobytes(), b"rows": rows.astype("<f4").tobytes(), b"dim": str(DIM),
              b"dtype": b"float32"}
    if flaw == "short rows":
        fields[b"rows"] = fields[b"rows"][:-4]
    elif flaw == "dim":
        fields[b"dim"] = b"5"
    elif flaw == "dtype":
        fields[b"dtype"] = b"float16"
    elif flaw == "not an update":
        del fields[b"keys"]

    def state():
        out = [s.get_many(universe)[i].tobytes() for s in (store, other) for i in (0, 1)]
        for c in (strict, lenient):
            out += [a.tobytes() for a in c.export()] + [c.stats.as_dict(), c.clock]
        return out

    before = state()
    consumer.client.xadd(stream, fields)
    assert _drain(consumer) == 1
    if flaw == "none":
        assert consumer.applied == 1
        for s in (store, other):
            got, found = s.get_many(keys)
            assert found.all()
        return
    assert consumer.rejected == 1 and consumer.applied == 0
    assert state() == before, f"a rejected update ({flaw}) changed a store or a cache"
    [(_, dead)] = consumer.client.xrange(f"{stream}:dead")
    assert dead[b"embcache.error"]


# ---------------------------------------------------------------- item 10: big-endian input to publish

@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(key_values, min_size=1, max_size=10, unique=True), unsigned=st.booleans(),
       dtype=st.sampled_from(["float32", "float16"]), seed=st.integers(0, 3))
def test_publish_sends_big_endian_input_by_value(redis_server, batch, unsigned, dtype, seed):
    from embcache.updates import UpdateConsumer, publish

    kind = "u8" if unsigned else "i8"
    keys = np.array(batch, np.int64).astype(kind)
    rows = rows_for(keys, DIM, dtype, seed)
    native, swapped = _stream(), _stream()
    publish(redis_server.url, native, keys, rows)
    publish(redis_server.url, swapped, keys.astype(">" + kind), rows.astype(rows.dtype.newbyteorder(">")))
    client = embcache.updates._client(redis_server.url)
    [(_, a)], [(_, b)] = client.xrange(native), client.xrange(swapped)
    assert a == b
    store = HostStore(DIM, dtype)
    _drain(UpdateConsumer(redis_server.url, swapped, "g", "c", store=store))
    got, found = store.get_many(keys)
    assert found.all() and got.tobytes() == rows.tobytes()


def test_stores_and_caches_of_another_table_are_refused(redis_server):
    from embcache.updates import UpdateConsumer

    with pytest.raises(embcache.errors.ConfigError, match="dim=5"):
        UpdateConsumer(redis_server.url, _stream(), store=HostStore(DIM),
                       caches=[embcache.Cache(8, 5, backend="cpu")])


def test_publish_refuses_what_a_cache_would_refuse(redis_server):
    from embcache.updates import publish

    with pytest.raises(embcache.errors.KeyDtypeError):
        publish(redis_server.url, _stream(), np.array([1.5]), np.zeros((1, DIM), np.float32))
    with pytest.raises(embcache.errors.ReservedKeyError):
        publish(redis_server.url, _stream(), np.array([LOCKED_KEY]), np.zeros((1, DIM), np.float32))
    with pytest.raises(embcache.errors.RowDtypeError):
        publish(redis_server.url, _stream(), np.array([1]), np.zeros((1, DIM), np.int32))
