"""What the review of issue 20's merge found, each held by a test (none of these needs a GPU)."""
import pathlib

import numpy as np
import pytest

import embcache
from embcache.errors import ConfigError
from embcache.policies import LFU, LRU
from embcache.tiers import HostStore, TieredStore


def test_only_tiers_that_may_offer_a_device_source_say_so():
    # a GPU cache locks the tier around every lookup only when it says it may offer one
    assert HostStore(4).offers_device_source is False  # not pinned
    assert TieredStore([HostStore(4), HostStore(4)]).offers_device_source is False
    from embcache.tiers.shared_host import SharedHostStore

    assert SharedHostStore.offers_device_source is True
    cache = embcache.Cache(64, 4, backend="cpu")
    assert cache._reads_sources is False


def test_a_policys_rules_are_its_classs():
    policy = LRU()
    with pytest.raises(ConfigError, match="class-level rule"):
        policy.hit_score = "sat_add(score, count)"
    with pytest.raises(ConfigError, match="class-level rule"):
        LFU().hit_is_stateless = True
    assert policy.rule()["hit_score"] == "clock"


def test_a_tuning_table_without_utility_block_takes_256():
    from embcache.kernels.tuning import load_table, utility_block

    table = load_table()
    for entry in table["entries"].values():
        entry.pop("utility_block", None)
    assert utility_block("9.0", table) == 256


def test_an_edited_header_changes_the_text_cupy_caches_on(tmp_path):
    from embcache._cuda import _headers_digest

    (tmp_path / "a.cuh").write_text("#define X 1\n")
    before = _headers_digest((str(tmp_path),))
    _headers_digest.cache_clear()
    (tmp_path / "a.cuh").write_text("#define X 2\n")
    assert _headers_digest((str(tmp_path),)) != before
    _headers_digest.cache_clear()
    shipped = pathlib.Path(embcache.__file__).with_name("cuda_shared")
    assert len(_headers_digest((str(shipped),))) == 16


def test_cpu_lookups_still_match_after_the_rule_source_change():
    store = HostStore(4)
    keys = np.arange(100, dtype=np.int64)
    store.put_many(keys, np.repeat(keys[:, None], 4, axis=1).astype(np.float32))
    cache = embcache.Cache(32, 4, policy="lfu", backend="cpu", tier=store)
    for _ in range(3):
        rows = cache.lookup(keys[::3])
        assert (rows[:, 0] == keys[::3]).all()
    assert cache.stats.hits > 0
