"""Issue 22's hand policies, CLOCK and SIEVE (and S3-FIFO's per-set state): ``victim = "hand"`` (the one extension of the score model,
``embcache/policies/_base.py``), its walk on the CPU backend against a step-by-step model and against
queue models written as libCacheSim writes Clock and Sieve, and the hands kept by save, load and clear.

The contract and stateful grids (and the GPU differential grids) run both policies already, since they
are parametrized from the registry; this file adds what makes them different.  The GPU tests at the end
need a CUDA GPU and CuPy and skip without them.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import ConfigError, DataFormatError
from embcache.kernels.cpu import hand_victim
from embcache.kernels.gpu import gpu_available
from embcache.layout import NO_HAND, new_hands, new_set_state, sets_of
from embcache.policies import CLOCK, LRU, SIEVE, Policy, policy_names
from embcache.tiers import HostStore

from .reference import ReferenceCache, Slot
from .test_policies import cached, one_set

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]


def scores(cache) -> dict:
    keys, _, values = cache.export()
    return dict(zip(keys.tolist(), values.tolist()))


def run(cache, *batches) -> None:
    for batch in batches:
        cache.lookup(np.array(batch, np.int64))


# ---------------------------------------------------------------- the policies and the model's extension
def test_clock_and_sieve_are_registered_hand_policies():
    assert {"clock", "sieve"} <= set(policy_names())
    for cls in (CLOCK, SIEVE):
        assert cls.victim == "hand" and cls.composes and cls.hit_changes_score
        assert cls().rule()["victim"] == "hand"
    assert CLOCK.hit_is_stateless and not SIEVE.hit_is_stateless
    assert LRU.victim == "lowest" and "victim" not in LRU().rule()  # files saved before hands still load


def test_s3fifo_is_registered_with_its_per_set_state():
    from embcache.layout import s3fifo_sizes, set_state_width
    from embcache.policies import S3FIFO

    assert "s3fifo" in policy_names() and S3FIFO.victim == "s3fifo" and S3FIFO.composes
    assert S3FIFO().rule()["victim"] == "s3fifo"
    assert s3fifo_sizes(32) == (3, 28) and s3fifo_sizes(4) == (1, 3) and s3fifo_sizes(1) == (1, 0)
    assert set_state_width("s3fifo", 32) == 58 and set_state_width("hand", 32) == 2
    assert set_state_width("lowest", 32) == 0 and new_set_state("lowest", 3, 32) is None
    c = one_set(S3FIFO(), ways=32)
    assert c._backend.hands.shape == (1, 58) and not c._backend.hands.any()


def test_a_hand_policy_must_keep_the_visited_bit_in_its_rules():
    with pytest.raises(ConfigError, match="visited bit"):
        type("OddNew", (Policy,), {"name": "test-odd-new", "victim": "hand", "new_score": "clock",
                                   "hit_score": "score + 1 - (score & 1)"})
    with pytest.raises(ConfigError, match="visited bit"):
        type("NoBit", (Policy,), {"name": "test-no-bit", "victim": "hand", "new_score": "2 * clock",
                                  "hit_score": "score"})
    with pytest.raises(ConfigError, match="victim"):
        type("Elsewhere", (Policy,), {"name": "test-elsewhere", "victim": "random", "new_score": "clock",
                                      "hit_score": "clock"})
    with pytest.raises(ConfigError, match="keeps its name"):
        type("SieveByLowest", (SIEVE,), {"victim": "lowest"})
    with pytest.raises(ConfigError, match="class-level rule"):
        SIEVE().victim = "lowest"
    assert not {"test-odd-new", "test-no-bit", "test-elsewhere"} & set(policy_names())


# ---------------------------------------------------------------- one set, by hand
def test_clock_goes_round_the_ways_giving_visited_keys_a_second_chance():
    c = one_set(CLOCK(), ways=4)
    run(c, [1], [2], [3], [4], [1], [2])  # ways 0..3; 1 and 2 visited
    assert scores(c) == {1: 1, 2: 1, 3: 0, 4: 0}
    run(c, [5])  # from way 0: 1 and 2 passed (cleared), 3 evicted; the hand rests at way 2
    assert scores(c) == {1: 0, 2: 0, 4: 0, 5: 0} and c._backend.hands.tolist() == [[0, 2]]
    run(c, [1], [6])  # after way 2: 4 (way 3) goes; no way after it, so the hand rests nowhere
    assert cached(c) == [1, 2, 5, 6] and c._backend.hands.tolist() == [[0, NO_HAND]]
    run(c, [7])  # from way 0 again: 1 passed, 2 (way 1) goes
    assert cached(c) == [1, 5, 6, 7] and c._backend.hands.tolist() == [[0, 1]]
    assert c.stats.evictions == 3


def test_sieve_keeps_passed_keys_in_place_and_demotes_new_ones_quickly():
    c = one_set(SIEVE(), ways=4)
    run(c, [1], [2], [3], [4], [1], [2])  # score = 2 * admission clock + visited
    assert scores(c) == {1: 3, 2: 5, 3: 6, 4: 8}
    run(c, [5])  # from the oldest: 1 and 2 passed (cleared, in place), 3 evicted (way 2)
    assert scores(c) == {1: 2, 2: 4, 4: 8, 5: 14} and c._backend.hands.tolist() == [[6, 2]]
    run(c, [1], [6])  # after position 6: 4 (position 8, way 3) goes
    assert scores(c) == {1: 3, 2: 4, 5: 14, 6: 18} and c._backend.hands.tolist() == [[8, 3]]
    run(c, [7])  # after position 8: 5, admitted at clock 7 and never hit, goes (LRU would evict 2)
    assert scores(c) == {1: 3, 2: 4, 6: 18, 7: 20} and c._backend.hands.tolist() == [[14, 2]]


def test_sieve_starts_from_the_oldest_after_evicting_the_newest():
    c = one_set(SIEVE(), ways=2)
    run(c, [1], [2], [1], [3])  # 1 passed, 2 (the newest) goes: the hand rests nowhere
    assert scores(c) == {1: 2, 3: 8} and c._backend.hands.tolist() == [[0, NO_HAND]]
    run(c, [4])  # from the oldest: 1 goes, not 3, admitted after the hand passed the newest key
    assert scores(c) == {3: 8, 4: 10} and c._backend.hands.tolist() == [[2, 0]]


def test_a_whole_turn_clears_every_bit_and_takes_the_first_slot_after_the_hand():
    c = one_set(CLOCK(), ways=4)
    run(c, [1], [2], [3], [9], [1, 2, 3, 9], [4])  # every bit set: all cleared, way 0 (key 1) evicted
    assert scores(c) == {2: 0, 3: 0, 4: 0, 9: 0} and c._backend.hands.tolist() == [[0, 0]]
    run(c, [2, 3, 4, 9], [5])  # again all visited, the hand at way 0: the turn starts and ends at way 1
    assert scores(c) == {3: 0, 4: 0, 5: 0, 9: 0} and c._backend.hands.tolist() == [[0, 1]]
    c = one_set(SIEVE(), ways=2)
    run(c, [1], [2], [1, 2], [3])  # both visited, the hand nowhere: all cleared, the oldest (1) goes
    assert scores(c) == {2: 4, 3: 8} and c._backend.hands.tolist() == [[2, 0]]
    run(c, [2, 3], [4])  # both visited again: the turn starts and ends after the hand, at 2 (position 4)
    assert scores(c) == {3: 8, 4: 12} and c._backend.hands.tolist() == [[4, 1]]


def test_refused_keys_and_filled_ways_move_no_hand():
    c = one_set(CLOCK(), "refuse_below_min", ways=2)
    run(c, [1], [2], [1, 2])  # both visited: the lowest score, 1, is above the new key's 0
    run(c, [3])
    assert cached(c) == [1, 2] and c.stats.refusals == 1 and c._backend.hands.tolist() == [[0, NO_HAND]]
    c = one_set(SIEVE(), ways=2)
    run(c, [1], [2], [3])
    c.erase(np.array([2]))
    run(c, [4])  # into the erased way: no walk
    assert c._backend.hands.tolist() == [[2, 0]] and cached(c) == [3, 4]


# ---------------------------------------------------------------- the walk against a step-by-step one
@settings(max_examples=300)
@given(ways=st.integers(1, 9), data=st.data())
def test_the_cpu_walk_equals_the_reference_models_steps(ways, data):
    """Any full set (positions with ties, visited bits anywhere) and any hand, none included."""
    positions = data.draw(st.lists(st.integers(0, 4), min_size=ways, max_size=ways), label="positions")
    visited = data.draw(st.lists(st.booleans(), min_size=ways, max_size=ways), label="visited")
    start = [2 * p + v for p, v in zip(positions, visited)]
    hand = data.draw(st.one_of(st.none(), st.tuples(st.integers(0, 4).map(lambda p: 2 * p),
                                                   st.integers(0, ways - 1))), label="hand")
    ref = ReferenceCache(ways, 1, SIEVE(), embcache.policies.Always(), {}, 0.0, ways, "float32")
    ref.sets[0] = [Slot(100 + w, start[w], None) for w in range(ways)]
    if hand is not None:
        ref.hands[0] = hand
    want = ref.walk_hand(0)
    got_scores = np.array(start, np.int64)
    hands = new_hands(1)
    if hand is not None:
        hands[0] = hand
    got = hand_victim(got_scores, hands, 0, 0, ways)
    assert got == want
    assert got_scores.tolist() == [slot.score for slot in ref.sets[0]]
    assert hands[0].tolist() == (list(ref.hands[0]) if 0 in ref.hands else [0, NO_HAND])


# ---------------------------------------------------------------- against libCacheSim's structure
class QueueClock:
    """libCacheSim's ``Clock`` (one bit), as it is written: a queue, the tail examined, visited keys moved
    to the head with their bit cleared."""

    def __init__(self, size):
        self.size, self.queue, self.bit = size, [], {}  # queue[0] is the tail (oldest)

    def get(self, key) -> bool:
        if key in self.bit:
            self.bit[key] = 1
            return True
        if len(self.queue) == self.size:
            while self.bit[self.queue[0]]:
                old = self.queue.pop(0)
                self.bit[old] = 0
                self.queue.append(old)
            del self.bit[self.queue.pop(0)]
        self.queue.append(key)
        self.bit[key] = 0
        return False


class QueueSieve:
    """libCacheSim's ``Sieve``, as it is written: keys in admission order, a pointer walking from the tail
    toward the head and back to the tail, resting at the victim's newer neighbour (None past the head)."""

    def __init__(self, size):
        self.size, self.queue, self.bit, self.pointer = size, [], {}, None  # queue[0] is the tail

    def get(self, key) -> bool:
        if key in self.bit:
            self.bit[key] = 1
            return True
        if len(self.queue) == self.size:
            i = 0 if self.pointer is None else self.queue.index(self.pointer)
            while self.bit[self.queue[i]]:
                self.bit[self.queue[i]] = 0
                i = (i + 1) % len(self.queue)
            self.pointer = self.queue[i + 1] if i + 1 < len(self.queue) else None
            del self.bit[self.queue.pop(i)]
        self.queue.append(key)
        self.bit[key] = 0
        return False


@pytest.mark.parametrize("policy, peer", [("clock", QueueClock), ("sieve", QueueSieve)])
@settings(max_examples=60, deadline=None)
@given(ways=st.sampled_from([1, 2, 4, 8]), sets=st.integers(1, 3), data=st.data())
def test_one_key_a_batch_equals_libcachesims_rule_set_by_set(policy, peer, ways, sets, data):
    # a universe a few times the capacity, so that sets fill, evict and hit
    universe = data.draw(st.integers(1, 3 * ways * sets + 1), label="universe")
    trace = data.draw(st.lists(st.integers(0, universe - 1), min_size=10, max_size=200), label="trace")
    tier = HostStore(1)
    tier.put_many(np.arange(universe), np.zeros((universe, 1), np.float32))
    cache = embcache.Cache(sets * ways, 1, policy, backend="cpu", tier=tier, ways=ways)
    peers = [peer(ways) for _ in range(sets)]
    where = sets_of(np.array(trace, np.int64), sets).tolist() if trace else []
    hits = 0
    for key, s in zip(trace, where):
        cache.lookup(np.array([key], np.int64))
        hits += peers[s].get(key)
        assert sorted(cache.export()[0].tolist()) == sorted(k for p in peers for k in p.bit)
    assert cache.stats.hits == hits


# ---------------------------------------------------------------- save, load, clear
def _trace(seed, n=3000):
    return (np.random.default_rng(seed).zipf(1.2, n) % 400).astype(np.int64)


def _tier():
    tier = HostStore(4)
    tier.put_many(np.arange(400), np.arange(1600, dtype=np.float32).reshape(400, 4))
    return tier


def _cache(policy, backend="cpu"):
    return embcache.Cache(96, 4, policy, backend=backend, tier=_tier(), ways=8)


@pytest.mark.parametrize("policy", ["clock", "sieve", "s3fifo"])
def test_save_and_load_keep_every_hand(policy, tmp_path):
    trace = _trace(1)
    straight, saved = _cache(policy), _cache(policy)
    for i in range(0, 1500, 10):
        straight.lookup(trace[i:i + 10])
        saved.lookup(trace[i:i + 10])
    assert (saved._backend.hands != new_set_state(saved.policy.victim, 12, 8)).any()
    saved.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", _tier(), backend="cpu")
    assert loaded._backend.hands.tolist() == saved._backend.hands.tolist()
    for i in range(1500, 3000, 10):
        straight.lookup(trace[i:i + 10])
        loaded.lookup(trace[i:i + 10])
    assert loaded._backend.hands.tolist() == straight._backend.hands.tolist()
    assert [a.tolist() for a in loaded.export()] == [a.tolist() for a in straight.export()]
    assert loaded.stats.hits == straight.stats.hits


def test_a_file_with_bad_hands_or_none_is_refused(tmp_path):
    c = _cache("sieve")
    c.lookup(_trace(2, 500))
    c.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as z:
        members = {k: z[k] for k in z.files}
    bad = {**members, "hands": members["hands"].copy()}
    bad["hands"][3, 1] = 8  # a way of 8 ways
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(DataFormatError, match="hand"):
        embcache.Cache.load(tmp_path / "bad.npz", backend="cpu")
    np.savez(tmp_path / "wide.npz", **{**members, "hands": np.zeros((12, 58), np.int64)})  # S3-FIFO's width
    with pytest.raises(DataFormatError, match="hands has shape"):
        embcache.Cache.load(tmp_path / "wide.npz", backend="cpu")
    np.savez(tmp_path / "none.npz", **{k: v for k, v in members.items() if k != "hands"})
    with pytest.raises(DataFormatError, match="hands"):
        embcache.Cache.load(tmp_path / "none.npz", backend="cpu")
    lru = _cache("lru")
    lru.save(tmp_path / "lru.npz")
    with np.load(tmp_path / "lru.npz") as z:
        assert "hands" not in z.files  # only a hand policy's file has hands


@pytest.mark.parametrize("policy", ["clock", "sieve", "s3fifo"])
def test_clear_puts_every_hand_nowhere(policy):
    used, new = _cache(policy), _cache(policy)
    used.lookup(_trace(3, 2000))
    used.clear()
    assert (used._backend.hands == new_set_state(used.policy.victim, 12, 8)).all()
    for cache in (used, new):
        cache._backend.set_clock(0)
        cache.lookup(_trace(4, 2000))
    assert [a.tolist() for a in used.export()] == [a.tolist() for a in new.export()]
    assert used._backend.hands.tolist() == new._backend.hands.tolist()


# ---------------------------------------------------------------- GPU (skipped without one)
def _gpu_pair(policy, ways, capacity, stored, pinned=False, dim=8):
    out = []
    for backend in ("cpu", "gpu"):
        store = HostStore(dim, "float32", pinned=pinned and backend == "gpu")
        store.put_many(stored, np.arange(stored.shape[0] * dim, dtype=np.float32).reshape(-1, dim))
        out.append(embcache.Cache(capacity, dim, policy, backend=backend, tier=store, ways=ways))
    return out


def _same(cpu, gpu):
    assert [a.tolist() for a in cpu.export()] == [a.tolist() for a in gpu.export()]
    assert cpu._backend.hands.tolist() == gpu._backend.hands.get().tolist()
    assert cpu.stats.as_dict() == gpu.stats.as_dict()


@GPU[0]
@GPU[1]
@pytest.mark.parametrize("pinned", [False, True], ids=["host path", "stream-ordered"])
@pytest.mark.parametrize("ways", [1, 4, 32, 64])
@pytest.mark.parametrize("policy", ["clock", "sieve", "s3fifo"])
def test_gpu_walks_as_the_cpu(policy, ways, pinned):
    """Batches of 1 to 3000 keys that overfill sets many times over (a warp walks one set for many keys),
    sets wider than a warp (64 ways: two ways a lane), on the host path and the stream-ordered one."""
    rng = np.random.default_rng(ways)
    stored = np.arange(5000, dtype=np.int64)
    cpu, gpu = _gpu_pair(policy, ways, 4 * ways, stored, pinned)
    for size in (1, 1, 5, 300, 3000, 2, 64):
        for _ in range(3):
            batch = np.minimum(rng.zipf(1.2, size), 5200).astype(np.int64)
            assert cpu.lookup(batch).tobytes() == gpu.lookup(batch).get().tobytes()
        _same(cpu, gpu)
    gpu.insert(np.arange(0, 4000, 7, dtype=np.int64), np.ones((572, 8), np.float32))
    cpu.insert(np.arange(0, 4000, 7, dtype=np.int64), np.ones((572, 8), np.float32))
    _same(cpu, gpu)
    cpu.clear()
    gpu.clear()
    _same(cpu, gpu)


@GPU[0]
@GPU[1]
@pytest.mark.parametrize("policy", ["clock", "sieve", "s3fifo"])
def test_a_gpu_save_loads_on_the_cpu_with_its_hands(policy, tmp_path):
    trace = _trace(5)
    cpu, gpu = _cache(policy), _cache(policy, "gpu")
    cpu.lookup(trace[:1000])
    gpu.lookup(trace[:1000])
    gpu.save(tmp_path / "g.npz")
    back = embcache.Cache.load(tmp_path / "g.npz", backend="cpu")
    assert back._backend.hands.tolist() == cpu._backend.hands.tolist()
    again = embcache.Cache.load(tmp_path / "g.npz", _tier(), backend="gpu")
    for cache in (cpu, again):
        cache.lookup(trace[1000:])
    assert [a.tolist() for a in again.export()] == [a.tolist() for a in cpu.export()]
    assert again._backend.hands.get().tolist() == cpu._backend.hands.tolist()
