"""Issue 22's CPU bar (1,024 keys a batch >= 40x cachetools): the faster lookup path gives exactly what the
plain one gave.

* ``probe_and_touch`` (each policy module's ``probe_touch_cpu``, ``CPUBackend.plan_lookup``'s one call):
  the slots, the misses, the hits' rows and, when every key hit, the scores and the count of scores stored
  are those of the plain pieces (a scan of each key's set, a NumPy gather, the module's ``touch_cpu``), with
  stale digests in the free slots, at every way count, a power-of-two set count or not, every row size, short
  batches and batches of 16,384 keys and more (which until 2026-12-04 took another path); a batch with a
  reserved key is counted and changes no score;
* ``Cache.lookup``'s plain call (no ``out``, ``stream``, ``index_rows`` nor ``upcoming``) takes a short
  path (``Backend.plan_or_hits``: the CPU commits an all-hit batch without making its plan, and the Cache
  counts it without ``_lookup``'s frames): a twin cache on the general path (``upcoming`` an empty window, which the docstring says is no
  lookahead) ends every sequence of lookups, reserved keys, deferred placements and closing in the same
  state (rows, stats, contents, scores, clock, hands, sketch) and raises the same errors;
* the cache arrays start at a multiple of 128 bytes and hold what ``np.zeros``/``np.full`` did;
* ``_any_reserved`` says what NumPy says.

The speed itself is benchmarks/cpu_bars.py's (asv: benchmarks/bench_cpu.py), never a timed test.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache._checks import _any_reserved
from embcache._dtypes import raw, row_dtype
from embcache.errors import ClosedError, ReservedKeyError
from embcache.kernels import cpu
from embcache.layout import EMPTY_KEY, LOCKED_KEY, sets_of
from embcache.policies import policy_names
from embcache.tiers import HostStore

from .strategies import same_bits

WAYS = [1, 2, 4, 8, 16, 32, 64, 128]
ROWS = [(32, "float32"), (64, "float32"), (128, "float32"), (16, "float32"), (64, "float16"), (3, "float32"),
        (5, "float16")]  # 128, 256, 512, 64, 128, 12 and 10 bytes a row


def _module(policy):
    rule = policy.rule()
    return cpu._policy_module(rule["new_score"], rule["hit_score"], rule.get("age_score", "score"), policy.victim)


def _table(data, ways, num_sets, dim, dtype):
    """A table of ``num_sets * ways`` slots with random keys at random ways of their own set (some twice),
    random scores and rows; returns ``(table_keys, scores, raw values, the keys placed)``."""
    pool = data.draw(st.lists(st.integers(-2**63 + 2, 2**63 - 1), min_size=1, max_size=3 * ways, unique=True))
    table = np.full(num_sets * ways, EMPTY_KEY, np.int64)
    for key, s in zip(pool, sets_of(np.array(pool, np.int64), num_sets).tolist()):
        for _ in range(data.draw(st.integers(0, 2))):
            table[s * ways + data.draw(st.integers(0, ways - 1))] = key
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    scores = rng.integers(-5, 50, table.shape[0])
    values = raw(rng.standard_normal((table.shape[0], dim)).astype(dtype))
    return table, scores, np.ascontiguousarray(values), pool


def _digests(table, keys):
    """The table's digests, with every free slot's stale: the digest of one of ``keys`` (a probe must then
    compare a key behind a matching digest and go on)."""
    digests = np.empty(table.shape[0], np.uint8)
    cpu.digests_of(table, digests)
    free = np.flatnonzero(table == EMPTY_KEY)
    if keys.shape[0] and free.shape[0]:
        stale = np.array([cpu.digest_of(k) for k in keys.tolist()], np.uint8)
        digests[free] = stale[np.arange(free.shape[0]) % stale.shape[0]]
    return digests


def _reference(module, table, scores, values, ways, keys, clock, touches):
    """The plain pieces: each key's slot by a scan of its set's keys (``cpu.probe``, no digests), the
    misses in order, a NumPy gather of the hits' rows, and the module's touch_cpu when every key hit;
    ``(slots, missed, rows of the hits, scores, stored or None)``."""
    slots = np.array([cpu.probe(table, ways, k) for k in keys.tolist()], np.int64)
    missed = np.flatnonzero(slots < 0)
    scores = scores.copy()
    stored = None
    if not missed.shape[0] and touches:
        stored = int(module.touch_cpu(scores, slots, np.int64(clock)))
    return slots, missed, values[slots[slots >= 0]], scores, stored


def _check(module, table, scores, values, ways, keys, clock, touches):
    ref_slots, ref_missed, ref_rows, ref_scores, ref_stored = _reference(module, table, scores, values, ways,
                                                                         keys, clock, touches)
    n = keys.shape[0]
    slots, missed = np.full(n, 7, np.int64), np.full(n, 7, np.int64)
    out = np.zeros((n, values.shape[1]), values.dtype)
    mine = scores.copy()
    got = module.probe_touch_cpu(table, _digests(table, keys), values, ways, keys, out, slots, missed, mine,
                                 np.int64(clock), touches)
    reserved = int((keys <= LOCKED_KEY).sum())
    if reserved:  # counted, nothing touched (Cache.lookup raises ReservedKeyError and rolls the plan back)
        assert got == n + reserved and (mine == scores).all()
        return
    assert slots.tolist() == ref_slots.tolist()
    assert same_bits(out[ref_slots >= 0], ref_rows)
    if ref_missed.shape[0]:
        assert got == ref_missed.shape[0] and missed[:got].tolist() == ref_missed.tolist()
        assert (mine == scores).all()  # a miss: no score changes before the commit
    elif ref_stored is None:
        assert got == 0 and (mine == scores).all()
    else:
        assert got == -1 - ref_stored and (mine == ref_scores).all()


@pytest.mark.parametrize("ways", WAYS)
@pytest.mark.parametrize("policy", ["lru", "lfu", "clock", "fifo"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_the_one_call_probe_is_the_plain_pieces(ways, policy, data):
    module = _module(embcache.policies.get_policy(policy))
    num_sets = data.draw(st.sampled_from([1, 2, 3, 4, 5, 7, 8, 16]))  # powers of two and not
    dim, dtype = data.draw(st.sampled_from(ROWS))
    table, scores, values, pool = _table(data, ways, num_sets, dim, dtype)
    held = [int(k) for k in table if k != EMPTY_KEY] or pool
    hits = st.sampled_from(held)
    keys = data.draw(st.lists(st.one_of(hits, hits, hits, st.integers(-2**63 + 2, 2**63 - 1)), max_size=40))
    all_hit = [k for k in keys if k in held]
    reserved = all_hit[:]
    reserved.insert(data.draw(st.integers(0, len(all_hit))), data.draw(st.sampled_from([EMPTY_KEY, LOCKED_KEY])))
    for batch in (keys, all_hit, reserved):
        for touches in (True, False):
            _check(module, table, scores, values, ways, np.array(batch, np.int64),
                   data.draw(st.integers(0, 2**40)), touches)


@pytest.mark.parametrize("ways", [32, 8])
@pytest.mark.parametrize("num_sets", [512, 600])
def test_long_batches(ways, num_sets):
    """16,384 keys and one more (the pipelined path's bound until 2026-12-04), a miss, a reserved key."""
    module = _module(embcache.policies.LFU())
    rng = np.random.default_rng(ways + num_sets)
    table = np.full(num_sets * ways, EMPTY_KEY, np.int64)
    placed = rng.permutation(np.arange(10**6, 10**6 + 4 * table.shape[0]))[: table.shape[0] // 2]
    for key, s in zip(placed.tolist(), sets_of(placed, num_sets).tolist()):
        free = np.flatnonzero(table[s * ways:(s + 1) * ways] == EMPTY_KEY)
        if free.shape[0]:
            table[s * ways + free[0]] = key
    held = table[table != EMPTY_KEY]
    scores = rng.integers(0, 9, table.shape[0])
    values = raw(rng.standard_normal((table.shape[0], 32)).astype(np.float32))
    for n in (16384, 16385):
        keys = rng.choice(held, n)  # duplicates: LFU's touch counts each occurrence
        _check(module, table, scores, values, ways, keys, 5, True)
        keys[n // 2] = 3  # one miss
        _check(module, table, scores, values, ways, keys, 5, True)
        keys[n // 3] = EMPTY_KEY  # and a reserved key
        _check(module, table, scores, values, ways, keys, 5, True)


# ---------------------------------------------------------------- Cache.lookup's short path


def _cache(policy, admission, store):
    return embcache.Cache(48, 2, policy, admission, backend="cpu", tier=store, ways=4)


def _same_state(a, b):
    for x, y in zip(a.export(), b.export()):
        assert same_bits(x, y)
    assert a.stats.as_dict() == b.stats.as_dict()
    assert (a.stats.last is None) == (b.stats.last is None)
    if a.stats.last is not None:
        assert a.stats.last.as_dict() == b.stats.last.as_dict()
    ab, bb = a._backend, b._backend
    assert (ab.scores == bb.scores).all() and (ab.keys == bb.keys).all() and ab.clock == bb.clock
    assert ab.score_writes == bb.score_writes and len(a) == len(b)
    if ab.hands is not None:
        assert (ab.hands == bb.hands).all()
    if ab.sketch is not None:
        assert (ab.sketch == bb.sketch).all()


NO_WINDOW = np.zeros(0, np.int64)


@pytest.mark.parametrize("policy", sorted(policy_names()))
@pytest.mark.parametrize("admission", ["always", "tinylfu", "hit_rate_deferred", "min_frequency"])
@settings(max_examples=12, deadline=None)
@given(batches=st.lists(st.tuples(st.lists(st.integers(0, 80), max_size=20), st.booleans()), min_size=1,
                        max_size=16))
def test_the_plain_call_ends_where_the_general_path_does(policy, admission, batches):
    store = HostStore(2, "float32")
    store.put_many(np.arange(200), np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32))
    short, general = _cache(policy, admission, store), _cache(policy, admission, store)
    try:
        if policy == "static":
            for c in (short, general):
                c.preload(np.arange(0, 80, 8))
        for batch, reserved in batches:
            keys = np.array(batch, np.int64)
            if reserved:  # a reserved key anywhere: refused, nothing changed
                keys = np.insert(keys, len(batch) // 2, LOCKED_KEY if len(batch) % 2 else EMPTY_KEY)
                with pytest.raises(ReservedKeyError) as a:
                    short.lookup(keys)
                with pytest.raises(ReservedKeyError) as b:
                    general.lookup(keys, upcoming=NO_WINDOW)
                assert str(a.value) == str(b.value)
            else:
                assert same_bits(short.lookup(keys), general.lookup(keys, upcoming=NO_WINDOW))
                # the batch's cached keys again: an all-hit lookup (the one-call probe's touch)
                again = keys[np.isin(keys, short.export()[0])]
                assert same_bits(short.lookup(again), general.lookup(again, upcoming=NO_WINDOW))
            _same_state(short, general)
        # other key forms take the checks' conversions on both paths
        for keys in ([1, 2, 3], np.array([4, 5], np.int32), np.arange(6, dtype=np.uint64)[::2]):
            assert same_bits(short.lookup(keys), general.lookup(keys, upcoming=NO_WINDOW))
        _same_state(short, general)
    finally:
        short.close()
        general.close()
    for c in (short, general):
        with pytest.raises(ClosedError):
            c.lookup(np.array([1], np.int64))


def test_the_plain_call_places_a_deferred_batch_first():
    """A HitRateDeferred batch waiting to be placed sends the call down the general path, which places it
    before the probe: the second lookup hits the keys the first one deferred."""
    store = HostStore(2, "float32")
    store.put_many(np.arange(100), np.ones((100, 2), np.float32))
    cache = embcache.Cache(64, 2, "lru", "hit_rate_deferred", backend="cpu", tier=store, ways=4)
    try:
        cache.lookup(np.arange(20))  # cold: placed at once
        cache.lookup(np.concatenate([np.arange(20), [50]]))  # 20 of 21 hit: key 50 deferred
        assert cache._pending is not None
        cache.lookup(np.array([50], np.int64))
        assert cache._pending is None and cache.stats.last.hits == 1
    finally:
        cache.close()


# ---------------------------------------------------------------- the arrays, the reserved-key pass


@pytest.mark.parametrize("num_sets, ways, dim, dtype", [(1, 1, 1, "float32"), (3, 4, 5, "float16"),
                                                       (4096, 32, 32, "float32"), (7, 8, 3, "bfloat16"),
                                                       (5, 2, 64, "float16")])
def test_the_cache_arrays_start_at_a_multiple_of_128_bytes(num_sets, ways, dim, dtype):
    b = cpu.CPUBackend(num_sets, ways, dim, row_dtype(dtype), embcache.policies.LRU())
    for array, shape, fill in ((b.keys, (num_sets * ways,), EMPTY_KEY), (b.scores, (num_sets * ways,), 0),
                               (b.values, (num_sets * ways, dim), 0)):
        assert array.ctypes.data % 128 == 0 and array.shape == shape and array.flags.c_contiguous
        assert array.flags.writeable and (array == fill).all()
    assert b.values.dtype == row_dtype(dtype)
    assert b.keys.dtype == np.int64 and b.scores.dtype == np.int64


def test_a_saved_cache_loads_into_aligned_arrays(tmp_path):
    store = HostStore(32, "float32")
    store.put_many(np.arange(300), np.random.default_rng(1).standard_normal((300, 32)).astype(np.float32))
    cache = embcache.Cache(256, 32, "lfu", backend="cpu", tier=store)
    cache.lookup(np.arange(200))
    cache.lookup(np.arange(0, 200, 3))
    cache.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", tier=store, backend="cpu")
    for x, y in zip(cache.export(), loaded.export()):
        assert same_bits(x, y)
    assert all(a.ctypes.data % 128 == 0 for a in loaded._backend.host_arrays())
    assert same_bits(cache.lookup(np.arange(0, 200, 7)), loaded.lookup(np.arange(0, 200, 7)))
    cache.close()
    loaded.close()


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.integers(-2**63, 2**63 - 1), max_size=70),
       also=st.lists(st.sampled_from([EMPTY_KEY, LOCKED_KEY, LOCKED_KEY + 1, 0, 2**63 - 1]), max_size=3))
def test_the_reserved_key_pass_says_what_numpy_says(keys, also):
    arr = np.array(keys + also, np.int64)
    assert bool(_any_reserved(arr)) == bool((arr <= LOCKED_KEY).any())
