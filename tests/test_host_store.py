"""HostStore against a dict."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from embcache.tiers import HostStore

from .strategies import keys as key_values


class HostStoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.store = HostStore(2, initial_rows=1)
        self.model = {}
        self.n = 0

    @rule(keys=st.lists(key_values, max_size=20))
    def put(self, keys):
        self.n += 1
        rows = np.arange(2 * len(keys), dtype=np.float32).reshape(-1, 2) + 1000 * self.n
        self.store.put_many(np.array(keys, np.int64), rows)
        for k, r in zip(keys, rows):
            self.model[k] = r

    @rule(keys=st.lists(key_values, max_size=20))
    def delete(self, keys):
        self.store.delete_many(np.array(keys, np.int64))
        for k in keys:
            self.model.pop(k, None)

    @rule(keys=st.lists(key_values, max_size=20))
    def get(self, keys):
        rows, found = self.store.get_many(np.array(keys, np.int64))
        for k, r, f in zip(keys, rows, found):
            assert f == (k in self.model)
            assert (r == (self.model[k] if f else 0)).all()

    @invariant()
    def same_keys(self):
        assert len(self.store) == len(self.model)
        assert sorted(self.store.keys().tolist()) == sorted(self.model)


TestHostStore = HostStoreMachine.TestCase


@given(st.lists(st.tuples(st.sampled_from(["put", "get"]), st.lists(st.integers(0, 30), max_size=6)), max_size=30),
       st.integers(1, 8))
def test_bounded_store_drops_the_oldest_puts(ops, capacity):
    store = HostStore(2, capacity=capacity, overflow="oldest")
    model = {}  # stored key -> time of its last put
    for t, (op, keys) in enumerate(ops):
        if op == "get":
            assert store.get_many(keys)[1].tolist() == [k in model for k in keys]
            continue
        store.put_many(keys, np.full((len(keys), 2), t, np.float32))
        kept_batch = set(keys[-capacity:])
        for k in kept_batch:
            model[k] = t
        present = set(store.keys().tolist())
        assert kept_batch <= present <= set(model) and len(present) <= capacity
        dropped = [model[k] for k in model if k not in present]
        others = [model[k] for k in present if k not in kept_batch]
        assert not dropped or not others or max(dropped) <= min(others), "a newer row went before an older one"
        model = {k: model[k] for k in present}
        got = store.get_many(sorted(present))[0][:, 0]
        assert got.tolist() == [model[k] for k in sorted(present)]


def test_bounded_store_least_used_and_random():
    store = HostStore(1, capacity=3, overflow="least_used")
    store.put_many([1, 2, 3], np.zeros((3, 1), np.float32))
    store.get_many([1, 1, 3])
    store.put_many([4], np.ones((1, 1), np.float32))  # 2 was never read
    assert sorted(store.keys().tolist()) == [1, 3, 4]
    store.get_many([4, 4, 4, 1])
    store.put_many([5], np.ones((1, 1), np.float32))  # 3 read once; 1 twice... 3 goes
    assert sorted(store.keys().tolist()) == [1, 4, 5]
    rand = HostStore(1, capacity=10, overflow="random", seed=1)
    for start in range(0, 100, 7):
        batch = list(range(start, start + 7))
        rand.put_many(batch, np.zeros((7, 1), np.float32))
        assert len(rand) <= 10 and rand.get_many(batch)[1].all()
