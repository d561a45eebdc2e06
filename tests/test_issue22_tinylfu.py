"""Issue 22 item 1: the W-TinyLFU-style admission (``tinylfu``), its orderings, on both backends.

The registry's ``tinylfu`` joins the stateful and differential grids by itself (with the small sketch
of tests/strategies.py: 16 counters, 2 rows, halved every 3 clocks); here, the rule's own orderings.
"""
import numpy as np
import pytest

import embcache
from embcache.errors import ConfigError
from embcache.kernels.gpu import gpu_available
from embcache.policies import TinyLFU, get_admission
from embcache.tiers import HostStore

from .reference import mix64


def _cache(admission, policy="lru", capacity=2, ways=2, backend="cpu"):
    store = HostStore(1, "float32")
    store.put_many(np.arange(100), np.zeros((100, 1), np.float32))
    return embcache.Cache(capacity, 1, policy, admission, backend=backend, tier=store, ways=ways)


def _cached(cache) -> set:
    return set(cache.export()[0].tolist())


def _collision_free(keys, width, depth, seed) -> bool:
    """Whether some sketch row gives every key of ``keys`` its own counter (then every estimate is exact)."""
    return any(len({mix64(k + (r + 1) * 0x9E3779B97F4A7C15 + seed) & (width - 1) for k in keys}) == len(keys)
               for r in range(depth))


def _exact(sample=0):
    """A sketch in which keys 0 .. 99 never share a counter in some row."""
    seed = next(s for s in range(100) if _collision_free(range(100), 1 << 16, 2, s))
    return TinyLFU(width=1 << 16, depth=2, seed=seed, sample=sample)


def test_a_missed_key_enters_a_full_set_only_if_more_frequent_than_the_victim():
    cache = _cache(_exact())
    cache.lookup([1])
    cache.lookup([2])  # the set is full: 1 (least recent) is the victim from now on
    cache.lookup([3])  # 3 seen once, 1 once: a tie keeps the victim
    assert _cached(cache) == {1, 2} and cache.stats.last.refusals == 1
    cache.lookup([3])  # 3 twice now, 1 once: 3 enters, 1 goes
    assert _cached(cache) == {2, 3} and cache.stats.last.evictions == 1


def test_hits_count_in_the_sketch():
    cache = _cache(_exact())
    cache.lookup([1])
    cache.lookup([2])
    for _ in range(3):
        cache.lookup([1])  # 1: 4 occurrences; 2 is the least recent now, seen once
    cache.lookup([3, 3])  # 3 twice > 2 once: 3 enters over 2
    assert _cached(cache) == {1, 3}


def test_the_sketch_halves_at_multiples_of_its_sample_times_the_capacity():
    cache = _cache(_exact(sample=2))  # 2 slots: halved every 4 looked-up occurrences
    for k in (1, 1, 2):
        cache.lookup([k])
    cache.lookup([9])  # the 4th occurrence: counted, then every counter halved: 1: 2 -> 1, 2: 1 -> 0, 9: 1 -> 0
    sketch = cache._backend.sketch
    assert sorted(set(sketch.ravel().tolist())) == [0, 1] and int(sketch.sum()) == 2  # one row's counter each
    assert _cached(cache) == {1, 2}  # 9 (0 after the halving) does not beat its victim 1 (1)


def test_a_batch_that_passes_several_multiples_halves_as_often():
    """The rate is per looked-up occurrence, whatever the batch size."""
    cache = _cache(_exact(sample=1))  # 2 slots: halved every 2 occurrences
    cache.lookup([1] * 8)  # 0 -> 8 occurrences: 4 multiples passed, 8 >> 4
    assert int(cache._backend.sketch.max()) == 0
    cache.lookup([1] * 3)  # 8 -> 11: one multiple (10), 3 >> 1
    assert int(cache._backend.sketch.max()) == 1


def test_insert_and_preload_bypass_the_comparison():
    cache = _cache(_exact())
    cache.lookup([1, 1, 1])
    cache.lookup([2, 2, 2])
    cache.insert([5], np.zeros((1, 1), np.float32))  # never seen, enters anyway (admission is bypassed)
    assert 5 in _cached(cache)


def test_the_victim_is_the_eviction_policys():
    """Over LFU the victim is the lowest count, so a key more frequent than it enters."""
    cache = _cache(_exact(), policy="lfu")
    cache.lookup([1, 1, 1])
    cache.lookup([2])
    cache.lookup([3])  # victim 2 (count 1): tie, refused
    cache.lookup([3])  # 3 twice > 2 once
    assert _cached(cache) == {1, 3}


def test_settings_are_checked_and_saved(tmp_path):
    for bad in ({"width": 3}, {"depth": 0}, {"sample": -1}):
        with pytest.raises(ConfigError):
            TinyLFU(**bad)
    a = get_admission("tinylfu")
    assert a.compares_victim and a.device_rule() is None and a.rule()["compares_victim"] is True
    assert "compares_victim" not in get_admission("min_frequency").rule()
    cache = _cache(TinyLFU(width=64, depth=2, seed=1, sample=1), capacity=8, ways=4)
    for i in range(20):
        cache.lookup([i % 7, i % 11])
    assert_reloads_the_same(cache, tmp_path, [[i % 13] for i in range(20)])


def assert_reloads_the_same(cache, tmp_path, batches) -> None:
    """``cache`` saved and loaded (CPU) has its admission, and both go on alike over ``batches``
    (contents, scores and the sketch)."""
    cache.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", tier=cache.tier, backend="cpu")
    assert loaded.admission == cache.admission
    for batch in batches:
        cache.lookup(batch)
        loaded.lookup(batch)
    for x, y in zip(cache.export(), loaded.export()):
        assert x.tobytes() == y.tobytes()
    assert (loaded._backend.sketch == cache._backend.sketch).all()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.parametrize("policy", ["lru", "lfu", "lfu_aged"])
@pytest.mark.parametrize("pinned", [False, True])
def test_gpu_compares_victims_as_the_cpu(policy, pinned):
    """A pinned store too: TinyLFU's lookups stay on the host path there (no stream-ordered rule)."""
    from .strategies import host
    from .test_gpu import assert_same_state
    from .test_ordered import caches

    rng = np.random.default_rng(3)
    stored = np.arange(0, 400, dtype=np.int64)
    admission = "tinylfu"
    cpu, gpu, _ = caches(64, 8, policy, admission, 4, stored, pinned=(False, pinned, pinned))
    for step in range(40):
        batch = (rng.zipf(1.2, int(rng.integers(0, 60))) % 420).astype(np.int64)
        assert host(gpu.lookup(batch)).tobytes() == cpu.lookup(batch).tobytes()
        assert_same_state(cpu, gpu)
        assert (host(gpu._backend.sketch) == cpu._backend.sketch).all()
    assert cpu.stats.refusals > 0 and cpu.stats.evictions > 0


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_tinylfu_lookup_cannot_be_captured():
    """Its victim comparison is decided on the host path: under capture that is a CaptureError, never
    a silent change of rule."""
    import cupy

    from embcache.errors import CaptureError

    from .test_ordered import caches, refused_under_capture

    _, _, gpu = caches(64, 4, "lru", "tinylfu", 4, np.arange(10, dtype=np.int64))
    refused_under_capture(gpu, cupy.arange(8, dtype=cupy.int64), cupy.empty((8, 4), cupy.float32), "cannot be captured")
    assert CaptureError and gpu.clock == 0
