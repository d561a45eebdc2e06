"""embcache._cuda.Launcher: a kernel launched from arguments packed in place does what CuPy's own launch does,
whichever arguments change between launches (arrays, scalars, a null pointer that becomes an array, a type
that has no cell and goes through CuPy)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embcache._cuda import gpu_available

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]

_SOURCE = r"""
extern "C" __global__ void mix(const long long* a, long long* out, long long n, int scale, double shift,
                               unsigned long long seed, const long long* maybe, float weight) {
    for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        long long extra = maybe ? maybe[i] : -1;
        out[i] = a[i] * scale + (long long)(shift * 4.0) + (long long)(seed % 1000003ULL) + extra * 7
                 + (long long)(weight * 8.0f);
    }
}
"""


def _kernel():
    import cupy

    return cupy.RawKernel(_SOURCE, "mix")


_ARG = st.fixed_dictionaries({
    "array": st.integers(0, 2), "n": st.integers(0, 64), "scale": st.integers(-5, 5),
    "shift": st.sampled_from([0.0, 0.25, -1.5, 3.75]), "seed": st.integers(0, 2**64 - 1),
    "maybe": st.sampled_from(["null", "array", "python-int-null"]), "weight": st.sampled_from([0.0, 0.5, -2.0]),
    "grid": st.sampled_from([(1,), (3,), (2, 1, 1)]), "fresh_scalars": st.booleans()})


@given(st.lists(_ARG, min_size=1, max_size=12))
def test_a_launcher_writes_what_cupys_launch_writes(launches):
    import cupy

    from embcache._cuda import Launcher

    kernel = _kernel()
    launcher = Launcher(kernel)
    arrays = [cupy.arange(64, dtype=cupy.int64) * (j + 1) - 7 for j in range(3)]
    maybe = cupy.arange(64, dtype=cupy.int64)[::-1].copy()
    kept = {}  # scalars made once, as backends keep them: the launcher skips their cells
    for spec in launches:
        def scalar(kind, value, spec=spec):
            if spec["fresh_scalars"]:
                return kind(value)
            return kept.setdefault((kind, value), kind(value))

        extra = {"null": np.uint64(0), "array": maybe, "python-int-null": 0}[spec["maybe"]]
        args = (arrays[spec["array"]], None, scalar(np.int64, spec["n"]), scalar(np.int32, spec["scale"]),
                scalar(np.float64, spec["shift"]), scalar(np.uint64, spec["seed"]), extra,
                scalar(np.float32, spec["weight"]))
        ours, theirs = cupy.full(64, -99, cupy.int64), cupy.full(64, -99, cupy.int64)
        launcher(spec["grid"], (32,), args[:1] + (ours,) + args[2:])
        kernel(spec["grid"], (32,), args[:1] + (theirs,) + args[2:])
        assert cupy.array_equal(ours, theirs), spec


def _args(a, out, scale=2, maybe=None):
    return (a, out, np.int64(a.shape[0]), np.int32(scale), np.float64(0.0), np.uint64(0),
            np.uint64(0) if maybe is None else maybe, np.float32(0.0))


def test_a_captured_launch_keeps_the_arguments_of_its_capture():
    import cupy

    from embcache._cuda import Launcher

    launcher = Launcher(_kernel())
    a = cupy.arange(16, dtype=cupy.int64)
    out, other = cupy.zeros(16, cupy.int64), cupy.zeros(16, cupy.int64)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        launcher((1,), (32,), _args(a, out))
        graph = stream.end_capture()
        assert not out.any()  # captured, not run
        launcher((1,), (32,), _args(a, other, scale=5))  # rewrites the cells the capture read
        graph.launch(stream)
        stream.synchronize()
    assert (out == 2 * a - 7).all()  # the capture's scale (the null pointer: extra -1, times 7)
    assert (other == 5 * a - 7).all()


def test_a_launcher_keeps_no_array_alive_and_launches_from_a_new_thread():
    import threading
    import weakref

    import cupy

    from embcache._cuda import Launcher

    launcher = Launcher(_kernel())
    a = cupy.arange(8, dtype=cupy.int64)
    out = cupy.zeros(8, cupy.int64)
    launcher((1,), (32,), _args(a, out))
    cupy.cuda.get_current_stream().synchronize()
    gone = weakref.ref(out)
    del out
    assert gone() is None  # a launcher holds the last launch's arrays weakly
    results = {}

    def launch():
        mine = cupy.zeros(8, cupy.int64)
        launcher((1, 1, 1), (8, 1, 1), _args(a, mine, scale=3))  # 3-D launch dimensions
        cupy.cuda.get_current_stream().synchronize()
        results["out"] = mine.get()

    thread = threading.Thread(target=launch)
    thread.start()
    thread.join()
    assert (results["out"] == 3 * a.get() - 7).all()
