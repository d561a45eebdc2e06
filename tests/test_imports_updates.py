"""Table import and online updates: real files, a real RocksDB, real redis-server, real SIGKILLs."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import embcache
from embcache.cli import main
from embcache.errors import DataFormatError
from embcache.imports import import_hugectr, import_npy, import_onnx

from .redis_servers import RedisServer, needs_redis
from .strategies import rows_for

pytest.importorskip("rocksdict", reason="needs rocksdict: pip install 'embcache[tiers]'")
from embcache.tiers import RocksStore  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _table(n, dim, seed=0):
    keys = (np.arange(n, dtype=np.int64) * 2654435761) % (2**40) + 1
    return keys, rows_for(keys, dim, "float32", seed=seed)


def _stored(path, dim, keys):
    with RocksStore(path, dim, create=True) as store:
        return store.get_many(keys)


def _hugectr(folder, keys, rows):
    folder.mkdir()
    keys.astype(np.int64).tofile(folder / "key")
    rows.astype(np.float32).tofile(folder / "emb_vector")


def test_import_hugectr_folder(tmp_path):
    keys, rows = _table(5000, 16)
    _hugectr(tmp_path / "sparse", keys, rows)
    with RocksStore(tmp_path / "db", 16, create=True) as store:
        assert import_hugectr(tmp_path / "sparse", store, chunk_rows=700, progress=False) == 5000
        got, found = store.get_many(keys)
    assert found.all() and got.tobytes() == rows.tobytes()


def test_import_npy_pair_from_the_shell_as_float16(tmp_path, capsys):
    keys, rows = _table(3000, 8)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    assert main(["import", "npy", str(tmp_path / "k.npy"), str(tmp_path / "r.npy"), "--to",
                 f"rocksdb:{tmp_path / 'db'}", "--dim", "8", "--dtype", "float16", "--no-progress"]) == 0
    assert "imported 3,000 rows" in capsys.readouterr().out
    with RocksStore(tmp_path / "db", 8, "float16", create=True) as store:
        got, found = store.get_many(keys)
    assert found.all() and got.tobytes() == rows.astype(np.float16).tobytes()


def _onnx_model(path, table):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["emb", "ids"], ["out"])], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, table.shape[1]])],
        [numpy_helper.from_array(table, "emb")])
    onnx.save(helper.make_model(graph), path)


def test_import_onnx_initializer(tmp_path):
    pytest.importorskip("onnx")
    table = rows_for(np.arange(40), 4, "float32", seed=7)
    _onnx_model(tmp_path / "m.onnx", table)
    with RocksStore(tmp_path / "db", 4, create=True) as store:
        assert import_onnx(tmp_path / "m.onnx", "emb", store, key_offset=100, progress=False) == 40
        got, found = store.get_many(np.arange(100, 140))
        assert found.all() and got.tobytes() == table.tobytes()
        with pytest.raises(DataFormatError, match="no initializer 'nope'.*emb"):
            import_onnx(tmp_path / "m.onnx", "nope", store)


def _damaged(tmp_path, case):
    keys, rows = _table(100, 4)
    if case == "truncated key file":
        _hugectr(tmp_path / "s", keys, rows)
        with open(tmp_path / "s" / "key", "r+b") as f:
            f.truncate(8 * 100 - 3)
        return lambda store: import_hugectr(tmp_path / "s", store), "whole number of int64"
    if case == "short emb_vector":
        _hugectr(tmp_path / "s", keys, rows[:-1])
        return lambda store: import_hugectr(tmp_path / "s", store), "another dim, or truncated"
    if case == "reserved key":
        keys[57] = embcache.RESERVED_KEYS[0]
        _hugectr(tmp_path / "s", keys, rows)
        return lambda store: import_hugectr(tmp_path / "s", store, chunk_rows=10), "row 57 is reserved"
    if case == "truncated npy":
        np.save(tmp_path / "k.npy", keys)
        np.save(tmp_path / "r.npy", rows)
        data = (tmp_path / "r.npy").read_bytes()
        (tmp_path / "r.npy").write_bytes(data[: len(data) - 50])
        return lambda store: import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store), "corrupt or truncated"
    if case == "npy of another dim":
        np.save(tmp_path / "k.npy", keys)
        np.save(tmp_path / "r.npy", rows_for(keys, 5, "float32", 0))
        return lambda store: import_npy(tmp_path / "k.npy", tmp_path / "r.npy", store), r"\(100, 4\)"
    if case == "corrupt onnx":
        pytest.importorskip("onnx")
        (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage" * 10)
        return lambda store: import_onnx(tmp_path / "m.onnx", "emb", store), "not a readable ONNX"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["truncated key file", "short emb_vector", "reserved key", "truncated npy",
                                  "npy of another dim", "corrupt onnx"])
def test_bad_import_files_are_refused_before_any_write(tmp_path, case):
    run, message = _damaged(tmp_path, case)
    with RocksStore(tmp_path / "db", 4, create=True) as store:
        with pytest.raises(DataFormatError, match=message):
            run(store)
        assert store.keys().shape == (0,)


def test_import_killed_midway_leaves_whole_acknowledged_chunks(tmp_path):
    keys, rows = _table(400_000, 4, seed=1)
    np.save(tmp_path / "k.npy", keys)
    np.save(tmp_path / "r.npy", rows)
    chunk = 1000
    proc = subprocess.Popen(
        [sys.executable, "-m", "embcache", "import", "npy", str(tmp_path / "k.npy"), str(tmp_path / "r.npy"),
         "--to", str(tmp_path / "db"), "--dim", "4", "--chunk-rows", str(chunk), "--report-chunks", "--no-progress"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    acknowledged = 0
    for line in proc.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged >= 5 * chunk:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    got, found = _stored(tmp_path / "db", 4, keys)
    present = int(found.sum())
    assert present >= acknowledged, "an acknowledged chunk is missing"
    assert present < keys.shape[0], "the import finished before the kill; the test proves nothing"
    assert present % chunk == 0 and found[:present].all(), "a chunk is visible in part"
    assert got[:present].tobytes() == rows[:present].tobytes()


# ---------------------------------------------------------------- online updates


@pytest.fixture()
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@needs_redis
def test_updates_refresh_cached_rows_and_dead_letter_bad_messages(tmp_path, redis_server):
    from embcache.updates import UpdateConsumer, publish

    keys, rows = _table(64, 4)
    store = RocksStore(tmp_path / "db", 4, create=True)
    store.put_many(keys, rows)
    cache = embcache.Cache(128, 4, backend="cpu", tier=store)
    cache.lookup(keys)
    new = rows_for(keys[:10], 4, "float32", seed=9)
    publish(redis_server.url, "upd", keys[:10], new)
    publish(redis_server.url, "upd", keys[:3], rows_for(keys[:3], 8, "float32", 1))  # another dim
    consumer = UpdateConsumer(redis_server.url, "upd", "g", "c1", caches=[cache])
    assert consumer.run(idle_polls=1, progress=False) == 2
    assert (consumer.applied, consumer.rejected) == (1, 1)
    cached, found = cache.query(keys[:10])
    assert found.all() and cached.tobytes() == new.tobytes()
    assert store.get_many(keys[:10])[0].tobytes() == new.tobytes()
    client = consumer.client
    assert client.xlen("upd:dead") == 1 and b"dim=8" in client.xrange("upd:dead")[0][1][b"embcache.error"]
    assert client.xpending("upd", "g")["pending"] == 0
    store.close()


@needs_redis
def test_consumer_killed_midway_loses_no_acknowledged_update(tmp_path, redis_server):
    import redis

    from embcache.updates import UpdateConsumer, publish

    batches = [(_table(200, 4, seed=b)[0] + 10**6 * b, rows_for(np.arange(200), 4, "float32", b)) for b in range(300)]
    for k, r in batches:
        publish(redis_server.url, "s", k, r)
    RocksStore(tmp_path / "db", 4, create=True).close()  # serve-updates writes into a table that exists
    proc = subprocess.Popen(
        [sys.executable, "-m", "embcache", "serve-updates", "--redis", redis_server.url, "--stream", "s",
         "--group", "g", "--consumer", "worker", "--store", str(tmp_path / "db"), "--dim", "4", "--no-progress"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = redis.Redis.from_url(redis_server.url)
    deadline = time.monotonic() + 60
    # wait for the consumer to have acknowledged some, then kill it mid-stream
    while not client.xinfo_groups("s") or client.xinfo_groups("s")[0]["entries-read"] is None \
            or client.xinfo_groups("s")[0]["entries-read"] - client.xinfo_groups("s")[0]["pending"] < 5:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)  # polling a condition, bounded by the deadline
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    group = client.xinfo_groups("s")[0]
    acked = group["entries-read"] - group["pending"]
    assert acked < len(batches), "the consumer finished before the kill; the test proves nothing"
    with RocksStore(tmp_path / "db", 4, create=True) as store:
        for k, r in batches[:acked]:  # the stream is read in order, so the first `acked` were acknowledged
            got, found = store.get_many(k)
            assert found.all() and got.tobytes() == r.tobytes()
        for k, r in batches[acked:]:  # applied but not acknowledged, or not applied: whole either way
            got, found = store.get_many(k)
            assert found.all() or not found.any(), "an update batch is visible in part"
            if found.all():
                assert got.tobytes() == r.tobytes()
        consumer = UpdateConsumer(redis_server.url, "s", "g", "worker", store=store)
        consumer.run(idle_polls=1, progress=False)
        for k, r in batches:
            got, found = store.get_many(k)
            assert found.all() and got.tobytes() == r.tobytes()
    assert client.xpending("s", "g")["pending"] == 0
