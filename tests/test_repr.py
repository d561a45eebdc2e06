"""``repr(Cache)`` tells the length after every queued lookup (a stream-ordered GPU lookup counts on the
device: the repr reads it), and says when the cache is closed."""
import numpy as np
import pytest

import embcache
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore


def test_repr_of_a_closed_cache_says_so_and_an_open_one_tells_its_length():
    cache = embcache.Cache(64, 4, "lru", backend="cpu", tier=HostStore(4))
    cache.tier.put_many(np.arange(10, dtype=np.int64), np.ones((10, 4), np.float32))
    cache.lookup(np.arange(10, dtype=np.int64))
    assert f"len={len(cache)})" in repr(cache) and len(cache) == 10
    cache.close()
    assert repr(cache).endswith("len=closed)")


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_repr_counts_the_keys_a_stream_ordered_lookup_inserted():
    import cupy

    store = HostStore(4, pinned=True)
    store.put_many(np.arange(100, dtype=np.int64), np.ones((100, 4), np.float32))
    cache = embcache.Cache(256, 4, "lfu", backend="gpu", tier=store)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:  # the keys made on the lookup's stream: ordered before it
        keys = cupy.arange(50, dtype=cupy.int64)
    cache.lookup(keys, stream=stream)  # returns before its kernels have run
    assert "len=50)" in repr(cache)
