"""MultiGPUCache: sharded mode equals one Cache per shard fed that shard's keys; replicated mode equals a
single Cache and writes reach every replica.  Routing is tested with the CPU backend and with several
shards on one GPU; tests that need two GPUs skip without them."""
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from embcache import Cache
from embcache.errors import ConfigError
from embcache.kernels.gpu import gpu_available
from embcache.layout import mix64
from embcache.multi_gpu import MultiGPUCache, shard_of
from embcache.tiers import HostStore

from .strategies import host

DIM = 4
KEYS = st.lists(st.integers(0, 300), min_size=1, max_size=40).map(lambda v: np.array(v, np.int64))


def gpu_count() -> int:
    if not gpu_available():
        return 0
    import cupy

    return cupy.cuda.runtime.getDeviceCount()


def rows_of(keys) -> np.ndarray:
    return (np.asarray(keys, np.float32)[:, None] * np.arange(1, DIM + 1, dtype=np.float32)).copy()


def test_shard_of_is_the_high_half_of_splitmix64():
    keys = np.array([0, 1, -7, 2**62 + 3, 99991], np.int64)
    expected = [int(mix64(int(k)) >> np.uint64(32)) % 5 for k in keys]
    assert shard_of(keys, 5).tolist() == expected
    counts = np.bincount(shard_of(np.arange(200_000), 4), minlength=4)
    assert counts.min() > 0.97 * counts.max()  # balanced


class ShardedAgainstSingleCaches(RuleBasedStateMachine):
    """A sharded MultiGPUCache against one plain Cache per shard, each fed only its shard's keys."""

    backend, devices = "cpu", (0, 0, 0)

    @initialize(policy=st.sampled_from(["lru", "lfu", "fifo"]), admission=st.sampled_from(["always", "min_frequency"]))
    def start(self, policy, admission):
        self.tier = HostStore(DIM)
        every = np.arange(0, 250, dtype=np.int64)  # keys 250..300 stay absent
        self.tier.put_many(every, rows_of(every))
        self.multi = MultiGPUCache(96, DIM, policy, admission, devices=self.devices, mode="sharded",
                                   backend=self.backend, tier=self.tier, ways=4)
        self.refs = [Cache(self.multi.capacity_per_shard, DIM, policy, admission, backend="cpu", tier=self.tier,
                           ways=4) for _ in self.devices]

    def _parts(self, keys):
        owner = shard_of(keys, len(self.refs))
        return [(s, owner == s) for s in range(len(self.refs))]

    @rule(keys=KEYS)
    def lookup(self, keys):
        got = host(self.multi.lookup(keys))
        expected = np.empty((keys.shape[0], DIM), np.float32)
        for s, mine in self._parts(keys):
            if mine.any():
                expected[mine] = self.refs[s].lookup(keys[mine])
        assert np.array_equal(got, expected)

    @rule(keys=KEYS)
    def insert(self, keys):
        self.multi.insert(keys, rows_of(keys) + 0.5)
        for s, mine in self._parts(keys):
            if mine.any():
                self.refs[s].insert(keys[mine], rows_of(keys[mine]) + 0.5)

    @rule(keys=KEYS)
    def erase(self, keys):
        self.multi.erase(keys)
        for s, mine in self._parts(keys):
            if mine.any():
                self.refs[s].erase(keys[mine])

    @rule(keys=KEYS)
    def query(self, keys):
        rows, found = self.multi.query(keys)
        for s, mine in self._parts(keys):
            if mine.any():
                r, f = self.refs[s].query(keys[mine])
                assert np.array_equal(host(rows)[mine], r) and np.array_equal(host(found)[mine], f)

    @invariant()
    def same_contents_and_stats(self):
        if not hasattr(self, "multi"):
            return
        for shard, ref in zip(self.multi.caches, self.refs):
            assert shard.stats.as_dict() == ref.stats.as_dict()
        got = self.multi.export()
        parts = [r.export() for r in self.refs]
        expected = [np.concatenate([p[i] for p in parts]) for i in range(3)]
        order = np.argsort(expected[0], kind="stable")
        assert all(np.array_equal(g, e[order]) for g, e in zip(got, expected))

    def teardown(self):
        if hasattr(self, "multi"):
            self.multi.close()


TestShardedOnTheCpu = ShardedAgainstSingleCaches.TestCase


def test_replicated_equals_a_single_cache_and_writes_reach_every_replica():
    tier = HostStore(DIM)
    every = np.arange(100, dtype=np.int64)
    tier.put_many(every, rows_of(every))
    multi = MultiGPUCache(32, DIM, "lfu", devices=[0, 1], mode="replicated", backend="cpu", tier=tier, ways=4)
    single = Cache(32, DIM, "lfu", backend="cpu", tier=tier, ways=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        keys = rng.integers(0, 100, 16)
        assert np.array_equal(multi.lookup(keys, device=0), single.lookup(keys))
    assert multi.caches[0].stats.as_dict() == single.stats.as_dict()
    assert multi.caches[1].stats.lookups == 0  # the other replica saw no lookup
    multi.insert(np.array([7, 8]), rows_of([70, 80]))
    for device in (0, 1):
        rows, found = multi.query(np.array([7, 8]), device=device)
        assert found.all() and np.array_equal(rows, rows_of([70, 80]))
    multi.erase(np.array([7]))
    assert not multi.query(np.array([7]), device=1)[1][0]
    with pytest.raises(ConfigError, match="no replica on device 3"):
        multi.lookup(np.array([1]), device=3)
    multi.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "mirrored"}, "mode must be"),
    ({"mode": "replicated", "devices": [0, 0]}, "repeats"),
    ({"devices": []}, "devices must"),
    ({"backend": "tpu"}, "backend must"),
])
def test_configuration_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MultiGPUCache(16, DIM, **{"backend": "cpu", **kwargs})


class ShardedOnOneGpu(ShardedAgainstSingleCaches):
    """Three shards on GPU 0 against three CPU caches: the GPU routing and both backends agree."""

    backend = "gpu"


TestShardedOnOneGpu = pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")(
    pytest.mark.gpu(ShardedOnOneGpu.TestCase))


@pytest.mark.gpu
@pytest.mark.skipif(gpu_count() < 2, reason="needs 2 GPUs (this machine has fewer)")
@pytest.mark.parametrize("mode", ["sharded", "replicated"])
def test_two_gpus(mode):
    import cupy

    tier = HostStore(DIM)
    every = np.arange(1000, dtype=np.int64)
    tier.put_many(every, rows_of(every))
    multi = MultiGPUCache(512, DIM, devices=[0, 1], mode=mode, tier=tier, ways=8)
    keys = np.random.default_rng(1).integers(0, 1000, 300)
    for device in (1, 0):
        with cupy.cuda.Device(device):
            out = multi.lookup(cupy.asarray(keys))
            assert out.device.id == device and np.array_equal(out.get(), rows_of(keys))
    multi.close()
