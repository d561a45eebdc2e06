"""Issue 22 item 5, the CPU side: the faster host probe gives exactly what the plain code gave.

* a set's matching ways come from one vector compare at 8 to 64 ways (``kernels/_llvm.py``): the slot
  found is the plain scan's (the lowest way, were a key held twice) at every power-of-two way count;
* the digest probe (a byte a slot, then the key behind a match) finds what the scan finds, with keys of one
  digest in one set and stale digests in free slots; every held key's slot keeps its key's digest through
  insertions, evictions, erases and a save and load;
* rows are copied at a constant size where they have one: the same bits, NaN payloads included;
* a lookup whose every key hits applies the hit rule in the same pass as its gather: the cache after
  any sequence of lookups (keys, scores, rows, clock, scores stored, stats) is the one that the
  probe-then-commit path gives, for every registered policy (a twin cache runs the old path).

The speed itself is benchmarks/cpu_bars.py's (asv: benchmarks/bench_cpu.py), never a timed test.
"""
import functools

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.kernels import cpu
from embcache.layout import EMPTY_KEY, mix64_array, sets_of
from embcache.policies import policy_names
from embcache.tiers import HostStore

from .strategies import same_bits

WAYS = [1, 2, 4, 8, 16, 32, 64, 128]


def _plain_slot(table, ways, key):
    """The slot of ``key`` by a plain scan of its set: its lowest way, or -1."""
    num_sets = table.shape[0] // ways
    base = int(sets_of(np.array([key], np.int64), num_sets)[0]) * ways
    for w in range(ways):
        if table[base + w] == key:
            return base + w
    return -1


def _digests(table):
    digests = np.empty(table.shape[0], np.uint8)
    cpu.digests_of(table, digests)
    return digests


def _check_probes(table, digests, ways, keys):
    """find_cpu's slots and probe_hits_cpu's slots, misses and rows are the plain scan's."""
    plain = [_plain_slot(table, ways, int(k)) for k in keys]
    slots = np.empty(keys.shape[0], np.int64)
    cpu.find_cpu(table, digests, ways, keys, slots)
    assert slots.tolist() == plain
    out = np.zeros((keys.shape[0], 3), np.uint32)
    missed = np.full(keys.shape[0], -7, np.int64)
    values = np.arange(table.shape[0] * 3, dtype=np.uint32).reshape(-1, 3)
    slots[:] = -7
    m = cpu.probe_hits_cpu(table, digests, values, ways, keys, out, slots, missed)
    assert slots.tolist() == plain
    assert missed[:m].tolist() == [i for i, s in enumerate(plain) if s < 0]
    hit = np.array(plain) >= 0
    assert (out[hit] == values[np.array(plain)[hit]]).all()


@pytest.mark.parametrize("ways", WAYS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_probe_finds_the_lowest_way_holding_a_key(ways, data):
    num_sets = data.draw(st.integers(1, 5))
    pool = data.draw(st.lists(st.integers(-2**63 + 2, 2**63 - 1), min_size=1, max_size=12, unique=True))
    table = np.full(num_sets * ways, EMPTY_KEY, np.int64)
    # keys placed at random ways of their own set, some twice (the probe must report the lowest)
    sets = sets_of(np.array(pool, np.int64), num_sets)
    for key, s in zip(pool, sets.tolist()):
        for _ in range(data.draw(st.integers(0, 2))):
            table[s * ways + data.draw(st.integers(0, ways - 1))] = key
    keys = np.array(pool + [data.draw(st.integers(-2**63 + 2, 2**63 - 1))], np.int64)
    _check_probes(table, _digests(table), ways, keys)


@functools.lru_cache(maxsize=None)
def _same_digest_keys(num_sets, count, seed):
    """``count`` distinct keys of set 0 of ``num_sets`` sharing one digest (found by search)."""
    rng = np.random.default_rng(seed)
    while True:
        pool = np.unique(rng.integers(-2**62, 2**62, 1 << 20))
        pool = pool[sets_of(pool, num_sets) == 0]
        digests = (mix64_array(pool) >> np.uint64(56)).astype(np.uint8)
        common = np.bincount(digests, minlength=256).argmax()
        same = pool[digests == common]
        if same.shape[0] >= count:
            return same[:count]


@pytest.mark.parametrize("ways", [4, 8, 32, 64])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_keys_of_one_digest_in_one_set_are_told_apart(ways, data):
    """Several ways of a set whose keys share a digest, free slots whose stale digest is the probed key's:
    the probe still gives the plain scan's slot (the lowest way holding the key), and the misses."""
    num_sets = data.draw(st.sampled_from([1, 3]))
    keys = _same_digest_keys(num_sets, 6, data.draw(st.integers(0, 3)))
    table = np.full(num_sets * ways, EMPTY_KEY, np.int64)
    for key in keys[:4].tolist():  # keys[4:] stay out: misses behind matching digests
        for _ in range(data.draw(st.integers(0, 2))):
            table[data.draw(st.integers(0, ways - 1))] = key
    digests = _digests(table)
    digests[table == EMPTY_KEY] = cpu.digest_of(int(keys[0]))  # stale: every free slot matches
    probed = np.array(data.draw(st.lists(st.sampled_from(keys.tolist()), min_size=1, max_size=30)), np.int64)
    _check_probes(table, digests, ways, probed)


@pytest.mark.parametrize("policy, admission", [("lru", "always"), ("sieve", "always"), ("s3fifo", "always"),
                                               ("lfu", "always"), ("lru", "tinylfu")])
@settings(max_examples=15, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 600), max_size=150), min_size=1, max_size=12),
       erased=st.lists(st.integers(0, 600), max_size=40))
def test_every_held_key_has_its_digest(policy, admission, batches, erased, tmp_path_factory):
    """The probe's invariant, after lookups that insert and evict (batches of more than the one-call
    placement's 64 keys too, and TinyLFU's placement), erases, and a save and load: every occupied slot's
    digest is its key's, and every held key is found with its own row (a false miss would give another)."""
    def check(cache):
        b = cache._backend
        held = b.keys != EMPTY_KEY
        assert (b.digests[held] == np.array([cpu.digest_of(k) for k in b.keys[held].tolist()], np.uint8)).all()
        keys = b.keys[held]
        rows, found = cache.query(keys)
        assert found.all() and same_bits(rows, store_rows[keys])

    store_rows = np.arange(601 * 2, dtype=np.float32).reshape(601, 2)  # each key's row its own
    store = HostStore(2, initial_rows=700)
    store.put_many(np.arange(601), store_rows)
    cache = embcache.Cache(256, 2, policy, admission, backend="cpu", ways=8, tier=store)
    try:
        for batch in batches:
            keys = np.array(batch, np.int64)
            assert same_bits(cache.lookup(keys), store_rows[keys])
            check(cache)
        cache.erase(np.array(erased, np.int64))
        check(cache)
        path = tmp_path_factory.mktemp("saved") / "c"
        cache.save(path)
        loaded = embcache.Cache.load(path, tier=store)
        try:
            check(loaded)
            held = loaded.export()[0]
            before = loaded.stats.hits
            loaded.lookup(held)
            assert loaded.stats.hits - before == held.shape[0]  # every loaded key a hit, none a miss
        finally:
            loaded.close()
    finally:
        cache.close()


@numba.njit
def _gather(values, slots, out):
    cpu._gather_rows(values, slots, out)


@pytest.mark.parametrize("dim, dtype", [(32, "float32"), (64, "float16"), (16, "float32"), (8, "float16"),
                                        (128, "float32"), (3, "float32"), (5, "float16")])
def test_rows_are_copied_bit_for_bit_at_every_row_size(dim, dtype):
    rng = np.random.default_rng(dim)
    raw_dtype = np.uint32 if dtype == "float32" else np.uint16
    values = rng.integers(0, np.iinfo(raw_dtype).max, (64, dim), dtype=raw_dtype, endpoint=True)
    values[3] = np.array(np.nan, dtype).view(raw_dtype) | 1  # a NaN with a payload
    slots = rng.integers(-1, 64, 200)
    out = rng.integers(0, 9, (200, dim), dtype=raw_dtype)
    ref = out.copy()
    ref[slots >= 0] = values[slots[slots >= 0]]  # a miss's row is left as it was
    _gather(values, slots, out)
    assert same_bits(out, ref)


def _twins(policy, ways=4, capacity=48, dim=2):
    store = HostStore(dim, "float32")
    store.put_many(np.arange(200), np.random.default_rng(0).standard_normal((200, dim)).astype(np.float32))
    fused = embcache.Cache(capacity, dim, policy, backend="cpu", tier=store, ways=ways)
    plain = embcache.Cache(capacity, dim, policy, backend="cpu", tier=store, ways=ways)
    plain._backend._gather_touch = None  # the probe, then the commit's touch: the path before the fusion
    return fused, plain


@pytest.mark.parametrize("policy", sorted(policy_names()))
@settings(max_examples=20, deadline=None)
@given(batches=st.lists(st.lists(st.integers(0, 80), min_size=0, max_size=24), min_size=1, max_size=25))
def test_a_probe_that_touches_leaves_the_cache_as_probe_then_commit_does(policy, batches):
    fused, plain = _twins(policy)
    try:
        if policy == "static":
            for c in (fused, plain):
                c.preload(np.arange(0, 80, 8))
        for batch in batches:
            keys = np.array(batch, np.int64)
            a, b = fused.lookup(keys), plain.lookup(keys)
            assert same_bits(a, b)
            # every key of an all-hit batch again: the fused path at work
            again = keys[np.isin(keys, fused.export()[0])]
            assert same_bits(fused.lookup(again), plain.lookup(again))
        for x, y in zip(fused.export(), plain.export()):
            assert same_bits(x, y)
        fb, pb = fused._backend, plain._backend
        assert (fb.scores == pb.scores).all() and (fb.keys == pb.keys).all() and fb.clock == pb.clock
        assert fb.score_writes == pb.score_writes
        assert fused.stats.as_dict() == plain.stats.as_dict()
        if fb.hands is not None:
            assert (fb.hands == pb.hands).all()
    finally:
        fused.close()
        plain.close()


def test_an_all_hit_plan_has_touched_and_its_rollback_ticks_as_the_gpus_does():
    b = cpu.CPUBackend(num_sets=2, ways=4, dim=2, dtype="float32", policy=embcache.policies.LRU())
    keys = np.array([1, 2, 3], np.int64)
    b.insert_and_evict(keys, np.ones(3, np.int64), np.ones((3, 2), np.float32), np.ones(3, bool), False)
    clock = b.clock
    plan = b.plan_lookup(np.array([2, 3, 2], np.int64), b.new_rows(3), None)
    assert plan.missed.shape[0] == 0
    assert sorted(b.scores[plan.slots].tolist()) == [clock + 1] * 3 and b.clock == clock
    plan.rollback()
    assert b.clock == clock + 1 and b.score_writes == 2


def test_an_aging_tick_leaves_the_touch_to_the_commit():
    """lfu_aged ages every score at a multiple of its period, before that tick's hits are counted: the
    probe does not touch ahead of that pass."""
    fused, plain = _twins("lfu_aged")
    period = fused._backend._age_period
    try:
        for _ in range(2 * period + 3):
            for c in (fused, plain):
                c.lookup(np.array([1, 2, 2, 3], np.int64))
        assert (fused._backend.scores == plain._backend.scores).all()
        assert fused._backend.score_writes == plain._backend.score_writes
    finally:
        fused.close()
        plain.close()
