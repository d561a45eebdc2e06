"""Issue 22 item 3: lookahead, ``Cache.lookup(keys, upcoming=)`` and ``Cache.prefetch``.

The model is the stateful tests' plain-Python ReferenceCache with lookahead added here, one key at a
time: a full set's victim is the policy's choice among the ways whose keys are not protected (for a hand
policy, the walk over those ways only); a set whose every way is protected refuses a key that is not
protected and evicts the usual victim for one that is.  The machine drives the Cache and the model side
by side with every other operation of the stateful tests.
"""
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, multiple, rule

import embcache
from embcache.errors import CaptureError, ConfigError, KeyDtypeError, KeyShapeError, ReservedKeyError
from embcache.kernels.gpu import gpu_available
from embcache.layout import LOCKED_KEY, sets_of
from embcache.tiers import HostStore

from .reference import ReferenceCache, Slot, evaluate
from .strategies import host, keys as key_values, rows_for, same_bits
from .test_contract import ADMISSION_GRID
from .test_stateful import DIM, CacheMachine, machines_of

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]


def window(keys) -> dict:
    """key -> where it first occurs in ``keys``: lookahead's ranks."""
    first = {}
    for i, k in enumerate(keys):
        first.setdefault(int(k), i)
    return first


class LookaheadReference(ReferenceCache):
    """ReferenceCache with lookahead: ``protect``, the window of the current placement (key -> first occurrence)."""

    protect: dict = {}
    pending_protect: dict = {}  # the window of a deferred (HitRateDeferred) batch's placement

    def flush(self):
        if self.pending:
            saved, self.protect = self.protect, self.pending_protect
            super().flush()
            self.protect = saved

    def place(self, key, count, row, refuse_below_min, compares_victim=False):
        s = self.set_index(key)
        ways = self.sets[s]
        if not self.protect or self.slot_of(key) is not None or any(slot is None for slot in ways):
            return super().place(key, count, row, refuse_below_min, compares_victim)
        candidates = [w for w in range(self.ways) if ways[w].key not in self.protect]
        farthest = not candidates
        if farthest:  # every way protected: Belady in the window
            far = max(range(self.ways), key=lambda w: self.protect[ways[w].key])
            if key not in self.protect or self.protect[key] > self.protect[ways[far].key]:
                self.last["refusals"] += 1
                return
            candidates = [far]
        new = evaluate(self.policy.new_score, 0, self.clock, count)
        w = min(candidates, key=lambda w: (ways[w].score, w))
        if refuse_below_min and new < ways[w].score:
            self.last["refusals"] += 1
            return
        if self.policy.victim == "hand" and not farthest:
            w = self.walk_among(s, candidates)  # the walk runs, whether TinyLFU refuses the key or not
        if compares_victim and not self.estimate(key) > self.estimate(ways[w].key):  # the victim chosen
            self.last["refusals"] += 1
            return
        self.last["evictions"] += 1
        ways[w] = Slot(key, new, row)
        self.last["insertions"] += 1

    def walk_among(self, s, candidates):
        """The hand's walk, step by step, over the candidate ways only (protected ways are not seen); the
        hand becomes none when no slot at all is after the victim in (position, way) order."""
        ways = self.sets[s]

        def pos(w):
            return (ways[w].score - (ways[w].score & 1), w)

        everyone = sorted(range(self.ways), key=pos)
        order = sorted(candidates, key=pos)
        hand = self.hands.get(s)
        i = next((i for i, w in enumerate(order) if hand is None or pos(w) > hand), 0)
        while ways[order[i]].score & 1:
            ways[order[i]].score -= 1
            i = (i + 1) % len(order)
        victim = order[i]
        if victim == everyone[-1]:
            self.hands.pop(s, None)
        else:
            self.hands[s] = pos(victim)
        return victim

    def lookup(self, keys):
        self.flush()
        out = super().lookup(keys)
        if self.pending:  # this lookup deferred its placement, which will spare this lookup's window
            self.pending_protect = self.protect
        return out

    def lookup_ahead(self, keys, upcoming):
        self.flush()
        self.protect = window(upcoming)
        try:
            return self.lookup(keys)
        finally:
            self.protect = {}

    def prefetch(self, keys, upcoming):
        keys = [int(k) for k in keys]
        self.begin()
        counts = Counter(keys)
        missed = sorted(k for k in counts if self.slot_of(k) is None)
        cached = len(keys) - sum(counts[k] for k in missed)
        admitting = missed and self.policy.inserts_on_lookup and self.admission.admit_batch(cached, len(keys))
        estimates = None
        if admitting:
            self.last["prefetched"] = len(missed)
            if self.sketch is not None:
                estimates = self.sketch_batch(missed, counts)
        self.tick()
        if admitting:
            self.protect = window(list(keys) + [int(k) for k in upcoming])
            for k in missed:
                if k not in self.tier:
                    self.last["absent"] += 1
                elif estimates is not None and estimates[k] < self.admission.sketch[0]:
                    self.last["refusals"] += 1
                else:
                    self.place(k, counts[k], self.tier[k], self.admission.refuse_below_min,
                               self.admission.compares_victim)
            self.protect = {}
        self.end()

    def stats_dict(self, counter):
        return {**super().stats_dict(counter), "prefetched": counter["prefetched"]}


class LookaheadMachine(CacheMachine):
    """The stateful tests' machine, its model with lookahead, and two more rules."""

    reference = LookaheadReference

    @rule(batch=st.lists(CacheMachine.keys, max_size=16), upcoming=st.lists(CacheMachine.keys, max_size=24))
    def lookup_ahead(self, batch, upcoming):
        got = self.cache.lookup(np.array(batch, np.int64), upcoming=np.array(upcoming, np.int64))
        assert same_bits(host(got), self.ref.lookup_ahead(batch, upcoming))

    @rule(batch=st.lists(CacheMachine.keys, max_size=16), upcoming=st.lists(CacheMachine.keys, max_size=16))
    def prefetch(self, batch, upcoming):
        self.cache.prefetch(np.array(batch, np.int64), upcoming=np.array(upcoming, np.int64) if upcoming else None)
        self.ref.prefetch(batch, upcoming)


# every kind of victim rule (lowest score, clock-driven, count-driven, aging, the two hand walks) and every
# admission that acts at placement, with the stateful tests' settings
MACHINE_GRID = [("lru", "always"), ("lru", "hit_rate_deferred"), ("lfu", "refuse_below_min"), ("fifo", "min_frequency"),
                ("clock", "always"), ("sieve", "always"), ("sieve", "tinylfu"), ("lfu_aged", "always"),
                ("lru2", "hit_rate_threshold"), ("epoch_lru", "tinylfu"), ("static", "always")]


def lookahead_machines(backend: str, marks=()):
    return machines_of(LookaheadMachine, "TestLookahead", MACHINE_GRID, backend, marks)


globals().update(lookahead_machines("cpu"))


# ---------------------------------------------------------------- properties
def make(policy="lru", admission="always", capacity=16, ways=4, backend="cpu", keys=range(-50, 200), pinned=False):
    store = HostStore(DIM, "float32", pinned=pinned)
    stored = np.array(list(keys), np.int64)
    store.put_many(stored, rows_for(stored, DIM, "float32", seed=0))
    return embcache.Cache(capacity, DIM, policy, ADMISSION_GRID[admission](), "float32", backend, store,
                          default=-1.0, ways=ways)


batches = st.lists(st.lists(st.integers(-50, 199), max_size=12), min_size=1, max_size=8)


@pytest.mark.parametrize("policy", ["lru", "lfu", "clock", "sieve", "lru2"])
@given(warm=batches, batch=st.lists(st.integers(-50, 199), max_size=24),
       upcoming=st.lists(st.integers(-50, 199), max_size=24))
def test_an_upcoming_key_leaves_only_a_set_that_ends_full_of_upcoming_keys(policy, warm, batch, upcoming):
    """A key of ``upcoming`` is evicted only while every way of its set is protected; later placements of the
    batch then evict only protected keys too, so its set ends full of upcoming keys."""
    cache = make(policy)
    for b in warm:
        cache.lookup(np.array(b, np.int64))
    before = set(cache.export()[0].tolist())
    cache.lookup(np.array(batch, np.int64), upcoming=np.array(upcoming, np.int64))
    after = cache.export()[0]
    protected = set(upcoming)
    for key in (before - set(after.tolist())) & protected:
        s = sets_of(np.array([key]), cache.num_sets)[0]
        in_set = after[sets_of(after, cache.num_sets) == s].tolist()
        assert len(in_set) == cache.ways and set(in_set) <= protected, (key, in_set)
    cache.close()


@pytest.mark.parametrize("policy, admission", [("lru", "always"), ("sieve", "tinylfu"), ("lfu", "min_frequency"),
                                               ("clock", "hit_rate_deferred")])
@given(steps=st.lists(st.tuples(st.lists(st.integers(-50, 199), max_size=12), st.booleans()), min_size=1,
                      max_size=8))
def test_an_empty_upcoming_is_no_upcoming(policy, admission, steps):
    plain, empty = make(policy, admission), make(policy, admission)
    for batch, as_list in steps:
        keys = np.array(batch, np.int64)
        assert same_bits(plain.lookup(keys), empty.lookup(keys, upcoming=[] if as_list else np.zeros(0, np.int32)))
        assert plain.export()[0].tolist() == empty.export()[0].tolist()
        assert plain.export()[2].tolist() == empty.export()[2].tolist()
        assert plain.stats.as_dict() == empty.stats.as_dict() and plain.clock == empty.clock
    plain.close()
    empty.close()


@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo", "clock", "sieve", "epoch_lru"])
@given(warm=batches, keys=st.lists(st.integers(-50, 199), min_size=1, max_size=40))
def test_prefetch_then_lookup_of_the_same_keys_is_all_hits(policy, warm, keys):
    cache = make(policy, capacity=32, ways=32)  # one set: any 32 distinct keys fit
    for b in warm:
        cache.lookup(np.array(b, np.int64))
    keys = keys[:32] if len(set(keys)) <= 32 else sorted(set(keys))[:32]
    batch = np.array(keys, np.int64)
    lacking = {k for k in keys if not cache.query(np.array([k], np.int64))[1][0]}
    before = cache.stats
    cache.prefetch(batch)
    last = cache.stats.last
    assert (last.prefetched, last.hits, last.misses, last.unique_misses) == (len(lacking), 0, 0, 0)
    assert last.insertions + last.refusals + last.absent == len(lacking) and last.absent == 0
    assert last.refusals == 0  # one set that the keys fit: every lacking key is placed
    assert cache.stats.prefetched == before.prefetched + len(lacking)
    assert cache.stats.lookups == before.lookups
    rows = cache.lookup(batch)
    assert cache.stats.last.hits == len(keys) and cache.stats.last.misses == 0
    assert same_bits(rows, cache._tier.get_many(batch)[0])
    cache.close()


def test_prefetch_advances_the_clock_and_spares_its_own_keys_and_upcoming():
    cache = make("lru", capacity=4, ways=4)
    cache.lookup(np.array([1, 2, 3, 4], np.int64))  # one set of 4 ways
    clock = cache.clock
    cache.prefetch(np.array([5, 6], np.int64), upcoming=np.array([1, 2, 5], np.int64))
    assert cache.clock == clock + 1
    # LRU would evict 1 and 2 (ties to the lowest way); they are upcoming, so 3 and 4 go
    assert cache.export()[0].tolist() == [1, 2, 5, 6]
    assert cache.stats.last.prefetched == 2 and cache.stats.last.evictions == 2
    cache.prefetch(np.array([7, 1], np.int64), upcoming=np.array([2, 5, 6], np.int64))
    # every way protected (the window 7 1 2 5 6): Belady in it, so 6, needed last, makes room for 7
    assert cache.export()[0].tolist() == [1, 2, 5, 7]
    assert cache.stats.last.prefetched == 1 and cache.stats.last.evictions == 1
    cache.close()


def test_a_full_set_of_protected_keys_is_belady_in_the_window():
    cache = make("lru", capacity=2, ways=2)
    cache.lookup(np.array([10, 11], np.int64))
    cache.lookup(np.array([12], np.int64), upcoming=np.array([10, 11], np.int64))
    assert cache.export()[0].tolist() == [10, 11] and cache.stats.last.refusals == 1  # 12 is not needed
    assert cache.stats.last.misses == 1 and cache.stats.last.insertions == 0
    cache.lookup(np.array([12], np.int64), upcoming=np.array([10, 11, 11, 12], np.int64))
    assert cache.export()[0].tolist() == [10, 11] and cache.stats.last.refusals == 1  # 12 is needed last
    cache.lookup(np.array([12], np.int64), upcoming=np.array([10, 12, 10, 11], np.int64))
    assert cache.export()[0].tolist() == [10, 12] and cache.stats.last.evictions == 1  # 11 is needed last
    cache.close()


def test_a_cyclic_trace_that_lru_always_misses_hits_with_a_window_of_one():
    """Keys 1, 2, 3 in turn through 2 ways: LRU always evicts the key needed next; sparing the next key makes
    every other lookup a hit once the cycle runs."""
    trace = [1, 2, 3] * 20
    plain, ahead = make("lru", capacity=2, ways=2), make("lru", capacity=2, ways=2)
    for i, key in enumerate(trace):
        plain.lookup(np.array([key], np.int64))
        ahead.lookup(np.array([key], np.int64), upcoming=np.array(trace[i + 1:i + 2], np.int64))
    assert plain.stats.hits == 0
    assert ahead.stats.hits >= len(trace) // 2 - 2
    plain.close()
    ahead.close()


@pytest.mark.parametrize("op", ["lookup", "prefetch"])
@pytest.mark.parametrize("upcoming, error", [
    (np.array([1.0, 2.0]), KeyDtypeError),
    (np.array([[1, 2]], np.int64), KeyShapeError),
    (np.array([3, LOCKED_KEY], np.int64), ReservedKeyError),
    (["a"], KeyDtypeError),
])
def test_bad_upcoming_is_refused_before_any_change(op, upcoming, error):
    cache = make("lru", capacity=4, ways=4)
    cache.lookup(np.array([1, 2], np.int64))
    before = (cache.export()[0].tolist(), cache.stats.as_dict(), cache.clock)
    with pytest.raises(error, match="upcoming"):
        getattr(cache, op)(np.array([5, 6], np.int64), upcoming=upcoming)
    assert (cache.export()[0].tolist(), cache.stats.as_dict(), cache.clock) == before
    cache.close()


def test_bad_prefetch_keys_are_refused():
    cache = make("lru")
    with pytest.raises(KeyDtypeError):
        cache.prefetch(np.array([1.5]))
    with pytest.raises(KeyShapeError):
        cache.prefetch(np.zeros((2, 2), np.int64))
    with pytest.raises(ReservedKeyError):
        cache.prefetch(np.array([LOCKED_KEY], np.int64))
    assert cache.clock == 0 and cache.stats.prefetched == 0
    cache.close()


def test_static_takes_upcoming_and_prefetch_reads_nothing():
    cache = make("static", capacity=4, ways=4)
    cache.preload(np.array([1, 2], np.int64))
    cache.lookup(np.array([1, 3], np.int64), upcoming=np.array([3], np.int64))
    cache.prefetch(np.array([3, 4], np.int64))
    assert cache.export()[0].tolist() == [1, 2] and cache.stats.prefetched == 0
    cache.close()


def test_a_saved_cache_from_before_prefetched_loads_with_zero(tmp_path):
    import json
    import zipfile

    cache = make("lru")
    cache.prefetch(np.array([1, 2], np.int64))
    path = tmp_path / "c.npz"
    cache.save(path)
    loaded = embcache.Cache.load(path, tier=cache._tier, backend="cpu")
    assert loaded.stats.prefetched == 2
    loaded.close()
    # the same file with the field taken out of its metadata (a save of an earlier version)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta_npy = members["meta.npy"]
    import io

    meta = json.loads(np.load(io.BytesIO(meta_npy)).tobytes())
    del meta["stats"]["prefetched"]
    buf = io.BytesIO()
    np.save(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buf.getvalue()
    old = tmp_path / "old.npz"
    with zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as z:
        for n, data in members.items():
            z.writestr(n, data)
    loaded = embcache.Cache.load(old, tier=cache._tier, backend="cpu")
    assert loaded.stats.prefetched == 0 and loaded.stats.insertions == 2
    loaded.close()
    cache.close()


# ---------------------------------------------------------------- the GPU: the CPU's results
globals().update(lookahead_machines("gpu", GPU))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.parametrize("policy, admission", [("lru", "always"), ("lfu", "refuse_below_min"), ("clock", "always"),
                                               ("sieve", "tinylfu"), ("fifo", "min_frequency"),
                                               ("lru", "hit_rate_deferred")])
@pytest.mark.parametrize("pinned", [False, True])
@settings(max_examples=30)
@given(steps=st.lists(st.tuples(st.sampled_from(["lookup", "ahead", "prefetch"]),
                                st.lists(st.integers(-50, 199), max_size=40),
                                st.lists(st.integers(-50, 199), max_size=60), st.booleans()),
                      min_size=1, max_size=12),
       ways=st.sampled_from([2, 8, 32]))
def test_cpu_and_gpu_agree_with_lookahead(policy, admission, pinned, steps, ways):
    """Both backends, the GPU's store pinned or not (pinned: its lookups are otherwise stream-ordered, so a
    lookup with upcoming takes the host path beside them); keys on the host or the device."""
    import cupy

    from .test_gpu import assert_same_state, raw_bytes

    cpu = make(policy, admission, capacity=3 * ways, ways=ways, backend="cpu")
    gpu = make(policy, admission, capacity=3 * ways, ways=ways, backend="gpu", pinned=pinned)
    for op, batch, upcoming, on_device in steps:
        keys, ahead = np.array(batch, np.int64), np.array(upcoming, np.int64)
        dk, da = (cupy.asarray(keys), cupy.asarray(ahead)) if on_device else (keys, ahead)
        if op == "lookup":
            assert raw_bytes(cpu.lookup(keys)) == raw_bytes(gpu.lookup(dk))
        elif op == "ahead":
            assert raw_bytes(cpu.lookup(keys, upcoming=ahead)) == raw_bytes(gpu.lookup(dk, upcoming=da))
        else:
            cpu.prefetch(keys, upcoming=ahead)
            gpu.prefetch(dk, upcoming=da)
        assert_same_state(cpu, gpu)
    cpu.close()
    gpu.close()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_lookup_with_upcoming_is_not_captured():
    import cupy

    cache = make("lru", capacity=64, ways=32, backend="gpu", pinned=True, keys=range(1000))
    keys = cupy.arange(16, dtype=cupy.int64)
    ahead, empty = keys + 1, cupy.zeros(0, cupy.int64)  # made before the capture
    cache.lookup(keys)  # scratch made, kernels compiled
    # that lookup is stream-ordered on the legacy stream, which a non-blocking stream does not wait for:
    # without this the replay below may run beside it (the H200 run hit it: clock 1, hits -16)
    cupy.cuda.Device().synchronize()
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(CaptureError, match="upcoming"):
                cache.lookup(keys, upcoming=ahead, stream=stream)
            with pytest.raises(CaptureError):
                cache.prefetch(keys, stream=stream)
            cache.lookup(keys, upcoming=empty, stream=stream)  # no lookahead: captured
        finally:
            graph = stream.end_capture()
    graph.launch(stream)
    stream.synchronize()
    assert cache.stats.lookups == 32 and cache.clock == 2
    cache.close()


# ---------------------------------------------------------------- the study's lookahead column
def test_the_study_runs_every_window_and_lookahead_helps_where_it_must(tmp_path):
    from embcache import study

    trace = np.array([1, 2, 3] * 30, np.int64)  # one set of 2 ways (capacity 2): LRU always misses
    rows = study.run_study(trace, policies=["lru", "static", "s3fifo"], capacities=[2], ways=[2], batch=1,
                           belady=False, progress=False, lookahead=[0, 1, 4])
    runs = {(r["policy"], r["lookahead"]): r for r in rows}
    assert set(runs) == {("lru", 0), ("lru", 1), ("lru", 4), ("static", 0), ("s3fifo", 0)}
    assert all(set(study.FIELDS) <= set(r) for r in rows)
    assert runs["lru", 0]["hit_rate"] == 0.0 and runs["lru", 1]["hit_rate"] > 0.4
    assert runs["lru", 4]["hit_rate"] >= runs["lru", 1]["hit_rate"]
    gains = study.lookahead_gains(rows)
    assert [(g["policy"], g["lookahead"]) for g in gains] == [("lru", 1), ("lru", 4)]
    assert gains[0]["gain"] == pytest.approx(runs["lru", 1]["hit_rate"])
    notes = study.skipped_notes(["lru", "static", "s3fifo"], ["always"], [0, 1, 4])
    assert any("static" in n and "never evicts" in n for n in notes) and any("s3fifo" in n for n in notes)
    assert study.skipped_notes(["lru", "static"], ["always"]) == []
    with pytest.raises(ConfigError, match="lookahead"):
        study.run_study(trace, policies=["lru"], capacities=[2], ways=[2], belady=False, progress=False,
                        lookahead=[-1])


def test_the_study_command_takes_lookahead_windows(tmp_path, capsys):
    from embcache import cli, traces

    traces.write_trace([np.array([1, 2, 3] * 30, np.int64)], tmp_path / "t", progress=False)
    assert cli.main(["study", "--trace", str(tmp_path / "t"), "--policies", "lru", "--admissions", "always",
                     "--capacities", "2", "--ways", "2", "--batch", "1", "--lookahead", "0,1", "--no-belady",
                     "--no-plot", "--no-progress", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "lookahead   1 batches of 1: lru + always, 2 ways, capacity 2: 0.0000 ->" in out
    import csv

    with open(tmp_path / "out" / "study.csv") as f:
        assert sorted(r["lookahead"] for r in csv.DictReader(f)) == ["0", "1"]


def bypass_min_hits(trace, num_sets, ways):
    """Belady's MIN with bypass, set by set, one key at a time: a full set evicts a key never used again, else
    the one used again farthest ahead, unless the missed key itself is used again later than that (or
    never), when it is not brought in.  The offline optimum of a cache that may decline a key."""
    sets = sets_of(np.array(trace, np.int64), num_sets)
    nxt = []
    for i, k in enumerate(trace):
        nxt.append(next((j for j in range(i + 1, len(trace)) if trace[j] == k), float("inf")))
    held = [dict() for _ in range(num_sets)]  # key -> its next use
    hits = 0
    for i, k in enumerate(trace):
        h = held[sets[i]]
        if k in h:
            hits += 1
        elif len(h) == ways:
            far = max(h, key=lambda key: h[key])
            if h[far] <= nxt[i]:
                continue  # bypass: every cached key is needed sooner
            del h[far]
        h[k] = nxt[i]
    return hits


@pytest.mark.parametrize("policy", ["lru", "lfu", "clock", "sieve"])
@given(trace=st.lists(st.integers(0, 12), min_size=1, max_size=120), ways=st.sampled_from([1, 2, 4]),
       num_sets=st.sampled_from([1, 3]))
def test_a_window_of_the_whole_future_is_belady_with_bypass(policy, trace, ways, num_sets):
    """One key a batch, ``upcoming`` the rest of the trace: every key used again is protected, so a full set
    evicts one never used again (by the policy: the hit count does not depend on which), else the one used
    farthest ahead, and declines a key needed later than all of its own: Belady's MIN with bypass, exactly.
    It is never below the demand-fetching MIN of ``embcache.belady`` in the same sets."""
    from embcache.belady import belady_hits_in_sets

    cache = make(policy, capacity=num_sets * ways, ways=ways, keys=range(13))
    assert cache.num_sets == num_sets
    for i, key in enumerate(trace):
        cache.lookup(np.array([key], np.int64), upcoming=np.array(trace[i + 1:], np.int64))
    assert cache.stats.hits == bypass_min_hits(trace, num_sets, ways)
    assert cache.stats.hits >= belady_hits_in_sets(np.array(trace, np.int64), num_sets, ways)
    cache.close()


@pytest.mark.parametrize("policy, admission, named", [("s3fifo", "always", "S3-FIFO"),
                                                     ("lru", "tinylfu_evict", "tinylfu")])
def test_a_victim_rule_without_lookahead_refuses_it_rather_than_ignoring_it(policy, admission, named):
    cache = make(policy, admission)
    with pytest.raises(ConfigError, match=named):
        cache.lookup(np.array([1], np.int64), upcoming=np.array([2], np.int64))
    with pytest.raises(ConfigError, match=named):
        cache.prefetch(np.array([1], np.int64))
    cache.lookup(np.array([1], np.int64), upcoming=[])  # no lookahead asked for: nothing to refuse
    assert cache.clock == 1
    cache.close()
