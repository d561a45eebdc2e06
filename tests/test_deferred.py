"""HPS's insertion semantics (HitRateDeferred) and the Gather index rules of ``lookup(index_rows=)``,
on the CPU backend and, where a GPU is, on both GPU paths (an ordinary store: the host path; a pinned
store: the stream-ordered lookup), which must agree with the CPU bit for bit."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.kernels.gpu import gpu_available
from embcache.policies import Always, HitRateDeferred, TinyLFU
from embcache.tiers import HostStore

from .strategies import host, rows_for

BACKENDS = [("cpu", False), pytest.param(("gpu", False), marks=[pytest.mark.gpu, pytest.mark.skipif(
    not gpu_available(), reason="needs a CUDA GPU and CuPy")]), pytest.param(("gpu", True), marks=[
        pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")])]


def make(where, admission, policy="lru", capacity=64, ways=4, dim=4, stored=range(200)):
    backend, pinned = where
    stored = np.array(list(stored), np.int64)
    store = HostStore(dim, "float32", pinned=pinned, initial_rows=1024)
    store.put_many(stored, rows_for(stored, dim, "float32", seed=3))
    return embcache.Cache(capacity, dim, policy, admission, backend=backend, tier=store, ways=ways, default=-1.0)


def found(cache, keys):
    return host(cache.query(np.asarray(keys, np.int64))[1]).tolist()


@pytest.mark.parametrize("where", BACKENDS)
def test_a_batch_at_or_above_the_threshold_returns_before_its_misses_are_placed(where):
    """Observed through a query issued right after (query does not place them) and the stats; the next
    operation places them first, and then the cache holds what Always would."""
    cache, always = make(where, HitRateDeferred(0.5)), make(where, Always())
    for c in (cache, always):
        c.lookup(np.arange(10))  # a cold batch (hit rate 0 < 0.5): placed before it returns
    assert found(cache, range(10)) == [True] * 10 and len(cache) == 10
    batch = np.concatenate([np.arange(10), [50, 51, 52]])  # 10 of 13 hit: at the threshold or above
    rows = host(cache.lookup(batch))
    assert host(always.lookup(batch)).tobytes() == rows.tobytes()  # served now, the same rows
    assert found(cache, [50, 51, 52]) == [False] * 3  # not placed yet
    assert cache.stats.last.insertions == 0 and cache.stats.insertions == 10 and len(cache) == 10
    cache.lookup(np.array([50]))  # the next operation: first the deferred batch, then its own work
    assert cache.stats.last.hits == 1 and cache.stats.last.misses == 0
    assert cache.stats.insertions == 13 and len(cache) == 13
    always.lookup(np.array([50]))
    k1, r1, s1 = cache.export()
    k2, r2, s2 = always.export()
    assert k1.tolist() == k2.tolist() and s1.tolist() == s2.tolist() and r1.tobytes() == r2.tobytes()


@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("op", ["insert", "update", "erase", "preload", "clear", "export"])
def test_every_operation_but_query_places_a_deferred_batch_first(where, op):
    cache = make(where, HitRateDeferred(0.0))  # every non-empty batch is deferred
    cache.lookup(np.array([1, 2, 3]))
    assert len(cache) == 0
    keys, rows = np.array([2, 99]), np.full((2, 4), 7.0, np.float32)
    {"insert": lambda: cache.insert(keys, rows), "update": lambda: cache.update(keys, rows),
     "erase": lambda: cache.erase(keys), "preload": lambda: cache.preload(keys), "clear": cache.clear,
     "export": cache.export}[op]()
    expected = {"insert": {1, 2, 3, 99}, "update": {1, 2, 3}, "erase": {1, 3}, "preload": {1, 2, 3, 99},
                "clear": set(), "export": {1, 2, 3}}[op]
    # the size and counters follow the placement at once (read before anything else could absorb them)
    assert len(cache) == len(expected)
    assert cache.stats.insertions == len(cache) + cache.stats.evictions + cache.stats.erased
    assert set(cache.export()[0].tolist()) == expected
    cache.lookup(np.array([1, 150]))  # deferred too: placed by the next operation, counted then
    assert len(cache) == len(expected)
    assert set(cache.export()[0].tolist()) == expected | {1, 150}
    assert len(cache) == len(expected | {1, 150})
    assert cache.stats.insertions == len(cache) + cache.stats.evictions + cache.stats.erased


@pytest.mark.parametrize("admission", ["deferred", "always"])
@settings(deadline=None, max_examples=max(6, settings().max_examples // 5))
@given(data=st.data())
def test_deferred_insertion_agrees_on_every_backend(admission, data):
    """Random lookups and writes: the CPU and both GPU paths give the same rows, contents and stats."""
    wheres = [("cpu", False)] + ([("gpu", False), ("gpu", True)] if gpu_available() else [])
    t = data.draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]), label="t")
    capacity = data.draw(st.integers(1, 40), label="capacity")
    caches = [make(w, HitRateDeferred(t) if admission == "deferred" else Always(), capacity=capacity,
                   stored=range(0, 60, 2)) for w in wheres]
    for step in range(data.draw(st.integers(1, 10), label="steps")):
        op = data.draw(st.sampled_from(["lookup", "lookup", "lookup", "query", "insert", "erase"]), label="op")
        batch = np.array(data.draw(st.lists(st.integers(0, 70), max_size=30), label="batch"), np.int64)
        outs = []
        for c in caches:
            if op == "lookup":
                outs.append(host(c.lookup(batch)).tobytes())
            elif op == "query":
                rows, hit = c.query(batch)
                outs.append((host(rows).tobytes(), host(hit).tolist()))
            elif op == "insert":
                c.insert(batch, rows_for(batch, 4, "float32", seed=step))
            else:
                c.erase(batch)
        assert all(o == outs[0] for o in outs)
        # counters first (reading them places nothing), then the contents (export places a deferred batch)
        counters = [(c.stats.as_dict(), len(c), c.clock) for c in caches]
        assert all(x == counters[0] for x in counters)
        contents = [(c.export()[0].tolist(), c.export()[2].tolist(), c.stats.as_dict(), len(c)) for c in caches]
        assert all(x == contents[0] for x in contents)


@pytest.mark.parametrize("where", BACKENDS)
def test_index_rows_applies_gathers_rules_and_counts_the_keys_outside(where):
    """Row numbers of a 100-row table: -1 is row 99; 100 and -101 are outside (the default row, counted)."""
    cache = make(where, Always(), stored=range(100))
    keys = np.array([3, -1, 100, -101, 99, 3], np.int64)
    got = host(cache.lookup(keys, index_rows=100))
    want = host(make(where, Always(), stored=range(100)).lookup(np.array([3, 99, 100, 100, 99, 3])))
    assert got.tobytes() == want.tobytes()
    assert (got[2] == -1.0).all() and (got[3] == -1.0).all()
    assert cache.stats.invalid == 2 and cache.stats.last.invalid == 2
    assert 100 not in cache.export()[0].tolist()
    if where[0] == "gpu":
        import cupy

        got32 = host(cache.lookup(cupy.asarray(keys.astype(np.int32)), index_rows=100))
        assert got32.tobytes() == want.tobytes() and cache.stats.invalid == 4


@pytest.mark.parametrize("where", BACKENDS)
@pytest.mark.parametrize("policy, admission", [("lru", "always"), ("fifo", "always"), ("lfu", "always"),
                                               ("lru", "tinylfu")])
@settings(deadline=None, max_examples=max(5, settings().max_examples // 8))
@given(batches=st.lists(st.lists(st.integers(-130, 130), max_size=40), min_size=1, max_size=4),
       int32=st.booleans())
def test_index_rows_on_every_path_equal_the_rules_applied_first(where, policy, admission, int32, batches):
    """Row numbers of a 100-row table, in and out of range, negative ones too, batch after batch: each
    path (the CPU; the GPU's host path and its stream-ordered lookup, whose probes apply Gather's rules
    as they read the keys) gives the rows, stats and contents of a CPU cache that is given the keys
    with the rules applied first, and counts the keys outside as invalid.  TinyLFU is decided on the
    host, so over the pinned store the GPU takes its host path with the store's rows read in place:
    the probe then converts the keys and reads the source in one pass."""
    rule = (lambda: Always()) if admission == "always" else (lambda: TinyLFU())
    caches = [make(where, rule(), policy=policy, stored=range(100))]
    reference = make(("cpu", False), rule(), policy=policy, stored=range(100))
    invalid = 0
    for batch in batches:
        keys = np.array(batch, np.int64)
        wrapped = [k + 100 if k < 0 else k for k in batch]
        outside = [not 0 <= k < 100 for k in wrapped]
        invalid += sum(outside)
        want = host(reference.lookup(np.array([100 if o else k for k, o in zip(wrapped, outside)], np.int64)))
        for c in caches:
            given_keys = keys
            if c.backend == "gpu":
                import cupy

                given_keys = cupy.asarray(keys.astype(np.int32) if int32 else keys)
            assert host(c.lookup(given_keys, index_rows=100)).tobytes() == want.tobytes()
            assert c.stats.last.invalid == sum(outside) and c.stats.invalid == invalid
            assert (c.stats.hits, c.stats.misses, c.stats.insertions) == \
                (reference.stats.hits, reference.stats.misses, reference.stats.insertions)
    for c in caches:
        assert (c.export()[0].tolist(), c.export()[2].tolist(), len(c)) == \
            (reference.export()[0].tolist(), reference.export()[2].tolist(), len(reference))


def test_index_rows_must_be_a_positive_row_count():
    cache = make(("cpu", False), Always())
    for bad in (0, -5, 1.5, True):
        with pytest.raises(embcache.errors.ConfigError, match="index_rows"):
            cache.lookup(np.arange(3), index_rows=bad)
