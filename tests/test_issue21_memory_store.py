"""Issue 21, item 4: a plugin table in pinned host memory (``memory:pinned``), whose lookups with misses
never wait for the host, so that the plugin's enqueue is legal inside a CUDA graph.

The config keeps the spec as written (it is no path); on the GPU the table's cache reads the pinned
store in place, and a lookup with misses through the plugin's ``lookup_into`` is captured in a graph,
replayed, and equals the table's rows (Gather's index rules included).
"""
import numpy as np
import pytest

from embcache.kernels.gpu import gpu_available
from trt_plugin.config import MEMORY_STORES, Config, ModelConfig, TableConfig
from trt_plugin.tables import close_all, table_cache, write_table

ROWS, DIM = 300, 8


@pytest.fixture(autouse=True)
def _close_caches():
    yield
    close_all()


def config_at(tmp_path, spec: str, graphs: bool = True) -> str:
    t = TableConfig("t", DIM, (spec,), rows=ROWS, capacity=64, keys_are_rows=True, default_value=-1.0)
    model = ModelConfig("m", (t,), backend="gpu", graphs=graphs)
    return str(Config((model,), base=tmp_path).save(tmp_path / "c.json"))


def expected_rows(table, batch):
    """Gather's index rules: negative row numbers wrap, others outside the table get the default -1."""
    wrapped = np.where(batch < 0, batch + ROWS, batch)
    inside = (wrapped >= 0) & (wrapped < ROWS)
    return np.where(inside[:, None], table[np.clip(wrapped, 0, ROWS - 1)], np.float32(-1.0)).astype(np.float32)


@pytest.mark.parametrize("graphs", [True, False])
def test_the_graphs_field_round_trips_and_defaults_to_on(tmp_path, graphs):
    from trt_plugin.config import load_config

    assert load_config(config_at(tmp_path, "memory:pinned", graphs)).models[0].graphs is graphs
    assert ModelConfig("m", ()).graphs is True


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_graphs_field_that_is_no_flag_is_refused(tmp_path, value):
    from embcache.errors import ConfigError
    from trt_plugin.config import parse_config

    data = {"models": [{"name": "m", "graphs": value, "tables": [{"name": "t", "dim": DIM, "store": "memory"}]}]}
    with pytest.raises(ConfigError, match=r"models\[0\]\.graphs: expected true or false"):
        parse_config(data, tmp_path)


@pytest.mark.parametrize("spec", MEMORY_STORES)
def test_memory_specs_are_no_paths(tmp_path, spec):
    """A memory spec is not made a path against the config's folder, on resolve and on save."""
    config = Config((ModelConfig("m", (TableConfig("t", DIM, (spec,)),)),), base=tmp_path)
    assert config.resolve(spec) == spec
    assert config.to_dict(base=tmp_path / "elsewhere")["models"][0]["tables"][0]["store"] == spec


def test_a_model_made_in_python_with_a_graphs_that_is_no_flag_is_refused():
    from embcache.errors import ConfigError

    with pytest.raises(ConfigError, match="model 'm': graphs: expected true or false, got 'no'"):
        ModelConfig("m", (), graphs="no")


def test_a_ps_json_model_has_no_graphs_field(tmp_path):
    """HPS's ps.json has no such field: it stays an unknown one there, refused by name (the default holds)."""
    from embcache.errors import ConfigError
    from trt_plugin.config import parse_config

    data = {"models": [{"model": "m", "embedding_table_names": ["t"], "embedding_vecsize_per_table": [DIM],
                        "graphs": False}], "persistent_db": {"type": "rocks_db", "path": "rocks"}}
    with pytest.raises(ConfigError, match="graphs"):
        parse_config(data, tmp_path)
    del data["models"][0]["graphs"]
    assert parse_config(data, tmp_path).models[0].graphs is True


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_pinned_memory_table_is_looked_up_in_a_cuda_graph_through_the_plugin(tmp_path):
    import cupy

    from trt_plugin.fields import LookupFields
    from trt_plugin.tables import lookup_into

    path = config_at(tmp_path, "memory:pinned")
    cache, _ = table_cache(path, "t", backend="gpu")
    assert cache.tier.pinned
    table = np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32)
    write_table(cache.tier, table, progress=False)
    fields = LookupFields(path, "t", DIM, "m")
    n = 96
    keys = cupy.zeros(n, cupy.int32)  # int32 row numbers, as TensorRT gives a Gather's indices
    out = cupy.empty((n, DIM), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.Device().synchronize()  # keys and out, made on the legacy stream, before stream reads them
    lookup_into(fields, keys, out, stream=stream)  # the scratch, made outside the capture
    stream.synchronize()
    cupy.cuda.Device().synchronize()
    with stream:
        stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeGlobal)
        lookup_into(fields, keys, out, stream=stream)
        graph = stream.end_capture()
    rng = np.random.default_rng(1)
    for _ in range(4):  # misses, hits, negative and out-of-range row numbers
        batch = rng.integers(-ROWS - 5, ROWS + 5, n).astype(np.int32)
        keys.set(batch, stream=stream)
        graph.launch(stream)
        stream.synchronize()
        assert out.get().tobytes() == expected_rows(table, batch).tobytes()
    assert cache.stats.misses > 0 and len(cache) > 0


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_the_plugin_replays_repeated_enqueues_from_graphs_unless_told_not_to(tmp_path):
    """An engine's enqueue passes the same output buffer each time: from the second call on, the
    table's cache replays a graph of the lookup; the rows, stats and contents are those of a config
    with ``graphs`` false, which never makes one."""
    import cupy

    from trt_plugin.fields import LookupFields
    from trt_plugin.tables import lookup_into

    table = np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32)
    n, seen = 80, {}
    for graphs in (True, False):
        folder = tmp_path / str(graphs)
        folder.mkdir()
        path = config_at(folder, "memory:pinned", graphs)
        cache, _ = table_cache(path, "t", backend="gpu")
        write_table(cache.tier, table, progress=False)
        fields = LookupFields(path, "t", DIM, "m")
        out = cupy.empty((n, DIM), cupy.float32)
        stream = cupy.cuda.Stream(non_blocking=True)
        rng = np.random.default_rng(2)
        for _ in range(5):
            batch = rng.integers(-ROWS - 5, ROWS + 5, n).astype(np.int32)
            keys = cupy.asarray(batch)
            cupy.cuda.Device().synchronize()
            lookup_into(fields, keys, out, stream=stream)
            stream.synchronize()
            assert out.get().tobytes() == expected_rows(table, batch).tobytes()
        assert len(cache._backend._graphs) == (1 if graphs else 0)
        s = cache.stats
        seen[graphs] = ((s.hits, s.misses, s.invalid, s.insertions, s.evictions), cache.export()[0].tolist(), cache.export()[2].tolist())
        assert s.misses > 0 and s.invalid > 0
        close_all()
    assert seen[True] == seen[False]
