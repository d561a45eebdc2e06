"""``Cache.lookup(keys, out=...)``: rows written straight into a caller's buffer; ``Cache.xp`` and ``Cache.device``.

Every backend path (hits, misses fetched from the tier, keys no tier holds, the GPU's zero-copy and
captured paths) writes into the given array, so a lookup with ``out`` equals one without, bit for
bit, in rows, stats and cache contents.  A buffer that does not fit is refused before any work.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import embcache
from embcache.errors import RowDtypeError, RowShapeError
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore

from .strategies import host, keys as key_values, rows_for

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]
DTYPES = ["float32", "float16", "bfloat16"]
DIM = 4


def twin_caches(backend, dtype, policy="lfu", pinned=False, dim=DIM, tier_keys=range(-20, 21, 2)):
    """Two equal caches in front of equal stores: one is looked up with ``out``, the other without."""
    tier_keys = np.array(list(tier_keys), np.int64)
    caches = []
    for _ in range(2):
        store = HostStore(dim, dtype, pinned=pinned)
        store.put_many(tier_keys, rows_for(tier_keys, dim, dtype, seed=1))
        caches.append(embcache.Cache(64, dim, policy, dtype=dtype, backend=backend, tier=store, default=-2.5, ways=4))
    return caches


def state(cache):
    keys, rows, scores = cache.export()
    return keys.tobytes(), rows.tobytes(), scores.tobytes(), cache.stats.as_dict(), cache.clock, len(cache)


def check_twins(backend, dtype, batches, pinned=False):
    plain, given_out = twin_caches(backend, dtype, pinned=pinned)
    xp = given_out.xp
    for batch in batches:
        keys = xp.asarray(np.array(batch, np.int64))
        want = plain.lookup(keys)
        out = xp.full((len(batch), DIM), 7, want.dtype)  # not zeros: a row left unwritten shows
        got = given_out.lookup(keys, out=out)
        assert got is out
        assert host(got).tobytes() == host(want).tobytes()
        assert state(given_out) == state(plain)


batches = st.lists(st.lists(key_values, max_size=24), min_size=1, max_size=6)


@pytest.mark.parametrize("dtype", DTYPES)
@given(batches=batches)
def test_lookup_into_out_equals_lookup_cpu(dtype, batches):
    check_twins("cpu", dtype, batches)


def test_out_receives_hits_misses_and_absent_keys_in_place():
    (cache, _) = twin_caches("cpu", "float32")
    out = np.full((4, DIM), 7, np.float32)
    cache.lookup([2, 4], out=out[:2])  # a contiguous view of the first rows: written in place
    assert out[2:].tolist() == [[7] * DIM] * 2
    got = cache.lookup(np.array([2, 3, 4, 6]), out=out)  # hits 2 and 4, absent 3, miss 6
    assert got is out and np.shares_memory(got, out)
    assert out[1].tolist() == [-2.5] * DIM
    assert out[[0, 2, 3]].tobytes() == cache.tier.get_many(np.array([2, 4, 6]))[0].tobytes()


def test_empty_lookup_with_out():
    (cache, _) = twin_caches("cpu", "float16")
    out = np.empty((0, DIM), np.float16)
    assert cache.lookup(np.zeros(0, np.int64), out=out) is out


def bad_outs(n, dtype):
    row = np.dtype(embcache.Cache(8, DIM, dtype=dtype, backend="cpu").dtype)
    wide = np.empty((n, 2 * DIM), row)
    readonly = np.empty((n, DIM), row)
    readonly.flags.writeable = False
    misaligned = np.empty(n * DIM * row.itemsize + 1, np.uint8)[1:].view(row).reshape(n, DIM)
    return [
        (np.empty((n + 1, DIM), row), RowShapeError, "shape"),
        (np.empty((n, DIM + 1), row), RowShapeError, "shape"),
        (np.empty((n * DIM,), row), RowShapeError, "shape"),
        (np.empty((n, DIM), np.float64), RowDtypeError, "dtype"),
        (np.empty((n, DIM), np.int32 if row.itemsize == 4 else np.int16), RowDtypeError, "dtype"),
        ([[0.0] * DIM] * n, RowDtypeError, "NumPy array"),
        (wide[:, :DIM], RowShapeError, "C-contiguous"),
        (np.empty((DIM, n), row).T, RowShapeError, "C-contiguous"),
        (readonly, RowShapeError, "read-only"),
        (misaligned, RowShapeError, "aligned"),
    ]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(10))
def test_an_out_that_does_not_fit_is_refused_before_any_work(dtype, case):
    (cache, _) = twin_caches("cpu", dtype)
    cache.lookup([2, 5, 6])
    keys = np.array([2, 3, 8, 10], np.int64)
    out, error, words = bad_outs(keys.shape[0], dtype)[case]
    before, tier_before = state(cache), cache.tier.get_many(keys)[0].tobytes()
    snapshot = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
    with pytest.raises(error, match=words):
        cache.lookup(keys, out=out)
    assert state(cache) == before and cache.tier.get_many(keys)[0].tobytes() == tier_before
    if snapshot is not None:
        assert np.asarray(out).tobytes() == snapshot.tobytes()  # the refused buffer is untouched


def test_xp_and_device_on_the_cpu():
    cache = embcache.Cache(8, DIM, backend="cpu")
    assert cache.xp is np and cache.device is None
    for name in ("xp", "device"):
        with pytest.raises(AttributeError):
            setattr(cache, name, None)


# ---------------------------------------------------------------------- GPU

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pinned", [False, True])
@given(batches=batches)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_lookup_into_out_equals_lookup_gpu(dtype, pinned, batches):
    check_twins("gpu", dtype, batches, pinned=pinned)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_xp_device_and_refusals_on_the_gpu():
    import cupy

    cache, _ = twin_caches("gpu", "bfloat16")
    assert cache.xp is cupy and cache.device == cupy.cuda.Device().id
    keys = cupy.asarray([2, 3, 4], cupy.int64)
    out = cupy.empty((3, DIM), cupy.uint16)  # bfloat16 rows as their bits, as lookup returns them
    assert cache.lookup(keys, out=out) is out
    before = state(cache)
    for bad, error, words in [
        (np.empty((3, DIM), np.uint16), RowDtypeError, "CuPy array"),
        (cupy.empty((3, DIM), cupy.float32), RowDtypeError, "dtype"),
        (cupy.empty((3, DIM + 1), cupy.uint16), RowShapeError, "shape"),
        (cupy.empty((3, 2 * DIM), cupy.uint16)[:, :DIM], RowShapeError, "C-contiguous"),
        (cupy.empty(3 * DIM + 1, cupy.uint16)[1:].reshape(3, DIM), RowShapeError, "multiple of 8 bytes"),
    ]:
        with pytest.raises(error, match=words):
            cache.lookup(keys, out=bad)
        assert state(cache) == before


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_captured_lookup_writes_into_out():
    import cupy

    plain, cache = twin_caches("gpu", "float32", pinned=True)  # a lookup the GPU can capture: a pinned tier
    keys = cupy.asarray([2, 4, 6, 9], cupy.int64)
    cache.lookup(keys)
    plain.lookup(keys)
    out = cupy.full((4, DIM), 7, cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.Device().synchronize()  # the fill (legacy stream) before the graph's writes: no ordering otherwise
    with stream:
        stream.begin_capture()
        cache.lookup(keys, out=out, stream=stream)
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert out.get().tobytes() == plain.lookup(keys).get().tobytes()


def test_query_into_out_equals_query_and_refuses_a_buffer_that_does_not_fit():
    """query(out=) writes the same rows as query() into the caller's buffer; a wrong one changes nothing."""
    plain, cache = twin_caches("cpu", "float32")
    for c in (plain, cache):
        c.lookup(np.array([2, 4, 6, 9], np.int64))
    keys = np.array([4, 5, 6, -20, 9], np.int64)
    buf = np.full((5, DIM), 7, np.float32)
    rows, found = cache.query(keys, out=buf)
    expected, expected_found = plain.query(keys)
    assert rows is buf and buf.tobytes() == expected.tobytes() and found.tolist() == expected_found.tolist()
    before = state(cache)
    with pytest.raises(RowShapeError):
        cache.query(keys, out=np.empty((4, DIM), np.float32))
    with pytest.raises(RowDtypeError):
        cache.query(keys, out=np.empty((5, DIM), np.float64))
    assert state(cache) == before
