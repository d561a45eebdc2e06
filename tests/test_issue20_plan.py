"""Issue 20 item 2: a host lookup is a plan the backend builds and then commits or rolls back as one object.

A tier read that fails mid-lookup (after the probe has gathered the hits and, on the GPU, an LRU probe
has stored their scores) must leave the cache exactly as it was: contents, scores, clock, sketch and
stats; the same lookup once the tier is back gives what a cache that never saw the failure gives.
"""
import ast
import inspect
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache.errors import EmbCacheError, TierError
from embcache.kernels import cpu, gpu
from embcache.kernels._backend import Backend, LookupPlan
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore

from .strategies import host, rows_for
from .test_contract import POLICIES

GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]
PACKAGE = pathlib.Path(embcache.__file__).parent
DIM = 3
UNIVERSE = np.arange(60, dtype=np.int64)


class FlakyStore(HostStore):
    """A HostStore whose reads fail while ``failing`` is set: a tier that breaks in the middle of a lookup."""

    failing = False
    reads = 0

    def _get_many(self, keys):
        self.reads += 1
        if self.failing:
            raise ConnectionError("the store went away")
        return super()._get_many(keys)


def stored_rows():
    stored = UNIVERSE[UNIVERSE % 5 != 0]  # some keys no tier holds
    return stored, rows_for(stored, DIM, "float32", seed=3)


def make(policy, admission="always", backend="cpu", flaky=True, **kw):
    store = FlakyStore(DIM) if flaky else HostStore(DIM)
    store.put_many(*stored_rows())
    return embcache.Cache(24, DIM, policy, admission, "float32", backend, store, default=-2.0, ways=4, **kw), store


def snapshot(cache) -> tuple:
    """Everything a failed lookup must leave as it was."""
    b = cache._backend
    keys, rows, scores = cache.export()
    last = cache.stats.last
    return (keys.tobytes(), rows.tobytes(), scores.tobytes(), cache.clock, len(cache), cache.stats.as_dict(),
            None if last is None else last.as_dict(), None if b.sketch is None else host(b.sketch).tobytes())


def history(cache, batches):
    for batch in batches:
        cache.lookup(np.array(batch, np.int64))


batches = st.lists(st.lists(st.sampled_from(UNIVERSE.tolist()), max_size=12), max_size=8)
failing_batch = st.lists(st.sampled_from(UNIVERSE.tolist()), min_size=1, max_size=16)


def check_failed_read_changes_nothing(policy, admission, backend, before, batch):
    cache, store = make(policy, admission, backend)
    twin, _ = make(policy, admission, backend, flaky=False)
    try:
        history(cache, before)
        history(twin, before)
        keys = np.array(batch, np.int64)
        # hits first and repeated, so that the probe has hit scores to store; one key the cache lacks
        _, found = cache.query(UNIVERSE)
        cached = UNIVERSE[host(found)]
        absent = UNIVERSE[~host(found)]
        keys = np.concatenate([cached[:3], keys, cached[:2], absent[:1]]).astype(np.int64)
        was = snapshot(cache)
        store.failing = True
        with pytest.raises(TierError, match="get_many failed: ConnectionError: the store went away"):
            cache.lookup(keys)
        assert store.reads and snapshot(cache) == was
        store.failing = False
        assert host(cache.lookup(keys)).tobytes() == host(twin.lookup(keys)).tobytes()
        assert snapshot(cache) == snapshot(twin)
    finally:
        cache.close()
        twin.close()


@pytest.mark.parametrize("admission", ["always", "min_frequency"])
@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "static"])
@settings(max_examples=25)
@given(before=batches, batch=failing_batch)
def test_a_failing_tier_read_leaves_the_cpu_cache_as_it_was(policy, admission, before, batch):
    check_failed_read_changes_nothing(policy, admission, "cpu", before, batch)


@pytest.mark.parametrize("admission", ["always", "min_frequency"])
@pytest.mark.parametrize("policy", ["lru", "lfu", "fifo"])
@settings(max_examples=15)
@given(before=batches, batch=failing_batch)
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_failing_tier_read_leaves_the_gpu_cache_as_it_was(policy, admission, before, batch):
    """The GPU's host path (a HostStore that is not pinned): an LRU probe stores the hits' scores as it
    reads their slots, so this is its plan's rollback at work."""
    check_failed_read_changes_nothing(policy, admission, "gpu", before, batch)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("gpu", marks=GPU)])
def test_a_failing_tier_read_with_on_tier_error_default_serves_default_rows_and_touches_the_hits(backend):
    cache, store = make("lru", backend=backend, on_tier_error="default")
    twin, _ = make("lru", backend=backend, flaky=False)
    try:
        for c in (cache, twin):
            c.lookup(np.arange(1, 9))
        store.failing = True
        keys = np.array([1, 2, 40, 2, 41], np.int64)
        out = host(cache.lookup(keys))
        assert (out[[2, 4]] == -2.0).all()
        assert out[[0, 1, 3]].tobytes() == host(twin.lookup(np.array([1, 2, 2])))[[0, 1, 2]].tobytes()
        last = cache.stats.last
        assert (last.hits, last.misses, last.unique_misses, last.tier_failures, last.insertions) == (3, 2, 2, 2, 0)
        k1, _, s1 = cache.export()
        k2, _, s2 = twin.export()  # the twin looked up only the hits: the same scores, nothing admitted
        assert k1.tolist() == k2.tolist() and s1.tolist() == s2.tolist() and cache.clock == twin.clock
    finally:
        cache.close()
        twin.close()


# ---------------------------------------------------------------------- the plan object itself

def test_a_cpu_plan_changes_nothing_until_committed_and_ends_once():
    b = cpu.CPUBackend(num_sets=2, ways=4, dim=DIM, dtype="float32", policy=embcache.policies.LRU())
    keys = np.array([1, 2, 3], np.int64)
    b.insert_and_evict(keys, np.ones(3, np.int64), rows_for(keys, DIM, "float32", 0), np.ones(3, bool), False)
    scores, clock = b.scores.copy(), b.clock
    out = b.new_rows(4)
    plan = b.plan_lookup(np.array([2, 9, 2, 3], np.int64), out, None)
    assert isinstance(plan, LookupPlan)
    assert plan.missed.tolist() == [1] and plan.reserved == 0 and (plan.slots >= 0).tolist() == [1, 0, 1, 1]
    assert (b.scores == scores).all() and b.clock == clock
    plan.rollback()
    assert (b.scores == scores).all() and b.clock == clock
    with pytest.raises(EmbCacheError, match="already been committed or rolled back"):
        plan.commit()
    plan = b.plan_lookup(np.array([2, 3], np.int64), out[:2], None)
    plan.commit()
    assert b.clock == clock + 1 and sorted(b.scores[plan.slots].tolist()) == [clock + 1] * 2
    with pytest.raises(EmbCacheError, match="already been committed or rolled back"):
        plan.rollback()


def plan_members() -> dict:
    out = {name: None for name in LookupPlan.__annotations__}
    out.update({n: v for n, v in vars(LookupPlan).items() if not n.startswith("_") and callable(v)})
    return out


@pytest.mark.parametrize("module", [cpu, gpu], ids=["cpu", "gpu"])
def test_both_plans_have_the_protocols_members(module):
    cls = module._LookupPlan
    for name, fn in plan_members().items():
        if fn is None:
            assert name in cls.__slots__, f"{module.__name__}._LookupPlan lacks {name}"
        else:
            got = inspect.signature(getattr(cls, name))
            assert list(got.parameters) == list(inspect.signature(fn).parameters), f"{cls}.{name}{got}"
    hint = inspect.signature(module.__dict__[module.__name__.rsplit(".", 1)[1].upper() + "Backend"].plan_lookup)
    assert hint.return_annotation in ("_LookupPlan", module._LookupPlan)


def test_the_protocol_declares_the_plan_and_no_hidden_undo():
    members = set(dir(Backend))
    assert "plan_lookup" in members
    assert not members & {"lookup_hits", "tick_and_touch", "undo_touch"}
    tree = ast.parse((PACKAGE / "cache.py").read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"lookup_hits", "tick_and_touch", "undo_touch", "_touched"}
    for module in (cpu, gpu):  # nothing of a backend keeps a lookup's undo state between calls
        assert "_touched" not in inspect.getsource(module)


# ---------------------------------------------------------------------- the benchmarks' one door to internals

BENCHMARKS = PACKAGE.parent / "benchmarks"
# no exceptions left (trt_table.py reads a HostStore's rows through benchmarks/_internals.host_rows)
_KNOWN: set = set()


def private_reads(path: pathlib.Path) -> list:
    """``(file, object, member, line)`` of every private member read off another object than ``self``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = ast.unparse(node.value)
            if owner not in ("self", "cls") and (path.name, owner, node.attr) not in _KNOWN:
                out.append((path.name, owner, node.attr, node.lineno))
    return out


def test_benchmarks_reach_embcaches_internals_only_through_one_module():
    modules = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "_internals.py")
    assert {"gpu_table.py", "phases.py", "probe_bound.py", "bench_cpu.py"} <= {p.name for p in modules}
    wrong = [read for p in modules for read in private_reads(p)]
    assert wrong == [], f"read embcache's private members through benchmarks/_internals.py: {wrong}"
    assert private_reads(BENCHMARKS / "_internals.py")  # the one place that does


# ---------------------------------------------------------------------- launch shapes of the tiers' kernel

def test_the_tuning_table_is_read_on_neutral_ground_and_the_tiers_gather_takes_its_block():
    from embcache import _tuning
    from embcache.kernels import tuning

    from .test_architecture import imports_of

    wrong = {m for m in imports_of("embcache._tuning") if m.split(".")[:2] in
             (["embcache", "kernels"], ["embcache", "tiers"], ["embcache", "policies"], ["embcache", "cache"])}
    assert wrong == set(), "embcache._tuning is neutral ground: it imports none of kernels, tiers, policies, cache"
    assert tuning.load_table is _tuning.load_table and tuning.utility_block is _tuning.utility_block
    assert tuning.TABLE_PATH == _tuning.TABLE_PATH and _tuning.TABLE_PATH.exists()
    table = {"entries": {"8.0": {"utility_block": 128, "shapes": []}, "9.0": {"utility_block": 512, "shapes": []}}}
    assert [_tuning.utility_block(cc, table) for cc in ("8.6", "9.0", "12.0")] == [128, 512, 512]
    tree = ast.parse((PACKAGE / "tiers" / "_gather.py").read_text())
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is int
                and n.value >= 64]
    assert literals == [], f"tiers/_gather.py has launch-shape literals {literals}: take them from the table"
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "device_utility_block" in called


# ---------------------------------------------------------------------- the CPU probe at every way count

@pytest.mark.parametrize("ways", [1, 2, 32, 64, 128])
@settings(max_examples=20)
@given(trace=st.lists(st.lists(st.integers(0, 400), max_size=40), min_size=1, max_size=12))
def test_the_cpu_probe_finds_what_the_reference_finds_at_any_way_count(ways, trace):
    """The probe compares a set's keys as one mask (32 ways: unrolled; up to 64: a loop; beyond: a scan)."""
    from .reference import ReferenceCache

    stored = np.arange(0, 400, 3, dtype=np.int64)
    rows = rows_for(stored, DIM, "float32", seed=4)
    tier = HostStore(DIM)
    tier.put_many(stored, rows)
    policy = embcache.policies.get_policy("lru")
    cache = embcache.Cache(3 * ways, DIM, policy, "always", "float32", "cpu", tier, default=-1.0, ways=ways)
    ref = ReferenceCache(3 * ways, DIM, policy, embcache.policies.get_admission("always"),
                         dict(zip(stored.tolist(), rows)), -1.0, ways, "float32")
    for batch in trace:
        got = cache.lookup(np.array(batch, np.int64))
        assert got.tobytes() == np.asarray(ref.lookup(batch), np.float32).tobytes()
        found = cache.query(np.arange(400))[1]
        assert found.tolist() == ref.query(list(range(400)))[1].tolist()
    keys, _, scores = cache.export()
    ref_keys, _, ref_scores = ref.export()
    assert keys.tolist() == list(ref_keys) and scores.tolist() == list(ref_scores)
    cache.close()


def test_the_benchmarks_phase_timers_see_the_plan_and_leave_nothing_patched():
    """benchmarks/_internals.timed_phases on a CPU cache (the GPU one differs only in its synchronize)."""
    import collections

    from benchmarks import _internals

    cache, _ = make("lru", flaky=False)
    totals = collections.defaultdict(float)
    with _internals.timed_phases(cache, totals, lambda: None):
        cache.lookup(np.arange(10))
    assert {"backend.plan_lookup", "plan.commit", "tier fetch (Cache._fetch)", "backend.insert_and_evict"} <= set(totals)
    assert "plan_lookup" not in vars(cache._backend) and "plan_or_hits" not in vars(cache._backend)
    assert "_fetch" not in vars(cache)
    assert cpu._LookupPlan.commit is vars(cpu._LookupPlan)["commit"] and cpu._LookupPlan.commit.__name__ == "commit"
    cache.close()
