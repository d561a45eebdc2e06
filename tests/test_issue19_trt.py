"""Issue 19, trt_plugin's items: strict opening through every read path (7), errors inside the ONNX
Runtime op (8), one-to-one names (9), skipped Gathers and out-of-range keys (12), ps.json names that
leave their folder (15), HPS Redis auth/TLS fields (16), input configs never overwritten (18), and
the embcache-trt command line (19, 20, 23).

Processes that could abort (the custom op's old failure mode) run as real subprocesses.
"""
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx_graphsurgeon")
pytest.importorskip("onnxruntime_extensions")
pytest.importorskip("rocksdict")

from onnx import TensorProto, helper, numpy_helper

from embcache.errors import ConfigError, EmbCacheError, StoreNotFoundError
from trt_plugin.config import load_config, parse_config, redis_options, store_name
from trt_plugin.fields import IR_VERSION, new_model
from trt_plugin.ort import SurgeredSession
from trt_plugin.surgery import native_config_path, surgery
from trt_plugin.tables import OutOfRangeWarning, close_all, lookup_rows, open_table_store, out_of_range

from .redis_servers import REDIS_CLI, RedisServer, needs_redis

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_caches():
    yield
    close_all()


def table(rows, dim, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def lookup_model(tables: dict, key_shape=("B", 3)):
    """One Gather per table (inputs idx0, idx1, ...; outputs y0, y1, ...), at the project's IR version."""
    nodes, inputs, outputs = [], [], []
    for i, name in enumerate(tables):
        inputs.append(helper.make_tensor_value_info(f"idx{i}", TensorProto.INT64, list(key_shape)))
        nodes.append(helper.make_node("Gather", [name, f"idx{i}"], [f"y{i}"], name=f"gather{i}", axis=0))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    inits = [numpy_helper.from_array(v, k) for k, v in tables.items()]
    return new_model(helper.make_graph(nodes, "m", inputs, outputs, inits))


def cli(*args, env=None, cwd=None, timeout=240):
    """``python -m trt_plugin ARGS`` in a real subprocess: (rc, stdout, stderr)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-m", "trt_plugin", *map(str, args)], capture_output=True, text=True,
                         env=full_env, cwd=cwd, timeout=timeout, check=False)
    return out.returncode, out.stdout, out.stderr


def python(code: str, timeout=240):
    """``python -c CODE`` in a real subprocess (an abort there does not take pytest with it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


def one_line_error(rc: int, err: str) -> str:
    assert rc not in (0, 134, -6), (rc, err)  # 134 / -6: SIGABRT, the process aborted
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "terminate called" not in err
    return lines[0]


@pytest.fixture
def surgered(tmp_path):
    """A surgered one-table model: (folder, values, feeds, expected output)."""
    values = table(100, 8)
    onnx.save(lookup_model({"W": values}), str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "c.json", progress=False)
    keys = np.arange(6).reshape(2, 3)
    np.savez(tmp_path / "in.npz", idx0=keys)
    return tmp_path, values, {"idx0": keys}, values[keys]


# ---- item 7: every read path opens without create ----

def test_run_after_the_table_folder_moved_is_a_one_line_error(surgered):
    folder, *_ = surgered
    (folder / "c-tables").rename(folder / "elsewhere")
    rc, out, err = cli("run", folder / "s.onnx", "--inputs", folder / "in.npz", "--backend", "cpu")
    line = one_line_error(rc, err)
    assert "no RocksDB table" in line and "m.W" in line and rc == 2
    assert "y0" not in out  # no predictions printed
    assert not (folder / "c-tables").exists()  # nothing created in its place


def test_every_read_path_refuses_a_missing_table(surgered):
    folder, *_ = surgered
    shutil.rmtree(folder / "c-tables")
    config = load_config(folder / "c.json")
    with pytest.raises(StoreNotFoundError):
        open_table_store(config, config.models[0].tables[0])
    with pytest.raises(StoreNotFoundError):  # the registry (plugin and ORT op)
        lookup_rows(folder / "c.json", "W", np.array([1]), backend="cpu")
    with pytest.raises(StoreNotFoundError):  # the session, before any batch
        SurgeredSession(folder / "s.onnx", backend="cpu")
    with pytest.raises(StoreNotFoundError):
        SurgeredSession(folder / "s.onnx", engine="reference", backend="cpu")
    assert not (folder / "c-tables").exists()


# ---- item 8: errors inside the op reach the caller ----

def test_missing_config_is_a_one_line_error_not_an_abort(surgered):
    folder, *_ = surgered
    (folder / "c.json").rename(folder.parent / f"{folder.name}-c.json")
    rc, _, err = cli("run", folder / "s.onnx", "--inputs", folder / "in.npz", "--backend", "cpu")
    line = one_line_error(rc, err)
    assert "c.json does not exist" in line and rc == 2


def test_an_error_inside_the_op_is_a_python_exception(surgered):
    # the table goes away after the session opened it: the op itself fails, inside ONNX Runtime
    folder, *_ = surgered
    code = f"""
import numpy as np, sys
from pathlib import Path
from embcache.errors import EmbCacheError, StoreNotFoundError
from trt_plugin.ort import SurgeredSession
from trt_plugin.tables import close_all
folder = Path({str(folder)!r})
session = SurgeredSession(folder / "s.onnx", backend="cpu")
feeds = {{"idx0": np.arange(6).reshape(2, 3)}}
good = session.run(feeds)[0]
close_all()
(folder / "c-tables").rename(folder / "moved")
try:
    session.run(feeds)
except EmbCacheError as e:
    assert isinstance(e, StoreNotFoundError), type(e)
    print("caught", type(e).__name__)
else:
    sys.exit("no exception")
(folder / "moved").rename(folder / "c-tables")
assert np.array_equal(session.run(feeds)[0], good)  # the session still works
print("ok")
"""
    out = python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["caught", "StoreNotFoundError", "ok"]


def test_config_is_found_beside_the_moved_model(surgered, tmp_path_factory):
    folder, _, feeds, expected = surgered
    moved = tmp_path_factory.mktemp("moved") / "here"
    shutil.move(str(folder), str(moved))  # model, config and tables together
    got = SurgeredSession(moved / "s.onnx", backend="cpu").run(feeds)[0]
    assert np.array_equal(got, expected)
    close_all()  # RocksDB lets one process open a table
    rc, _, err = cli("run", moved / "s.onnx", "--inputs", moved / "in.npz", "--backend", "cpu",
                       "--out", moved / "out.npz")
    assert rc == 0, err
    with np.load(moved / "out.npz") as f:
        assert np.array_equal(f["y0"], expected)


# ---- item 9: names map one to one ----

@given(st.lists(st.tuples(st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8)), min_size=2,
                max_size=8, unique=True))
def test_store_names_are_one_to_one_single_components(pairs):
    names = [store_name(m, t) for m, t in pairs]
    assert len(set(names)) == len(names)
    for n in names:
        assert "/" not in n and "\\" not in n and "\0" not in n and n not in (".", "..")
        assert n.isascii() and not os.path.isabs(n)


def test_hps_pairs_that_joined_alike_get_their_own_folder_and_namespace(tmp_path):
    def ps(model, tables, vol):
        return {"volatile_db": vol, "persistent_db": {"type": "rocks_db", "path": "rocks"},
                "models": [{"model": model, "embedding_table_names": tables,
                            "embedding_vecsize_per_table": [4] * len(tables)}]}
    for vol in ({"type": "hash_map"}, {"type": "redis_cluster", "address": "127.0.0.1:7000"}):
        data = ps("a.b", ["c"], vol)
        data["models"].append(ps("a", ["b.c"], vol)["models"][0])
        cfg = parse_config(data, tmp_path)
        (_, t1), (_, t2) = cfg.table("c", "a.b"), cfg.table("b.c", "a")
        assert t1.store[-1] != t2.store[-1]
        if vol["type"] == "redis_cluster":
            assert t1.store[0].split("#")[1] != t2.store[0].split("#")[1]


NAME = st.text(alphabet="ab/:._-%", min_size=1, max_size=4)


@settings(max_examples=12, deadline=None)
@given(st.lists(NAME, min_size=2, max_size=3, unique=True))
def test_surgery_keeps_tables_whose_names_sanitize_alike_apart(tmp_path_factory, names):
    tmp = tmp_path_factory.mktemp("names")
    tables = {n: table(5 + i, 3, i) for i, n in enumerate(names)}
    onnx.save(lookup_model(tables), str(tmp / "m.onnx"))
    report = surgery(tmp / "m.onnx", tmp / "s.onnx", tmp / "c.json", progress=False)
    cfg = load_config(tmp / "c.json")
    folders = [cfg.resolve(t.store[0]) for t in cfg.models[0].tables]
    assert sorted(t.name for t in cfg.models[0].tables) == sorted(names) and len(set(folders)) == len(names)
    assert all(Path(f.removeprefix("rocksdb:")).parent == tmp / "c-tables" for f in folders)
    nodes = [n.name for n in onnx.load(str(tmp / "s.onnx")).graph.node]
    assert len(set(nodes)) == len(nodes)
    feeds = {f"idx{i}": np.array([[0, 1, 4]]) for i in range(len(names))}
    got = SurgeredSession(tmp / "s.onnx", backend="cpu").run(feeds)
    for i, n in enumerate(names):  # each lookup reads its own table's rows
        assert np.array_equal(got[i], tables[n][[[0, 1, 4]]])
    assert report.tables == {n: 5 + i for i, n in enumerate(names)}
    close_all()


def test_emb_slash_and_emb_colon_stay_two_tables(tmp_path):
    tables = {"emb/0": table(10, 4, 1), "emb:0": table(10, 4, 2)}
    onnx.save(lookup_model(tables), str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "c.json", progress=False)
    keys = np.array([[1, 2, 3]])
    a, b = SurgeredSession(tmp_path / "s.onnx", backend="cpu").run({"idx0": keys, "idx1": keys})
    assert np.array_equal(a, tables["emb/0"][keys]) and np.array_equal(b, tables["emb:0"][keys])


# ---- item 12: skipped Gathers are named; out-of-range keys are counted ----

def bag_model(rows=10000, dim=16, with_lookup=True):
    """A TorchScript-style nn.EmbeddingBag: a Loop over bags whose body Gathers rows of the outer
    initializer ``bag.weight`` and ReduceSums them; optionally beside a plain main-graph lookup."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["bags", "i"], ["bag_keys"], axis=0),
         helper.make_node("Gather", ["bag.weight", "bag_keys"], ["bag_rows"], name="bag_gather", axis=0),
         helper.make_node("ReduceSum", ["bag_rows", "axes0"], ["bag_sum"], keepdims=0),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "bag_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("bag_sum", TensorProto.FLOAT, [dim])])
    nodes = [helper.make_node("Shape", ["bags"], ["bags_shape"]),
             helper.make_node("Gather", ["bags_shape", "zero"], ["n_bags"], axis=0),
             helper.make_node("Loop", ["n_bags", "true", ], ["bag_out"], name="bag_loop", body=body)]
    inits = [numpy_helper.from_array(table(rows, dim), "bag.weight"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(True), "true")]
    inputs = [helper.make_tensor_value_info("bags", TensorProto.INT64, ["N", 3])]
    outputs = [helper.make_tensor_value_info("bag_out", TensorProto.FLOAT, ["N", dim])]
    if with_lookup:
        nodes.append(helper.make_node("Gather", ["W", "idx0"], ["y0"], name="gather0", axis=0))
        inits.append(numpy_helper.from_array(table(50, 4, 3), "W"))
        inputs.append(helper.make_tensor_value_info("idx0", TensorProto.INT64, ["B", 3]))
        outputs.append(helper.make_tensor_value_info("y0", TensorProto.FLOAT, None))
    return new_model(helper.make_graph(nodes, "bag", inputs, outputs, inits))


def test_a_gather_inside_a_loop_is_named_and_strict_fails(tmp_path):
    onnx.save(bag_model(), str(tmp_path / "m.onnx"))
    args = ["surgery", tmp_path / "m.onnx", "-o", tmp_path / "s.onnx", "--config", tmp_path / "c.json",
            "--no-progress"]
    rc, out, err = cli(*args)
    assert rc == 0, err
    assert "'bag.weight' (10000x16 float32)" in err and "Loop 'bag_loop' body" in err and "warning" in err
    assert "1 lookups" in out
    # the surgered model still runs; the bag's table stays inline and gives the original's sums
    bags = np.array([[1, 2, 3], [9999, 0, 5]])
    feeds = {"bags": bags, "idx0": np.array([[0, 1, 2]])}
    expected = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = SurgeredSession(tmp_path / "s.onnx", backend="cpu").run(feeds)
    assert all(np.allclose(a, b) for a, b in zip(expected, got))
    close_all()  # RocksDB lets one process open a table
    args[3] = tmp_path / "strict.onnx"
    rc, out, err = cli(*args, "--strict")
    assert "--strict" in one_line_error(rc, err) and "'bag.weight' (10000x16 float32)" in err
    assert not (tmp_path / "strict.onnx").exists() and not (tmp_path / "strict.embcache.json").exists()


def test_a_model_with_only_a_bag_names_it_in_the_error(tmp_path):
    onnx.save(bag_model(with_lookup=False), str(tmp_path / "m.onnx"))
    with pytest.raises(ConfigError, match=r"no embedding lookup found.*'bag\.weight' \(10000x16 float32\)"):
        surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "c.json", progress=False)


def test_constant_index_and_unselected_gathers_are_listed(tmp_path):
    values = table(20, 4)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["W", "idx0"], ["y0"], name="lookup", axis=0),
         helper.make_node("Gather", ["W", "fixed"], ["y1"], name="fixed_rows", axis=0),
         helper.make_node("Gather", ["V", "idx0"], ["y2"], name="other", axis=0)],
        "m", [helper.make_tensor_value_info("idx0", TensorProto.INT64, ["B"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y0", "y1", "y2")],
        [numpy_helper.from_array(values, "W"), numpy_helper.from_array(table(30, 4, 1), "V"),
         numpy_helper.from_array(np.array([1, 3], np.int64), "fixed")])
    onnx.save(new_model(graph), str(tmp_path / "m.onnx"))
    report = surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "c.json", names=["W"], progress=False)
    reasons = {s.node: (s.reason, s.chosen) for s in report.skipped}
    assert reasons["fixed_rows"] == ("its indices are constant", False)
    assert reasons["other"][1] and "--names" in reasons["other"][0]


def test_out_of_range_keys_are_counted_and_warned_once(surgered):
    folder, values, *_ = surgered
    with pytest.warns(OutOfRangeWarning, match="'W': 2 key"):
        rows = lookup_rows(folder / "c.json", "W", np.array([100, -101, 5]), backend="cpu")
    assert not rows[:2].any() and np.array_equal(rows[2], values[5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per table: no second warning
        lookup_rows(folder / "c.json", "W", np.array([[7, 1000, 2**40]]), backend="cpu")
        lookup_rows(folder / "c.json", "W", np.array([-1, 99]), backend="cpu")  # in range
    assert out_of_range(folder / "c.json", "W") == 4 and out_of_range(folder / "c.json", "W", "m") == 4
    close_all()
    assert out_of_range(folder / "c.json", "W") == 0


# ---- item 15: names that would leave persistent_db.path ----

@pytest.mark.parametrize("where", ["table", "model"])
@pytest.mark.parametrize("name", ["..", ".", "../escape", "/abs/path", "a/b", "a\\b", "x\0y"])
def test_ps_json_names_that_leave_the_folder_are_config_errors(tmp_path, where, name):
    data = {"persistent_db": {"type": "rocks_db", "path": "rocks"},
            "models": [{"model": name if where == "model" else "m",
                        "embedding_table_names": [name if where == "table" else "t"],
                        "embedding_vecsize_per_table": [4], "sparse_files": ["src"]}]}
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "ps.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="outside persistent_db.path"):
        load_config(tmp_path / "inner" / "ps.json")
    rc, _, err = cli("import", "--config", tmp_path / "inner" / "ps.json", "--no-progress")
    assert "outside persistent_db.path" in one_line_error(rc, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inner"]  # nothing made beside or inside
    assert sorted(p.name for p in (tmp_path / "inner").iterdir()) == ["ps.json"]


# ---- item 16: HPS Redis auth and TLS ----

def test_redis_options_map_hps_fields_to_redisstore_arguments():
    assert redis_options({"type": "redis_cluster", "address": "h:1"}) == {}
    assert redis_options({"user_name": "default", "password": ""}) == {}
    assert redis_options({"user_name": "alice", "password": "s3cret"}) == {"username": "alice", "password": "s3cret"}
    assert redis_options({"enable_tls": True, "tls_ca_certificate": "ca.crt", "tls_client_certificate": "c.pem",
                          "tls_client_key": "k.pem"}) == {"tls": True, "tls_ca_certs": "ca.crt",
                                                          "tls_certfile": "c.pem", "tls_keyfile": "k.pem"}
    assert redis_options({"enable_tls": False, "tls_ca_certificate": "ca.crt"}) == {}  # TLS off: unused
    with pytest.raises(ConfigError, match="tls_server_name_identification"):
        redis_options({"enable_tls": True, "tls_server_name_identification": "redis.localhost"})
    with pytest.raises(ConfigError, match="enable_tls"):
        redis_options({"enable_tls": "yes"})
    with pytest.raises(ConfigError, match="password must be a string"):
        redis_options({"password": 1234})


def ps_json(vol, **top):
    return {"volatile_db": vol, "persistent_db": {"type": "disabled"}, **top,
            "models": [{"model": "m", "embedding_table_names": ["t"], "embedding_vecsize_per_table": [4]}]}


def test_ps_json_redis_fields_reach_the_table_and_the_native_config(tmp_path):
    vol = {"type": "redis_cluster", "address": "127.0.0.1:7000", "user_name": "alice", "password": "s3cret",
           "enable_tls": True, "tls_ca_certificate": "ca.crt", "cache_missed_embeddings": True}
    cfg = parse_config(ps_json(vol), tmp_path)
    t = cfg.table("t")[1]
    assert t.redis == {"username": "alice", "password": "s3cret", "tls": True, "tls_ca_certs": "ca.crt"}
    assert t.promote is True
    assert parse_config(ps_json({**vol, "cache_missed_embeddings": False})).table("t")[1].promote is False
    path = cfg.save(tmp_path / "native.json")
    assert parse_config(json.loads(path.read_text()), tmp_path).table("t")[1] == t  # nothing dropped
    assert path.stat().st_mode & 0o077 == 0  # it holds a password: the owner's alone


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(volatile_db={"type": "hash_map", "password": "x"}), "volatile_db.password"),
    (lambda d: d.update(volatile_db={"type": "hash_map", "user_name": "alice"}), "volatile_db.user_name"),
    (lambda d: d.update(volatile_db={"type": "hash_map", "enable_tls": True}), "volatile_db.enable_tls"),
    (lambda d: d.update(update_source={"type": "kafka_message_queue", "brokers": "h:9092"}), "update_source"),
    (lambda d: d["volatile_db"].update(tls_server_name_identification="x", enable_tls=True),
     "tls_server_name_identification"),
    (lambda d: d["volatile_db"].update(cache_missed_embeddings="yes"), "cache_missed_embeddings"),
])
def test_hps_fields_not_implemented_are_refused_by_name(change, message):
    data = ps_json({"type": "redis_cluster", "address": "127.0.0.1:7000"})
    change(data)
    if data["volatile_db"]["type"] == "hash_map":
        data["persistent_db"] = {"type": "rocks_db", "path": "r"}
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_hps_defaults_and_a_null_update_source_are_accepted():
    data = ps_json({"type": "hash_map", "user_name": "default", "password": "", "enable_tls": False,
                    "tls_ca_certificate": "cacertbundle.crt"}, update_source={"type": "null"})
    data["persistent_db"] = {"type": "rocks_db", "path": "r"}
    assert parse_config(data).table("t")[1].redis is None


def _password_cluster(folder: Path, password: str, masters: int = 3) -> list[RedisServer]:
    nodes = [RedisServer(folder / f"n{i}", password=password, cluster=True) for i in range(masters)]
    out = subprocess.run([REDIS_CLI, "-a", password, "--no-auth-warning", "--cluster", "create",
                          *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-replicas", "0", "--cluster-yes"],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode:
        for n in nodes:
            n.stop()
        raise RuntimeError(out.stdout + out.stderr)
    import time

    import redis

    end = time.monotonic() + 30
    for n in nodes:  # until gossip converges (as RedisCluster.wait_ok), bounded by the deadline
        client = redis.Redis(port=n.port, password=password)
        while client.cluster("info").get("cluster_state") != "ok":
            assert time.monotonic() < end, "cluster not ok after 30 s"
            time.sleep(0.05)  # polling a condition, bounded by the deadline
        client.close()
    return nodes


def _cluster_ps_json(tmp_path, address, **vol):
    folder = tmp_path / "emb0.model"
    folder.mkdir()
    np.array([3, 7, 11], np.int64).tofile(folder / "key")
    table(3, 4).tofile(folder / "emb_vector")
    data = ps_json({"type": "redis_cluster", "address": address, **vol})
    data["models"][0]["sparse_files"] = ["emb0.model"]
    (tmp_path / "ps.json").write_text(json.dumps(data))
    return tmp_path / "ps.json"


@needs_redis
@pytest.mark.timeout(120)
def test_ps_json_password_reaches_a_real_redis_cluster(tmp_path):
    nodes = _password_cluster(tmp_path / "cluster", "pw-19")
    try:
        address = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        ps = _cluster_ps_json(tmp_path, address, password="pw-19")
        rc, out, err = cli("import", "--config", ps, "--no-progress")
        assert rc == 0 and "3 rows" in out, err
        got = lookup_rows(ps, "t", np.array([7, 3, 4]), backend="cpu")
        assert np.array_equal(got[:2], table(3, 4)[[1, 0]]) and not got[2].any()
        close_all()
        (tmp_path / "ps.json").write_text((tmp_path / "ps.json").read_text().replace('"pw-19"', '"wrong"'))
        with pytest.raises(EmbCacheError):
            lookup_rows(ps, "t", np.array([7]), backend="cpu")
    finally:
        for n in nodes:
            n.stop()


def _redisstore_takes(name: str) -> bool:
    from embcache.tiers.redis_store import RedisStore

    return name in inspect.signature(RedisStore.__init__).parameters


@needs_redis
@pytest.mark.timeout(120)
@pytest.mark.skipif(not _redisstore_takes("username"), reason="RedisStore has no username argument yet "
                                                             "(the redis branch adds it)")
def test_ps_json_acl_user_reaches_a_real_redis_cluster(tmp_path):
    import redis

    nodes = _password_cluster(tmp_path / "cluster", "admin-pw")
    try:
        for n in nodes:  # an ACL user; the default user keeps its password (redis-cli and the bus use it)
            client = redis.Redis(port=n.port, password="admin-pw")
            client.acl_setuser("alice", enabled=True, passwords=["+alice-pw"], keys=["*"], commands=["+@all"])
            client.close()
        address = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        ps = _cluster_ps_json(tmp_path, address, user_name="alice", password="alice-pw")
        rc, out, err = cli("import", "--config", ps, "--no-progress")
        assert rc == 0 and "3 rows" in out, err
        got = lookup_rows(ps, "t", np.array([11]), backend="cpu")
        assert np.array_equal(got[0], table(3, 4)[2])
        close_all()
        (tmp_path / "ps.json").write_text((tmp_path / "ps.json").read_text().replace('"alice"', '"bob"'))
        with pytest.raises(EmbCacheError):
            lookup_rows(ps, "t", np.array([11]), backend="cpu")
    finally:
        for n in nodes:
            n.stop()


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost, made with openssl: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=embcache-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "server.crt", "-days", "2", "-extfile", "san.ext")
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


def _tls_cluster(folder: Path, masters: int = 3):
    """Redis Cluster nodes that speak TLS only (``--port 0 --tls-port``, ``--tls-cluster yes``):
    (processes, ports, CA file)."""
    import time

    import redis

    from .redis_servers import REDIS_SERVER, free_port

    ca, cert, key = _certificates(folder.resolve() / "certs")
    procs, ports = [], []
    try:
        for i in range(masters):
            (folder / f"n{i}").mkdir(parents=True)
            for attempt in range(3):  # another test process (pytest -n) may take the free port first
                port = free_port(cluster=True)
                proc = subprocess.Popen(
                    [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                     "--dir", str(folder.resolve() / f"n{i}"), "--tls-cert-file", str(cert), "--tls-key-file",
                     str(key), "--tls-ca-cert-file", str(ca), "--tls-cluster", "yes", "--tls-auth-clients", "no",
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly",
                     "no", "--logfile", "", "--daemonize", "no", "--protected-mode", "no"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                procs.append(proc)
                log = []
                for line in proc.stdout:  # until the server says it is ready (or exits)
                    log.append(line)
                    if "Ready to accept connections" in line:
                        break
                else:
                    proc.wait()
                    if attempt < 2 and any("already in use" in line for line in log):
                        continue
                    raise RuntimeError(f"TLS redis-server on port {port} did not start:\n{''.join(log)}")
                break
            ports.append(port)
        out = subprocess.run([REDIS_CLI, "--tls", "--cacert", str(ca), "--cluster", "create",
                              *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60, check=False)
        if out.returncode:
            raise RuntimeError(out.stdout + out.stderr)
        end = time.monotonic() + 30
        for port in ports:
            client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca))
            while client.cluster("info").get("cluster_state") != "ok":
                assert time.monotonic() < end, "TLS cluster not ok after 30 s"
                time.sleep(0.05)  # polling a condition, bounded by the deadline
            client.close()
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return procs, ports, ca


@needs_redis
@pytest.mark.timeout(180)
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make certificates")
@pytest.mark.skipif(not _redisstore_takes("tls"), reason="RedisStore has no tls arguments yet "
                                                        "(the redis branch adds them)")
def test_ps_json_enable_tls_reaches_a_real_tls_redis_cluster(tmp_path):
    procs, ports, ca = _tls_cluster(tmp_path / "cluster")
    try:
        address = ",".join(f"127.0.0.1:{p}" for p in ports)
        ps = _cluster_ps_json(tmp_path, address, enable_tls=True, tls_ca_certificate=str(ca))
        rc, out, err = cli("import", "--config", ps, "--no-progress")
        assert rc == 0 and "3 rows" in out, err
        got = lookup_rows(ps, "t", np.array([3, 11]), backend="cpu")
        assert np.array_equal(got, table(3, 4)[[0, 2]])
        close_all()
        data = json.loads(ps.read_text())
        data["volatile_db"]["enable_tls"] = False  # plain text to a TLS-only server: refused, one line
        ps.write_text(json.dumps(data))
        rc, _, err = cli("import", "--config", ps, "--no-progress")
        one_line_error(rc, err)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


# ---- item 18: surgery never overwrites an input config ----

def test_surgery_leaves_the_input_ps_json_byte_for_byte(tmp_path):
    data = {"supportlonglong": True, "volatile_db": {"type": "hash_map", "password": ""},
            "persistent_db": {"type": "rocks_db", "path": "rocks"},
            "models": [{"model": "m", "embedding_table_names": ["W"], "embedding_vecsize_per_table": [8],
                        "dense_file": "dense.model", "gpucacheper": 0.25}]}
    text = json.dumps(data, indent=4) + "\n"
    (tmp_path / "ps.json").write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    values = table(100, 8)
    onnx.save(lookup_model({"W": values}), str(tmp_path / "m.onnx"))
    out = tmp_path / "out"
    out.mkdir()
    rc, stdout, err = cli("surgery", tmp_path / "m.onnx", "-o", out / "s.onnx", "--config", tmp_path / "ps.json",
                          "--no-progress")
    assert rc == 0, err
    assert hashlib.sha256((tmp_path / "ps.json").read_bytes()).hexdigest() == digest
    native = native_config_path(out / "s.onnx")
    assert native == out / "s.embcache.json" and str(native) in stdout
    t = load_config(native).table("W", "m")[1]
    assert t.capacity == 0.25 and t.keys_are_rows and t.rows == 100
    assert load_config(native).resolve(t.store[-1]) == f"rocksdb:{tmp_path / 'rocks' / 'm.W'}"  # rebased
    keys = np.array([[1, 2, 99]])
    assert np.array_equal(SurgeredSession(out / "s.onnx", backend="cpu").run({"idx0": keys})[0], values[keys])
    # a native input config is an input too
    close_all()  # RocksDB lets one process open a table
    before = native.read_bytes()
    rc, _, err = cli("surgery", tmp_path / "m.onnx", "-o", tmp_path / "again.onnx", "--config", native,
                     "--no-progress")
    assert rc == 0, err
    assert native.read_bytes() == before and (tmp_path / "again.embcache.json").exists()


def test_surgery_refuses_to_write_over_its_input(tmp_path):
    onnx.save(lookup_model({"W": table(10, 4)}), str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "s.embcache.json", progress=False)
    before = (tmp_path / "s.embcache.json").read_bytes()
    with pytest.raises(ConfigError, match="over the input config"):
        surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "s.embcache.json", progress=False)
    assert (tmp_path / "s.embcache.json").read_bytes() == before


# ---- items 19, 20, 23: the command line ----

def test_version():
    from embcache import __version__

    rc, out, _ = cli("--version")
    assert rc == 0 and out.strip() == f"embcache-trt {__version__}"


def test_failures_are_one_line_and_debug_gives_the_traceback(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    cases = [("surgery", tmp_path / "junk.onnx", "-o", tmp_path / "s.onnx", "--config", tmp_path / "c.json"),
             ("run", tmp_path / "junk.onnx", "--inputs", tmp_path / "none.npz"),
             ("run", tmp_path / "none.onnx", "--inputs", tmp_path / "none.npz"),
             ("import", "--config", tmp_path / "none.json"),
             ("demo", "--data", tmp_path / "no-such-folder")]
    for args in cases:
        rc, _, err = cli(*args)
        assert rc == 2, (args, err)
        assert one_line_error(rc, err).startswith(f"embcache-trt {args[0]}: ")
    for args in (("surgery",), ("run", "m.onnx"), ("frobnicate",), ("demo", "--rows", "many")):
        rc, _, err = cli(*args)  # usage errors too
        assert rc == 2 and "--help" in one_line_error(rc, err), (args, err)
    rc, _, err = cli("--debug", "import", "--config", tmp_path / "none.json")
    assert rc == 2 and "Traceback" in err and "ConfigError" in err
    rc, _, err = cli("import", "--config", tmp_path / "none.json", "--debug")
    assert rc == 2 and "Traceback" in err


def test_run_with_inputs_that_do_not_fit_is_one_line(surgered):
    folder, *_ = surgered
    np.savez(folder / "bad.npz", wrong=np.zeros((2, 3), np.int64))
    rc, _, err = cli("run", folder / "s.onnx", "--inputs", folder / "bad.npz", "--backend", "cpu")
    assert "--debug" in one_line_error(rc, err)


@pytest.mark.timeout(300)
def test_demo_without_the_criteo_sample_uses_synthetic_inputs(tmp_path):
    rc, out, err = cli("demo", "--rows", "1500", "--backend", "cpu", "--no-progress",
                       env={"EMBCACHE_DATA": str(tmp_path / "nothing-here")})
    assert rc == 0, err
    assert "synthetic" in err and "EMBCACHE_DATA" in err
    assert "synthetic inputs: 1,500 rows" in out and "max abs difference, surgered vs original: 0" in out


def test_every_model_the_project_builds_has_the_oldest_runtimes_ir(tmp_path):
    from benchmarks.trt_table import plugin_path_model
    from trt_plugin.dlrm import build_dlrm, synthetic_inputs

    assert IR_VERSION <= 9  # onnxruntime 1.17 (setup.cfg's oldest) loads IR 9 and below
    _, rows = synthetic_inputs(50)
    built = {"dlrm": build_dlrm(rows, dim=4), "dlrm offsets": build_dlrm(rows, dim=4, offsets=True),
             "dlrm plugin": build_dlrm(rows, dim=4, offsets=True, lookup=("c.json", "embeddings")),
             "benchmark plugin path": plugin_path_model("c.json", 16, 8)}
    onnx.save(built["dlrm"], str(tmp_path / "d.onnx"))
    surgery(tmp_path / "d.onnx", tmp_path / "s.onnx", tmp_path / "c.json", progress=False)
    built["surgered dlrm"] = onnx.load(str(tmp_path / "s.onnx"))
    for name, model in built.items():
        assert model.ir_version == IR_VERSION, name
        assert [o.version for o in model.opset_import if o.domain == ""] == [17], name
    # the benchmark's plugin-path model runs through ONNX Runtime (IR 14 was refused)
    from trt_plugin.config import Config, ModelConfig, TableConfig
    from trt_plugin.tables import write_table

    t = TableConfig("t", 8, ("rocksdb:t",), rows=64, capacity=64, keys_are_rows=True)
    cfg = Config((ModelConfig("m", (t,)),), base=tmp_path)
    path = cfg.save(tmp_path / "bench.json")
    store = open_table_store(cfg, t, create=True)
    write_table(store, table(64, 8), progress=False)
    store.close()
    keys = np.arange(16, dtype=np.int64)
    (got,) = SurgeredSession(plugin_path_model(str(path), 16, 8), backend="cpu").run({"k": keys})
    assert np.array_equal(got, table(64, 8)[keys])


def test_a_missing_extra_is_named_before_any_work(tmp_path):
    # onnxruntime_extensions made unimportable in a real subprocess (sys.modules[name] = None blocks it)
    onnx.save(lookup_model({"W": table(10, 4)}), str(tmp_path / "m.onnx"))
    code = f"""
import sys
sys.modules["onnxruntime_extensions"] = None
from trt_plugin.cli import main
sys.exit(main(["demo", "--workdir", {str(tmp_path / "work")!r}, "--no-progress"]))
"""
    out = python(code)
    line = one_line_error(out.returncode, out.stderr)
    assert "onnxruntime-extensions" in line and "pip install '.[trt]'" in line
    assert not (tmp_path / "work").exists()  # nothing started


def test_out_of_range_keys_in_run_are_a_one_line_warning(surgered):
    folder, *_ = surgered
    np.savez(folder / "far.npz", idx0=np.array([[1, 100, 5000]]))
    rc, out, err = cli("run", folder / "s.onnx", "--inputs", folder / "far.npz", "--backend", "cpu")
    assert rc == 0 and "y0: shape (1, 3, 8)" in out, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "OutOfRangeWarning" in lines[0] and "2 key(s) outside rows 0..99" in lines[0]


def test_every_hps_field_is_listed_as_mapped_refused_or_ignored():
    from trt_plugin import config

    doc = config.__doc__
    for group, prefix in (("_HPS_TOP", ""), ("_HPS_MODEL", ""), ("_HPS_VOLATILE", "volatile_db."),
                          ("_HPS_PERSISTENT", "persistent_db.")):
        for name in getattr(config, group):
            assert f"``{name}``" in doc or f"``{prefix}{name}" in doc, (group, name)


def test_an_engine_moved_with_its_config_finds_it_beside_the_engine(tmp_path):
    """Item 8 for TensorRT engines: the plugin creator is not told which engine it deserializes, so
    run_engine names it (fields.model_file) and a plugin whose recorded config is gone looks beside it."""
    from embcache.errors import ConfigError
    from trt_plugin.fields import current_model_file, locate_config, model_file

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "model.embcache.json").write_text("{}")
    gone = str(tmp_path / "old-place" / "model.embcache.json")
    with pytest.raises(ConfigError, match="does not exist"):
        locate_config(gone, None)
    assert current_model_file() is None
    with model_file(moved / "model.engine"):
        assert locate_config(gone, None) == str(moved / "model.embcache.json")
    assert current_model_file() is None
    with pytest.raises(ConfigError):
        locate_config(gone, None)
