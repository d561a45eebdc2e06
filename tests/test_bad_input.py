"""Every documented bad input: the specific error, and nothing changed in the cache or its tier."""
import numpy as np
import pytest

import embcache
from embcache import errors
from embcache.policies import admission_names, policy_names
from embcache.tiers import HostStore


def unregistered(taken: list[str], name: str) -> str:
    """``name``, made longer until no registered policy has it (a test may have registered it)."""
    while name in taken:
        name += "_"
    return name


DIM = 4


@pytest.fixture
def cache():
    tier = HostStore(DIM)
    tier.put_many(np.arange(50), np.ones((50, DIM), np.float32))
    c = embcache.Cache(16, DIM, "lru", backend="cpu", tier=tier, ways=4, reject_nan=True)
    c.lookup(np.arange(10))
    return c


def snapshot(c):
    keys, rows, scores = c.export()
    tier_rows, found = c.tier.get_many(np.arange(-5, 60))
    return keys.tobytes(), rows.tobytes(), scores.tobytes(), c.stats.as_dict(), c.clock, len(c), \
        tier_rows.tobytes(), found.tobytes(), len(c.tier)


def unchanged(c, call, error, builtin, match=None):
    before = snapshot(c)
    with pytest.raises(error, match=match) as info:
        call(c)
    assert isinstance(info.value, embcache.EmbCacheError) and isinstance(info.value, builtin)
    assert snapshot(c) == before
    return info.value


rows = np.zeros((2, DIM), np.float32)


@pytest.mark.parametrize("op", ["lookup", "query", "erase", "preload"])
def test_float_keys(cache, op):
    unchanged(cache, lambda c: getattr(c, op)(np.array([1.0, 2.0])), errors.KeyDtypeError, TypeError, "integers")


def test_object_keys(cache):
    unchanged(cache, lambda c: c.lookup(np.array([1, "a"], dtype=object)), errors.KeyDtypeError, TypeError)


def test_bool_keys(cache):
    unchanged(cache, lambda c: c.lookup(np.array([True])), errors.KeyDtypeError, TypeError)


def test_two_dimensional_keys(cache):
    unchanged(cache, lambda c: c.lookup(np.ones((2, 2), np.int64)), errors.KeyShapeError, ValueError, "1-D")


@pytest.mark.parametrize("reserved", embcache.RESERVED_KEYS)
@pytest.mark.parametrize("op", ["lookup", "query", "erase", "preload", "insert", "update"])
def test_reserved_keys(cache, op, reserved):
    keys = np.array([3, reserved], np.int64)
    args = (keys, rows) if op in ("insert", "update") else (keys,)
    unchanged(cache, lambda c: getattr(c, op)(*args), errors.ReservedKeyError, ValueError, "reserved")


@pytest.mark.parametrize("op", ["insert", "update"])
def test_rows_of_the_wrong_shape(cache, op):
    unchanged(cache, lambda c: getattr(c, op)(np.array([1, 2]), np.zeros((2, DIM + 1), np.float32)),
              errors.RowShapeError, ValueError, r"\(2, 4\)")
    unchanged(cache, lambda c: getattr(c, op)(np.array([1, 2]), np.zeros((3, DIM), np.float32)),
              errors.RowShapeError, ValueError)


@pytest.mark.parametrize("op", ["insert", "update"])
def test_rows_of_the_wrong_dtype(cache, op):
    unchanged(cache, lambda c: getattr(c, op)(np.array([1, 2]), np.zeros((2, DIM), np.int32)),
              errors.RowDtypeError, TypeError, "floating")


@pytest.mark.parametrize("op", ["insert", "update"])
def test_nan_rows_when_rejected(cache, op):
    bad = np.zeros((2, DIM), np.float32)
    bad[1, 2] = np.nan
    unchanged(cache, lambda c: getattr(c, op)(np.array([1, 2]), bad), errors.NaNRowError, ValueError, r"rows\[1\]")


def test_nan_rows_accepted_by_default():
    c = embcache.Cache(4, 1, backend="cpu")
    c.insert([1], np.array([[np.nan]], np.float32))
    assert np.isnan(c.lookup([1])).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"capacity": 0}, "capacity"), ({"capacity": -5}, "capacity"), ({"dim": 0}, "dim"),
    ({"ways": 3}, "power of two"), ({"ways": 0}, "ways"),
    ({"policy": lambda: unregistered(policy_names(), "mru")}, "eviction policy"),
    ({"admission": lambda: unregistered(admission_names(), "sometimes")}, "admission policy"),
    ({"dtype": "int8"}, "dtype"),
    ({"backend": "tpu"}, "backend"), ({"default": np.zeros(3)}, "default"),
])
def test_bad_configuration(kwargs, match):
    kwargs = {k: v() if callable(v) else v for k, v in kwargs.items()}  # an unknown name is found at run time
    args = {"capacity": 8, "dim": 2, "backend": "cpu", **kwargs}
    with pytest.raises(errors.ConfigError, match=match) as info:
        embcache.Cache(**args)
    assert isinstance(info.value, ValueError)


def test_tier_of_another_dim():
    with pytest.raises(errors.ConfigError, match="dim"):
        embcache.Cache(8, 2, backend="cpu", tier=HostStore(3))


@pytest.mark.parametrize("op, args", [
    ("lookup", ([1],)), ("query", ([1],)), ("insert", ([1], np.zeros((1, DIM)))),
    ("update", ([1], np.zeros((1, DIM)))), ("erase", ([1],)), ("preload", ([1],)), ("clear", ()), ("export", ()),
])
def test_closed_cache(cache, op, args):
    cache.close()
    with pytest.raises(errors.ClosedError, match="closed") as info:
        getattr(cache, op)(*args)
    assert isinstance(info.value, ValueError)


def test_closed_store():
    s = HostStore(2)
    s.close()
    for call in (lambda: s.get_many([1]), lambda: s.put_many([1], np.zeros((1, 2))), lambda: s.delete_many([1])):
        with pytest.raises(errors.ClosedError):
            call()


def test_preload_that_overflows(cache):
    # 16 slots in 4 sets of 4; 10 keys cached: 40 more cannot fit without evicting
    unchanged(cache, lambda c: c.preload(np.arange(10, 50)), errors.PreloadOverflowError, ValueError, "set")


def test_static_insert_of_a_new_key():
    tier = HostStore(DIM)
    tier.put_many(np.arange(20), np.ones((20, DIM), np.float32))
    c = embcache.Cache(16, DIM, "static", backend="cpu", tier=tier, ways=4)
    c.preload([1, 2])
    c.insert([1], np.zeros((1, DIM)))  # a cached key may be rewritten
    unchanged(c, lambda c: c.insert([1, 3], np.zeros((2, DIM))), errors.StaticInsertError, ValueError, "Static")


def test_sketch_parameters_are_checked():
    with pytest.raises(errors.ConfigError):
        embcache.policies.MinFrequency(0)
    with pytest.raises(errors.ConfigError):
        embcache.policies.MinFrequency(2, width=1000)
    with pytest.raises(errors.ConfigError):
        embcache.policies.HitRateThreshold(1.5)
