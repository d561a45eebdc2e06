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


def config_at(tmp_path, spec: str) -> str:
    t = TableConfig("t", DIM, (spec,), rows=ROWS, capacity=64, keys_are_rows=True, default_value=-1.0)
    return str(Config((ModelConfig("m", (t,), backend="gpu"),), base=tmp_path).save(tmp_path / "c.json"))


@pytest.mark.parametrize("spec", MEMORY_STORES)
def test_memory_specs_are_no_paths(tmp_path, spec):
    """A memory spec is not made a path against the config's folder, on resolve and on save."""
    config = Config((ModelConfig("m", (TableConfig("t", DIM, (spec,)),)),), base=tmp_path)
    assert config.resolve(spec) == spec
    assert config.to_dict(base=tmp_path / "elsewhere")["models"][0]["tables"][0]["store"] == spec


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
        wrapped = np.where(batch < 0, batch + ROWS, batch)
        inside = (wrapped >= 0) & (wrapped < ROWS)
        expected = np.where(inside[:, None], table[np.clip(wrapped, 0, ROWS - 1)], np.float32(-1.0))
        assert out.get().tobytes() == expected.astype(np.float32).tobytes()
    assert cache.stats.misses > 0 and len(cache) > 0
