"""Issue 20, item 5: trt_plugin on embcache's public API.

The table registry resolves a (config, model, table) once; ``lookup_rows(out=)`` and the plugin's
``lookup_into`` write rows straight into the caller's buffer through ``Cache.lookup(out=)``; one
write helper (``embcache.imports.write_rows``) behind ``write_table``; HPS's ``hit_rate_threshold``
and ``deployed_device_list`` are mapped or refused, never dropped.
"""
import copy
import json
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embcache.errors import ConfigError, DataFormatError, RowShapeError
from embcache.imports import write_rows
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore
from trt_plugin import config as config_module
from trt_plugin.config import Config, ModelConfig, TableConfig, load_config, parse_config
from trt_plugin.tables import close_all, lookup_rows, open_table_store, table_cache, write_table

pytest.importorskip("rocksdict")

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]
ROWS, DIM = 200, 8


@pytest.fixture(autouse=True)
def _close_caches():
    yield
    close_all()


def values(rows=ROWS, dim=DIM, seed=3):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def make_config(folder, devices=(0,), backend="cpu", dtype="float32"):
    """A saved native config with one row-number table in RocksDB, filled with ``values()``."""
    t = TableConfig("t", DIM, ("rocksdb:t",), rows=ROWS, capacity=64, dtype=dtype, keys_are_rows=True,
                    default_value=-1.0)
    config = Config((ModelConfig("m", (t,), backend=backend, devices=tuple(devices)),), base=folder)
    path = config.save(os.path.join(folder, "c.json"))
    store = open_table_store(config, t, create=True)
    write_table(store, values(), progress=False)
    store.close()
    return path


def expected(keys):
    keys = np.asarray(keys)
    flat = np.where(keys < 0, keys + ROWS, keys)
    rows = values()[np.clip(flat, 0, ROWS - 1)]
    rows[(flat < 0) | (flat >= ROWS)] = -1.0
    return rows


# ---------------------------------------------------------------------- the registry resolves once

def test_the_registry_resolves_a_table_once(tmp_path, monkeypatch):
    path = make_config(tmp_path)
    scans = []
    real = Config.table
    monkeypatch.setattr(Config, "table", lambda self, *a, **k: scans.append(a) or real(self, *a, **k))
    for spelling in (path, str(path)):
        for _ in range(20):
            assert np.array_equal(lookup_rows(spelling, "t", np.array([1, -1, 500])), expected([1, -1, 500]))
    assert len(scans) == 1  # str(path) is the same spelling once converted; no scan per lookup
    os.unlink(path)  # resolved and kept: the process does not read the file again
    assert table_cache(path, "t")[0] is table_cache(str(path), "t")[0]


def test_close_all_forgets_what_was_resolved(tmp_path):
    path = make_config(tmp_path)
    first = table_cache(path, "t")[0]
    close_all()
    again = table_cache(path, "t")[0]
    assert again is not first and np.array_equal(lookup_rows(path, "t", np.array([3])), expected([3]))


# ---------------------------------------------------------------------- lookup_rows(out=)

@pytest.fixture(scope="module")
def shared_config(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("shared"))


@pytest.mark.filterwarnings("ignore::trt_plugin.tables.OutOfRangeWarning")
@given(keys=st.lists(st.integers(-2 * ROWS, 2 * ROWS), min_size=0, max_size=12))
def test_lookup_rows_into_out(shared_config, keys):
    keys = np.array(keys, np.int64).reshape(-1, 1)
    out = np.full((keys.shape[0], 1, DIM), 7, np.float32)
    got = lookup_rows(shared_config, "t", keys, out=out)
    assert got is out and np.array_equal(out[:, 0], expected(keys[:, 0]))
    assert np.array_equal(lookup_rows(shared_config, "t", keys)[:, 0], out[:, 0])


@pytest.mark.parametrize("bad, words", [
    (np.empty((4, DIM), np.float32), "shape"),  # keys.shape + (dim,) is (2, 2, DIM)
    (np.empty((2, 2, 2 * DIM), np.float32)[..., :DIM], "C-contiguous"),
    (np.empty((2, 2, DIM), np.float64), "dtype"),
])
def test_lookup_rows_refuses_an_out_that_does_not_fit_before_any_work(tmp_path, bad, words):
    path = make_config(tmp_path)
    cache, _ = table_cache(path, "t")
    before = cache.stats.as_dict()
    with pytest.raises((RowShapeError, TypeError), match=words):
        lookup_rows(path, "t", np.array([[1, 2], [3, 4]]), out=bad)
    assert cache.stats.as_dict() == before and cache.clock == 0


# ---------------------------------------------------------------------- one write helper

def test_write_rows_is_the_one_chunked_writer(tmp_path):
    store = HostStore(DIM, "float16")
    done = []
    assert write_rows(store, None, values(10), chunk_rows=3, progress=False, on_chunk=done.append) == 10
    assert done == [3, 6, 9, 10]
    rows, found = store.get_many(np.arange(10))
    assert found.all() and np.array_equal(rows, values(10).astype(np.float16))
    keys = np.array([2**64 - 5, 7], np.uint64)  # uint64 keys are taken as their bits, as the imports do
    write_rows(store, keys, values(2, seed=9), progress=False)
    assert store.get_many(np.array([-5, 7]))[1].all()
    other = HostStore(DIM)
    write_table(other, values(10), chunk=4, progress=False)
    assert other.get_many(np.arange(10))[0].tobytes() == values(10).tobytes()


@pytest.mark.parametrize("keys, rows, words", [
    (np.array([1, -2**63]), values(2), "reserved"),
    (np.array([1, 2, 3]), values(2), "length 2"),
    (np.array([1.0, 2.0]), values(2), "integer"),
    (None, values(2, dim=DIM + 1), r"\(n, 8\)"),
    (None, np.ones((2, DIM), np.int32), "floating"),
    (np.array([1, 2]), np.array([[np.nan] * DIM, [0.0] * DIM]), "NaN"),
])
def test_write_rows_checks_everything_before_the_first_write(keys, rows, words):
    store = HostStore(DIM)
    with pytest.raises(DataFormatError, match=words):
        write_rows(store, keys, rows, chunk_rows=1, progress=False, reject_nan=True)
    assert len(store) == 0


# ---------------------------------------------------------------------- HPS fields: mapped or refused

PS = {"persistent_db": {"type": "rocks_db", "path": "rocks"},
      "models": [{"model": "m", "embedding_table_names": ["t"], "embedding_vecsize_per_table": [DIM]}]}


@pytest.mark.parametrize("threshold", [None, 0.0, 0.5, 0.9, 1, 1.0])
@pytest.mark.parametrize("spelling", ["hps", "native"])
def test_hit_rate_threshold_is_hps_deferred_insertion(tmp_path, threshold, spelling):
    """ps.json's hit_rate_threshold becomes the tables' HitRateDeferred admission (issue 21 item 3)."""
    from embcache.policies import HitRateDeferred

    if spelling == "hps":
        data = copy.deepcopy(PS)
        if threshold is not None:
            data["models"][0]["hit_rate_threshold"] = threshold
    else:
        data = {"models": [{"name": "m", "tables": [{"name": "t", "dim": DIM, "store": "rocksdb:t"}]}]}
        if threshold is not None:
            data["models"][0]["hit_rate_threshold"] = threshold
    model = parse_config(data, tmp_path).models[0]
    admission = model.admission_of(model.tables[0])
    if threshold is None:
        assert admission == "always"
    else:
        assert admission == HitRateDeferred(float(threshold))


def test_a_threshold_beside_another_admission_is_refused(tmp_path):
    data = {"models": [{"name": "m", "hit_rate_threshold": 0.5,
                        "tables": [{"name": "t", "dim": DIM, "store": "rocksdb:t", "admission": "min_frequency"}]}]}
    with pytest.raises(ConfigError, match="hit_rate_threshold 0.5 and table 't'"):
        parse_config(data, tmp_path)


@pytest.mark.parametrize("value", [-0.1, 1.5, True, "0.5"])
def test_a_threshold_that_is_no_hit_rate_is_refused(tmp_path, value):
    data = copy.deepcopy(PS)
    data["models"][0]["hit_rate_threshold"] = value
    with pytest.raises(ConfigError, match="hit_rate_threshold must be a hit rate"):
        parse_config(data, tmp_path)


def test_deployed_device_list_is_read_into_the_devices(tmp_path):
    data = copy.deepcopy(PS)
    data["models"][0]["deployed_device_list"] = [1, 0]
    (tmp_path / "ps.json").write_text(json.dumps(data))
    assert load_config(tmp_path / "ps.json").models[0].devices == (1, 0)
    assert "deployed_device_list" in config_module.__doc__ and "hit_rate_threshold" in config_module.__doc__


def test_the_cpu_backend_has_one_cache_whatever_the_devices(tmp_path):
    path = make_config(tmp_path, devices=(3, 5))
    cache, _ = table_cache(path, "t", backend="cpu")
    assert cache.device is None
    assert table_cache(path, "t", backend="cpu", device=5)[0] is cache
    assert np.array_equal(lookup_rows(path, "t", np.array([4])), expected([4]))


# ---------------------------------------------------------------------- GPU

@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_lookup_from_a_device_not_deployed_is_refused_naming_the_field(tmp_path):
    import cupy

    here = cupy.cuda.Device().id
    path = make_config(tmp_path, devices=(here + 1,), backend="gpu")
    with pytest.raises(ConfigError, match=r"deployed_device_list.*from device"):
        lookup_rows(path, "t", cupy.asarray([1, 2]))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_gpu_caches_live_on_their_device_and_auto_shares_the_gpu_cache(tmp_path):
    import cupy

    here = cupy.cuda.Device().id
    path = make_config(tmp_path, devices=(here,), backend="auto")
    cache, _ = table_cache(path, "t")
    assert cache.device == here and cache.xp is cupy
    assert table_cache(path, "t", backend="gpu")[0] is cache
    got = lookup_rows(path, "t", cupy.asarray([[1, -1], [900, 5]]))
    assert isinstance(got, cupy.ndarray) and np.array_equal(got.get(), expected([[1, -1], [900, 5]]))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_lookup_into_writes_straight_into_the_output(tmp_path):
    import cupy

    from trt_plugin.fields import LookupFields
    from trt_plugin.tables import lookup_into, out_of_range

    path = make_config(tmp_path, backend="gpu")
    fields = LookupFields(str(path), "t", DIM, "m")
    keys = cupy.asarray([[1, 2, -3], [700, 4, 5]], cupy.int32)
    stream = cupy.cuda.Stream(non_blocking=True)
    for dtype in (cupy.float32, cupy.float16):  # float16: TensorRT chose the other precision, a cast
        out = cupy.full((2, 3, DIM), cupy.nan, dtype)
        ptr = out.data.ptr
        cupy.cuda.Device().synchronize()  # keys and the NaN fill (legacy stream): stream does not wait for them
        with stream:
            lookup_into(fields, keys, out, stream=stream)
        stream.synchronize()
        assert out.data.ptr == ptr
        assert np.array_equal(out.get(), expected(keys.get()).astype(dtype))
    with stream:
        same = lookup_rows(path, "t", keys, stream=stream, backend="gpu",
                           out=cupy.empty((2, 3, DIM), cupy.float32))
    stream.synchronize()
    assert np.array_equal(same.get(), expected(keys.get()))
    with pytest.warns(UserWarning):
        assert out_of_range(path, "t") == 3
