"""Issue 19 across the parts: the cache above a tiered store that failed part-way serves no stale row."""
import numpy as np
import pytest

import embcache
from embcache.errors import TierError
from embcache.tiers import HostStore, TieredStore

pytest.importorskip("rocksdict", reason="needs rocksdict: pip install '.[tiers]'")
from embcache.tiers import RocksStore  # noqa: E402


@pytest.mark.filterwarnings("ignore:.*did not take.*promoted rows:RuntimeWarning")
@pytest.mark.parametrize("op", ["update", "insert"])
def test_a_write_that_failed_in_a_faster_tier_leaves_no_stale_cached_row(tmp_path, op):
    dim = 4
    slow = RocksStore(tmp_path / "db", dim, create=True)
    slow.put_many(np.array([1, 2, 3]), np.full((3, dim), 1.0, np.float32))
    store = TieredStore([HostStore(dim, capacity=2, overflow="error"), slow])
    cache = embcache.Cache(64, dim, backend="cpu", tier=store)
    assert cache.lookup(np.array([1]))[0, 0] == 1.0  # cached, and promoted into the host tier
    with pytest.raises(TierError):  # RocksDB takes the rows, the host tier has no room for 2 and 3
        getattr(cache, op)(np.array([1, 2, 3]), np.full((3, dim), 2.0, np.float32))
    assert slow.get_many(np.array([1]))[0][0, 0] == 2.0
    _, found = cache.query(np.array([1]))
    assert not found[0]  # the cache dropped its old copy
    assert cache.lookup(np.array([1, 2, 3]))[:, 0].tolist() == [2.0, 2.0, 2.0]
    assert len(cache) == 3 and sorted(cache.export()[0].tolist()) == [1, 2, 3]
    store.close()
