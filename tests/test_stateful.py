"""Cache and ReferenceCache driven side by side, for every policy x admission."""
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

import embcache
from embcache.errors import PreloadOverflowError, StaticInsertError
from embcache.tiers import HostStore

from .reference import ReferenceCache
from .strategies import host, keys as key_values, rows_for, same_bits
from .test_contract import ADMISSION_GRID, POLICIES

DIM = 3


class CacheMachine(RuleBasedStateMachine):
    policy_name = "lru"
    admission_name = "always"
    backend = "cpu"

    keys = Bundle("keys")
    reference = ReferenceCache  # the plain-Python model the cache is held to (a subclass may extend it)

    @initialize(
        target=keys,
        capacity=st.integers(1, 24),
        ways=st.sampled_from([1, 2, 4, 8]),
        dtype=st.sampled_from(["float32", "float16"]),
        universe=st.lists(key_values, min_size=1, max_size=30, unique=True),
        stored=st.lists(st.booleans(), min_size=30, max_size=30),
    )
    def setup(self, capacity, ways, dtype, universe, stored):
        self.dtype = np.dtype(dtype)
        tier_keys = np.array([k for k, s in zip(universe, stored) if s], np.int64)
        tier_rows = rows_for(tier_keys, DIM, dtype, seed=0)
        self.tier = HostStore(DIM, dtype)
        self.tier.put_many(tier_keys, tier_rows)
        policy = embcache.policies.get_policy(self.policy_name)
        admission = ADMISSION_GRID[self.admission_name]()
        self.cache = embcache.Cache(capacity, DIM, policy, admission, dtype, self.backend, self.tier,
                                    default=-1.0, ways=ways)
        self.ref = self.reference(capacity, DIM, policy, admission, dict(zip(tier_keys.tolist(), tier_rows)),
                                  -1.0, ways, dtype)
        self.writes = 0
        return multiple(*universe)

    @rule(target=keys, key=key_values)
    def new_key(self, key):
        return key

    @rule(batch=st.lists(keys, max_size=24))
    def lookup(self, batch):
        got = self.cache.lookup(np.array(batch, np.int64))
        assert same_bits(host(got), self.ref.lookup(batch))

    @rule(batch=st.lists(keys, max_size=12))
    def query(self, batch):
        rows, found = self.cache.query(np.array(batch, np.int64))
        ref_rows, ref_found = self.ref.query(batch)
        assert (host(found) == ref_found).all()
        assert same_bits(host(rows), ref_rows)

    def _rows(self, batch):
        self.writes += 1
        return rows_for(batch, DIM, self.dtype, seed=self.writes)

    @rule(batch=st.lists(keys, max_size=12))
    def insert(self, batch):
        rows = self._rows(batch)
        expected = None
        try:
            self.ref.insert(batch, rows)
        except StaticInsertError as exc:
            expected = exc
        if expected is None:
            self.cache.insert(np.array(batch, np.int64), rows)
        else:
            with pytest.raises(StaticInsertError):
                self.cache.insert(np.array(batch, np.int64), rows)

    @rule(batch=st.lists(keys, max_size=12))
    def update(self, batch):
        rows = self._rows(batch)
        self.cache.update(np.array(batch, np.int64), rows)
        self.ref.update(batch, rows)

    @rule(batch=st.lists(keys, max_size=8))
    def erase(self, batch):
        self.cache.erase(np.array(batch, np.int64))
        self.ref.erase(batch)

    @rule(batch=st.lists(keys, max_size=12))
    def preload(self, batch):
        try:
            self.ref.preload(batch)
        except PreloadOverflowError:
            with pytest.raises(PreloadOverflowError):
                self.cache.preload(np.array(batch, np.int64))
        else:
            self.cache.preload(np.array(batch, np.int64))

    @rule()
    def clear(self):
        self.cache.clear()
        self.ref.clear()

    @invariant()
    def same_contents(self):
        keys, rows, scores = self.cache.export()
        ref_keys, ref_rows, ref_scores = self.ref.export()
        assert keys.tolist() == ref_keys.tolist()
        assert scores.tolist() == ref_scores.tolist()
        assert same_bits(rows, ref_rows)

    @invariant()
    def same_stats(self):
        stats = self.cache.stats
        assert {k: v for k, v in stats.as_dict().items() if k != "occupancy"} == self.ref.stats_dict(self.ref.stats)
        if stats.last is not None:
            last = stats.last.as_dict()
            assert {k: v for k, v in last.items() if k != "occupancy"} == self.ref.stats_dict(self.ref.last)
        assert self.cache.clock == self.ref.clock

    @invariant()
    def same_table_counts(self):
        """TinyLFUTables' per-table counts, which a placement may not reveal for a while."""
        if self.cache._reached is not None:
            assert host(self.cache._reached).tolist() == self.ref.reached

    @invariant()
    def sizes_add_up(self):
        stats = self.cache.stats
        assert len(self.cache) == len(self.ref) <= self.cache.capacity == self.ref.capacity
        assert stats.insertions == len(self.cache) + stats.evictions + stats.erased
        assert stats.occupancy == pytest.approx(len(self.cache) / self.cache.capacity) or stats.last is None

    @invariant()
    def tier_matches(self):
        keys = np.array(sorted(self.ref.tier), np.int64)
        rows, found = self.tier.get_many(keys)
        assert found.all() and len(self.tier) == len(keys)
        assert same_bits(rows, np.array([self.ref.tier[k] for k in keys.tolist()], self.dtype).reshape(-1, DIM))

    def teardown(self):
        if hasattr(self, "cache"):
            self.cache.close()


def machine_tests(backend: str, marks=(), policies=None):
    """One TestCase per policy x admission, as module-level names for pytest to collect.

    ``policies``: names to run (default: the registry's grid, ``test_contract.POLICIES``).
    """
    pairs = [(p, a) for p in (POLICIES if policies is None else policies) for a in ADMISSION_GRID]
    return machines_of(CacheMachine, "Test", pairs, backend, marks)


def machines_of(base, prefix: str, pairs, backend: str, marks=()) -> dict:
    """A TestCase of the state machine ``base`` for each (policy, admission) of ``pairs``, named
    ``{prefix}{BACKEND}_{policy}_{admission}`` with ``marks`` applied."""
    tests = {}
    for policy, admission in pairs:
        name = f"{prefix}{backend.upper()}_{policy}_{admission}"
        machine = type(name, (base,), {"policy_name": policy, "admission_name": admission, "backend": backend})
        case = machine.TestCase
        for mark in marks:
            case = mark(case)
        tests[name] = case
    return tests


globals().update(machine_tests("cpu"))
