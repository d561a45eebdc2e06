"""Issue 22's CPU bar for a one-key miss (<= 20 us): the shorter miss path gives exactly what the longer one gave.

* ``CPUBackend.insert_and_evict`` of a small batch (up to ``cpu._SMALL_PLACEMENT`` keys) without a sketch,
  lookahead or table chances makes one call (each policy module's ``insert_tally_cpu``: the placement and
  its tally); it leaves the arrays, hands and tally that the general call of ``insert_and_evict_cpu``
  does (forced here by an empty lookahead window, which protects nothing), for every registered policy,
  at several way counts, with refused, refreshed and evicting keys;
* ``Cache.lookup`` of small batches (one key, duplicates, misses, keys no tier holds, reserved keys)
  gives the rows, stats and contents of the plain model (tests/reference.py), on float32 and 16-bit rows;
  a reserved key is refused and changes nothing;
* ``HostStore.get_many`` (its own, with ``Tier._run`` written out) reads what was put, zero rows where
  absent, before and after the store grows, and refuses what ``Tier.get_many`` refuses.

The speed itself is benchmarks/cpu_bars.py's (asv: benchmarks/bench_cpu.py), never a timed test.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache._dtypes import row_dtype
from embcache.errors import ClosedError, KeyDtypeError, ReservedKeyError, TierError
from embcache.kernels import cpu
from embcache.layout import EMPTY_KEY, LOCKED_KEY
from embcache.policies import policy_names
from embcache.tiers import HostStore

from .reference import ReferenceCache
from .strategies import same_bits

NO_WINDOW = (np.zeros(0, np.int64), np.zeros(0, np.int64))  # protect=: the general call, nothing protected


def _backends(policy, num_sets, ways, dim):
    return [cpu.CPUBackend(num_sets, ways, dim, np.dtype(np.float32), embcache.policies.get_policy(policy))
            for _ in range(2)]


@pytest.mark.parametrize("policy", sorted(policy_names()))
@pytest.mark.parametrize("ways", [1, 4, 32])
@settings(max_examples=15, deadline=None)
@given(steps=st.lists(st.tuples(st.lists(st.integers(0, 300), max_size=cpu._SMALL_PLACEMENT, unique=True),
                                st.integers(0, 2**32 - 1), st.booleans()), min_size=1, max_size=12))
def test_the_one_call_placement_is_the_general_one(policy, ways, steps):
    num_sets, dim = 3, 4
    one, general = _backends(policy, num_sets, ways, dim)
    for keys, seed, refuse in steps:
        rng = np.random.default_rng(seed)
        keys = np.array(sorted(keys), np.int64)
        n = keys.shape[0]
        counts = rng.integers(1, 4, n).astype(np.int64)
        rows = rng.standard_normal((n, dim)).astype(np.float32)
        admit = rng.random(n) < 0.8
        for b in (one, general):
            b.tick()
        one.insert_and_evict(keys, counts, rows, admit, refuse)
        general.insert_and_evict(keys, counts, rows, admit, refuse, 0, NO_WINDOW)
        assert one.tally().tolist() == general.tally().tolist()
        assert one.tally().dtype == general.tally().dtype == np.int64 and one.tally().shape == (5,)
        assert (one.keys == general.keys).all() and (one.scores == general.scores).all()
        assert same_bits(one.values, general.values)
        if one.hands is not None:
            assert (one.hands == general.hands).all()


def _store(dim, dtype, keys):
    store = HostStore(dim, dtype, initial_rows=4)  # grows (rehashes) while it is filled
    rows = np.random.default_rng(7).standard_normal((len(keys), dim)).astype(row_dtype(dtype))
    store.put_many(np.array(keys, np.int64), rows)
    return store, dict(zip(keys, rows))


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "clock", "s3fifo", "static"])
@pytest.mark.parametrize("dim, dtype", [(32, "float32"), (3, "float16"), (8, "bfloat16")])
@settings(max_examples=20, deadline=None)
@given(batches=st.lists(st.one_of(st.lists(st.integers(0, 60), min_size=1, max_size=1),
                                  st.lists(st.integers(0, 60), min_size=1, max_size=6),
                                  st.sampled_from([[EMPTY_KEY], [LOCKED_KEY], [5, LOCKED_KEY, 5]])),
                        min_size=1, max_size=40))
def test_small_lookups_are_the_reference_cache(policy, dim, dtype, batches):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    stored = list(range(0, 60, 3)) + list(range(1, 60, 7))  # the others no tier holds
    store, table = _store(dim, dtype, stored)
    cache = embcache.Cache(16, dim, policy, "always", dtype, "cpu", store, default=-1.0, ways=4)
    ref = ReferenceCache(16, dim, embcache.policies.get_policy(policy), embcache.policies.get_admission("always"),
                         table, -1.0, 4, row_dtype(dtype))
    if policy == "static":
        cache.preload(np.arange(0, 60, 9))
        ref.preload(list(range(0, 60, 9)))
    try:
        for batch in batches:
            keys = np.array(batch, np.int64)
            if (keys <= LOCKED_KEY).any():
                before = [a.copy() for a in cache.export()], cache.stats.as_dict(), cache.clock
                with pytest.raises(ReservedKeyError):
                    cache.lookup(keys)
                assert all(same_bits(a, b) for a, b in zip(before[0], cache.export()))
                assert cache.stats.as_dict() == before[1] and cache.clock == before[2]
                continue
            got = cache.lookup(keys)
            want = ref.lookup(batch)
            assert same_bits(got, np.asarray(want, row_dtype(dtype)))
            assert cache.stats.last.as_dict()["hits"] == ref.last["hits"]
            for name in ("misses", "unique_misses", "absent", "insertions", "evictions", "refusals"):
                assert getattr(cache.stats.last, name) == ref.last[name], name
            assert len(cache) == len(ref)
        keys, _, scores = cache.export()
        ref_keys, _, ref_scores = ref.export()
        assert keys.tolist() == list(ref_keys) and scores.tolist() == list(ref_scores)
    finally:
        cache.close()


@pytest.mark.parametrize("dim, dtype", [(32, "float32"), (3, "float16"), (8, "bfloat16")])
def test_the_host_store_reads_what_was_put_before_and_after_it_grows(dim, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    store, table = _store(dim, dtype, list(range(0, 40, 2)))
    for grow in (False, True):
        if grow:  # a regrown store reads its new arrays (the raw view is made per allocation)
            more = list(range(1000, 1100))
            rows = np.random.default_rng(8).standard_normal((100, dim)).astype(row_dtype(dtype))
            store.put_many(np.array(more, np.int64), rows)
            table.update(zip(more, rows))
        for keys in ([4], [5], [0, 5, 38, 4, 4], list(table)[::-1], []):
            rows, found = store.get_many(np.array(keys, np.int64))
            assert rows.dtype == row_dtype(dtype) and rows.shape == (len(keys), dim) and found.dtype == np.bool_
            assert found.tolist() == [k in table for k in keys]
            for k, row in zip(keys, rows):
                assert same_bits(row, table[k] if k in table else np.zeros(dim, row_dtype(dtype)))
    assert same_bits(store.get_many([4])[0], store.get_many(np.array([4], np.int32))[0])  # the checks convert
    for bad in ([EMPTY_KEY], [LOCKED_KEY], [3, LOCKED_KEY]):
        with pytest.raises(ReservedKeyError):
            store.get_many(np.array(bad, np.int64))
    with pytest.raises(KeyDtypeError):
        store.get_many(np.array([1.5]))
    store.close()
    with pytest.raises(ClosedError):
        store.get_many(np.array([4], np.int64))


def test_a_failing_read_is_a_tier_error_naming_the_store():
    """HostStore.get_many words a failure underneath as Tier._run does."""
    store, _ = _store(4, "float32", [1, 2])
    store._get_many = lambda keys: (_ for _ in ()).throw(RuntimeError("disk on fire"))
    with pytest.raises(TierError, match=r"HostStore\(dim=4.*get_many failed: RuntimeError: disk on fire"):
        store.get_many(np.array([1], np.int64))
    cache = embcache.Cache(8, 4, "lru", backend="cpu", tier=store, ways=4, on_tier_error="default", default=2.0)
    assert (cache.lookup(np.array([1], np.int64)) == 2.0).all() and cache.stats.tier_failures == 1
    assert len(cache) == 0


def test_one_key_checks_refuse_what_the_compiled_pass_refuses():
    from embcache._checks import check_keys

    for key in (EMPTY_KEY, LOCKED_KEY):
        with pytest.raises(ReservedKeyError):
            check_keys(np.array([key], np.int64))
    for key in (LOCKED_KEY + 1, 0, -1, 2**63 - 1):
        keys = np.array([key], np.int64)
        assert check_keys(keys) is keys


def test_a_one_key_batchs_shared_arrays_cannot_be_changed_by_a_caller():
    """One-key ``unique`` and a one-key miss's plan hand out one shared array (inverse, last, missed): it is
    read-only, so a caller that wrote to it would raise rather than change the next lookup's."""
    backend = cpu.CPUBackend(4, 4, 2, np.dtype(np.float32), embcache.policies.get_policy("lru"))
    ukeys, inverse, counts, last = backend.unique(np.array([9], np.int64))
    plan = backend.plan_lookup(np.array([9], np.int64), backend.new_rows(1))
    assert plan.missed.tolist() == inverse.tolist() == last.tolist() == [0] and counts.tolist() == [1]
    for shared in (inverse, last, plan.missed):
        with pytest.raises(ValueError):
            shared[0] = 1
    plan.rollback()
    counts[0] = 3  # counts and keys are the caller's own
    ukeys[0] = 4
    assert backend.unique(np.array([9], np.int64))[2].tolist() == [1]
