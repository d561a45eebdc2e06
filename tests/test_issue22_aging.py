"""Issue 22 item 1: LFU with aging (Policy.age_period / age_score), on both backends and in the model.

The registry's ``lfu_aged`` (period 4,096) joins every grid of test_stateful, test_contract and test_gpu
by itself; its period is too long for those short programs to reach, so the policies here age every
few clocks and are driven against the reference model directly.
"""
import numpy as np
import pytest

import embcache
from embcache.errors import ConfigError
from embcache.kernels.gpu import gpu_available
from embcache.policies import LFUAged, Policy, get_policy
from embcache.policies._registry import _forget
from embcache.tiers import HostStore

from .reference import ReferenceCache
from .strategies import same_bits
from .test_stateful import CacheMachine


class LFUAgedEvery3(Policy):
    """LFU whose counts halve every 3 clocks: the stateful programs here cross many multiples."""

    name = "test_lfu_aged_every_3"
    new_score = "count"
    hit_score = "sat_add(score, count)"
    age_period = 3


class LRUAgedEvery2(Policy):
    """A clock rule that ages too (score - clock // 2 at each even clock): another age rule, with clock."""

    name = "test_lru_aged_every_2"
    new_score = "clock"
    hit_score = "clock"
    age_period = 2
    age_score = "score - clock // 2"


class _Aged(CacheMachine):
    admission_name = "always"


def _machine(policy, admission, backend="cpu"):
    machine = type(f"Aged_{policy.name}_{policy.age_period}_{admission}_{backend}", (_Aged,),
                   {"policy_name": policy, "admission_name": admission, "backend": backend})
    return machine.TestCase


TestAged3Always = _machine(LFUAgedEvery3, "always")
TestAged3MinFrequency = _machine(LFUAgedEvery3, "min_frequency")
TestAged3RefuseBelowMin = _machine(LFUAgedEvery3, "refuse_below_min")
TestAged3Deferred = _machine(LFUAgedEvery3, "hit_rate_deferred")
TestLRUAged2Always = _machine(LRUAgedEvery2, "always")
TestLFUAged3Always = _machine(LFUAged(period=3), "always")
TestLFUAged2TinyLFU = _machine(LFUAged(period=2), "tinylfu")

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]
TestGPUAged3Always = GPU[1](GPU[0](_machine(LFUAgedEvery3, "always", "gpu")))
TestGPUAged3MinFrequency = GPU[1](GPU[0](_machine(LFUAgedEvery3, "min_frequency", "gpu")))
TestGPULRUAged2Always = GPU[1](GPU[0](_machine(LRUAgedEvery2, "always", "gpu")))
TestGPULFUAged3Always = GPU[1](GPU[0](_machine(LFUAged(period=3), "always", "gpu")))


def _cache(policy, capacity=2, ways=2, backend="cpu", keys=range(100)):
    store = HostStore(1, "float32")
    store.put_many(np.array(list(keys), np.int64), np.zeros((len(keys), 1), np.float32))
    return embcache.Cache(capacity, 1, policy, backend=backend, tier=store, ways=ways)


def _scores(cache) -> dict:
    keys, _, scores = cache.export()
    return dict(zip(keys.tolist(), scores.tolist()))


def test_the_registered_policy_is_lfu_with_lru_ties_halved_every_65536_clocks():
    p = get_policy("lfu_aged")
    assert isinstance(p, LFUAged) and p.ages and p.age_period == 65536 and p.config() == {"period": 65536}
    rule = p.rule()
    assert rule["age_period"] == 65536 and rule["age_score"] == "score // 8589934592 * 4294967296 + (score & 4294967295)"
    assert LFUAged(7).rule()["age_period"] == 7 and LFUAged(7) != LFUAged()
    assert "age_score" not in get_policy("lfu").rule()  # a policy that never ages records what it did before
    assert not get_policy("lfu").ages and get_policy("lfu").age_period == 0
    with pytest.raises(ConfigError, match="period"):
        LFUAged(0)


def test_lfu_aged_packs_the_count_and_the_last_clock():
    cache = _cache(LFUAged(period=3), capacity=4, ways=4)
    cache.lookup([1, 1, 2])  # clock 1
    cache.lookup([2])  # clock 2
    assert _scores(cache) == {1: 2 * 2**32 + 1, 2: 2 * 2**32 + 2}  # equal counts: 1 is the less recent
    cache.lookup([3])  # clock 3: counts halved (1, 1), clocks kept; 3 enters with count 1
    assert _scores(cache) == {1: 2**32 + 1, 2: 2**32 + 2, 3: 2**32 + 3}
    for c in (4, 5):
        cache.lookup([4 + c])  # clock 4: key 8 fills the last way; clock 5: key 9 evicts the least recent of count 1
    assert set(_scores(cache)) == {2, 3, 8, 9}


def test_counts_halve_at_the_tick_to_each_multiple_before_the_hits_rule():
    cache = _cache(LFUAgedEvery3, capacity=4, ways=4)
    cache.lookup([1, 1, 1, 1, 2])  # clock 1: new keys start at their multiplicity
    assert _scores(cache) == {1: 4, 2: 1}
    cache.lookup([2])  # clock 2
    assert _scores(cache) == {1: 4, 2: 2}
    cache.lookup([1])  # clock 3: halved first (2, 1), then the hit adds 1
    assert _scores(cache) == {1: 3, 2: 1}
    cache.insert([3], np.zeros((1, 1), np.float32))  # clock 4
    cache.preload([4])  # clock 5
    cache.lookup([])  # clock 6: an empty lookup ticks, so it ages too
    assert _scores(cache) == {1: 1, 2: 0, 3: 0, 4: 0}


def test_aging_changes_the_order_of_slots_nobody_touches():
    """Counts 3 and 2 tie at 1 after a halving: the lower way goes, where LFU keeps the higher count."""
    a, b, c = 10, 20, 30  # one set of 2 ways: a takes way 0, b way 1
    plain, aged = _cache("lfu", capacity=2, ways=2), _cache(LFUAgedEvery3, capacity=2, ways=2)
    for batch in ([a, a, a], [b, b], [c]):  # c misses at clock 3, a multiple: a = 1, b = 1 when it is placed
        plain.lookup(batch)
        aged.lookup(batch)
    assert set(_scores(plain)) == {a, c}  # LFU evicts b (2 < 3)
    assert _scores(aged) == {b: 1, c: 1}  # aged, the tie goes to way 0: a


def test_a_lookup_that_fails_before_its_tick_ages_nothing():
    from embcache.errors import TierError
    from embcache.tiers import Tier

    class Failing(Tier):
        fail = False

        def _get_many(self, keys):
            if self.fail:
                raise TierError("failing tier: get_many refused (test)")
            return np.zeros((keys.shape[0], 1), np.float32), np.ones(keys.shape[0], bool)

        def _put_many(self, keys, values):
            pass

        def _delete_many(self, keys):
            pass

    tier = Failing(1, "float32")
    cache = embcache.Cache(8, 1, LFUAgedEvery3, backend="cpu", tier=tier, ways=8)
    cache.lookup([5, 5, 5, 5])
    cache.lookup([5])
    tier.fail = True
    with pytest.raises(TierError):
        cache.lookup([6])  # would be clock 3, a multiple
    assert cache.clock == 2 and _scores(cache) == {5: 5}
    tier.fail = False
    cache.lookup([5])  # clock 3 now: halved to 2, then + 1
    assert _scores(cache) == {5: 3}


def test_save_and_load_keep_the_aging_rule_and_period(tmp_path):
    cache = _cache(LFUAged(period=4), capacity=8, ways=4)
    for i in range(10):
        cache.lookup([i % 3, i % 5])
    cache.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", tier=cache.tier, backend="cpu")
    assert loaded.policy == cache.policy and loaded.policy.rule()["age_period"] == 4
    for a, b in zip(cache.export(), loaded.export()):
        assert same_bits(a, b)
    for i in range(9):  # both go on aging alike
        cache.lookup([i % 7])
        loaded.lookup([i % 7])
    for a, b in zip(cache.export(), loaded.export()):
        assert same_bits(a, b)


@pytest.mark.parametrize("body, match", [
    ({"age_period": -1}, "age_period"),
    ({"age_period": 2.5}, "age_period"),
    ({"age_period": True}, "age_period"),
    ({"age_period": 4, "age_score": "score // count"}, "count"),
    ({"age_period": 4, "age_score": "score / 2"}, "score expression"),
    ({"age_period": 4, "age_score": 2}, "age_score"),
])
def test_a_bad_aging_declaration_is_refused_at_definition(body, match):
    with pytest.raises(ConfigError, match=match):
        type("Bad", (Policy,), {"name": "test_bad_aging", "new_score": "count", "hit_score": "score", **body})
    _forget_named("test_bad_aging")


def _forget_named(name):
    from embcache.policies._registry import _TABLES

    cls = _TABLES["eviction policy"].get(name)
    if cls is not None:
        _forget(cls)


def test_the_period_is_a_class_rule():
    with pytest.raises(ConfigError, match="class-level"):
        LFUAged().age_period = 8
    with pytest.raises(ConfigError, match="keeps its name"):
        type("Sub", (LFUAged,), {"age_period": 8})


def test_reference_model_ages_as_the_cache():
    """A long trace (many multiples) through the model and the cache: the same contents and scores."""
    rng = np.random.default_rng(0)
    policy = LFUAgedEvery3()
    tier_keys = np.arange(60, dtype=np.int64)
    cache = _cache(policy, capacity=16, ways=4, keys=tier_keys.tolist())
    ref = ReferenceCache(16, 1, policy, embcache.policies.Always(),
                         {int(k): np.zeros(1, np.float32) for k in tier_keys}, 0.0, 4, "float32")
    for _ in range(200):
        batch = (rng.zipf(1.3, rng.integers(0, 6)) % 60).astype(np.int64)
        cache.lookup(batch)
        ref.lookup(batch.tolist())
    k1, _, s1 = cache.export()
    k2, _, s2 = ref.export()
    assert k1.tolist() == k2.tolist() and s1.tolist() == s2.tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.parametrize("policy", [LFUAgedEvery3, LRUAgedEvery2, LFUAged(period=5)])
def test_gpu_ages_as_the_cpu_on_both_lookup_paths(policy):
    """The host path (unpinned store) and the stream-ordered path (pinned), across many multiples,
    inserts, erasures and empty lookups included."""
    from .strategies import host
    from .test_gpu import assert_same_state
    from .test_ordered import caches

    rng = np.random.default_rng(1)
    stored = np.arange(0, 300, 2, dtype=np.int64)
    cpu, host_path, ordered = caches(64, 8, policy, "always", 4, stored, pinned=(False, False, True))
    for step in range(60):
        batch = (rng.zipf(1.2, int(rng.integers(0, 50))) % 300).astype(np.int64)
        expected = cpu.lookup(batch).tobytes()
        assert host(host_path.lookup(batch)).tobytes() == expected
        assert host(ordered.lookup(batch)).tobytes() == expected
        if step % 7 == 0:
            keys, rows = stored[step:step + 3], np.full((3, 8), step, np.float32)
            for cache in (cpu, host_path, ordered):
                cache.insert(keys, rows)
        if step % 11 == 0:
            for cache in (cpu, host_path, ordered):
                cache.erase(stored[:5])
                cache.lookup(np.array([], np.int64))  # an empty lookup ticks (and may age) too
        assert_same_state(cpu, host_path)
        assert_same_state(cpu, ordered)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_captured_lookup_ages_on_the_replays_that_reach_a_multiple():

    from .test_gpu import assert_same_state
    from .test_ordered import captured_lookup, caches

    stored = np.arange(0, 300, dtype=np.int64)
    cpu, _, captured = caches(64, 8, LFUAgedEvery3, "always", 4, stored, max_batch=6)
    keys, out, stream, graph = captured_lookup(captured, 6, 8)
    rng = np.random.default_rng(2)
    for _ in range(8):  # clocks 1 .. 8: the replays at 3 and 6 age
        batch = rng.integers(0, 40, 6).astype(np.int64)
        keys.set(batch, stream=stream)
        graph.launch(stream)
        expected = cpu.lookup(batch)
        stream.synchronize()
        assert out.get().tobytes() == expected.tobytes()
        assert_same_state(cpu, captured)


def test_aging_fixes_lfu_on_a_drifting_trace():
    """tests/test_issue22_traces.py's drifting trace, where LFU loses to LRU by more than 10 points: halved
    every 64 clocks (1,024 lookups at batches of 16, about the interval between reshuffles), lfu_aged
    beats LRU; with the default period (no halving in 6,250 clocks) it loses as LFU does."""
    from embcache.study import _EveryKeyTier
    from embcache.traces import drifting_zipf_trace

    trace = np.concatenate(list(drifting_zipf_trace(lookups=100_000, keys=1000, exponent=1.0, interval=1000,
                                                    fraction=0.1, seed=0)))

    def hit_rate(policy, capacity):
        cache = embcache.Cache(capacity, 1, policy, backend="cpu", tier=_EveryKeyTier(1), ways=32)
        for i in range(0, trace.shape[0], 16):
            cache.lookup(trace[i:i + 16])
        return cache.stats.hit_rate

    for capacity in (50, 200):
        lru = hit_rate("lru", capacity)
        assert hit_rate(LFUAged(period=64), capacity) > lru + 0.02
        assert hit_rate("lfu_aged", capacity) < lru - 0.1
