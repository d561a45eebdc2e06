"""Issue 19, RedisStore: all-or-nothing writes (5), no printed password (14), ACL users and TLS (16),
isolated namespaces (17), several threads on one store (1).  Real redis-server processes, nothing mocked."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from embcache.errors import ConfigError, StoreNotFoundError, TierError

from .redis_servers import OPENSSL, REDIS_CLI, RedisCluster, RedisServer, make_tls_files, needs_redis
from .strategies import rows_for

pytest.importorskip("redis", reason="needs redis-py: pip install 'embcache[tiers]'")
from embcache.tiers.redis_store import RedisStore, redact  # noqa: E402

pytestmark = [needs_redis, pytest.mark.timeout(180)]
SECRET = "pw-S3cret-7731"  # a string that occurs nowhere else


@pytest.fixture(scope="module")
def server(redis_server):
    return redis_server


@pytest.fixture(scope="module")
def cluster(redis_cluster):
    return redis_cluster


@pytest.fixture(scope="module")
def partial_cluster(tmp_path_factory):
    """A cluster whose other masters keep serving while one is down."""
    c = RedisCluster(tmp_path_factory.mktemp("partial"), args=("--cluster-require-full-coverage", "no"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A TLS-only server that checks client certificates, with ACL user alice and a default-user password."""
    if OPENSSL is None:
        pytest.skip("needs openssl to make certificates")
    folder = tmp_path_factory.mktemp("tls")
    files = make_tls_files(folder / "pki")
    s = RedisServer(folder / "data", password="admin-" + SECRET, tls=files, users={"alice": SECRET})
    s.files = files
    yield s
    s.stop()


def _tls(files, client=True):
    out = dict(tls_ca_certs=files.ca)
    if client:
        out.update(tls_certfile=files.client_cert, tls_keyfile=files.client_key)
    return out


def _everything_printed(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


# ---- item 17: namespaces are isolated ---------------------------------------------------------------------------


def test_glob_characters_in_a_namespace_match_only_themselves(server):
    a = RedisStore(server.url, 2, namespace="e?", create=True)
    b = RedisStore(server.url, 2, namespace="ea", create=True)
    c = RedisStore(server.url, 2, namespace="e[a]*", create=True)
    try:
        b.put_many([1, 2, 3], np.ones((3, 2), np.float32))
        c.put_many([9], np.ones((1, 2), np.float32))
        a.put_many([7], np.ones((1, 2), np.float32))
        assert a.keys().tolist() == [7]
        assert sorted(b.keys().tolist()) == [1, 2, 3]
        assert c.keys().tolist() == [9]
    finally:
        for s in (a, b, c):
            s.close()


def test_a_row_cannot_overwrite_another_namespaces_table_record(server):
    # first layout: namespace "x:met" kept its record at b"x:met:meta" == b"x:" + the 8 bytes of key k in "x"
    k = int.from_bytes(b"met:meta", "big", signed=True)
    with RedisStore(server.url, 4, namespace="x:met", create=True) as victim:
        victim.put_many([1], np.full((1, 4), 5, np.float32))
    with RedisStore(server.url, 4, namespace="x", create=True) as other:
        other.put_many([k], np.zeros((1, 4), np.float32))
        assert other.keys().tolist() == [k]
    with RedisStore(server.url, 4, namespace="x:met") as victim:  # still a dim=4 table, with its row
        assert victim.keys().tolist() == [1]
        assert victim.get_many([1, k])[1].tolist() == [True, False]


def test_namespace_keys_carry_the_escaped_namespace(server):
    client = server.client()
    with RedisStore(server.url, 2, namespace="m%o:d", create=True) as store:
        store.put_many([1], np.ones((1, 2), np.float32))
    assert client.exists(b"m%25o%3Ad:meta") and client.exists(b"m%25o%3Ad:r" + (1).to_bytes(8, "big"))


_NAMESPACES = st.text(alphabet=st.sampled_from("ab*?[]:\\%^-{}/ m"), max_size=6)


@settings(max_examples=60)
@given(names=st.lists(_NAMESPACES, min_size=2, max_size=3, unique=True),
       keys=st.lists(st.lists(st.integers(-2**63 + 2, 2**63 - 1) | st.integers(-5, 5), max_size=6), min_size=3,
                     max_size=3))
def test_stores_in_different_namespaces_never_see_each_other(server, names, keys):
    server.client().flushdb()
    stores = [RedisStore(server.url, 2, namespace=n, create=True) for n in names]
    try:
        for i, (store, mine) in enumerate(zip(stores, keys)):
            store.put_many(mine, np.full((len(mine), 2), i, np.float32))
        for i, (store, mine) in enumerate(zip(stores, keys)):
            assert sorted(store.keys().tolist()) == sorted(set(mine))
            probe = sorted({k for ks in keys for k in ks})
            rows, found = store.get_many(probe)
            assert found.tolist() == [k in mine for k in probe]
            assert (rows[found] == i).all()
        for n in names:  # every table record is intact
            RedisStore(server.url, 2, namespace=n).close()
        stores[0].delete_many(probe)
        for store, mine in zip(stores[1:], keys[1:]):
            assert sorted(store.keys().tolist()) == sorted(set(mine))
    finally:
        for s in stores:
            s.close()


@pytest.mark.parametrize("namespace", ["old", "old:one"])
def test_a_table_in_the_first_key_layout_is_refused_clearly(server, namespace):
    from embcache._dtypes import row_dtype
    from embcache.tiers._codec import meta_blob

    client = server.client()
    client.set(namespace.encode() + b":meta", meta_blob(4, row_dtype("float32")))
    client.set(namespace.encode() + b":" + (5).to_bytes(8, "big"), bytes(16))
    for create in (False, True):
        with pytest.raises(ConfigError, match="first key layout.*Import the table again"):
            RedisStore(server.url, 4, namespace=namespace, create=create)
    with pytest.raises(StoreNotFoundError):  # its keys are not another namespace's table
        RedisStore(server.url, 4, namespace=namespace + "-new")


# ---- item 5: a failed put_many is all or nothing ----------------------------------------------------------------


def test_put_refused_for_memory_writes_none_of_its_rows(tmp_path):
    s = RedisServer(tmp_path / "oom", args=("--maxmemory-policy", "noeviction"))
    client = s.client()
    try:
        store = RedisStore(s.url, 16, namespace="oom", create=True)
        old_keys = np.arange(1000, dtype=np.int64)
        old = rows_for(old_keys, 16, "float32", seed=1)
        store.put_many(old_keys, old)
        client.config_set("maxmemory", client.info("memory")["used_memory"] + (3 << 20))
        keys = np.arange(200_000, dtype=np.int64)  # ~ 30 MB to queue: the server runs out part-way
        with pytest.raises(TierError, match="none of the call's 200000 keys was written") as err:
            store.put_many(keys, rows_for(keys, 16, "float32", seed=2))
        assert err.value.maybe_written.shape == (0,)
        client.config_set("maxmemory", 0)
        got, found = store.get_many(keys)
        assert found.sum() == 1000 and got[:1000].tobytes() == old.tobytes()
        store.close()
    finally:
        s.stop()


def _kill_once_writing(s: RedisServer, started: threading.Event, deadline_s: float = 60.0) -> None:
    """SIGKILL the server as soon as a client has queued a write in a transaction or a row has landed."""
    import redis

    watch = redis.Redis(port=s.port)
    base = watch.dbsize()
    started.wait(deadline_s)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:  # polls the server's own state, bounded by the deadline
        if watch.dbsize() > base or any(int(c.get("multi", -1)) > 0 for c in watch.client_list()):
            break
    s.kill()


def test_server_killed_mid_put_leaves_all_rows_or_none(tmp_path):
    s = RedisServer(tmp_path / "kill")
    store = RedisStore(s.url, 16, namespace="k", timeout=5.0, create=True)
    keys = np.arange(300_000, dtype=np.int64) * 3 + 1
    rows = rows_for(keys, 16, "float32", seed=4)
    started = threading.Event()
    killer = threading.Thread(target=_kill_once_writing, args=(s, started))
    killer.start()
    try:
        started.set()
        with pytest.raises(TierError, match="either all 300000 keys of the call or none") as err:
            store.put_many(keys, rows)
        assert SECRET not in str(err.value)
        assert np.array_equal(np.sort(err.value.maybe_written), keys)
    finally:
        killer.join()
    s.start()  # the append-only file replays what the server acknowledged
    try:
        got, found = store.get_many(keys)
        assert found.sum() in (0, keys.shape[0]), f"{found.sum()} of {keys.shape[0]} rows written"
        if found.all():
            assert got.tobytes() == rows.tobytes()
    finally:
        store.close()
        s.stop()


def _old_rows_outside(store, keys, old, maybe):
    """Assert that every key of ``keys`` outside ``maybe`` holds its row before the call: ``old[k]`` for
    ``k < len(old)``, none for the others.  Returns ``store.get_many(keys)``."""
    got, found = store.get_many(keys)
    for i, k in enumerate(keys.tolist()):
        if k not in maybe:
            if k < old.shape[0]:
                assert found[i] and got[i].tobytes() == old[k].tobytes(), k
            else:
                assert not found[i], k
    return got, found


def _store_with_old_rows(cluster, namespace, **auth):
    """A cluster store holding rows of keys 0..2,999, and a put of keys 0..149,999 to make: (store, old rows,
    keys, new rows)."""
    store = RedisStore(cluster.addresses, 8, namespace=namespace, create=True, **auth)
    old_keys = np.arange(0, 3000, dtype=np.int64)
    old = rows_for(old_keys, 8, "float32", seed=7)
    store.put_many(old_keys, old)
    keys = np.arange(0, 150_000, dtype=np.int64)
    return store, old, keys, rows_for(keys, 8, "float32", seed=8)


def _keys_on(store, keys, node) -> set:
    """The keys among ``keys`` whose slot ``node`` serves."""
    return {k for k in keys.tolist()
            if store._client.get_node_from_key(store._rows + int(k).to_bytes(8, "big", signed=True)).port == node.port}


def _starved_last_node(cluster, store, keys):
    """The cluster node that ``store.put_many(keys, ...)`` writes last (so the nodes before it are written,
    then rolled back), left 1 MiB of memory with no eviction: a client of its default user, to undo that."""
    name = lambda k: store._rows + int(k).to_bytes(8, "big", signed=True)  # noqa: E731
    last = store._node_chunks(dict.fromkeys(name(k) for k in keys.tolist()))[-1][0]
    node = next(n for n in cluster.nodes if f"127.0.0.1:{n.port}" == last)
    admin = node.client()
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", admin.info("memory")["used_memory"] + (1 << 20))
    return node, admin


def _put_failing_on_the_last_node(cluster, store, keys, new):
    """``store.put_many(keys, new)`` with the node it writes last out of memory: (the TierError, that node),
    its memory given back after."""
    starved, victim = _starved_last_node(cluster, store, keys)
    try:
        with pytest.raises(TierError, match="rolled back.*old row") as err:
            store.put_many(keys, new)
    finally:
        victim.config_set("maxmemory", 0)
        victim.close()
    return err.value, starved


def test_cluster_put_failing_on_one_node_rolls_back_the_others(cluster):
    store, old, keys, new = _store_with_old_rows(cluster, "rb")
    # the node written last: every other node is written first, then rolled back (a review found that with
    # nodes[1] the victim was written first, so nothing else was ever rolled back)
    err, starved = _put_failing_on_the_last_node(cluster, store, keys, new)
    maybe = set(err.maybe_written.tolist())
    assert maybe <= _keys_on(store, keys, starved)
    got, found = _old_rows_outside(store, keys, old, maybe)
    for i, k in enumerate(keys.tolist()):
        if k in maybe:
            assert got[i].tobytes() in ((old[k].tobytes(),) if k < 3000 else ()) + (new[i].tobytes(),) \
                or (k >= 3000 and not found[i])
    store.delete_many(keys)
    store.close()


def test_a_cluster_roll_back_keeps_a_row_another_writer_put_meanwhile(cluster, monkeypatch):
    """A put that fails on one node (out of memory) rolls back the nodes it wrote first, but keys that another
    client changed after this call wrote them keep that change: an old key and a new one it rewrote keep its
    rows, a key it deleted stays deleted.  The roll back restores a key only if it still holds this call's
    row (before, it put the old row back, or deleted a new key, over the other writer's)."""
    store, old, keys, new = _store_with_old_rows(cluster, "cw")
    name = lambda k: store._rows + int(k).to_bytes(8, "big", signed=True)  # noqa: E731
    starved, admin = _starved_last_node(cluster, store, keys)
    other = RedisStore(cluster.addresses, 8, namespace="cw")  # the other writer: its own connections
    theirs = rows_for(np.array([-1, -2], np.int64), 8, "float32", seed=99)
    real, changed = store._send, {}

    def send(node, command, groups, mapping, asking=False):
        replies = real(node, command, groups, mapping, asking)
        if command == "MSET" and not changed and node != f"127.0.0.1:{starved.port}" and \
                not any(isinstance(r, Exception) for r in replies):
            written = {n for group in groups for n in group}
            was_old = next(k for k in range(3000) if name(k) in written)
            was_new = next(k for k in range(3000, 150_000) if name(k) in written)
            deleted = next(k for k in range(3000) if name(k) in written and k != was_old)
            other.put_many(np.array([was_old, was_new], np.int64), theirs)
            other.delete_many(np.array([deleted], np.int64))
            changed.update(was_old=was_old, was_new=was_new, deleted=deleted)
        return replies

    monkeypatch.setattr(store, "_send", send)
    try:
        with pytest.raises(TierError, match="rolled back") as err:
            store.put_many(keys, new)
    finally:
        monkeypatch.undo()
        admin.config_set("maxmemory", 0)
        admin.close()
    got, found = store.get_many(np.array([changed["was_old"], changed["was_new"], changed["deleted"]], np.int64))
    assert found.tolist() == [True, True, False]
    assert got[:2].tobytes() == theirs.tobytes()
    maybe = set(err.value.maybe_written.tolist()) | set(changed.values())
    _old_rows_outside(store, keys, old, maybe)
    store.delete_many(keys)
    other.close()
    store.close()


def test_a_user_denied_scripts_still_gets_its_cluster_put_rolled_back(cluster):
    """An ACL user without ``@scripting`` cannot run the compare-and-set script: its roll back puts the old
    rows back as they are, at once (a review found it retried the refusal for its whole window, then left
    every key of the call in maybe_written)."""
    admins = [n.client() for n in cluster.nodes]
    for a in admins:
        a.acl_setuser("noscript", enabled=True, passwords=["+ns-pw"], keys=["*"], commands=["+@all", "-@scripting"])
    try:
        store, old, keys, new = _store_with_old_rows(cluster, "ns", username="noscript", password="ns-pw")
        err, starved = _put_failing_on_the_last_node(cluster, store, keys, new)
        assert "NoPermission" not in str(err)
        assert set(err.maybe_written.tolist()) <= _keys_on(store, keys, starved)
        _old_rows_outside(store, keys, old, set(err.maybe_written.tolist()))
        store.delete_many(keys)
        store.close()
    finally:
        for a in admins:
            a.acl_deluser("noscript")
            a.close()


def _mid_put(cluster, store, keys, act):
    """``(port_of, victim, thread)``: each key's node, the node the store writes last (``put_many`` writes
    node by node, in the order the nodes first hold a key of the call), and a started thread that calls
    ``act(victim)`` once the first node has taken some of the call's rows."""
    import redis

    port_of = {k: store._client.get_node_from_key(store._rows + int(k).to_bytes(8, "big", signed=True)).port
               for k in keys.tolist()}
    order = list(dict.fromkeys(port_of.values()))
    first, victim = (next(n for n in cluster.nodes if n.port == p) for p in (order[0], order[-1]))
    watch = redis.Redis(port=first.port)
    base = watch.dbsize()

    def when_first_node_grows():
        end = time.monotonic() + 60
        while watch.dbsize() == base and time.monotonic() < end:  # the server's own state, bounded
            pass
        watch.close()
        act(victim)

    thread = threading.Thread(target=when_first_node_grows)
    thread.start()
    return port_of, victim, thread


def _named_nodes(err) -> set:
    """The ports of the nodes a roll back's TierError says may hold new rows."""
    named = re.search(r"keys on (.*?) may hold", str(err))
    assert named, str(err)
    return {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", named[1])}


def test_cluster_master_killed_mid_put_rolls_back_the_others(partial_cluster):
    cluster = partial_cluster
    store = RedisStore(cluster.addresses, 8, namespace="ck2", timeout=2.0, create=True)
    old_keys = np.arange(0, 3000, dtype=np.int64)
    old = rows_for(old_keys, 8, "float32", seed=7)
    store.put_many(old_keys, old)
    keys = np.arange(0, 90_000, dtype=np.int64)
    new = rows_for(keys, 8, "float32", seed=8)
    port_of, victim, killer = _mid_put(cluster, store, keys, lambda node: node.kill())
    try:
        with pytest.raises(TierError, match="rolled back .* keys on 127.0.0.1:.* may hold") as err:
            store.put_many(keys, new)
    finally:
        killer.join()
        victim.start()
        cluster.wait_ok()
    maybe = set(err.value.maybe_written.tolist())
    # the victim's first chunk failed mid-write; the others' rows are restored unless the cluster went
    # down for them too (a live node briefly unreachable under load), and then the message names them
    assert maybe and {port_of[k] for k in maybe} == _named_nodes(err.value), str(err.value)
    got, found = store.get_many(keys)
    for i, k in enumerate(keys.tolist()):
        before = (found[i] and k < 3000 and got[i].tobytes() == old[k].tobytes()) or (not found[i] and k >= 3000)
        assert before or (k in maybe and found[i] and got[i].tobytes() == new[i].tobytes()), (k, str(err.value))
    store.delete_many(keys)
    store.close()


def test_cluster_node_frozen_mid_put_fails_in_bounded_time_and_restores_the_others(partial_cluster):
    """A master that stops answering (SIGSTOP: a host under load, a long fsync) mid-write: the call fails
    after a few socket timeouts, not after redis-py's per-command retries (minutes while a cluster is
    down), and every key on the live nodes holds its old row."""
    cluster = partial_cluster
    timeout = 1.0
    store = RedisStore(cluster.addresses, 8, namespace="fz", timeout=timeout, create=True)
    old_keys = np.arange(0, 2000, dtype=np.int64)
    old = rows_for(old_keys, 8, "float32", seed=3)
    store.put_many(old_keys, old)
    keys = np.arange(0, 60_000, dtype=np.int64)
    new = rows_for(keys, 8, "float32", seed=4)
    port_of, victim, freezer = _mid_put(cluster, store, keys, lambda node: node.proc.send_signal(signal.SIGSTOP))
    start = time.monotonic()
    try:
        with pytest.raises(TierError, match="rolled back") as err:
            store.put_many(keys, new)
        took = time.monotonic() - start
    finally:
        freezer.join()
        victim.proc.send_signal(signal.SIGCONT)
        cluster.wait_ok()
    # the write's timeout, the roll back's window of 10 s on the frozen node, and the live nodes' work
    assert took < 10 + 10 * timeout + 20, took
    maybe = set(err.value.maybe_written.tolist())
    # the live nodes' rows are restored unless the cluster went down for them too, and then the message
    # names them
    named = _named_nodes(err.value)
    assert victim.port in named and {port_of[k] for k in maybe} == named, str(err.value)
    _old_rows_outside(store, keys, old, maybe)
    store.delete_many(keys)
    store.close()


def _reshard(cluster, source, target, slots) -> None:
    out = subprocess.run([REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{cluster.nodes[0].port}",
                          "--cluster-from", source, "--cluster-to", target, "--cluster-slots", str(slots),
                          "--cluster-yes"], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    cluster.wait_ok()


def _node_id(node) -> str:
    client = node.client()
    try:
        return client.execute_command("CLUSTER", "MYID").decode()
    finally:
        client.close()


def test_cluster_store_follows_a_resharding(cluster):
    """Slots moved to another master (redis-cli --cluster reshard, keys and all) under three stores whose
    slot maps are stale: each one's first call meets MOVED, reloads the map and goes on; a read, a write
    and a delete all land on the new owner."""
    reader, writer, deleter = (RedisStore(cluster.addresses, 8, namespace="rs", create=True) for _ in range(3))
    keys = np.arange(0, 20_000, dtype=np.int64)
    rows = rows_for(keys, 8, "float32", seed=5)
    reader.put_many(keys, rows)
    for store in (writer, deleter):  # each has its map now; the resharding makes them stale
        store.get_many(keys[:10])
    ids = [_node_id(n) for n in cluster.nodes[:2]]
    owner = {k: reader._client.get_node_from_key(reader._rows + int(k).to_bytes(8, "big", signed=True)).name
             for k in keys.tolist()}
    _reshard(cluster, ids[0], ids[1], 2000)
    try:
        got, found = reader.get_many(keys)
        assert found.all() and got.tobytes() == rows.tobytes()
        moved = [k for k in keys.tolist()  # the map the reader reloaded says some keys moved
                 if reader._client.get_node_from_key(reader._rows + int(k).to_bytes(8, "big", signed=True)).name
                 != owner[k]]
        assert moved
        newer = rows_for(keys, 8, "float32", seed=6)
        writer.put_many(keys, newer)
        got, found = reader.get_many(keys)
        assert found.all() and got.tobytes() == newer.tobytes()
        deleter.delete_many(keys)
        assert not reader.get_many(keys)[1].any()
    finally:
        _reshard(cluster, ids[1], ids[0], 2000)
        for store in (reader, writer, deleter):
            store.close()


def test_cluster_store_follows_a_slot_being_migrated(cluster):
    """A slot half-way through a migration (MIGRATING on its owner, IMPORTING on the other node, one of
    its keys moved): reads, writes and deletes of its keys find each key where it is (ASK, TRYAGAIN)."""
    store = RedisStore(cluster.addresses, 8, namespace="mg", create=True)
    name = lambda k: store._rows + int(k).to_bytes(8, "big", signed=True)  # noqa: E731
    slot = store._client.keyslot(name(0))
    same = [k for k in range(200_000) if store._client.keyslot(name(k)) == slot][:4]
    assert len(same) == 4
    keys = np.array(same, np.int64)
    rows = rows_for(keys, 8, "float32", seed=9)
    store.put_many(keys[:3], rows[:3])  # the fourth key is absent
    port = store._client.get_node_from_key(name(0)).port
    source = next(n for n in cluster.nodes if n.port == port)
    target = next(n for n in cluster.nodes if n.port != port)
    src, dst = source.client(), target.client()
    src_id, dst_id = _node_id(source), _node_id(target)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", name(same[0]))
        got, found = store.get_many(keys)
        assert found.tolist() == [True, True, True, False] and got[:3].tobytes() == rows[:3].tobytes()
        newer = rows_for(keys, 8, "float32", seed=10)
        store.put_many(keys, newer)
        got, found = store.get_many(keys)
        assert found.all() and got.tobytes() == newer.tobytes()
        store.delete_many(keys[2:])
        got, found = store.get_many(keys)
        assert found.tolist() == [True, True, False, False] and got[:2].tobytes() == newer[:2].tobytes()
    finally:  # the migration finished: every key of the slot on the target, which owns it
        while True:
            left = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not left:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *left)
        for client in (dst, src):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        src.close()
        dst.close()
        cluster.wait_ok()
    got, found = store.get_many(keys[:2])  # the store's map is stale again: MOVED, reloaded
    assert found.all() and got.tobytes() == newer[:2].tobytes()
    store.delete_many(keys)
    store.close()


def test_a_migration_that_ends_between_round_trips_is_followed(cluster, monkeypatch):
    """A slot's migration that finishes between a read's first round trip (TRYAGAIN: its keys split between
    the two nodes) and its key-by-key round (now MOVED): the slot map is reloaded whichever round met the
    MOVED, so the read's one retry goes to the new owner (a review found it went to the old one again)."""
    store = RedisStore(cluster.addresses, 8, namespace="me", create=True)
    name = lambda k: store._rows + int(k).to_bytes(8, "big", signed=True)  # noqa: E731
    slot = store._client.keyslot(name(0))
    same = np.array([k for k in range(200_000) if store._client.keyslot(name(k)) == slot][:4], np.int64)
    rows = rows_for(same, 8, "float32", seed=11)
    store.put_many(same, rows)
    port = store._client.get_node_from_key(name(0)).port
    source = next(n for n in cluster.nodes if n.port == port)
    target = next(n for n in cluster.nodes if n.port != port)
    src, dst = source.client(), target.client()
    src_id, dst_id = _node_id(source), _node_id(target)

    def finish_migration():
        while left := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *left)
        for client in (dst, src):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)

    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    real, errors = store._send, []

    def send(node, command, groups, mapping, asking=False):
        replies = real(node, command, groups, mapping, asking)
        errors.append([type(r).__name__ for r in replies if isinstance(r, Exception)])
        if len(errors) == 1:
            finish_migration()
        return replies

    try:
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", name(same[0]))
        monkeypatch.setattr(store, "_send", send)
        got, found = store.get_many(same)
        assert errors[0] == ["TryAgainError"] and "MovedError" in errors[1], errors
        assert found.all() and got.tobytes() == rows.tobytes()
    finally:
        monkeypatch.undo()
        finish_migration()
        src.close()
        dst.close()
        cluster.wait_ok()
    store.delete_many(same)
    store.close()


# ---- item 14: a password is never printed ------------------------------------------------------------------------


@pytest.mark.parametrize("spec, shown", [
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("redis://alice:p%40ss/w@h:1/0", "redis://alice:***@h:1/0"),
    ("rediss://alice@h:1/0", "rediss://alice@h:1/0"),
    ("redis://h:1/0?password=pw&db=2", "redis://h:1/0?password=***&db=2"),
    ("redis-cluster://:pw@a:1,b:2", "redis-cluster://:***@a:1,b:2"),
    ("rocksdb:/data/t", "rocksdb:/data/t"),
])
def test_redact(spec, shown):
    assert redact(spec) == shown


@pytest.fixture(scope="module")
def locked(tmp_path_factory):
    s = RedisServer(tmp_path_factory.mktemp("auth"), password=SECRET)
    yield s
    s.stop()


def test_password_is_not_in_repr_or_wrong_password_errors(locked):
    url = f"redis://:{SECRET}@127.0.0.1:{locked.port}/0"
    with RedisStore(url, 4, namespace="p", create=True) as store:
        assert SECRET not in repr(store) and "***" in repr(store)
    with RedisStore(locked.url, 4, namespace="p", password=SECRET) as store:
        assert SECRET not in repr(store)
    wrong = "wrong-" + SECRET
    for kwargs in (dict(target=f"redis://:{wrong}@127.0.0.1:{locked.port}/0"),
                   dict(target=f"redis://nobody:{wrong}@127.0.0.1:{locked.port}/0"),
                   dict(target=locked.url, password=wrong)):
        with pytest.raises(ConfigError, match="refused") as err:
            RedisStore(dim=4, namespace="p", **kwargs)
        assert SECRET not in _everything_printed(err.value)
    with pytest.raises(ConfigError) as err:
        RedisStore(f"redis://:{SECRET}@127.0.0.1:notaport/0", 4)
    assert SECRET not in _everything_printed(err.value)


def test_password_is_not_in_errors_of_a_server_gone_mid_call(tmp_path):
    s = RedisServer(tmp_path / "gone", password=SECRET)
    url = f"redis://:{SECRET}@127.0.0.1:{s.port}/0"
    store = RedisStore(url, 4, namespace="g", timeout=1.0, create=True)
    store.put_many([1], np.ones((1, 4), np.float32))
    s.kill()
    try:
        for call in (lambda: store.get_many([1]), lambda: store.put_many([2], np.ones((1, 4), np.float32)),
                     lambda: store.delete_many([1]), store.keys, lambda: RedisStore(url, 4, namespace="g")):
            with pytest.raises(TierError) as err:
                call()
            assert SECRET not in _everything_printed(err.value)
            assert "127.0.0.1" in str(err.value)
    finally:
        store.close()


def _embcache(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(os.getcwd()), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "embcache", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def _npy(tmp_path):
    keys = np.arange(10, dtype=np.int64)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows_for(keys, 4, "float32", seed=1))
    return str(tmp_path / "k.npy"), str(tmp_path / "r.npy")


def test_import_with_a_wrong_password_does_not_print_it(locked, tmp_path):
    out = _embcache("import", "npy", *_npy(tmp_path), "--to", f"redis://:wrong{SECRET}@127.0.0.1:{locked.port}/0",
                    "--dim", "4", "--no-progress")
    assert out.returncode != 0
    assert SECRET not in out.stdout + out.stderr


def test_import_output_does_not_print_the_password(locked, tmp_path):
    out = _embcache("import", "npy", *_npy(tmp_path), "--to", f"redis://:{SECRET}@127.0.0.1:{locked.port}/0",
                    "--dim", "4", "--no-progress", "--namespace", "cli")
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout + out.stderr


# ---- item 16: ACL users and TLS ----------------------------------------------------------------------------------


def _round_trip(store):
    keys = np.array([3, -4, 2**62], np.int64)
    rows = rows_for(keys, store.dim, "float32", seed=9)
    store.put_many(keys, rows)
    got, found = store.get_many(keys)
    assert found.all() and got.tobytes() == rows.tobytes()


def _user_of(server, namespace) -> set:
    """User names of the server's clients other than the one asking."""
    admin = server.client()
    return {c["user"] for c in admin.client_list() if c["id"] != str(admin.client_id())}


def test_acl_user_and_tls_from_keywords(secure):
    with RedisStore(secure.url, 4, namespace="acl", create=True, username="alice", password=SECRET,
                    **_tls(secure.files)) as store:
        _round_trip(store)
        assert "alice" in _user_of(secure, "acl")
        assert SECRET not in repr(store)
    plain = secure.url.replace("rediss://", "redis://")
    with RedisStore(plain, 4, namespace="acl", tls=True, username="alice", password=SECRET,
                    **_tls(secure.files)) as store:
        _round_trip(store)
    with RedisStore(f"rediss://alice:{SECRET}@127.0.0.1:{secure.port}/0", 4, namespace="acl",
                    **_tls(secure.files)) as store:
        assert SECRET not in repr(store) and "alice" in repr(store)
        _round_trip(store)


def test_acl_wrong_password_is_a_config_error_without_it(secure):
    with pytest.raises(ConfigError, match="user 'alice'") as err:
        RedisStore(secure.url, 4, namespace="acl", create=True, username="alice", password="admin-" + SECRET,
                   **_tls(secure.files))
    assert SECRET not in _everything_printed(err.value)


def test_tls_failures_are_clear(secure, tmp_path):
    plain = secure.url.replace("rediss://", "redis://")
    with pytest.raises(TierError, match="TLS"):  # a plain client on a TLS port
        RedisStore(plain, 4, namespace="acl", username="alice", password=SECRET, timeout=2.0)
    with pytest.raises(TierError, match="certificate"):  # the server's CA is not trusted
        RedisStore(secure.url, 4, namespace="acl", username="alice", password=SECRET, timeout=2.0)
    with pytest.raises(TierError):  # the server checks clients: no certificate, no connection
        RedisStore(secure.url, 4, namespace="acl", username="alice", password=SECRET, timeout=2.0,
                   **_tls(secure.files, client=False))
    with pytest.raises(ConfigError, match="without TLS"):
        RedisStore(plain, 4, tls_ca_certs=secure.files.ca)
    with pytest.raises(ConfigError, match="is not a file"):
        RedisStore(secure.url, 4, tls_ca_certs=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="needs tls_certfile"):
        RedisStore(secure.url, 4, tls_ca_certs=secure.files.ca, tls_keyfile=secure.files.client_key)


# ---- item 1: several threads on one store ------------------------------------------------------------------------


def _hammer(store, threads: int = 4, steps: int = 150):
    """Each thread writes, deletes and reads its own keys (interleaved with the others'), checking a dict."""
    errors, models = [], [dict() for _ in range(threads)]

    def work(t):
        rng = np.random.default_rng(t)
        model = models[t]
        try:
            for step in range(steps):
                keys = rng.integers(0, 200, rng.integers(1, 40)) * threads + t  # disjoint per thread
                op = rng.integers(0, 3)
                if op == 0:
                    rows = np.full((keys.shape[0], store.dim), step * threads + t, np.float32)
                    rows[:, 0] = keys
                    store.put_many(keys, rows)
                    model.update(zip(keys.tolist(), rows))
                elif op == 1:
                    store.delete_many(keys)
                    for k in keys.tolist():
                        model.pop(k, None)
                else:
                    got, found = store.get_many(keys)
                    for k, row, f in zip(keys.tolist(), got, found):
                        assert f == (k in model), (t, step, k)
                        assert not f or row.tobytes() == model[k].tobytes(), (t, step, k)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(120)
    assert not any(th.is_alive() for th in pool), "a thread hung"
    if errors:
        raise errors[0]
    merged = {k: v for m in models for k, v in m.items()}
    assert sorted(store.keys().tolist()) == sorted(merged)
    keys = np.array(sorted(merged), np.int64)
    got, found = store.get_many(keys)
    assert found.all() and got.tobytes() == np.stack([merged[k] for k in keys.tolist()]).tobytes()


def test_threads_share_one_store(server):
    with RedisStore(server.url, 3, namespace="threads", batch=16, create=True) as store:
        _hammer(store)


def test_threads_share_one_cluster_store(cluster):
    with RedisStore(cluster.addresses, 3, namespace="threads", batch=16, create=True) as store:
        _hammer(store, steps=60)


# ---- item 5, as a state machine: puts that the server refuses for memory change nothing -----------------------


class _TightMemory(RuleBasedStateMachine):
    """RedisStore against a dict while the server's memory limit comes and goes (real OOM refusals)."""

    server = url = None
    refusals = 0

    @initialize()
    def open(self):
        import uuid

        self.admin = self.server.client()
        self.store = RedisStore(self.url, 64, namespace=uuid.uuid4().hex, batch=256, create=True)
        self.model, self.refused = {}, 0

    @rule(start=st.integers(0, 3000), n=st.sampled_from([1, 10, 300, 3000]), seed=st.integers(0, 2**16),
          room_kib=st.sampled_from([None, 16, 64, 256]))
    def put(self, start, n, seed, room_kib):
        keys = (np.arange(start, start + n, dtype=np.int64) * 7) % 4001  # 3000 rows: 0.8 MB
        rows = rows_for(keys, 64, "float32", seed=seed)
        if room_kib is not None:  # the server may hold only this much more
            self.admin.config_set("maxmemory", self.admin.info("memory")["used_memory"] + room_kib * 1024)
        try:
            self.store.put_many(keys, rows)
        except TierError as exc:
            assert room_kib is not None, exc
            assert "none of the call's" in str(exc) and exc.maybe_written.shape == (0,)
            self.refused += 1
            return
        finally:
            self.admin.config_set("maxmemory", 0)
        self.model.update(zip(keys.tolist(), rows))

    @rule(keys=st.lists(st.integers(0, 4000), max_size=200))
    def delete(self, keys):
        self.store.delete_many(keys)
        for k in keys:
            self.model.pop(k, None)

    @invariant()
    def store_is_the_model(self):
        if not hasattr(self, "store"):
            return
        assert sorted(self.store.keys().tolist()) == sorted(self.model)
        keys = np.array(sorted(self.model), np.int64)
        if keys.shape[0]:
            got, found = self.store.get_many(keys)
            assert found.all() and got.tobytes() == np.stack([self.model[k] for k in keys.tolist()]).tobytes()

    def teardown(self):
        if hasattr(self, "store"):
            _TightMemory.refusals += self.refused
            self.store.delete_many(list(self.model))
            self.store.close()


def test_puts_refused_for_memory_change_nothing(tmp_path):
    from hypothesis.stateful import run_state_machine_as_test

    s = RedisServer(tmp_path / "tight", args=("--maxmemory-policy", "noeviction"))
    _TightMemory.server, _TightMemory.url, _TightMemory.refusals = s, s.url, 0
    try:
        run_state_machine_as_test(_TightMemory, settings=settings(max_examples=25, stateful_step_count=20))
    finally:
        s.stop()
    assert _TightMemory.refusals > 0  # the machine did meet a full server
