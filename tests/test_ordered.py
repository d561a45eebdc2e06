"""The stream-ordered GPU lookup (issue 21): the whole lookup, misses included, enqueued on the caller's
stream with no host wait, captured in a CUDA graph and replayed, equal to uncaptured lookups and to the
CPU backend bit for bit.

Every test here needs a CUDA GPU and CuPy; without them the module skips.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import CaptureError
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore

from .strategies import host, keys as key_values, rows_for
from .test_gpu import assert_same_state
from .test_stateful import ADMISSION_GRID, POLICIES

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]


def caches(capacity, dim, policy, admission, ways, tier_keys, pinned=(False, True, True), max_batch=None,
           dtype="float32"):
    """A CPU cache and GPU caches, each before its own HostStore holding the same rows.

    ``pinned`` says, per cache, whether its store is pinned (a GPU cache then looks up stream-ordered).
    """
    out = []
    for i, pin in enumerate(pinned):
        backend = "cpu" if i == 0 else "gpu"
        store = HostStore(dim, dtype, pinned=pin, initial_rows=4 * len(tier_keys) + 64)
        store.put_many(tier_keys, rows_for(tier_keys, dim, dtype, seed=0))
        out.append(embcache.Cache(capacity, dim, policy, ADMISSION_GRID[admission](), dtype, backend, store,
                                  default=-1.5, ways=ways, max_batch=max_batch if backend == "gpu" else None))
    return out


def force_miss_path(cache, path: str, max_batch: int) -> None:
    """Make the GPU cache's stream-ordered lookups take miss path ``path`` (see the captured test)."""
    b = cache._backend
    if path == "a-kernel-a-phase":
        b._small = b._small_one = 0  # every batch takes the large batch's kernels, one block's bound too
        return
    if path != "one-launch-1-block" and (b.sketch is not None or cache._defer_at is not None):
        pytest.skip("a sketch's estimates and a deferred batch's rows keep the one launch in one block")
    b._small_blocks = 1 if path == "one-launch-1-block" else 8
    b._ordered = None  # the scratch again, with a region for each block
    b.reserve(max_batch, deferred=cache._defer_at is not None)


def refused_under_capture(cache, keys, out, match: str) -> None:
    """``cache.lookup(keys, out=out)`` under capture raises CaptureError matching ``match``."""
    import cupy

    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        cupy.cuda.Device().synchronize()  # the buffers' initialisation, on the legacy stream, done first
        stream.begin_capture()
        with pytest.raises(CaptureError, match=match):
            cache.lookup(keys, out=out)
        stream.end_capture()


def captured_lookup(cache, n: int, dim: int):
    """``(keys, out, stream, graph)``: ``cache.lookup(keys, out=out)`` of ``n`` keys captured on a new
    non-blocking stream in global mode; copy keys into ``keys`` and launch ``graph`` on ``stream`` to replay."""
    import cupy

    keys = cupy.zeros(n, cupy.int64)
    out = cupy.empty((n, dim), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        global_capture(stream)
        cache.lookup(keys, out=out)
        graph = stream.end_capture()
    return keys, out, stream, graph


def global_capture(stream):
    """Begin capturing ``stream`` in cudaStreamCaptureModeGlobal: any synchronizing or allocating call
    (from any thread) while it captures is an error, so a path that waits for the host fails here."""
    import gc

    import cupy

    gc.collect()  # nothing of an earlier test freed (a pinned buffer: cudaFreeHost) while this one captures
    # buffers made on the legacy default stream (cupy.zeros' memset) are not ordered before work on a
    # non-blocking stream: let them be done before the graph and its inputs' copies use them
    cupy.cuda.Device().synchronize()
    stream.begin_capture(mode=cupy.cuda.runtime.streamCaptureModeGlobal)


# the admissions a stream-ordered lookup can decide on the device (TinyLFU's victim comparison cannot)
CAPTURABLE = [name for name, make in ADMISSION_GRID.items() if make().device_rule() is not None]


@pytest.mark.parametrize("path", ["one-launch-1-block", "one-launch-8-blocks", "a-kernel-a-phase"])
@pytest.mark.parametrize("admission", CAPTURABLE)
@pytest.mark.parametrize("policy", POLICIES)
@settings(deadline=None, max_examples=max(6, settings().max_examples // 10))
@given(data=st.data())
def test_captured_replays_equal_uncaptured_lookups_and_the_cpu(policy, admission, path, data):
    """One lookup captured in global mode, replayed on new keys (misses, duplicates, absent keys,
    empty batches): rows, contents, scores, stats and clock equal an uncaptured stream-ordered cache's
    and the CPU backend's after every replay.  Every miss path, forced here (the tuning table decides
    which a batch takes): the small batch's one launch with one block or with a block per share of
    the sets, and the large batch's kernel per phase."""
    import cupy

    universe = data.draw(st.lists(key_values, min_size=1, max_size=60, unique=True), label="universe")
    stored = np.array([k for k in universe if data.draw(st.booleans())], np.int64)
    capacity = data.draw(st.integers(1, 64), label="capacity")
    ways = data.draw(st.sampled_from([1, 4, 32]), label="ways")
    dim = data.draw(st.sampled_from([4, 33]), label="dim")
    n = data.draw(st.integers(0, 40), label="batch length")
    cpu, plain, captured = caches(capacity, dim, policy, admission, ways, stored, max_batch=max(n, 1))
    for cache in (plain, captured):
        force_miss_path(cache, path, max(n, 1))
    keys, out, stream, graph = captured_lookup(captured, n, dim)
    for step in range(data.draw(st.integers(1, 6), label="replays")):
        batch = np.array(data.draw(st.lists(st.sampled_from(universe), min_size=n, max_size=n)), np.int64)
        keys.set(batch, stream=stream)
        graph.launch(stream)
        expected = cpu.lookup(batch)
        got_plain = plain.lookup(cupy.asarray(batch))
        stream.synchronize()
        assert out.get().tobytes() == expected.tobytes()
        assert host(got_plain).tobytes() == expected.tobytes()
        assert_same_state(cpu, plain)
        assert_same_state(cpu, captured)


@pytest.mark.parametrize("path", ["one-launch-1-block", "one-launch-8-blocks"])
@pytest.mark.parametrize("admission", list(ADMISSION_GRID))
@pytest.mark.parametrize("policy", POLICIES)
def test_stream_ordered_lookups_equal_the_host_path(policy, admission, path):
    """A long Zipf-like trace: a pinned-store GPU cache (stream-ordered) against a GPU cache over an
    ordinary store (host path) and the CPU backend, batch after batch, in large and tiny batches (small
    ones in one launch of one block or of a block per share of the sets)."""
    rng = np.random.default_rng(5)
    stored = np.arange(0, 3000, dtype=np.int64)
    cpu, host_path, ordered = caches(256, 16, policy, admission, 8, stored, pinned=(False, False, True))
    force_miss_path(ordered, path, 2000)
    for size in (1, 7, 500, 2000, 3):
        for _ in range(4):
            batch = np.minimum(rng.zipf(1.3, size), 3500).astype(np.int64)  # a few keys no tier holds
            expected = cpu.lookup(batch).tobytes()
            assert host(host_path.lookup(batch)).tobytes() == expected
            assert host(ordered.lookup(batch)).tobytes() == expected
        assert_same_state(cpu, host_path)
        assert_same_state(cpu, ordered)


@pytest.mark.parametrize("admission", ["always", "hit_rate_threshold"])
@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_a_small_batch_of_distinct_misses_all_in_one_blocks_sets(policy, admission):
    """The small launch's shared tables at their fullest: 1,024 keys (the most they take), every one a
    distinct miss in a set that one block of 8 owns (set % 8 == 0), so that block's table holds 1,024 keys
    in 1,024 cells, and a batch of 1,025 (the global tables).  Rows and state equal the CPU backend's."""
    from embcache.layout import num_sets_for, sets_of

    capacity, ways = 4096, 8
    num_sets = num_sets_for(capacity, ways)
    assert num_sets % 8 == 0
    candidates = np.arange(1, 40_000, dtype=np.int64)
    owned = candidates[sets_of(candidates, num_sets) % 8 == 0]
    stored = owned[:3000]
    cpu, _, ordered = caches(capacity, 8, policy, admission, ways, stored, pinned=(False, False, True),
                             max_batch=1025)
    force_miss_path(ordered, "one-launch-8-blocks", 1025)
    import cupy

    from embcache.kernels._shared import SMALL_SHARED

    most = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["sharedMemPerBlockOptin"]
    if most >= 48 * 1024 + SMALL_SHARED["SMALL_SHARED_BYTES"]:  # every GPU since Ampere: the tables go to shared memory
        assert ordered._backend._small_shared == SMALL_SHARED["SMALL_SHARED_BYTES"]
    for batch in (owned[:1024], owned[1024:2049], owned[2049:2049 + 1024][::-1].copy()):
        expected = cpu.lookup(batch).tobytes()
        assert host(ordered.lookup(batch)).tobytes() == expected
        assert_same_state(cpu, ordered)
        assert ordered.stats.last.misses == cpu.stats.last.misses


def test_a_retune_after_stream_ordered_lookups_keeps_the_small_launchs_shared_tables():
    """retune compiles new kernels: ordered_small's allowance of dynamic shared memory is the new kernel's
    to set (a launch that asks for more than a kernel allows fails), and lookups go on equal to the CPU."""
    rng = np.random.default_rng(3)
    stored = np.arange(0, 2000, dtype=np.int64)
    cpu, _, ordered = caches(512, 8, "lru", "always", 8, stored, pinned=(False, False, True), max_batch=600)
    force_miss_path(ordered, "one-launch-8-blocks", 600)
    import cupy

    from embcache.kernels._shared import SMALL_SHARED

    b = ordered._backend
    most = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["sharedMemPerBlockOptin"]
    for step in range(6):
        if step == 3:
            old = b._k["ordered_small"]
            b.retune({**b.shape, "digests": not b.shape.get("digests", False)})
            assert b._k["ordered_small"] is not old  # new kernels, whose allowance retune set
            if most >= 48 * 1024 + SMALL_SHARED["SMALL_SHARED_BYTES"]:
                assert b._small_shared == SMALL_SHARED["SMALL_SHARED_BYTES"]
        batch = rng.integers(0, 2100, 600).astype(np.int64)
        assert host(ordered.lookup(batch)).tobytes() == cpu.lookup(batch).tobytes()
        assert_same_state(cpu, ordered)


@pytest.mark.parametrize("policy", ["lru", "lfu", "sieve"])
def test_the_small_launchs_regions_grow_and_old_graphs_keep_theirs(policy):
    """The small batch's per-block scratch regions, sized for min(max_batch, small): a cache made for 4 keys
    grows its scratch batch after batch (3, 40, exactly the small path's most keys, one more: a kernel a
    phase), the rows and state equal the CPU's after each; then a graph captured before the growth
    replays on new keys and still equals the CPU."""

    rng = np.random.default_rng(11)
    stored = np.arange(0, 6000, dtype=np.int64)
    cpu, _, ordered = caches(256, 8, policy, "always", 8, stored, pinned=(False, False, True), max_batch=4)
    force_miss_path(ordered, "one-launch-8-blocks", 4)
    small = ordered._backend._small
    keys, out, stream, graph = captured_lookup(ordered, 4, 8)
    for size in (3, 40, small, small + 1, 7):
        batch = np.minimum(rng.zipf(1.2, size), 6500).astype(np.int64)  # some keys no tier holds
        assert host(ordered.lookup(batch)).tobytes() == cpu.lookup(batch).tobytes(), size
        assert_same_state(cpu, ordered)
    for _ in range(3):  # the old graph reads the scratch it was captured with, which the growth kept
        batch = rng.integers(0, 6500, 4).astype(np.int64)
        keys.set(batch, stream=stream)
        graph.launch(stream)
        stream.synchronize()
        assert out.get().tobytes() == cpu.lookup(batch).tobytes()
        assert_same_state(cpu, ordered)


def test_a_lookup_that_needs_the_host_raises_under_capture():
    """An ordinary (unpinned) store: no source the GPU reads, so the captured lookup would need the host."""
    import cupy

    _, gpu, _ = caches(64, 4, "lru", "always", 4, np.arange(10, dtype=np.int64), pinned=(False, False, True))
    refused_under_capture(gpu, cupy.arange(8, dtype=cupy.int64), cupy.empty((8, 4), cupy.float32), "cannot be captured")
    assert gpu.clock == 0 and len(gpu) == 0  # nothing ran


def test_a_capture_longer_than_the_scratch_raises_and_max_batch_prepares_it():
    import cupy

    _, _, small = caches(64, 4, "lfu", "always", 4, np.arange(100, dtype=np.int64))
    small.lookup(cupy.arange(4, dtype=cupy.int64))  # scratch for a few keys
    keys = cupy.arange(50, dtype=cupy.int64)
    out = cupy.empty((50, 4), cupy.float32)
    refused_under_capture(small, keys, out, "max_batch=50")
    stream = cupy.cuda.Stream(non_blocking=True)
    _, _, ready = caches(64, 4, "lfu", "always", 4, np.arange(100, dtype=np.int64), max_batch=50)
    with stream:
        global_capture(stream)
        ready.lookup(keys, out=out)
        graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert ready.stats.misses == 50 and ready.clock == 1


def test_other_operations_refuse_to_run_under_capture():
    import cupy

    _, _, gpu = caches(64, 4, "lru", "always", 4, np.arange(10, dtype=np.int64))
    stream = cupy.cuda.Stream(non_blocking=True)
    keys = cupy.arange(3, dtype=cupy.int64)
    with stream:
        cupy.cuda.Device().synchronize()  # the buffers' initialisation, on the legacy stream, done first
        stream.begin_capture()
        with pytest.raises(CaptureError, match="only lookup"):
            gpu.query(keys)
        with pytest.raises(CaptureError, match="only lookup"):
            gpu.insert(keys, cupy.zeros((3, 4), cupy.float32))
        stream.end_capture()


def test_reserved_device_keys_get_the_default_row_and_are_counted_invalid():
    """A stream-ordered lookup cannot refuse a device batch without waiting: a reserved key is served
    the default row, never admitted, and counted; host keys are refused as on the CPU."""
    import cupy

    cpu, _, gpu = caches(64, 4, "lru", "always", 4, np.arange(10, dtype=np.int64))
    bad = embcache.RESERVED_KEYS[0]
    rows = host(gpu.lookup(cupy.asarray([1, bad, 2, bad], cupy.int64)))
    assert (rows[1] == -1.5).all() and (rows[3] == -1.5).all()
    expected = cpu.lookup(np.array([1, 2], np.int64))
    assert rows[[0, 2]].tobytes() == expected.tobytes()
    stats = gpu.stats
    assert stats.invalid == 2 and stats.misses == 4 and stats.unique_misses == 2 and len(gpu) == 2
    assert bad not in gpu.export()[0].tolist()
    with pytest.raises(embcache.errors.ReservedKeyError):
        gpu.lookup(np.array([3, bad], np.int64))


@pytest.mark.parametrize("admission", ["always", "hit_rate_deferred"])  # deferred: one block, a flush first
@pytest.mark.parametrize("path", ["one-launch", "a-kernel-a-phase"])
def test_a_lookup_interrupted_after_its_probe_leaves_no_counts_to_the_next(path, admission):
    """A stream-ordered lookup stopped between its probe and its miss path (an exception, a
    KeyboardInterrupt) has left the probe's counts in the batch's words; the next lookup starts from
    zero, so its misses, invalid keys and distinct misses are its own."""
    import cupy

    _, gpu = caches(64, 4, "lru", admission, 4, np.arange(0, 400, dtype=np.int64), pinned=(False, True))
    b = gpu._backend
    if path == "a-kernel-a-phase":
        b._small = b._small_one = 0  # every batch takes the large batch's kernels (one block's bound too)
    gpu.lookup(cupy.arange(300, 310, dtype=cupy.int64))  # the scratch made, the kernels compiled
    name = "ordered_small" if path == "one-launch" else "ordered_misses"
    launch = b._k[name]

    class Stopped(Exception):
        pass

    def stop(*args, **kwargs):  # a launcher takes shared_mem= as a keyword
        raise Stopped

    b._k[name] = stop
    bad = embcache.RESERVED_KEYS[0]
    with pytest.raises(Stopped):  # 40 misses and 2 reserved keys counted by the probe, then stopped
        gpu.lookup(cupy.asarray(list(range(40)) + [bad, bad], cupy.int64))
    b._k[name] = launch
    gpu.lookup(cupy.asarray(list(range(100, 130)) + [bad], cupy.int64))  # 30 fresh keys and a reserved one
    last = gpu.stats.last
    assert (last.lookups, last.misses, last.invalid, last.unique_misses) == (31, 31, 1, 30)


def test_stats_clock_and_len_follow_graph_replays():
    import cupy

    _, _, gpu = caches(4096, 8, "lfu", "always", 8, np.arange(1000, dtype=np.int64), max_batch=100)
    keys = cupy.zeros(100, cupy.int64)
    out = cupy.empty((100, 8), cupy.float32)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        cupy.cuda.Device().synchronize()  # the buffers' initialisation, on the legacy stream, done first
        stream.begin_capture()
        gpu.lookup(keys, out=out)
        graph = stream.end_capture()
    for i in range(5):
        keys.set(np.arange(100 * i, 100 * i + 100, dtype=np.int64), stream=stream)
        graph.launch(stream)
    assert gpu.clock == 5  # replays ran on the device: the cache waits for them when asked
    assert gpu.stats.misses == 500 and gpu.stats.insertions == 500 and len(gpu) == 500
    for i in range(5):
        keys.set(np.arange(100 * i, 100 * i + 100, dtype=np.int64), stream=stream)
        graph.launch(stream)
    assert gpu.stats.hits == 500 and gpu.clock == 10


_SPIN = r"""
extern "C" __global__ void spin(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) {}
}
"""


def busy(stream, cycles: int = 200_000_000) -> None:
    """Keep ``stream`` busy for about 0.1 s (a one-thread spin), so that what is queued after it waits."""
    import cupy

    with stream:
        cupy.RawKernel(_SPIN, "spin")((1,), (1,), (np.int64(cycles),))


def test_a_tier_write_waits_for_the_lookups_still_reading_it():
    """The lookup returns before its kernels run (its stream is busy); a write of the very rows it reads
    waits for them, so the lookup still returns the rows the store held when it was called."""
    import cupy

    _, _, gpu = caches(64, 4, "lru", "always", 4, np.arange(10, dtype=np.int64))
    stream = cupy.cuda.Stream(non_blocking=True)
    keys = cupy.arange(10, dtype=cupy.int64)
    out = cupy.empty((10, 4), cupy.float32)
    cupy.cuda.Device().synchronize()  # keys (arange, legacy stream) before the lookups on stream read them
    gpu.lookup(keys[:1], out=out[:1], stream=stream)  # the scratch and the source, made outside the timing
    stream.synchronize()
    busy(stream)
    gpu.lookup(keys, out=out, stream=stream)  # queued behind the spin: reads the store in ~0.1 s
    gpu.tier.put_many(np.arange(10, dtype=np.int64), np.full((10, 4), 9.0, np.float32))  # must wait
    stream.synchronize()
    assert host(out).tobytes() == rows_for(np.arange(10), 4, "float32", seed=0).tobytes()
    # and the write took effect after it (in the store: the cache still holds the rows it admitted)
    assert (gpu.tier.get_many(np.arange(10, dtype=np.int64))[0] == 9.0).all()


def test_a_clear_on_one_stream_comes_before_a_lookup_on_another():
    """clear() leaves its fills queued on its stream; a lookup on another stream waits for them (on the
    device), so it misses every key, and the cache then holds what the lookup admitted, as on the CPU."""
    import cupy

    cpu, _, gpu = caches(4096, 8, "lfu", "always", 8, np.arange(5000, dtype=np.int64))
    a, b = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    warm = np.arange(1000, dtype=np.int64)
    # made on the legacy stream, which CUDA does not order with a and b: done before they read them
    warm_keys, later_keys = cupy.asarray(warm), cupy.asarray(warm[:500])
    cupy.cuda.Device().synchronize()
    cpu.lookup(warm)
    gpu.lookup(warm_keys, stream=a)
    with a:
        busy(a)
        gpu.clear()
    cpu.clear()
    got = gpu.lookup(later_keys, stream=b)
    b.synchronize()  # the rows are b's: CuPy's .get() copies on the legacy stream, unordered with b
    assert host(got).tobytes() == cpu.lookup(warm[:500]).tobytes()
    assert gpu.stats.last.misses == 500
    assert_same_state(cpu, gpu)


def test_a_call_on_another_stream_follows_the_lookup():
    """A stream-ordered lookup on one stream, then a query on another: the query sees the keys the
    lookup inserted (the cache orders the second stream after the first, on the device)."""
    import cupy

    _, _, gpu = caches(4096, 64, "lru", "always", 32, np.arange(20000, dtype=np.int64))
    a, b = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    keys = cupy.arange(2000, dtype=cupy.int64)
    cupy.cuda.Device().synchronize()  # keys (arange, legacy stream) before a and b, which do not wait for it, read them
    gpu.lookup(keys, stream=a)
    _, found = gpu.query(keys, stream=b)
    assert int(found.sum()) == len(gpu) == gpu.stats.insertions


def test_a_new_or_loaded_cache_has_finished_its_device_work_when_it_returns(tmp_path, monkeypatch):
    """The constructor fills its arrays on the current stream and load copies the saved ones: both have
    finished before they return, so that a first call on another stream (which the cache orders after
    stream-ordered lookups only) reads a ready table.  The stream is kept busy (a 0.1 s spin) right after
    the constructor's last copy from pageable memory (which itself waits for the stream: the default row)
    and after load's copies, so only a constructor and a load that wait at their end pass."""
    import cupy

    from embcache.kernels import gpu

    stream = cupy.cuda.get_current_stream()
    store = HostStore(4, pinned=True)
    store.put_many(np.arange(1000), rows_for(list(range(1000)), 4, "float32", seed=1))
    set_default = gpu.GPUBackend.set_default

    def set_default_then_spin(self, *args, **kwargs):
        set_default(self, *args, **kwargs)
        busy(cupy.cuda.get_current_stream())

    with monkeypatch.context() as patch:
        patch.setattr(gpu.GPUBackend, "set_default", set_default_then_spin)
        cache = embcache.Cache(4096, 4, "lru", "always", "float32", "gpu", store)
    assert stream.done
    cache.lookup(cupy.arange(1000, dtype=cupy.int64))
    cache.save(tmp_path / "c.npz")
    cache.close()
    load = gpu.GPUBackend.load

    def load_then_spin(self, *args, **kwargs):
        load(self, *args, **kwargs)
        busy(cupy.cuda.get_current_stream())

    monkeypatch.setattr(gpu.GPUBackend, "load", load_then_spin)
    loaded = embcache.Cache.load(tmp_path / "c.npz", store, backend="gpu")
    assert stream.done
    assert len(loaded) == 1000
    loaded.close()
    store.close()


@pytest.mark.parametrize("admission", ["always", "hit_rate_deferred"])
def test_the_probes_announcement_is_cleared_after_every_kind_of_lookup(admission):
    """F_PROBED, the word a small batch's probe sets once its slots are written (ordered_small waits for
    it, not for the probe's end), is 0 again after small, large, replayed and interrupted lookups: a flag
    left set would let the next small batch's miss phases read slots its probe has not yet written."""
    import cupy

    from embcache.kernels._shared import FIELDS, ORDERED

    _, gpu = caches(64, 4, "lru", admission, 4, np.arange(0, 3000, dtype=np.int64), pinned=(False, True))
    b = gpu._backend
    word = ORDERED["ORD_BATCH"] + FIELDS["F_PROBED"]

    def flag():
        cupy.cuda.Device().synchronize()
        return int(b.state[word].get())

    fresh = iter(range(0, 3000, 40))
    gpu.lookup(cupy.arange(next(fresh), 3000, 97, dtype=cupy.int64))  # small: one launch after the probe
    assert flag() == 0
    small, small_one = b._small, b._small_one
    b._small = b._small_one = 0  # the large batch's kernels
    gpu.lookup(cupy.arange(next(fresh), 3000, 13, dtype=cupy.int64))
    assert flag() == 0
    b._small, b._small_one = small, small_one
    b.replay_graphs = True
    out = cupy.empty((40, 4), cupy.float32)
    for _ in range(4):  # one shape and one out: seen twice, then replayed
        start = next(fresh)
        gpu.lookup(cupy.arange(start, start + 40, dtype=cupy.int64), out=out)
        assert flag() == 0
    b.replay_graphs = False

    class Stopped(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stopped

    launch = b._k["ordered_small"]
    b._k["ordered_small"] = stop
    with pytest.raises(Stopped):
        start = next(fresh)
        gpu.lookup(cupy.arange(start, start + 40, dtype=cupy.int64))
    assert flag() == 1  # the probe announced its slots; nothing cleared the word
    b._k["ordered_small"] = launch
    start = next(fresh)
    gpu.lookup(cupy.arange(start, start + 40, dtype=cupy.int64))
    assert flag() == 0
