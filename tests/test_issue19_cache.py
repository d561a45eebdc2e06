"""Issue 19, the Cache's part: atomic saves, strict loading, writes checked whole, big-endian input by value."""
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import ConfigError, DataFormatError, EmbCacheError
from embcache.layout import EMPTY_KEY, LOCKED_KEY, sets_of
from embcache.policies import LRU
from embcache.tiers import HostStore

from .strategies import keys as key_values
from .strategies import flawed_batch, rows_for, same_bits

ROOT = Path(__file__).resolve().parents[1]
DIM = 3


def _filled(policy="lfu", admission="min_frequency", capacity=16, ways=4, dtype="float32", seed=0):
    """A small cache with contents, a sketch, a clock and statistics, and its tier."""
    tier = HostStore(DIM, dtype)
    keys = np.arange(-20, 40)
    tier.put_many(keys, rows_for(keys, DIM, dtype, seed))
    if admission == "min_frequency":
        admission = embcache.policies.MinFrequency(n=2, width=16, depth=2, seed=3)
    cache = embcache.Cache(capacity, DIM, policy, admission, dtype, "cpu", tier, default=0.5, ways=ways)
    rng = np.random.default_rng(seed)
    for _ in range(6):
        cache.lookup(rng.choice(keys, 12))
    cache.erase(keys[:3])
    return cache, tier


def _snapshot(cache):
    keys, rows, scores = cache.export()
    return keys.tobytes(), rows.tobytes(), scores.tobytes(), cache.clock, cache.stats.as_dict()


def _check_invariants(cache):
    """What every cache keeps: each key once, found where it sits, counters that add up; and it still works."""
    keys, rows, scores = cache.export()
    assert (np.diff(keys) > 0).all() and not np.isin(keys, embcache.RESERVED_KEYS).any()
    assert len(cache) == keys.shape[0] <= cache.capacity
    got, found = cache.query(keys)
    assert found.all() and same_bits(got, rows)
    s = cache.stats
    assert s.insertions == len(cache) + s.evictions + s.erased
    cache.lookup(np.arange(-5, 5))
    _, found = cache.query(np.arange(-5, 5))  # a lookup after loading admits as a fresh cache does
    s = cache.stats
    assert s.insertions == len(cache) + s.evictions + s.erased


# ---------------------------------------------------------------- atomic save

_SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    import embcache
    cache = embcache.Cache(1 << 20, 32, backend="cpu", ways=32)  # ~150 MB on disk, however full
    cache.insert(np.arange(1, 1001), np.full((1000, 32), 2.0, np.float32))
    print("ready", flush=True)
    cache.save(sys.argv[1])
    print("saved", flush=True)
    sys.stdin.read()  # wait here to be killed
""")


def test_save_killed_part_way_leaves_the_previous_save_loadable(tmp_path):
    path = tmp_path / "cache.npz"
    previous, tier = _filled()
    previous.save(path)
    before = _snapshot(previous)
    size = path.stat().st_size
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 60

        def writing() -> bool:  # the save has begun: a temporary file beside it, or the file itself changed
            names = {p.name for p in tmp_path.iterdir()}
            return names != {"cache.npz"} or path.stat().st_size != size

        while not writing():
            assert proc.poll() is None and time.monotonic() < deadline, "the save never started"
            time.sleep(0.0005)  # polling a condition, bounded by the deadline
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert "saved" not in proc.stdout.read(), "the save finished before the kill; the test proves nothing"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "cache.npz"]
    assert leftovers and all(n.startswith(".cache.npz.") and n.endswith(".tmp") for n in leftovers)
    loaded = embcache.Cache.load(path, tier=tier, backend="cpu")
    assert _snapshot(loaded) == before


def test_save_that_fails_removes_its_temporary_file_and_keeps_the_old_one(tmp_path):
    cache, _ = _filled()
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(OSError):
        cache.save(tmp_path / "dir.npz")  # os.replace cannot put a file over a folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.npz"]
    path = tmp_path / "c.npz"
    cache.save(path)
    os.chmod(path, 0o640)
    cache.lookup([1, 2, 3])
    cache.save(path)  # over the old one: the permission bits stay
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "dir.npz"]
    assert _snapshot(embcache.Cache.load(path, backend="cpu")) == _snapshot(cache)


def test_save_follows_a_symlink(tmp_path):
    cache, _ = _filled()
    (tmp_path / "real.npz").write_bytes(b"old")
    (tmp_path / "link.npz").symlink_to(tmp_path / "real.npz")
    cache.save(tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    assert _snapshot(embcache.Cache.load(tmp_path / "real.npz", backend="cpu")) == _snapshot(cache)


# ---------------------------------------------------------------- strict load

def _members(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _write_members(path, members, duplicate=None):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if duplicate:
            with pytest.warns(UserWarning):
                z.writestr(duplicate, members[duplicate])


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def _header_only(descr: str, shape, pad: int = 0) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + b"\0" * pad


def _array(members, name):
    return np.lib.format.read_array(io.BytesIO(members[name + ".npy"]))


def _meta(members) -> dict:
    return json.loads(_array(members, "meta").tobytes())


def _with_meta(members, **changes):
    meta = {**_meta(members), **changes}
    return {**members, "meta.npy": _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8))}


def _with_array(members, name, array):
    return {**members, name + ".npy": _npy(array)}


def _keys_edit(members, edit):
    keys = _array(members, "keys").copy()
    edit(keys, _meta(members))
    return _with_array(members, "keys", keys)


def _duplicate_key(keys, meta):
    used = np.flatnonzero(keys != EMPTY_KEY)
    s = used[0] // meta["ways"]
    free = [w for w in range(s * meta["ways"], (s + 1) * meta["ways"]) if keys[w] == EMPTY_KEY]
    keys[free[0] if free else used[1]] = keys[used[0]]


def _wrong_set(keys, meta):
    used = np.flatnonzero(keys != EMPTY_KEY)
    home = used[0] // meta["ways"]
    keys[used[0]] = next(j for j in range(1000, 10**6) if sets_of(np.array([j]), meta["num_sets"])[0] != home)


CRAFTS = {
    "not a zip": lambda m: b"this is not a zip file at all",
    "empty file": lambda m: b"",
    "truncated": None,  # handled in the test: the first half of a good file
    "missing member": lambda m: {k: v for k, v in m.items() if k != "scores.npy"},
    "extra member": lambda m: {**m, "evil.npy": _npy(np.zeros(3))},
    "duplicate member": "keys.npy",
    "duplicate key": lambda m: _keys_edit(m, _duplicate_key),
    "key in the wrong set": lambda m: _keys_edit(m, _wrong_set),
    "reserved key in a slot": lambda m: _keys_edit(
        m, lambda k, meta: k.__setitem__(np.flatnonzero(k != EMPTY_KEY)[0], LOCKED_KEY)),
    "capacity of 2**40": lambda m: _with_meta(m, num_sets=2**40 // 4),
    "array header claiming 64 TiB": lambda m: {**m, "values.npy": _header_only("|u1", (2**46,), pad=64)},
    "keys header claiming 64 TiB": lambda m: {**m, "keys.npy": _header_only("<i8", (2**43,), pad=64)},
    "sketch width of 2**40": lambda m: _with_meta(
        m, admission=["MinFrequency", {"n": 2, "width": 2**40, "depth": 16, "seed": 3}]),
    "keys of dtype float64": lambda m: _with_array(m, "keys", _array(m, "keys").astype(np.float64)),
    "scores of dtype int32": lambda m: _with_array(m, "scores", _array(m, "scores").astype(np.int32)),
    "values of another shape": lambda m: _with_array(m, "values", _array(m, "values")[:-1]),
    "object array": lambda m: {**m, "default.npy": _header_only("|O", (12,), pad=16)},
    "unknown policy": lambda m: _with_meta(m, policy=["NoSuchPolicy", {}]),
    "a module attribute as policy": lambda m: _with_meta(m, policy=["get_policy", {}]),
    "policy config of another policy": lambda m: _with_meta(m, policy=["LRU", {"n": 3}]),
    "bad admission setting": lambda m: _with_meta(
        m, admission=["MinFrequency", {"n": 0, "width": 16, "depth": 2, "seed": 3}]),
    "unknown row dtype": lambda m: _with_meta(m, dtype="float64"),
    "ways not a power of two": lambda m: _with_meta(m, ways=3),
    "dim as a string": lambda m: _with_meta(m, dim="3"),
    "negative clock": lambda m: _with_meta(m, clock=-1),
    "stats that do not add up": lambda m: _with_meta(m, stats={**_meta(m)["stats"], "insertions": 10**6}),
    "stats field missing": lambda m: _with_meta(m, stats={"hits": 1}),
    "metadata field missing": lambda m: {**m, "meta.npy": _npy(np.frombuffer(json.dumps(
        {k: v for k, v in _meta(m).items() if k != "clock"}).encode(), np.uint8))},
    "metadata not json": lambda m: {**m, "meta.npy": _npy(np.frombuffer(b"{not json", np.uint8))},
    "metadata nested too deep": lambda m: {**m, "meta.npy": _npy(np.frombuffer(b"[" * 100000, np.uint8))},
    "another format": lambda m: _with_meta(m, format="something-else"),
    "negative sketch count": lambda m: _with_array(m, "sketch", -_array(m, "sketch") - 1),
}


@pytest.mark.parametrize("craft", list(CRAFTS))
def test_load_of_a_damaged_or_crafted_file_is_a_data_format_error(tmp_path, craft):
    good = tmp_path / "good.npz"
    cache, tier = _filled()
    cache.save(good)
    bad = tmp_path / "bad.npz"
    make = CRAFTS[craft]
    if make is None:
        bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif isinstance(make, str):
        _write_members(bad, _members(good), duplicate=make)
    else:
        out = make(_members(good))
        if isinstance(out, bytes):
            bad.write_bytes(out)
        else:
            _write_members(bad, out)
    tracemalloc.start()
    try:
        with pytest.raises(DataFormatError, match="bad.npz") as info:
            embcache.Cache.load(bad, tier=tier, backend="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(info.value, ValueError)
    assert peak < 64 << 20, f"loading a crafted file allocated {peak} bytes"


def test_load_of_a_missing_file_is_the_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        embcache.Cache.load(tmp_path / "nothing.npz", backend="cpu")


class Doubling(LRU):
    """A policy defined outside embcache: Cache.load finds it by its class name."""

    name = "doubling-test"
    hit_score = "clock"


def test_load_finds_a_policy_defined_outside_the_package(tmp_path):
    cache = embcache.Cache(8, DIM, Doubling(), backend="cpu", ways=2)
    cache.insert([1, 2], np.ones((2, DIM), np.float32))
    cache.save(tmp_path / "c.npz")
    loaded = embcache.Cache.load(tmp_path / "c.npz", tier=cache.tier, backend="cpu")
    assert isinstance(loaded.policy, Doubling) and _snapshot(loaded) == _snapshot(cache)


def _loads_whole_or_refuses(path, tier):
    try:
        loaded = embcache.Cache.load(path, tier=tier, backend="cpu")
    except (DataFormatError, ConfigError):
        return None
    _check_invariants(loaded)
    return loaded


_GOOD: dict = {}


def _good_file(tmp_path_factory) -> bytes:
    if "bytes" not in _GOOD:
        path = tmp_path_factory.mktemp("good") / "c.npz"
        _filled()[0].save(path)
        _GOOD["bytes"] = path.read_bytes()
    return _GOOD["bytes"]


mutations = st.one_of(
    st.tuples(st.just("set"), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=16))),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mutation=mutations)
def test_mutated_save_file_loads_whole_or_is_refused(tmp_path_factory, tmp_path, mutation):
    data = bytearray(_good_file(tmp_path_factory))
    kind, arg = mutation
    if kind == "set":
        for pos, value in arg:
            data[pos % len(data)] = value
    elif kind == "truncate":
        del data[arg % len(data):]
    else:
        pos, extra = arg
        data[pos % len(data):pos % len(data)] = extra
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(data))
    _loads_whole_or_refuses(path, HostStore(DIM))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_consistent_checksums_wrong_contents_load_whole_or_are_refused(tmp_path_factory, tmp_path, data):
    """Contents changed and re-zipped (valid CRCs): only the checks of the contents stand between them and a cache."""
    good = tmp_path / "g.npz"
    good.write_bytes(_good_file(tmp_path_factory))
    members = _members(good)
    target = data.draw(st.sampled_from(["meta", "keys", "scores", "values", "default", "sketch"]))
    if target == "meta":
        meta = _meta(members)
        field = data.draw(st.sampled_from(sorted(meta)))
        junk = st.one_of(st.integers(-2**64, 2**64), st.floats(), st.text(max_size=5), st.booleans(), st.none(),
                         st.lists(st.integers(-3, 3), max_size=3))
        if field == "stats":
            stats = dict(meta["stats"])
            stats[data.draw(st.sampled_from(sorted(stats)))] = data.draw(junk)
            value = stats
        elif field in ("policy", "admission"):
            value = [data.draw(st.sampled_from(["LRU", "LFU", "FIFO", "Static", "MinFrequency", "Always",
                                                "HitRateThreshold", "RefuseBelowMin", "Policy", "os"])),
                     data.draw(st.dictionaries(st.sampled_from(["n", "width", "depth", "seed", "t"]),
                                               st.integers(-2, 2**20), max_size=4))]
        else:
            value = data.draw(junk)
        members = _with_meta(members, **{field: value})
    else:
        array = _array(members, target).copy()
        flat = array.reshape(-1)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, flat.shape[0] - 1))
            if flat.dtype == np.int64:
                flat[i] = data.draw(st.one_of(key_values, st.sampled_from([EMPTY_KEY, LOCKED_KEY]),
                                              st.integers(-5, 5)))
            else:
                flat[i] = data.draw(st.integers(0, 255))
        members = _with_array(members, target, array)
    path = tmp_path / "m.npz"
    _write_members(path, members)
    _loads_whole_or_refuses(path, HostStore(DIM))


# ---------------------------------------------------------------- writes checked whole (item 6)

BAD_WRITES = st.sampled_from(["nan", "reserved", "uint64 reserved", "shape", "dtype", "static new key"])


def _store_bytes(tier, universe):
    rows, found = tier.get_many(universe)
    return rows.tobytes(), found.tobytes()


@settings(max_examples=80)
@given(batch=st.lists(key_values, min_size=1, max_size=12), flaw=BAD_WRITES, op=st.sampled_from(["insert", "update"]),
       at=st.integers(0, 11), seed=st.integers(0, 3))
def test_a_rejected_write_leaves_store_and_cache_byte_identical(batch, flaw, op, at, seed):
    policy = "static" if flaw == "static new key" else "lru"
    tier = HostStore(DIM)
    universe = np.array(sorted(set(batch) | set(range(-3, 4))), np.int64)
    tier.put_many(universe, rows_for(universe, DIM, "float32", 5))
    cache = embcache.Cache(8, DIM, policy, backend="cpu", tier=tier, ways=2, reject_nan=True)
    if policy == "static":
        cache.preload(universe[:2])
        op = "insert"
    else:
        cache.lookup(universe)
    keys, rows, at = flawed_batch(batch, flaw, at, DIM, seed)
    if flaw == "uint64 reserved":
        keys = keys.astype(np.uint64)
        keys[at] = np.uint64(2**63)
    elif flaw == "shape":
        rows = rows[:, :-1]
    elif flaw == "dtype":
        rows = rows.astype(np.int32)
    elif flaw == "static new key" and not (~np.isin(keys, universe[:2])).any():
        keys[at] = 10**6  # a key the static cache does not hold
    before, stored = _snapshot(cache), _store_bytes(tier, np.append(universe, 10**6))
    with pytest.raises(EmbCacheError):
        getattr(cache, op)(keys, rows)
    assert _snapshot(cache) == before
    assert _store_bytes(tier, np.append(universe, 10**6)) == stored


def test_uint64_key_whose_bits_are_reserved_is_named_as_given():
    cache = embcache.Cache(8, DIM, backend="cpu")
    with pytest.raises(embcache.errors.ReservedKeyError, match="9223372036854775808 \\(uint64\\)"):
        cache.lookup(np.array([2**63], np.uint64))
    assert cache.lookup(np.array([2**64 - 2], np.uint64)).shape == (1, DIM)  # the key -2, as before


# ---------------------------------------------------------------- big-endian input (item 10)

@settings(max_examples=60)
@given(batches=st.lists(st.lists(key_values, min_size=1, max_size=10), min_size=1, max_size=6),
       unsigned=st.booleans(), dtype=st.sampled_from(["float32", "float16"]), seed=st.integers(0, 3))
def test_big_endian_batches_give_the_same_rows_stats_and_contents(batches, unsigned, dtype, seed):
    def make():
        tier = HostStore(DIM, dtype)
        stored = np.arange(-40, 41, 2)
        tier.put_many(stored, rows_for(stored, DIM, dtype, 1))
        return embcache.Cache(8, DIM, "lfu", dtype=dtype, backend="cpu", tier=tier, ways=2, default=3.0)

    native, swapped = make(), make()
    kind = "u8" if unsigned else "i8"
    for i, batch in enumerate(batches):
        keys = np.array(batch, np.int64).astype(np.dtype(kind))
        big = keys.astype(">" + kind)
        assert big.tobytes() != keys.tobytes() or not keys.any()  # really stored the other way round
        assert same_bits(native.lookup(keys), swapped.lookup(big))
        rows = rows_for(keys, DIM, dtype, seed + i)
        op = ("insert", "update")[i % 2]
        getattr(native, op)(keys, rows)
        getattr(swapped, op)(big, rows.astype(rows.dtype.newbyteorder(">")))
        assert same_bits(native.query(keys)[0], swapped.query(big)[0])
        native.erase(keys[:1])
        swapped.erase(big[:1])
    assert _snapshot(native) == _snapshot(swapped)
    stored = np.arange(-40, 41)
    assert _store_bytes(native.tier, stored) == _store_bytes(swapped.tier, stored.astype(">i8"))
