"""GPU backend: the CPU backend's results bit for bit, on any stream, inside CUDA graphs.

Every test here needs a CUDA GPU and CuPy; without them the module skips.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import EmbCacheError
from embcache.kernels.gpu import gpu_available
from embcache.layout import sets_of
from embcache.tiers import HostStore

from .strategies import host, keys as key_values, rows_for
from .test_stateful import ADMISSION_GRID, POLICIES, machine_tests

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]
pytestmark = GPU

# the core's stateful machine (Cache against the plain-Python model), on the GPU backend
globals().update(machine_tests("gpu", GPU))

DTYPES = ["float32", "float16", "bfloat16"]


def raw_bytes(rows) -> bytes:
    """Row bits, whatever the array: GPU bfloat16 rows come back as uint16 bits."""
    return host(rows).tobytes()


def pair(capacity, dim, policy, admission, dtype, ways, tier_keys, pinned=False, device_index=True):
    """The same cache on both backends, each in front of its own store with the same rows.

    ``pinned``: the GPU cache's store is pinned, so its probe reads missed rows in place.
    """
    caches = []
    for backend in ("cpu", "gpu"):
        store = HostStore(dim, dtype, pinned=pinned and backend == "gpu", device_index=device_index)
        store.put_many(tier_keys, rows_for(tier_keys, dim, dtype, seed=0))
        caches.append(embcache.Cache(capacity, dim, policy, ADMISSION_GRID[admission](), dtype, backend, store,
                                     default=-1.5, ways=ways))
    return caches


def assert_same_state(cpu, gpu):
    k1, r1, s1 = cpu.export()
    k2, r2, s2 = gpu.export()
    assert k1.tolist() == k2.tolist()
    assert s1.tolist() == s2.tolist()
    assert r1.tobytes() == r2.tobytes()
    assert cpu.stats.as_dict() == gpu.stats.as_dict()
    last1, last2 = cpu.stats.last, gpu.stats.last
    assert (last1 is None) == (last2 is None) and (last1 is None or last1.as_dict() == last2.as_dict())
    assert cpu.clock == gpu.clock and len(cpu) == len(gpu)


def run_both(cpu, gpu, op, batch, rows, on_device):
    """Apply one operation to both caches; same result or the same exception type."""
    import cupy

    keys = np.array(batch, np.int64)
    results, errors = [], []
    for cache, device in ((cpu, False), (gpu, on_device)):
        k = cupy.asarray(keys) if device else keys
        try:
            if op == "lookup":
                results.append([raw_bytes(cache.lookup(k))])
            elif op == "query":
                out, found = cache.query(k)
                results.append([raw_bytes(out), host(found).tolist()])
            elif op in ("insert", "update"):
                getattr(cache, op)(k, rows)
                results.append([])
            elif op == "clear":
                cache.clear()
                results.append([])
            else:
                getattr(cache, op)(k)
                results.append([])
            errors.append(None)
        except EmbCacheError as exc:
            errors.append(type(exc))
            results.append([])
    assert errors[0] == errors[1]
    assert results[0] == results[1]


OPS = ["lookup", "lookup", "lookup", "query", "insert", "update", "erase", "preload", "clear"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("admission", list(ADMISSION_GRID))
@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=max(10, settings().max_examples // 4))  # a grid of every policy x admission x dtype
@given(data=st.data())
def test_cpu_and_gpu_agree(policy, admission, dtype, data):
    """Random operation sequences: identical outputs, export, stats and clock after every step.

    Capacities of 1-48 rows against batches of up to 40 keys overfill sets within
    one batch; keys drawn from a small universe make batches duplicate-heavy; empty
    batches come up too.
    """
    universe = data.draw(st.lists(key_values, min_size=1, max_size=50, unique=True), label="universe")
    stored = [k for k in universe if data.draw(st.booleans())]
    capacity = data.draw(st.integers(1, 48), label="capacity")
    ways = data.draw(st.sampled_from([1, 4, 32]), label="ways")
    dim = data.draw(st.sampled_from([3, 33]), label="dim")
    cpu, gpu = pair(capacity, dim, policy, admission, dtype, ways, np.array(stored, np.int64),
                    pinned=data.draw(st.booleans(), label="pinned store"))
    gpu._backend.retune({**gpu._backend.shape, "digests": data.draw(st.booleans(), label="digests"),
                         "split": data.draw(st.booleans(), label="split")})
    for step in range(data.draw(st.integers(1, 12), label="steps")):
        op = data.draw(st.sampled_from(OPS), label="op")
        batch = data.draw(st.lists(st.sampled_from(universe), max_size=40), label="batch")
        rows = rows_for(batch, dim, cpu.dtype, seed=step + 1)
        run_both(cpu, gpu, op, batch, rows, data.draw(st.booleans(), label="keys on device"))
        assert_same_state(cpu, gpu)


@pytest.mark.parametrize("dim", [1, 2, 7, 32, 33, 100, 1024])
@pytest.mark.parametrize("dtype", DTYPES)
def test_any_dim_and_64_ways(dim, dtype):
    """Row sizes that are not multiples of 16 bytes (the tails), and sets wider than a warp."""
    rng = np.random.default_rng(dim)
    trace = (rng.zipf(1.3, 6000) % 700).astype(np.int64)
    cpu, gpu = pair(300, dim, "lfu", "always", dtype, 64, np.arange(0, 650, dtype=np.int64))
    gpu._backend.retune({**gpu._backend.shape, "digests": dim % 2 == 1})
    for i in range(0, trace.shape[0], 500):
        assert raw_bytes(cpu.lookup(trace[i:i + 500])) == raw_bytes(gpu.lookup(trace[i:i + 500]))
    assert_same_state(cpu, gpu)


@pytest.mark.parametrize("ways", [4, 32, 64])
def test_long_runs_of_one_set_insert_as_on_the_cpu(ways):
    """Batches whose keys crowd a few sets: runs longer than a warp's 32 positions, and LFU keys of a
    batch that evict keys the same batch inserted (the later row must win)."""
    rng = np.random.default_rng(ways)
    cpu, gpu = pair(2 * ways, 8, "lfu", "always", "float32", ways, np.arange(0, 4000, dtype=np.int64))
    for _ in range(6):
        batch = rng.choice(4000, 300, replace=False).astype(np.int64)
        batch = np.concatenate([batch, batch[:40], batch[:5]])  # a few keys counted 2 and 3 times
        assert raw_bytes(cpu.lookup(batch)) == raw_bytes(gpu.lookup(batch))
        assert_same_state(cpu, gpu)
    assert cpu.stats.evictions > 0


@pytest.mark.parametrize("pinned", [False, True])
@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_every_launch_shape_gives_the_same_results(policy, pinned):
    """Each shape autotune may pick (group, keys per group, digests, split), switched on a live cache;
    with a pinned store, each shape's probe also copies the missed rows from it."""
    import itertools

    from embcache.autotune import DIGESTS, GROUPS, KEYS_PER_GROUP, SPLIT

    rng = np.random.default_rng(7)
    cpu, gpu = pair(2000, 33, policy, "always", "float32", 32, np.arange(0, 6000, 2, dtype=np.int64), pinned=pinned)
    for group, kpg, digests, split in itertools.product(GROUPS, KEYS_PER_GROUP, DIGESTS, SPLIT):
        gpu._backend.retune({"group": group, "keys_per_group": kpg, "block": 256, "digests": digests,
                             "split": split})
        batch = (rng.zipf(1.2, 3000) % 6100).astype(np.int64)
        assert raw_bytes(cpu.lookup(batch)) == raw_bytes(gpu.lookup(batch))
        gone = batch[:40]
        cpu.erase(gone)
        gpu.erase(gone)
        out1, found1 = cpu.query(batch)
        out2, found2 = gpu.query(batch)
        assert raw_bytes(out1) == raw_bytes(out2) and host(found1).tolist() == host(found2).tolist()
    assert_same_state(cpu, gpu)


@pytest.mark.parametrize("dim, dtype", [(64, "float32"), (128, "float16"), (32, "float32")])
def test_query_of_a_touching_policy_probes_with_the_reading_shape(dim, dtype, monkeypatch):
    """An LRU cache's lookup probe stores scores, its query only reads: where the tuning table gives the
    storing probe another shape (256-byte rows on an H200), query takes the reading one (with the lookup's
    digests setting), and so it does with a query shape forced apart from the lookup's; rows, found
    flags and the cache's state still equal the CPU backend's.  A query shape whose digests differ is
    refused before the backend changes."""
    from embcache.errors import ConfigError
    from embcache.kernels.gpu import _device_name
    from embcache.kernels.tuning import launch_shape

    rng = np.random.default_rng(dim)
    cpu, gpu = pair(3000, dim, "lru", "always", dtype, 32, np.arange(0, 9000, 3, dtype=np.int64))
    b = gpu._backend
    reading = {**launch_shape(b.compute_capability, b.row_bytes, device=_device_name(b.device_id)),
               "digests": b.shape["digests"]}
    assert b.query_shape == (None if reading == b.shape else reading)
    probed_with = []
    probe = b._probe

    def spy(*args, **kwargs):
        probed_with.append(kwargs.get("launch"))
        return probe(*args, **kwargs)

    monkeypatch.setattr(b, "_probe", spy)
    apart = {**b.shape, "group": 8 if b.shape["group"] != 8 else 4, "split": not b.shape["split"]}
    for step in range(4):
        if step == 2:  # the query's shape forced apart from the lookup's
            b.retune(b.shape, apart)
            assert b.query_shape == apart
        batch = (rng.zipf(1.2, 4000) % 9100).astype(np.int64)
        assert raw_bytes(cpu.lookup(batch)) == raw_bytes(gpu.lookup(batch))
        del probed_with[:]
        out1, found1 = cpu.query(batch[::-1].copy())
        out2, found2 = gpu.query(batch[::-1].copy())
        assert probed_with == [b._query_launch]  # query's probe, with query's launch (None: the lookup's)
        assert raw_bytes(out1) == raw_bytes(out2) and host(found1).tolist() == host(found2).tolist()
        assert_same_state(cpu, gpu)
    shape_before = b.shape
    with pytest.raises(ConfigError, match="digests"):
        b.retune({**b.shape, "group": 4}, {**apart, "digests": not b.shape["digests"]})
    assert b.shape == shape_before and b.query_shape == apart


@pytest.mark.parametrize("overflow", ["least_used", "oldest"])
def test_a_bounded_pinned_store_drops_the_rows_the_cpu_side_drops(overflow):
    """A least_used store counts reads, which GPU reads in place would not: such a store is read on
    the host, so after the same lookups an overflowing put drops the same rows on both sides."""
    rng = np.random.default_rng(5)
    stored = np.arange(0, 600, 2, dtype=np.int64)
    caches = []
    for backend in ("cpu", "gpu"):
        store = HostStore(4, "float32", pinned=backend == "gpu", capacity=stored.shape[0], overflow=overflow)
        store.put_many(stored, rows_for(stored, 4, "float32", seed=0))
        caches.append(embcache.Cache(64, 4, "lru", "always", "float32", backend, store, ways=4))
    cpu, gpu = caches
    assert gpu._zero_copy == (overflow != "least_used")
    for _ in range(8):
        batch = rng.choice(stored[:150], 100)  # the first half of the keys is read, the rest never
        assert raw_bytes(cpu.lookup(batch)) == raw_bytes(gpu.lookup(batch))
    new = np.arange(1001, 1201, 2, dtype=np.int64)
    for cache in caches:
        cache.tier.put_many(new, rows_for(new, 4, "float32", seed=1))
    assert sorted(cpu.tier.keys().tolist()) == sorted(gpu.tier.keys().tolist())
    assert_same_state(cpu, gpu)


@pytest.mark.parametrize("device_index", [True, False])
@pytest.mark.parametrize("dim, dtype, policy, split", [
    (32, "float32", "lru", False), (64, "float32", "lfu", True), (128, "float32", "lru", False),
    (128, "float16", "static", True), (33, "bfloat16", "lfu", False)])
def test_the_probe_reads_missed_rows_from_a_pinned_store(dim, dtype, policy, split, device_index, monkeypatch):
    """A pinned HostStore's missed rows are copied by the lookup's probe itself, in its pass over the hits
    (the split gather too), with the CPU backend's rows, stats and admissions; no separate tier fetch runs.

    Batches repeat missed keys and ask for keys that no tier holds (default row).  Under ``static``
    nothing is admitted, so the lookup only counts its distinct misses (a hash set, no sort).
    """
    rng = np.random.default_rng(dim)
    cpu, gpu = pair(256, dim, policy, "always", dtype, 32, np.arange(0, 5000, 3, dtype=np.int64), pinned=True,
                    device_index=device_index)
    gpu._backend.retune({**gpu._backend.shape, "split": split})
    assert gpu.tier.pinned

    def fetch(*args):
        raise AssertionError("a separate fetch ran: the probe should have read the store")

    monkeypatch.setattr(gpu.tier, "gather_to_device", fetch)
    for step in range(20):
        batch = rng.integers(0, 5200, 700)
        if step == 10:  # keys written to the store after the probe last read it (the device index follows)
            new = np.arange(6001, 6200, 2, dtype=np.int64)
            for cache in (cpu, gpu):
                cache.tier.put_many(new, rows_for(new, dim, dtype, seed=9))
        if step >= 10:
            batch = np.concatenate([batch, rng.integers(6000, 6200, 50)])
        assert raw_bytes(cpu.lookup(batch)) == raw_bytes(gpu.lookup(batch))
        assert_same_state(cpu, gpu)
    assert gpu.stats.absent > 0 and (gpu.stats.insertions > 0) == (policy != "static")
    assert gpu.stats.unique_misses < gpu.stats.misses  # missed keys did repeat within batches


@given(st.lists(st.tuples(st.sampled_from(["put", "delete", "gather"]),
                          st.lists(st.integers(0, 300), max_size=80)), max_size=12))
def test_pinned_store_device_index_follows_every_write(steps):
    """The GPU copy of a pinned store's index, kept in step through puts, deletions and growth."""
    import cupy

    store = HostStore(4, "float32", initial_rows=8, pinned=True)
    default = cupy.zeros(4, cupy.uint32)
    for step, (op, values) in enumerate(steps):
        keys = np.array(values, np.int64)
        if op == "put":
            store.put_many(keys, rows_for(keys, 4, "float32", seed=step))
        elif op == "delete":
            store.delete_many(np.unique(keys))
        want_rows, want_found = store.get_many(keys)
        rows, found = store.gather_to_device(cupy.asarray(keys), default)
        assert host(found).tolist() == want_found.tolist()
        assert host(rows).tobytes() == want_rows.view(np.uint32).tobytes()
    store.close()


def test_runs_on_the_callers_stream():
    """Work goes to the stream given (a cupy Stream or a raw pointer), with the same results."""
    import cupy

    cpu, gpu = pair(512, 16, "lru", "always", "float32", 32, np.arange(1000, dtype=np.int64))
    stream = cupy.cuda.Stream(non_blocking=True)
    keys = cupy.arange(0, 1000, 3, dtype=cupy.int64)
    expected = cpu.lookup(keys.get())
    got = gpu.lookup(keys, stream=stream)
    stream.synchronize()
    assert raw_bytes(got) == expected.tobytes()
    got = gpu.lookup(keys, stream=stream.ptr)
    assert raw_bytes(got) == cpu.lookup(keys.get()).tobytes()
    assert_same_state(cpu, gpu)


def test_lookups_alternating_between_streams_keep_one_scratch_size():
    """A host-path lookup on another stream than the last gets a scratch buffer of its own (the last one may
    still be read on its stream), of the size it needs: on 2026-12-04 each switch doubled it, and 14
    alternations of 2^20 keys asked for 137 GB."""
    import cupy

    cpu, gpu = pair(512, 16, "fifo", "always", "float32", 32, np.arange(1000, dtype=np.int64))
    streams = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    keys = np.arange(0, 1000, 7, dtype=np.int64)
    last = None
    for i in range(40):
        got = gpu.lookup(cupy.asarray(keys), stream=streams[i % 2])
        streams[i % 2].synchronize()
        assert raw_bytes(got) == cpu.lookup(keys).tobytes()
        scratch = gpu._backend._scratch
        # checked at every call (the old doubling would exhaust the GPU's memory before the end), and a
        # buffer of its own for each switch: the last one may still be read on its stream
        assert scratch.shape[0] <= 2 * len(keys), (i, scratch.shape[0])
        assert scratch is not last, i
        last = scratch
    assert_same_state(cpu, gpu)


def test_all_hit_lookup_is_captured_in_a_cuda_graph():
    """A captured lookup replays on the device: same rows, the clock ticks and hits are counted per replay.
    (The store is pinned: a lookup whose misses would need the host cannot be captured, test_ordered.py.)"""
    import cupy

    cpu, gpu = pair(4096, 128, "lru", "always", "float32", 32, np.arange(2048, dtype=np.int64), pinned=True)
    keys = np.random.default_rng(2).integers(0, 1024, 1024)
    cpu.lookup(keys)
    gpu.lookup(keys)  # now every key is cached
    stream = cupy.cuda.Stream(non_blocking=True)
    device_keys = cupy.asarray(keys)
    # that lookup (pinned: stream-ordered) and device_keys' copy are queued on the legacy stream, which a
    # non-blocking stream's capture does not wait for: the replays could run beside them
    cupy.cuda.Device().synchronize()
    with stream:
        stream.begin_capture()
        out = gpu.lookup(device_keys)
        graph = stream.end_capture()
    for _ in range(3):
        graph.launch(stream)
        expected = cpu.lookup(keys)
    stream.synchronize()
    assert raw_bytes(out) == expected.tobytes()
    assert gpu.clock == cpu.clock == 4
    assert gpu.stats.hits == cpu.stats.hits and gpu.stats.misses == cpu.stats.misses
    k1, _, s1 = cpu.export()
    k2, _, s2 = gpu.export()
    assert k1.tolist() == k2.tolist() and s1.tolist() == s2.tolist()


@pytest.mark.parametrize("pinned", [False, True])
@pytest.mark.parametrize("failure", ["reserved key", "closed tier"])
@pytest.mark.parametrize("policy", ["lru", "lfu", "sieve"])
def test_a_lookup_that_fails_changes_nothing(policy, failure, pinned):
    """Hits (duplicated) beside a reserved key or a miss the tier cannot serve: the lookup raises,
    and scores, keys, rows and clock are as before.  LRU's and SIEVE's probes store the hit scores as
    they read the slots (SIEVE's from the score read: some visited bits set, some not), so this is
    their undo at work; LFU touches nothing before the end."""
    import cupy

    cpu, gpu = pair(256, 4, policy, "always", "float32", 32, np.arange(100, dtype=np.int64), pinned=pinned)
    gpu.lookup(np.arange(40))
    gpu.lookup(np.arange(0, 40, 3))  # scores now differ from slot to slot
    _, found = gpu.query(np.arange(40))
    hits = np.flatnonzero(host(found))[:5]
    assert hits.shape[0] == 5
    before, clock = gpu.export(), gpu.clock
    if failure == "reserved key":
        extra, error = embcache.RESERVED_KEYS[1], embcache.errors.ReservedKeyError
    else:
        gpu._tier.close()
        extra, error = 99, embcache.errors.ClosedError  # never looked up: a miss the tier must serve
    batch = np.concatenate([hits, hits[::-1], [extra], hits[:2]]).astype(np.int64)
    # a pinned store's lookup is stream-ordered: it refuses reserved keys of a host batch before any work
    # (a device batch's would be counted invalid instead, test_ordered.py)
    with pytest.raises(error):
        gpu.lookup(batch if pinned and failure == "reserved key" else cupy.asarray(batch))
    after = gpu.export()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, after))
    assert gpu.clock == clock
    assert int(gpu._backend.state[0]) == clock  # the device clock (STATE_CLOCK) did not tick either
    if failure == "reserved key":  # the cache still works, and as the CPU backend does
        cpu.lookup(np.arange(40))
        cpu.lookup(np.arange(0, 40, 3))
        assert raw_bytes(cpu.lookup(hits)) == raw_bytes(gpu.lookup(hits))
        assert_same_state(cpu, gpu)


def test_tables_beyond_2_31_slots_and_4_gib_of_rows():
    """64-bit indexing: keys whose sets lie past slot 2^31 and row bytes past 4 GiB."""
    import cupy

    free, _ = cupy.cuda.runtime.memGetInfo()
    capacity = 2**31 + 2**26  # 2.2 G slots: 36 GiB of keys and scores, 8.6 GiB of rows (dim 2 float16)
    if free < 50 * 2**30:
        pytest.skip(f"needs 50 GiB of free GPU memory, {free / 2**30:.0f} GiB free")
    tier = HostStore(2, "float16")
    cache = embcache.Cache(capacity, 2, "lru", "always", "float16", "gpu", tier, ways=32)
    try:
        candidates = np.arange(1, 400_000, dtype=np.int64)
        high = candidates[sets_of(candidates, cache.num_sets) * 32 >= 2**31 + 2**25][:1000]
        assert high.shape[0] == 1000
        rows = rows_for(high, 2, "float16", seed=5)
        cache.insert(high, rows)
        got, found = cache.query(high)
        assert bool(found.all()) and host(got).tobytes() == rows.tobytes()
        assert int(cache._backend.find(cupy.asarray(high)).min()) >= 2**31 + 2**25
        assert host(cache.lookup(high)).tobytes() == rows.tobytes()
        assert cache.stats.last.hits == 1000
    finally:
        cache.close()
        del cache
        cupy.get_default_memory_pool().free_all_blocks()


@given(st.lists(st.integers(-3, 2**62), max_size=60).map(lambda v: v + v[: len(v) // 2]))
def test_gpu_unique_equals_cpu_unique(values):
    import cupy

    cache = embcache.Cache(64, 1, backend="gpu")
    keys = np.asarray(values, np.int64)
    got = cache._backend.unique(cupy.asarray(keys))
    want = embcache.kernels.cpu.CPUBackend.unique(keys)
    for g, w in zip(got, want):
        assert host(g).tolist() == w.tolist()


def test_study_gives_the_same_hit_rates_on_both_backends():
    from embcache.study import run_study
    from embcache.traces import zipf_trace

    trace = zipf_trace(40_000, 5000, seed=3)
    runs = [run_study(trace, POLICIES, ["always", "min_frequency"], [0.01, 0.1], batch=512,
                      backend=b, belady=False, progress=False) for b in ("cpu", "gpu")]
    for cpu, gpu in zip(*runs):
        assert (cpu["hit_rate"], cpu["evictions"], cpu["insertions"]) == (gpu["hit_rate"], gpu["evictions"],
                                                                          gpu["insertions"])
