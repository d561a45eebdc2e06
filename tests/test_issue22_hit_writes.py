"""Issue 22 item 2: a hit whose rule leaves the score as it was stores nothing, and the study says how
many hits store one.

Exactness (contents and results unchanged by the skip) is what every stateful and differential grid
checks already, for every registered policy on both backends; here: the count itself, per policy.
"""
import numpy as np
import pytest

import embcache
from embcache.study import FIELDS, run_study
from embcache.tiers import HostStore


def _cache(policy, capacity=64, ways=4):
    store = HostStore(1, "float32")
    store.put_many(np.arange(1000), np.zeros((1000, 1), np.float32))
    return embcache.Cache(capacity, 1, policy, backend="cpu", tier=store, ways=ways)


def _writes(cache) -> int:
    return cache._backend.score_writes


def test_fifo_and_static_hits_store_nothing():
    for policy in ("fifo", "static"):
        cache = _cache(policy)
        cache.preload(np.arange(8)) if policy == "static" else cache.lookup(np.arange(8))
        for _ in range(5):
            cache.lookup(np.arange(8))
        assert cache.stats.hits == 40 and _writes(cache) == 0


def test_lru_stores_every_hit_and_lfu_every_occurrence():
    lru, lfu = _cache("lru"), _cache("lfu")
    for cache in (lru, lfu):
        cache.lookup(np.arange(8))
        cache.lookup(np.array([1, 1, 2]))
        cache.lookup(np.array([3]))
    assert _writes(lru) == 3  # key 1's second occurrence finds the score its first stored: no store
    assert _writes(lfu) == 4  # a count changes on every occurrence


def test_epoch_lru_stores_only_when_the_epoch_changes():
    cache = _cache("epoch_lru")
    cache.lookup([5])  # clock 1, epoch 0
    for _ in range(14):  # clocks 2 .. 15: the same epoch, the same score
        cache.lookup([5])
    assert cache.stats.hits == 14 and _writes(cache) == 0
    cache.lookup([5])  # clock 16: epoch 1
    assert _writes(cache) == 1 and cache.export()[2].tolist() == [1]


def test_a_rule_that_often_leaves_the_score_stores_only_its_changes():
    from embcache.policies import Policy
    from embcache.policies._registry import _forget

    class Capped(Policy):
        name = "test_capped_count"
        new_score = "count"
        hit_score = "min(sat_add(score, count), 3)"

    try:
        cache = _cache(Capped)
        cache.lookup([7])
        for _ in range(6):
            cache.lookup([7])
        assert cache.export()[2].tolist() == [3] and _writes(cache) == 2  # 1 -> 2 -> 3, then nothing
    finally:
        _forget(Capped)


def test_the_study_reports_the_share_of_hits_that_write():
    rng = np.random.default_rng(0)
    trace = (rng.zipf(1.2, 4000) % 300).astype(np.int64)
    rows = run_study(trace, policies=["lru", "lfu", "fifo", "epoch_lru"], capacities=[64], batch=1,
                     backend="cpu", belady=True, progress=False)
    assert "hit_writes" in FIELDS and all(set(FIELDS) <= set(r) for r in rows)
    share = {r["policy"]: r["hit_writes"] for r in rows}
    assert share["fifo"] == 0.0 and share["lru"] == 1.0 and share["lfu"] == 1.0  # one key a batch
    assert 0.0 < share["epoch_lru"] < 1.0  # a hit within the epoch of its last access stores nothing
    assert np.isnan(share["belady"])


def test_the_study_command_prints_the_column(tmp_path, capsys):
    from embcache.cli import main

    np.save(tmp_path / "t.npy", (np.arange(3000) % 97).astype(np.int64))
    assert main(["study", "--trace", str(tmp_path / "t.npy"), "--policies", "lru,fifo", "--capacities", "32",
                 "--batch", "1", "--backend", "cpu", "--out", str(tmp_path / "out"), "--no-plot",
                 "--no-progress", "--no-belady"]) == 0
    out = capsys.readouterr().out
    assert "hit writes" in out
    fifo = next(line for line in out.splitlines() if line.startswith("fifo"))
    assert fifo.split()[-1] == "0.000"


@pytest.mark.gpu
def test_the_gpu_backend_does_not_count():
    from embcache.kernels.gpu import gpu_available

    if not gpu_available():
        pytest.skip("needs a CUDA GPU and CuPy")
    cache = embcache.Cache(64, 1, "lru", backend="gpu")
    assert cache._backend.score_writes is None
