"""The output contract and the layout, on random traces."""
import json
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import embcache
from embcache.layout import mix64, sets_of
from embcache.policies import admission_class, admission_names, policy_class, policy_names
from embcache.tiers import HostStore

from .strategies import ADMISSIONS, keys as key_values, rows_for, same_bits


def _in_package(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "embcache"


def policy_grid() -> list[str]:
    """Every eviction policy embcache registers: a new file in embcache/policies joins every grid, both backends."""
    return [name for name in policy_names() if _in_package(policy_class(name))]


def admission_grid() -> dict:
    """Every admission policy embcache registers, name -> factory (the tests' small settings where they have some)."""
    return {name: ADMISSIONS.get(name, admission_class(name)) for name in admission_names()
            if _in_package(admission_class(name))}


POLICIES, ADMISSION_GRID = policy_grid(), admission_grid()

TIER_KEYS = np.array(sorted({k for k in range(-40, 41)} | {2**63 - 1 - i for i in range(21)}
                            | {-(2**63) + 2 + i for i in range(19)}), np.int64)


def make(policy="lru", admission="always", capacity=1, ways=1, dim=4, dtype="float32", **kw):
    tier = HostStore(dim, dtype)
    stored = TIER_KEYS[::2]  # half the keys are absent from every tier
    tier.put_many(stored, rows_for(stored, dim, dtype, seed=1))
    return embcache.Cache(capacity, dim, policy, admission, dtype, "cpu", tier, default=7.0, ways=ways, **kw), tier


def expected_rows(tier, keys, default):
    rows, found = tier.get_many(keys)
    rows[~found] = default
    return rows


def test_mix64_matches_shared_vectors(vectors_dir):
    for v in json.loads((vectors_dir / "mix64.json").read_text())["vectors"]:
        assert int(mix64(np.int64(v["key"]))) == v["mix64"]
        assert sets_of(np.array([v["key"]]), 1000)[0] == v["set_of_1000_sets"]
        assert sets_of(np.array([v["key"]]), 4096)[0] == v["set_of_4096_sets"]


@pytest.mark.parametrize("policy", POLICIES)
@given(
    admission=st.sampled_from(sorted(ADMISSION_GRID)),
    capacity=st.integers(1, 8),
    ways=st.sampled_from([1, 2, 4]),
    trace=st.lists(st.lists(key_values, max_size=40), min_size=1, max_size=12),
)
def test_lookup_returns_the_tiers_rows(policy, admission, capacity, ways, trace):
    cache, tier = make(policy, admission, capacity, ways)
    lookups = 0
    for batch in trace:
        keys = np.array(batch, np.int64)
        assert same_bits(cache.lookup(keys), expected_rows(tier, keys, 7.0))
        lookups += len(batch)
        assert len(cache) <= cache.capacity
    s = cache.stats
    assert s.hits + s.misses == lookups
    assert s.insertions == len(cache) + s.evictions + s.erased


@given(trace=st.lists(st.lists(st.integers(-5, 5), min_size=1, max_size=64), min_size=1, max_size=8))
def test_heavy_duplicates_one_set_one_way(trace):
    cache, tier = make("lfu", capacity=1, ways=1)
    for batch in trace:
        keys = np.array(batch, np.int64)
        before = set(cache.export()[0].tolist())
        out = cache.lookup(keys)
        assert same_bits(out, expected_rows(tier, keys, 7.0))
        last = cache.stats.last
        assert last.hits == sum(k in before for k in batch)
        assert last.unique_misses == len(set(batch) - before)
        assert last.unique_misses == last.absent + last.insertions + last.refusals
        assert len(cache) <= 1


def test_empty_batches_tick_the_clock_and_change_nothing_else():
    cache, _ = make()
    assert cache.lookup(np.array([], np.int64)).shape == (0, 4)
    assert cache.lookup([]).shape == (0, 4)
    cache.insert(np.array([], np.int64), np.empty((0, 4), np.float32))
    cache.preload([])
    assert cache.clock == 4 and len(cache) == 0 and cache.stats.lookups == 0
    rows, found = cache.query([])
    assert rows.shape == (0, 4) and found.shape == (0,)


def test_query_is_read_only():
    cache, tier = make("lfu", capacity=64, ways=4)
    cache.lookup(TIER_KEYS)
    before = cache.export(), cache.stats.as_dict(), cache.clock
    rows, found = cache.query(TIER_KEYS)
    after = cache.export(), cache.stats.as_dict(), cache.clock
    assert all(same_bits(a, b) for a, b in zip(before[0], after[0])) and before[1:] == after[1:]
    cached = np.isin(TIER_KEYS, before[0][0])
    assert (found == cached).all()
    assert same_bits(rows[found], expected_rows(tier, TIER_KEYS[found], 7.0))
    assert (rows[~found] == 7.0).all()


def test_capacity_rounds_up_to_whole_sets():
    assert embcache.Cache(100, 2, ways=32, backend="cpu").capacity == 128
    assert embcache.Cache(1, 2, ways=1, backend="cpu").capacity == 1


def test_uint64_keys_are_their_bits():
    cache, tier = make(capacity=8, ways=2)
    k = np.array([2**64 - 1], np.uint64)  # the key -1
    assert same_bits(cache.lookup(k), expected_rows(tier, np.array([-1]), 7.0))
    assert -1 in TIER_KEYS[::2] and cache.export()[0].tolist() == [-1]


def test_default_row_may_be_a_vector():
    cache = embcache.Cache(4, 3, backend="cpu", default=np.array([1.0, 2.0, 3.0]))
    assert cache.lookup([5]).tolist() == [[1.0, 2.0, 3.0]]


def test_save_and_load_round_trip(tmp_path):
    cache, tier = make("lfu", "min_frequency", capacity=32, ways=4)
    for i in range(5):
        cache.lookup(TIER_KEYS[i::3])
    cache.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", tier=tier, backend="cpu")
    for a, b in zip(cache.export(), loaded.export()):
        assert same_bits(a, b)
    assert loaded.stats.as_dict() == cache.stats.as_dict() and loaded.clock == cache.clock and len(loaded) == len(cache)
    assert loaded.policy == cache.policy and loaded.admission == cache.admission
    # both continue identically, sketch included
    for i in range(4):
        assert same_bits(cache.lookup(TIER_KEYS[i::2]), loaded.lookup(TIER_KEYS[i::2]))
    for a, b in zip(cache.export(), loaded.export()):
        assert same_bits(a, b)


def test_threads_calls_are_atomic():
    cache, tier = make("lru", capacity=32, ways=4)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(200):
                keys = rng.choice(TIER_KEYS, 16)
                assert same_bits(cache.lookup(keys), expected_rows(tier, keys, 7.0))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = cache.stats
    assert s.lookups == 4 * 200 * 16 and cache.clock == 800
    assert s.insertions == len(cache) + s.evictions + s.erased


@given(st.lists(st.integers(-5, 5), max_size=40))
def test_backend_unique_matches_numpy(values):
    from embcache.kernels.cpu import CPUBackend

    keys = np.asarray(values, np.int64)
    ukeys, inverse, counts, last = CPUBackend.unique(keys)
    want, want_inverse, want_counts = np.unique(keys, return_inverse=True, return_counts=True)
    assert ukeys.tolist() == want.tolist() and counts.tolist() == want_counts.tolist()
    assert inverse.tolist() == want_inverse.ravel().tolist()
    assert last.tolist() == [max(i for i, k in enumerate(values) if k == u) for u in want.tolist()]


def test_stats_add_sums_every_counter():
    from embcache.stats import _COUNTERS, Stats

    total, batch = Stats(**{name: 1 for name in _COUNTERS}), Stats(**{name: 10 + i for i, name in enumerate(_COUNTERS)})
    batch.occupancy = 0.5
    total.add(batch)
    assert {name: getattr(total, name) for name in _COUNTERS} == {name: 11 + i for i, name in enumerate(_COUNTERS)}
    assert total.occupancy == 0.5 and total.last is batch
