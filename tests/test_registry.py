"""The policy registry: a user's policy in its own file works everywhere a name does; a name is taken once."""
import json
import os
import pathlib
import subprocess
import sys
import uuid

import numpy as np
import pytest

import embcache
import embcache.policies
from embcache.errors import ConfigError, DataFormatError
from embcache.kernels.gpu import gpu_available
from embcache.policies import LRU, Admission, Policy, _registry
from embcache.tiers import HostStore

from . import test_contract, test_stateful

CLONE = pathlib.Path(embcache.__file__).resolve().parents[1]

MRU_FILE = '''
from embcache.policies import Policy


class MRU(Policy):
    """Most Recently Used (MRU): evicts the key accessed in the newest batch."""

    name = "mru"
    new_score = "MAX_SCORE - clock"
    hit_score = {hit!r}
'''


def _write_package(folder: pathlib.Path, package: str, hit: str = "MAX_SCORE - clock") -> None:
    (folder / package).mkdir(exist_ok=True)
    (folder / package / "__init__.py").write_text("")
    (folder / package / "mru.py").write_text(MRU_FILE.format(hit=hit))


def _drop(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


@pytest.fixture
def mru(tmp_path, monkeypatch):
    """A throw-away package on sys.path with one policy file, imported; unregistered afterwards."""
    package = f"userpolicies_{uuid.uuid4().hex[:8]}"
    _write_package(tmp_path, package)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(f"{package}.mru", fromlist=["MRU"])
    yield module
    _registry._forget(module.MRU)
    _drop(package)


def _one_set(policy, ways=2):
    tier = HostStore(1)
    tier.put_many(np.arange(100), np.arange(100, dtype=np.float32)[:, None])
    return embcache.Cache(ways, 1, policy, backend="cpu", tier=tier, ways=ways)


def test_a_policy_file_works_in_a_cache(mru):
    assert "mru" in embcache.policies.policy_names()
    assert embcache.policies.policy_class("MRU") is mru.MRU
    assert (mru.MRU.hit_changes_score, mru.MRU.hit_is_stateless, mru.MRU.composes) == (True, True, True)
    c = _one_set("mru")
    c.lookup([1]); c.lookup([2]); c.lookup([3])  # 2 is the most recently used when 3 comes: it goes
    assert sorted(c.export()[0].tolist()) == [1, 3]
    c.lookup([1]); c.lookup([4])  # the hit made 1 the most recent
    assert sorted(c.export()[0].tolist()) == [3, 4]
    path = f"{mru.__name__}:MRU"  # the import path names it too
    assert type(embcache.policies.get_policy(path)) is mru.MRU


_LOAD = """
import json, sys
import embcache
from embcache.errors import DataFormatError
try:
    c = embcache.Cache.load(sys.argv[1], tier=embcache.tiers.HostStore(1), backend="cpu")
except DataFormatError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    keys, rows, scores = c.export()
    print(json.dumps({"class": type(c.policy).__module__ + ":" + type(c.policy).__name__,
                      "keys": sorted(keys.tolist()), "clock": c.clock}))
"""


def _load_in_fresh_process(path, pythonpath):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    proc = subprocess.run([sys.executable, "-c", _LOAD, str(path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_save_and_load_a_user_policy_in_a_fresh_process(mru, tmp_path):
    c = _one_set("mru")
    c.lookup([1]); c.lookup([2]); c.lookup([3])
    c.save(tmp_path / "c.npz")
    package = mru.__name__.split(".")[0]
    got = _load_in_fresh_process(tmp_path / "c.npz", [tmp_path, CLONE])  # the loader imports the module itself
    assert got == {"class": f"{package}.mru:MRU", "keys": [1, 3], "clock": 3}

    got = _load_in_fresh_process(tmp_path / "c.npz", [CLONE])  # the user's folder is not on the path
    assert f"{package}.mru" in got["error"] and "cannot be imported" in got["error"] and "ModuleNotFoundError" in \
        got["error"]

    other = tmp_path / "changed"
    other.mkdir()
    _write_package(other, package, hit="MAX_SCORE - 2 * clock")  # same name and path, another rule
    got = _load_in_fresh_process(tmp_path / "c.npz", [other, CLONE])
    assert "was saved with the rule" in got["error"] and "MAX_SCORE - 2 * clock" in got["error"]


def test_load_refuses_a_path_that_is_not_the_registered_class(mru, tmp_path):
    c = _one_set("lru")
    c.save(tmp_path / "c.npz")
    good = embcache.Cache.load(tmp_path / "c.npz", backend="cpu")
    assert type(good.policy) is LRU
    # the file says "lru" lives at the user's module: it does not; the registered lru is the built-in one
    data = np.load(tmp_path / "c.npz")
    meta = json.loads(data["meta"].tobytes())
    meta["policy"]["class"] = f"{mru.__name__}:MRU"
    np.savez(tmp_path / "bad.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
             **{k: data[k] for k in data.files if k != "meta"})
    with pytest.raises(DataFormatError, match="was saved as the class"):
        embcache.Cache.load(tmp_path / "bad.npz", backend="cpu")


def test_main_format_still_loads(tmp_path):
    """A file as main wrote it: the policies as [class name, config]."""
    c = embcache.Cache(8, 2, "lfu", "min_frequency", backend="cpu", ways=2)
    c.insert([1, 2], np.ones((2, 2), np.float32))
    c.save(tmp_path / "c.npz")
    data = np.load(tmp_path / "c.npz")
    meta = json.loads(data["meta"].tobytes())
    meta["policy"] = ["LFU", {}]
    meta["admission"] = ["MinFrequency", c.admission.config()]
    np.savez(tmp_path / "old.npz", meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
             **{k: data[k] for k in data.files if k != "meta"})
    loaded = embcache.Cache.load(tmp_path / "old.npz", backend="cpu")
    assert loaded.policy == c.policy and loaded.admission == c.admission
    assert sorted(loaded.export()[0].tolist()) == [1, 2]


def test_the_trt_config_names_a_user_policy(mru, tmp_path):
    from trt_plugin.config import parse_config
    from trt_plugin.tables import close_all, table_cache

    def config(policy):
        return {"embcache_trt": 1, "models": [{"name": "m", "backend": "cpu", "tables": [
            {"name": "t0", "dim": 2, "rows": 10, "store": "memory", "capacity": 4, "ways": 2, "policy": policy}]}]}

    assert parse_config(config("mru")).models[0].tables[0].policy == "mru"
    assert parse_config(config(f"{mru.__name__}:MRU")).models[0].tables[0].policy == f"{mru.__name__}:MRU"
    unknown = "mru_"
    while unknown in embcache.policies.policy_names():
        unknown += "_"
    with pytest.raises(ConfigError, match="choose one of .*mru"):
        parse_config(config(unknown))
    (tmp_path / "c.json").write_text(json.dumps(config("mru")))
    try:
        cache, _ = table_cache(tmp_path / "c.json", "t0")
        assert type(cache.policy) is mru.MRU
    finally:
        close_all()


def test_the_study_runs_a_user_policy(mru, tmp_path):
    from embcache.study import run_study
    from embcache.traces import zipf_trace

    trace = zipf_trace(4000, 500, seed=1)
    rows = run_study(trace, ["mru", "lru"], ["always"], [0.1], batch=256, backend="cpu", belady=False,
                     progress=False)
    assert [r["policy"] for r in rows] == ["mru", "lru"]
    assert rows[0]["hit_rate"] != rows[1]["hit_rate"]

    # the command, in a fresh process that knows the policy only by its import path
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(CLONE)])}
    proc = subprocess.run([sys.executable, "-m", "embcache", "study", "--trace", "synthetic:4000:1",
                           "--policies", f"{mru.__name__}:MRU,lru", "--admissions", "always", "--capacities", "0.1",
                           "--no-belady", "--no-plot", "--no-progress", "--backend", "cpu", "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "out" / "study.json").read_text())
    assert [r["policy"] for r in written] == ["mru", "lru"]


@pytest.fixture
def package_mru(tmp_path, monkeypatch):
    """The MRU file as if added to embcache/policies: a temporary folder on the package's path."""
    folder = tmp_path / "extra"
    folder.mkdir()
    module = f"mru_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(MRU_FILE.format(hit="MAX_SCORE - clock"))
    monkeypatch.setattr(embcache.policies, "__path__", [*embcache.policies.__path__, str(folder)])
    mod = __import__(f"embcache.policies.{module}", fromlist=["MRU"])
    yield mod
    _registry._forget(mod.MRU)
    _drop(f"embcache.policies.{module}")


def test_the_contract_and_stateful_grids_take_a_policy_file(package_mru):
    assert "mru" in test_contract.policy_grid()
    test_contract.test_lookup_returns_the_tiers_rows("mru")  # the contract test, over its grid's new entry
    cases = test_stateful.machine_tests("cpu", policies=["mru"])
    assert sorted(cases) == sorted(f"TestCPU_mru_{a}" for a in test_contract.admission_grid())
    for case in cases.values():  # the stateful machine against the model, one per admission policy
        case("runTest").debug()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.timeout(600)  # every admission's differential test and stateful machine, one after another
def test_a_policy_file_runs_the_gpu_grids(package_mru):
    """The same new file on the GPU: the CPU/GPU differential test and the stateful machine."""
    from . import test_gpu

    for admission in test_contract.admission_grid():
        test_gpu.test_cpu_and_gpu_agree("mru", admission, "float32")
    for case in test_stateful.machine_tests("gpu", policies=["mru"]).values():
        case("runTest").debug()


def test_a_duplicate_name_is_refused_at_definition():
    with pytest.raises(ConfigError, match="'lru' is already the eviction policy embcache.policies.lru:LRU"):
        class MyLRU(Policy):  # noqa: F841 (refused)
            name = "lru"
            new_score = "clock"
            hit_score = "clock"

    with pytest.raises(ConfigError, match="already the admission policy"):
        class Sometimes(Admission):  # noqa: F841
            name = "always"
    assert embcache.policies.policy_class("lru") is LRU
    assert type(embcache.Cache(4, 1, "lru", backend="cpu").policy) is LRU


def test_an_intermediate_class_registers_nothing_and_a_renamed_rule_must_be_named():
    before = embcache.policies.policy_names()

    class Aging(Policy):  # a base for other policies: no name, no rules, nothing registered
        pass

    assert embcache.policies.policy_names() == before
    with pytest.raises(ConfigError, match="keeps its name"):
        class Tweaked(LRU):  # noqa: F841 (changes LRU's rule under LRU's name)
            hit_score = "score"
    with pytest.raises(ConfigError, match="not a registered"):
        embcache.policies.get_policy(Aging)
    with pytest.raises(ConfigError, match="keeps its name"):
        class Picky(embcache.policies.Always):  # noqa: F841 (changes "always" under its name)
            def admit_batch(self, hits, lookups):
                return hits == 0
    assert type(embcache.policies.get_admission("always")) is embcache.policies.Always


def test_traits_are_derived_once_and_a_wrong_declaration_or_a_rule_that_does_not_compose_is_refused():
    with pytest.raises(ConfigError, match="declares hit_changes_score = False"):
        class Liar(Policy):  # noqa: F841
            name = "test-liar"
            new_score = "clock"
            hit_score = "clock"
            hit_changes_score = False
    with pytest.raises(ConfigError, match="does not compose"):
        class LastCount(Policy):  # noqa: F841 (count=1 then count=2 is 2, count=3 at once is 3)
            name = "test-last-count"
            new_score = "count"
            hit_score = "count"
    assert "test-liar" not in embcache.policies.policy_names()


def test_an_unknown_name_lists_the_registered_ones():
    unknown = "no-such-policy"
    while unknown in embcache.policies.policy_names():
        unknown += "_"
    with pytest.raises(ConfigError) as info:
        embcache.policies.get_policy(unknown)
    assert all(name in str(info.value) for name in embcache.policies.policy_names())
    with pytest.raises(ConfigError, match="cannot be imported"):
        embcache.policies.get_policy("no_such_module_xyz.sub:Thing")
    with pytest.raises(ConfigError, match="not a registered eviction policy"):
        embcache.policies.get_policy("embcache.policies.lru:Policy")


def test_the_backends_read_the_rules_from_one_module():
    from embcache.kernels import _rules

    assert _rules.c_expression("max(score,  clock)") == "(score_max(score, clock))"
    assert "np.int64(sat_add(score, count))" in _rules.numba_module("count", "sat_add(score,count)", "x")
    with pytest.raises(ConfigError):
        _rules.c_expression("__import__('os')")
    for source in pathlib.Path(embcache.policies.__file__).parent.glob("*.py"):  # policies know no backend
        imports = [line for line in source.read_text().splitlines() if line.startswith(("import ", "from "))]
        assert not [line for line in imports if "kernels" in line], source
