"""trt_plugin.torch_runner: the serving runner where TensorRT is absent.

Without PyTorch (the ``serve`` extra) the module skips.  On the CPU (torch's CPU build, the CPU
backend) the runner's outputs are checked against ONNX Runtime; on a GPU (``-m gpu``) a captured and
replayed forward with misses against an eager one and a CPU-backend reference (rows, cache
contents, statistics), and the pipelined run against the sequential one.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx_graphsurgeon")
pytest.importorskip("onnxruntime_extensions")
torch = pytest.importorskip("torch", reason="needs PyTorch (pip install '.[serve]')")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import embcache  # noqa: E402
from embcache.errors import ConfigError  # noqa: E402
from embcache.kernels.gpu import gpu_available  # noqa: E402
from embcache.tiers import HostStore  # noqa: E402
from trt_plugin.dlrm import build_dlrm, synthetic_inputs  # noqa: E402
from trt_plugin.fields import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION, new_model  # noqa: E402
from trt_plugin.surgery import surgery  # noqa: E402
from trt_plugin.tables import close_all  # noqa: E402
from trt_plugin.torch_runner import CaptureFallbackWarning, TorchGraphRunner  # noqa: E402

needs_gpu = pytest.mark.skipif(not (gpu_available() and torch.cuda.is_available()),
                               reason="needs a CUDA GPU, CuPy and a CUDA build of PyTorch")


@pytest.fixture(autouse=True)
def _close_caches():
    yield
    close_all()


def host(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def ort_run(model, feeds) -> list:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


# ---- on the CPU: the operators against ONNX Runtime ----

@pytest.mark.parametrize("offsets", [False, True])
def test_the_surgered_dlrm_runs_like_the_original_in_onnxruntime(tmp_path, offsets):
    feeds, table_rows = synthetic_inputs(400, seed=3)
    model = build_dlrm(table_rows, dim=8, offsets=offsets, seed=1)
    onnx.save(model, str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "cfg.json", progress=False)
    runner = TorchGraphRunner(tmp_path / "s.onnx", device="cpu")
    got = runner.run(feeds)
    np.testing.assert_allclose(host(got[0]), ort_run(model, feeds)[0], rtol=1e-5, atol=1e-6)
    assert runner.output_names == ["probability"] and runner.input_names == ["dense", "categorical"]


def _ops_model():
    """Every operator of the runner but Sigmoid/Relu/MatMul (the DLRM has those), with negative
    constant Gather indices, a Gemm with transB, alpha and beta, and old-style attribute axes."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(6).astype(np.float32), "c"),
             numpy_helper.from_array(np.array([2, 4], np.int64), "sizes"),
             numpy_helper.from_array(np.array([-1, 0, -2], np.int64), "pick"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array([-1], np.int64), "last"),
             numpy_helper.from_array(np.array([0, 3, 1], np.int64), "shape")]
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["g"], transB=1, alpha=0.5, beta=2.0),  # (B, 6)
             helper.make_node("Split", ["g", "sizes"], ["s0", "s1"], axis=1),  # (B, 2), (B, 4)
             helper.make_node("Gather", ["s1", "pick"], ["p"], axis=1),  # (B, 3)
             helper.make_node("Mul", ["p", "p"], ["pp"]),
             helper.make_node("Unsqueeze", ["pp", "ax1"], ["u"]),  # (B, 1, 3)
             helper.make_node("Transpose", ["u"], ["t"], perm=[0, 2, 1]),  # (B, 3, 1)
             helper.make_node("Squeeze", ["t", "last"], ["sq"]),  # a negative axis: (B, 3)
             helper.make_node("Reshape", ["sq", "shape"], ["r"]),  # (B, 3, 1): 0 keeps B
             helper.make_node("Flatten", ["r"], ["f"], axis=1),  # (B, 3)
             helper.make_node("Concat", ["f", "s0"], ["cat"], axis=1),  # (B, 5)
             helper.make_node("Cast", ["cat"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_every_operator_matches_onnxruntime():
    model = _ops_model()
    onnx.checker.check_model(model)
    feeds = {"x": np.random.default_rng(1).standard_normal((7, 4)).astype(np.float32)}
    got = TorchGraphRunner(model, device="cpu").run(feeds)
    np.testing.assert_allclose(host(got[0]), ort_run(model, feeds)[0], rtol=1e-3, atol=1e-3)  # through fp16


def test_an_operator_it_does_not_have_is_an_error_naming_it():
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    with pytest.raises(ConfigError, match="Softmax.*'sm'"):
        TorchGraphRunner(helper.make_model(graph), device="cpu")


def _lookup_model(key_type=TensorProto.INT32, dim=4):
    """keys (B, 3) -> one EmbCacheLookup (config '(test)') -> rows (B, 3, dim)."""
    node = helper.make_node(OP_TYPE, ["k"], ["r"], name="lk", config="(test)", table="t", model="m", dim=dim,
                            default_value=0.0, plugin_version=PLUGIN_VERSION, plugin_namespace=PLUGIN_NAMESPACE)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("k", key_type, ["B", 3])],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["B", 3, dim])])
    return new_model(graph)


def _cache(backend, dim=4, rows=50, capacity=16, pinned=False, seed=0):
    store = HostStore(dim, "float32", pinned=pinned)
    store.put_many(np.arange(rows, dtype=np.int64),
                   np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32))
    return embcache.Cache(capacity, dim, "lfu", backend=backend, tier=store), store


def test_an_injected_lookup_gets_int64_keys_and_a_preallocated_out():
    cache, store = _cache("cpu")
    seen = []

    def lookup(fields, keys, out, stream):
        seen.append((fields.table, fields.dim, keys.dtype, keys.shape, out.dtype, out.shape, stream))
        cache.lookup(keys, out=out)

    runner = TorchGraphRunner(_lookup_model(), lookup=lookup, device="cpu")
    keys = np.array([[3, 1, 3], [49, 0, 7]], np.int32)
    got = runner.run({"k": keys})
    assert seen == [("t", 4, np.int64, (6,), np.float32, (6, 4), None)]
    rows, _ = store.get_many(keys.reshape(-1).astype(np.int64))
    assert np.array_equal(host(got[0]), rows.reshape(2, 3, 4))
    assert cache.stats.lookups == 6
    store.close()


# batches of (rows, key dtype, seed): keys 0..59 of a 50-row table (duplicates, absent keys), empty batches
key_batches = st.lists(st.tuples(st.integers(0, 6), st.sampled_from([np.int32, np.int64]), st.integers(0, 2**31 - 1)),
                       min_size=1, max_size=6)


def _feeds(batches):
    return [{"k": np.random.default_rng(seed).integers(0, 60, (b, 3)).astype(dtype)} for b, dtype, seed in batches]


@given(batches=key_batches, policy=st.sampled_from(["lru", "lfu", "fifo"]))
def test_the_runners_lookups_are_direct_cache_lookups(batches, policy):
    """On the CPU: every batch's rows and the cache's statistics as direct ``Cache.lookup`` calls give them."""
    stores = [HostStore(4, "float32") for _ in range(2)]
    rows = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    for store in stores:
        store.put_many(np.arange(50, dtype=np.int64), rows)
    through, direct = (embcache.Cache(16, 4, policy, backend="cpu", tier=store, default=-1.0) for store in stores)
    runner = TorchGraphRunner(_lookup_model(), device="cpu", lookup=lambda f, k, o, s: through.lookup(k, out=o))
    for feeds in _feeds(batches):
        got = host(runner.run(feeds)[0])
        want = direct.lookup(feeds["k"].reshape(-1).astype(np.int64))
        assert got.shape == feeds["k"].shape + (4,) and got.tobytes() == want.reshape(got.shape).tobytes()
    assert through.stats.as_dict() == direct.stats.as_dict() and through.clock == direct.clock
    for store in stores:
        store.close()


def test_on_the_cpu_capture_falls_back_with_a_warning_and_pipelined_is_sequential():
    caches = [_cache("cpu") for _ in range(2)]
    runners = [TorchGraphRunner(_lookup_model(TensorProto.INT64), device="cpu",
                                lookup=lambda f, k, o, s, c=c: c.lookup(k, out=o)) for c, _ in caches]
    rng = np.random.default_rng(2)
    batches = [{"k": rng.integers(0, 60, (5, 3))} for _ in range(4)]  # keys >= 50: absent, default rows
    with pytest.warns(CaptureFallbackWarning, match="CUDA graphs need a CUDA device"):
        first = runners[0].capture(batches[0])
    replayed = [first] + [runners[0].replay(b) for b in batches[1:]]
    piped = runners[1].pipelined(batches)
    for a, b in zip(replayed, piped):
        assert np.array_equal(host(a[0]), host(b[0]))
    assert caches[0][0].stats.as_dict() == caches[1][0].stats.as_dict()
    assert runners[0].captured_signatures == []
    for _, store in caches:
        store.close()


def test_a_missing_input_is_an_error_naming_the_inputs():
    with pytest.raises(ConfigError, match=r"missing model inputs \['k'\]"):
        TorchGraphRunner(_lookup_model(), device="cpu", lookup=lambda *a: None).run({})


def test_the_run_command_takes_the_torch_runner(tmp_path, capsys):
    from trt_plugin.cli import main

    feeds, table_rows = synthetic_inputs(50, seed=6)
    onnx.save(build_dlrm(table_rows, dim=8, offsets=True), str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "cfg.json", progress=False)
    np.savez(tmp_path / "in.npz", **feeds)
    for runner in ("torch", "onnxruntime"):
        assert main(["run", str(tmp_path / "s.onnx"), "--inputs", str(tmp_path / "in.npz"), "--runner", runner,
                     "--backend", "cpu", "--out", str(tmp_path / f"{runner}.npz")]) == 0
    with np.load(tmp_path / "torch.npz") as a, np.load(tmp_path / "onnxruntime.npz") as b:
        np.testing.assert_allclose(a["probability"], b["probability"], rtol=1e-5, atol=1e-6)
    assert "probability: shape (50, 1) float32" in capsys.readouterr().out


# ---- on the GPU: captured and pipelined against eager and the CPU backend ----

def _dlrm_with_rows(table_rows, dim):
    """The benchmark's DLRM (one lookup over the concatenated tables), its lookup's rows an output too."""
    model = build_dlrm(table_rows, dim=dim, offsets=True, lookup=("(test)", "emb"), seed=4)
    model.graph.output.append(helper.make_tensor_value_info("emb.all", TensorProto.FLOAT, None))
    return model


def _dlrm_caches(table_rows, dim, backends, capacity=600):
    rows = int(sum(table_rows))
    values = np.random.default_rng(5).standard_normal((rows, dim)).astype(np.float32)
    out = []
    for backend in backends:
        store = HostStore(dim, "float32", initial_rows=rows, pinned=backend == "gpu")
        store.put_many(np.arange(rows, dtype=np.int64), values)
        out.append((embcache.Cache(capacity, dim, "lfu", backend=backend, tier=store), store))
    return out


def _runner(model, cache, device, tf32=False):
    return TorchGraphRunner(model, device=device, tf32=tf32,
                            lookup=lambda f, k, o, s: cache.lookup(k, out=o, stream=s))


def _batches(n, sizes, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        feeds, _ = synthetic_inputs(sizes[i % len(sizes)], seed=int(rng.integers(1 << 30)))
        out.append(feeds)
    return out


def _same_cache(a, b):
    """Same contents (keys, rows bit for bit, scores: export is ascending by key, on the host) and stats."""
    (ka, ra, sa), (kb, rb, sb) = a.export(), b.export()
    assert ka.tolist() == kb.tolist() and sa.tolist() == sb.tolist() and ra.tobytes() == rb.tobytes()
    assert a.stats.as_dict() == b.stats.as_dict() and a.clock == b.clock


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("sizes", [(96,), (64, 200)])
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_a_captured_forward_with_misses_equals_eager_and_the_cpu_backend(sizes):
    _, table_rows = synthetic_inputs(10)
    dim = 16
    model = _dlrm_with_rows(table_rows, dim)
    (graphed, s1), (eager, s2), (cpu, s3) = _dlrm_caches(table_rows, dim, ("gpu", "gpu", "cpu"))
    captured, plain, reference = (_runner(model, graphed, "cuda"), _runner(model, eager, "cuda"),
                                  _runner(model, cpu, "cpu"))
    batches = _batches(6, sizes, seed=8)
    for i, feeds in enumerate(batches):
        got = captured.capture(feeds) if i < len(sizes) else captured.replay(feeds)
        got = [host(t) for t in got]
        want = [host(t) for t in plain.run(feeds)]
        ref = [host(t) for t in reference.run(feeds)]
        assert np.array_equal(got[1], ref[1]) and np.array_equal(want[1], ref[1])  # rows, bit for bit
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-5)
        assert graphed.stats.as_dict() == cpu.stats.as_dict(), f"batch {i}"
    assert len(captured.captured_signatures) == len(sizes)
    assert cpu.stats.misses > 0 and cpu.stats.evictions > 0 and cpu.stats.hits > 0
    _same_cache(graphed, cpu)
    _same_cache(eager, cpu)
    for store in (s1, s2, s3):
        store.close()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_the_pipelined_run_equals_the_sequential_one():
    _, table_rows = synthetic_inputs(10)
    dim = 16
    model = _dlrm_with_rows(table_rows, dim)
    (piped_cache, s1), (seq_cache, s2) = _dlrm_caches(table_rows, dim, ("gpu", "gpu"))
    piped, sequential = _runner(model, piped_cache, "cuda"), _runner(model, seq_cache, "cuda")
    batches = _batches(9, (128,), seed=9) + _batches(3, (40,), seed=10)  # two shapes, the second short
    want = [[host(t) for t in sequential.run(feeds)] for feeds in batches]
    got = [[host(t) for t in outs] for outs in piped.pipelined(batches)]
    for i, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g[1], w[1]), f"rows of batch {i}"
        np.testing.assert_allclose(g[0], w[0], rtol=1e-5, atol=1e-6)
    _same_cache(piped_cache, seq_cache)
    again = [[host(t) for t in outs] for outs in piped.pipelined(batches[:4])]  # the captured sets again
    want = [[host(t) for t in sequential.run(feeds)] for feeds in batches[:4]]
    assert all(np.array_equal(g[1], w[1]) for g, w in zip(again, want))
    _same_cache(piped_cache, seq_cache)
    s1.close()
    s2.close()


@pytest.mark.gpu
@needs_gpu
@settings(max_examples=15)
@given(batches=key_batches, policy=st.sampled_from(["lru", "lfu", "fifo"]), pipelined=st.booleans())
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_captured_and_pipelined_lookups_equal_the_cpu_backend(batches, policy, pipelined):
    """Replayed (or pipelined) lookups with misses, duplicates, absent keys and empty batches: rows bit for bit,
    cache contents and statistics as the CPU backend's."""
    rows = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    caches = []
    for backend in ("gpu", "cpu"):
        store = HostStore(4, "float32", pinned=backend == "gpu")
        store.put_many(np.arange(50, dtype=np.int64), rows)
        caches.append((embcache.Cache(16, 4, policy, backend=backend, tier=store, default=-1.0), store))
    (gpu, s1), (cpu, s2) = caches
    graphed = TorchGraphRunner(_lookup_model(), lookup=lambda f, k, o, s: gpu.lookup(k, out=o, stream=s))
    reference = TorchGraphRunner(_lookup_model(), device="cpu", lookup=lambda f, k, o, s: cpu.lookup(k, out=o))
    feeds = _feeds(batches)
    got = graphed.pipelined(feeds) if pipelined else [[t.clone() for t in graphed.replay(f)] for f in feeds]
    for g, f in zip(got, feeds):
        assert host(g[0]).tobytes() == host(reference.run(f)[0]).tobytes()
    _same_cache(gpu, cpu)
    s1.close()
    s2.close()


def _pinned_runner(key_type):
    """(rows, store, runner): 50 rows of dim 4 in a pinned store, a 64-row LRU GPU cache (default -1) over it,
    and a runner of the one-lookup model with keys of ``key_type``, its lookup stream-ordered."""
    rows = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    store = HostStore(4, "float32", pinned=True)
    store.put_many(np.arange(50, dtype=np.int64), rows)
    cache = embcache.Cache(64, 4, "lru", backend="gpu", tier=store, default=-1.0)
    return rows, store, TorchGraphRunner(_lookup_model(key_type),
                                         lookup=lambda f, k, o, s: cache.lookup(k, out=o, stream=s))


def _rows_of(rows, keys):
    """The rows a lookup of ``keys`` gives from _pinned_runner's store (keys 50 and up: the default)."""
    return np.where((keys < 50)[..., None], rows[np.minimum(keys, 49)], np.float32(-1.0)).astype(np.float32)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_replayed_feeds_of_every_form_reach_the_graph_as_they_are():
    """Feeds given as contiguous CUDA tensors (copied by cudaMemcpyAsync), as strided views of them and as
    NumPy arrays (both copied by torch) replay to the rows an eager run of the same keys gives, bit for bit."""
    import torch

    rows, store, runner = _pinned_runner(TensorProto.INT64)
    rng = np.random.default_rng(5)
    runner.capture({"k": rng.integers(0, 60, (8, 3)).astype(np.int64)})
    for i in range(12):
        keys = rng.integers(0, 60, (8, 3)).astype(np.int64)
        wide = torch.as_tensor(np.repeat(keys, 2, axis=1), device="cuda")  # every other column: a strided view
        feed = [torch.as_tensor(keys, device="cuda"), wide[:, ::2], keys][i % 3]
        assert isinstance(feed, np.ndarray) or feed.is_contiguous() == (i % 3 == 0)
        got = host(runner.replay({"k": feed})[0])
        assert got.tobytes() == _rows_of(rows, keys).tobytes(), f"feed form {i % 3}"
    assert len(runner.captured_signatures) == 1  # every form replayed the one graph
    store.close()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_the_key_buffer_a_graph_copies_into_lives_as_long_as_the_graph():
    """int32 keys are cast into a buffer of the lookup's own, which the graph writes at every replay: the buffer
    stays the capture's, so memory allocated after the capture (on the stream the warm-up allocated it on) is
    never written by a replay, and the replayed rows are the keys' rows."""
    rows, store, runner = _pinned_runner(TensorProto.INT32)
    rng = np.random.default_rng(9)
    runner.capture({"k": rng.integers(0, 60, (64, 3)).astype(np.int32)})
    with torch.cuda.stream(runner._side):  # where the warm-up made the buffer: a freed one is reused there first
        sentinels = [torch.full((64 * 3,), -7, dtype=torch.int64, device="cuda") for _ in range(8)]
    torch.cuda.synchronize()
    for _ in range(4):
        keys = rng.integers(0, 60, (64, 3)).astype(np.int32)
        got = host(runner.replay({"k": keys})[0])
        assert got.tobytes() == _rows_of(rows, keys).tobytes()
    torch.cuda.synchronize()
    assert all(bool((t == -7).all()) for t in sentinels), "a replay wrote into memory allocated after its capture"
    store.close()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
@pytest.mark.parametrize("through", ["cudaGraphLaunch", "CUDAGraph.replay"])
def test_a_replay_launched_either_way_gives_the_keys_rows(monkeypatch, through):
    """A replay is one cudaGraphLaunch of the captured executable where torch exposes it (and then never
    calls ``CUDAGraph.replay``), or torch's replay where it does not; both copy the feed and run the graph on
    the caller's current stream: here a side stream that is still busy (a sleep) when it writes the feed, so a
    copy or launch on any other stream would read the stale keys and give their rows."""
    from trt_plugin import torch_runner

    rows, store, runner = _pinned_runner(TensorProto.INT64)
    rng = np.random.default_rng(3)
    runner.capture({"k": torch.as_tensor(rng.integers(0, 60, (16, 3)), device="cuda")})
    captured = runner._graphs[runner._signature({"k": torch.zeros((16, 3), dtype=torch.int64, device="cuda")})]
    replays = []
    if through == "cudaGraphLaunch":
        if not torch_runner._executable(captured.graphs[0]):
            pytest.skip("this torch does not expose the executable graph (raw_cuda_graph_exec)")

        def refuse(self):
            raise AssertionError("the replay went through CUDAGraph.replay")
        monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", refuse)
    else:
        monkeypatch.setattr(torch_runner, "_executable", lambda graph: 0)
        replay = torch.cuda.CUDAGraph.replay

        def counted(self):
            replays.append(1)
            return replay(self)
        monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", counted)
    stream = torch.cuda.Stream()
    for _ in range(6):
        keys = rng.integers(0, 50, (16, 3))
        fresh = torch.as_tensor(keys, device="cuda")
        feed = torch.full((16, 3), 59, dtype=torch.int64, device="cuda")  # stale: key 59 gets the default row
        torch.cuda.synchronize()
        with torch.cuda.stream(stream):
            torch.cuda._sleep(10**7)  # ~5 ms of GPU time before the feed holds its keys
            feed.copy_(fresh)
            got = runner.replay({"k": feed})[0].clone()
        stream.synchronize()
        assert host(got).tobytes() == _rows_of(rows, keys).tobytes()
    assert (captured._execs[0] != 0) == (through == "cudaGraphLaunch")
    assert len(replays) == (6 if through == "CUDAGraph.replay" else 0)
    store.close()


def _head(runner, shape=(16, 3)):
    """The input copy's head ([node, shadow, reads the shadow]) of the replay capture of ``shape``'s keys,
    or a skip where this torch or its CUDA runtime gives none."""
    from trt_plugin import torch_runner

    captured = runner._graphs[runner._signature({"k": torch.zeros(shape, dtype=torch.int64, device="cuda")})]
    if torch_runner._cudart(torch) is None or not torch_runner._keeps_graphs(torch):
        pytest.skip("this torch keeps no graph after capture, or its CUDA runtime is not at hand")
    return captured.heads["k"]


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_a_replay_reads_any_feed_whether_its_copy_node_can_point_at_it_or_not():
    """A replay points the graph's input copy at a CUDA feed in place; a feed it cannot read there (a NumPy
    array, a non-contiguous view) goes into the copy's shadow, the node pointed back at it,
    and the next CUDA feed is read in place again: every replay gives its own keys' rows, whatever came
    before it.  Each earlier feed stays alive and is overwritten with key 59 (the default row) after its
    replay, so a node left on it would give default rows, not the allocator's reuse of its memory."""
    rows, store, runner = _pinned_runner(TensorProto.INT64)
    rng = np.random.default_rng(5)
    runner.capture({"k": torch.as_tensor(rng.integers(0, 60, (16, 3)), device="cuda")})
    head = _head(runner)
    assert head[0], "the input's memcpy node was not found in the captured graph"
    kinds = ["cuda", "numpy", "cuda", "strided", "cuda", "cuda", "numpy", "numpy", "strided", "cuda"]
    kept = []
    for kind in kinds:
        keys = rng.integers(0, 60, (16, 3))
        if kind == "numpy":
            feed = keys
        elif kind == "strided":
            feed = torch.as_tensor(np.repeat(keys, 2, axis=1), device="cuda")[:, ::2]
            assert not feed.is_contiguous()
        else:
            feed = torch.as_tensor(keys, device="cuda")
        got = runner.replay({"k": feed})[0].clone()
        assert host(got).tobytes() == _rows_of(rows, keys).tobytes(), kind
        assert head[2] == (kind != "cuda"), kind  # read in place exactly when it is a matching CUDA tensor
        if isinstance(feed, torch.Tensor):
            feed.fill_(59)
            kept.append(feed)
    store.close()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_replays_queued_behind_a_busy_stream_each_read_their_own_feed():
    """Six replays enqueued at once behind a sleep, each pointing the input copy at another live feed before
    the earlier ones have run: an update changes only the launches after it, so each replay's rows are its
    own feed's (were the node shared by the queued launches, all would read the last feed)."""
    rows, store, runner = _pinned_runner(TensorProto.INT64)
    rng = np.random.default_rng(8)
    runner.capture({"k": torch.as_tensor(rng.integers(0, 60, (16, 3)), device="cuda")})
    head = _head(runner)
    keys = [rng.integers(0, 60, (16, 3)) for _ in range(6)]
    feeds = [torch.as_tensor(k, device="cuda") for k in keys]
    stream = torch.cuda.Stream()
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        torch.cuda._sleep(10**7)  # ~5 ms: the replays below are all enqueued before the first one runs
        outs = [runner.replay({"k": f})[0].clone() for f in feeds]
    assert not head[2]
    stream.synchronize()
    for k, got in zip(keys, outs):
        assert host(got).tobytes() == _rows_of(rows, k).tobytes()
    store.close()


@pytest.mark.gpu
@pytest.mark.skipif(not (gpu_available() and torch.cuda.is_available() and torch.cuda.device_count() >= 2),
                    reason="needs 2 GPUs (this machine has fewer)")
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_a_replay_on_another_current_device_updates_its_copy_on_the_captures():
    """A runner made on cuda:1, replayed while cuda:0 is current: the input copy's update runs with the
    capture's device current, and each replay gives its feed's rows."""
    with torch.cuda.device(1):
        rows, store, runner = _pinned_runner(TensorProto.INT64)
        rng = np.random.default_rng(9)
        runner.capture({"k": torch.as_tensor(rng.integers(0, 60, (16, 3)), device="cuda:1")})
    with torch.cuda.device(0):
        for _ in range(3):
            keys = rng.integers(0, 60, (16, 3))
            got = runner.replay({"k": torch.as_tensor(keys, device="cuda:1")})[0].clone()
            torch.cuda.synchronize(1)
            assert host(got).tobytes() == _rows_of(rows, keys).tobytes()
            assert torch.cuda.current_device() == 0
    store.close()


@pytest.mark.gpu
@needs_gpu
@pytest.mark.filterwarnings("error::trt_plugin.torch_runner.CaptureFallbackWarning")
def test_a_replay_whose_copy_update_is_refused_copies_its_feed_through_the_shadow(monkeypatch):
    """Where the CUDA runtime refuses to point the input copy at a feed (memory of another kind), the replay
    copies the feed into the shadow and points the node back there: the rows are still the feed's, and the
    refusal leaves no CUDA error behind for torch's next launch check (the stand-in refuses as the runtime
    does, its error recorded by a real failing call, which the runner must clear)."""
    from trt_plugin import torch_runner

    rows, store, runner = _pinned_runner(TensorProto.INT64)
    rng = np.random.default_rng(6)
    runner.capture({"k": torch.as_tensor(rng.integers(0, 60, (16, 3)), device="cuda")})
    head = _head(runner)
    lib, refused = torch_runner._cudart(torch), []

    class Refusing:
        """The runtime, but refusing every update whose source is not the shadow, with a real error left as
        the runtime's last (cudaSetDevice of a device that does not exist: no state changes)."""

        def __getattr__(self, name):
            return getattr(lib, name)

        def cudaGraphExecMemcpyNodeSetParams1D(self, exec_, node, dst, src, count, kind):
            if src != head[1].data_ptr():
                refused.append(src)
                error = lib.cudaSetDevice(10**6)
                assert error and lib.cudaPeekAtLastError() == error
                return error
            return lib.cudaGraphExecMemcpyNodeSetParams1D(exec_, node, dst, src, count, kind)

    first = rng.integers(0, 60, (16, 3))
    assert host(runner.replay({"k": torch.as_tensor(first, device="cuda")})[0]).tobytes() == \
        _rows_of(rows, first).tobytes()
    assert not head[2]  # the node reads that feed now
    monkeypatch.setattr(torch_runner, "_CUDART", [Refusing()])
    for _ in range(3):
        keys = rng.integers(0, 60, (16, 3))
        got = runner.replay({"k": torch.as_tensor(keys, device="cuda")})[0].clone()
        assert host(got).tobytes() == _rows_of(rows, keys).tobytes()
        assert head[2]
        assert lib.cudaPeekAtLastError() == 0  # the runner cleared the refusal's error
        torch.zeros(4, device="cuda").add_(1)  # torch's launch check: no error left behind
        torch.cuda.synchronize()
    assert len(refused) == 3
    store.close()


@pytest.mark.gpu
@needs_gpu
def test_a_surgered_model_on_rocksdb_runs_eagerly_saying_why_and_like_onnxruntime(tmp_path):
    """Surgery's tables live in RocksDB, which the GPU cannot read: a lookup under capture is an embcache
    error (never default rows), so the forward runs eagerly, with the rows ONNX Runtime gives."""
    feeds, table_rows = synthetic_inputs(256, seed=12)
    model = build_dlrm(table_rows, dim=8, offsets=True, seed=2)
    onnx.save(model, str(tmp_path / "m.onnx"))
    surgery(tmp_path / "m.onnx", tmp_path / "s.onnx", tmp_path / "cfg.json", capacity=0.05, progress=False)
    runner = TorchGraphRunner(tmp_path / "s.onnx", tf32=False)
    want = ort_run(model, feeds)[0]
    with pytest.warns(CaptureFallbackWarning, match="capturing the forward raised"):
        got = host(runner.capture(feeds)[0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(runner.replay(feeds)[0]), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host(runner.run(feeds)[0]), want, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_gpu
def test_a_lookup_that_waits_for_the_host_falls_back_to_eager_saying_why():
    import cupy as cp

    cache, store = _cache("gpu", pinned=True)

    def waits(fields, keys, out, stream):
        cache.lookup(keys, out=out, stream=stream)
        cp.cuda.ExternalStream(stream).synchronize()  # illegal while the stream captures

    runner = TorchGraphRunner(_lookup_model(TensorProto.INT64), lookup=waits)
    keys = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    with pytest.warns(CaptureFallbackWarning, match="capturing the forward raised"):
        first = host(runner.capture({"k": keys})[0])
    again = host(runner.replay({"k": keys})[0])  # eager: this shape is not captured
    want, _ = store.get_many(keys.reshape(-1))
    assert np.array_equal(first, want.reshape(2, 3, 4)) and np.array_equal(again, first)
    assert runner.captured_signatures == []
    store.close()


@pytest.mark.gpu
@needs_gpu
def test_fp32_strict_sets_the_precision_only_while_it_runs():
    matmul = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, attr)
    seen = []
    cache, store = _cache("gpu", pinned=True)

    def lookup(fields, keys, out, stream):
        seen.append(getattr(matmul, attr))
        cache.lookup(keys, out=out, stream=stream)

    for tf32 in (False, True):
        TorchGraphRunner(_lookup_model(TensorProto.INT64), lookup=lookup, tf32=tf32).run(
            {"k": np.zeros((2, 3), np.int64)})
    assert seen == (["ieee", "tf32"] if attr == "fp32_precision" else [False, True])
    assert getattr(matmul, attr) == before
    store.close()

