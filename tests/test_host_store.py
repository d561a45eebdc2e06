"""HostStore against a dict."""
import numpy as np
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
