"""HostStore keeps its rows densely: an index of (key, row) pairs and a row array that spans the rows'
own size (the GPU reads rows in place, and rows spread over more memory read slower: docs/serving.md).

Random puts, deletes (the last row moves into a freed one) and growth keep every pair's row in use,
each row owned by one slot, and the rows no more than the index's half.
"""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from embcache.layout import EMPTY_KEY
from embcache.tiers import HostStore

OPS = st.lists(st.tuples(st.sampled_from(["put", "delete"]), st.lists(st.integers(0, 200), max_size=40)),
               max_size=25)


@settings(deadline=None)
@given(OPS, st.sampled_from([None, 30]))
def test_rows_stay_dense_and_each_pair_names_its_row(ops, capacity):
    store = HostStore(3, initial_rows=1, capacity=capacity)
    model = {}
    for step, (op, keys) in enumerate(ops):
        keys = np.array(keys, np.int64)
        if op == "put":
            rows = np.arange(3 * len(keys), dtype=np.float32).reshape(-1, 3) + 1000 * step
            store.put_many(keys, rows)
            if capacity is None:
                model.update(zip(keys.tolist(), rows))
        else:
            store.delete_many(keys)
            for k in keys.tolist():
                model.pop(k, None)
        pairs, size = store._table, len(store)
        used = np.flatnonzero(pairs[:, 0] != EMPTY_KEY)
        assert used.shape[0] == size
        rows_of = pairs[used, 1]
        assert sorted(rows_of.tolist()) == list(range(size))  # rows 0 .. size-1, each named once
        assert (store._slot_of[rows_of] == used).all()
        assert store._values.shape[0] == pairs.shape[0] // 2  # the rows span half the index's slots
        if capacity is None:
            got, found = store.get_many(np.array(sorted(model), np.int64))
            assert found.all()
            assert all((got[i] == model[k]).all() for i, k in enumerate(sorted(model)))

