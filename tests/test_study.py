"""Studies: Belady against a brute-force optimum, trace files by hand, the fit, the study runner and its plots."""
import functools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embcache import traces
from embcache.belady import belady_curve, belady_hits, belady_hits_in_sets, next_uses
from embcache.cli import main
from embcache.layout import sets_of
from embcache.study import plot_results, run_study, static_keys, write_results


def brute_force_hits(trace, capacity):
    """The most hits any demand-fetching cache of ``capacity`` keys can get: every eviction choice tried."""

    @functools.lru_cache(maxsize=None)
    def best(t, cached):
        if t == len(trace):
            return 0
        k = trace[t]
        if k in cached:
            return 1 + best(t + 1, cached)
        if len(cached) < capacity:
            return best(t + 1, cached | {k})
        return max(best(t + 1, (cached - {v}) | {k}) for v in cached)

    return best(0, frozenset())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=14), st.integers(1, 4))
def test_belady_equals_the_brute_force_optimum(trace, capacity):
    assert belady_hits(np.array(trace, np.int64), capacity) == brute_force_hits(tuple(trace), capacity)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=14), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]))
def test_belady_in_sets_is_the_optimum_of_each_set(trace, num_sets, ways):
    keys = np.array(trace, np.int64)
    sets = sets_of(keys, num_sets)
    want = sum(brute_force_hits(tuple(keys[sets == s].tolist()), ways) for s in range(num_sets))
    assert belady_hits_in_sets(keys, num_sets, ways) == want
    assert belady_hits_in_sets(keys, num_sets, ways) <= belady_hits(keys, num_sets * ways)


def test_next_uses():
    assert next_uses(np.array([7, 3, 7, 7, 3])).tolist() == [2, 4, 3, 5, 5]


def test_belady_matches_the_shared_reference_hit_rates(criteo_dir, vectors_dir):
    trace = traces.read_criteo(traces.criteo_files(criteo_dir.parent))
    ref = json.loads((vectors_dir / "criteo_hit_rates.json").read_text())["capacity_fraction"]
    for name, fraction in (("1%", 0.01), ("5%", 0.05), ("20%", 0.20)):
        hits = belady_hits(trace, int(fraction * 73_359))
        assert hits / trace.shape[0] == pytest.approx(ref[name]["belady"], abs=0.0005)


def test_criteo_reader_per_column_and_both_formats(tmp_path):
    train = "1\t" + "\t".join(["3"] * 13) + "\t" + "\t".join(f"{c:08x}" for c in range(26)) + "\n"
    test = "\t".join([""] * 13) + "\t" + "\t".join([""] * 25 + ["0000ffff"]) + "\n"
    (tmp_path / "a.txt").write_text(train + test)
    keys = traces.read_criteo([tmp_path / "a.txt"])
    assert keys.tolist() == [(c << 32) | c for c in range(26)] + [(25 << 32) | 0xFFFF]
    assert traces.read_criteo([tmp_path / "a.txt"], columns=[25]).tolist() == [(25 << 32) | 25, (25 << 32) | 0xFFFF]


def test_describe_on_a_hand_made_trace():
    d = traces.describe(np.array([1, 2, 1, 1, 3, 2], np.int64))
    # reuse distances: 1 -> 1 (key 2 between), 1 -> 0, 2 -> 2 (keys 1, 3)
    assert traces.reuse_distances(np.array([1, 2, 1, 1, 3, 2])).tolist() == [-1, -1, 1, 0, -1, 2]
    assert (d["lookups"], d["distinct"], d["cold"]) == (6, 3, 3)
    assert d["reuse_histogram"] == [1, 1, 1]  # distance 0; [1, 2); [2, 4)
    assert d["top1_share"] == pytest.approx(3 / 6)


def test_fit_recovers_a_known_exponent_and_generation_is_reproducible():
    model = traces.TraceModel([traces.ColumnModel(0, 0.7, 2000, 1.2, 0.0), traces.ColumnModel(3, 0.3, 50, 0.6, 0.0)])
    trace = np.concatenate(list(model.generate(400_000, seed=5, chunk=100_000)))
    again = np.concatenate(list(model.generate(400_000, seed=5, chunk=100_000)))
    assert np.array_equal(trace, again) and set(np.unique(trace >> 32).tolist()) == {0, 3}
    fit = traces.fit_trace(trace)
    assert [c.column for c in fit.columns] == [0, 3]
    assert fit.columns[0].exponent == pytest.approx(1.2, abs=0.05)
    assert fit.columns[1].exponent == pytest.approx(0.6, abs=0.05)
    assert fit.columns[0].share == pytest.approx(0.7, abs=0.01) and fit.ks < 0.05


def test_trace_folder_round_trip(tmp_path):
    chunks = [np.arange(5, dtype=np.int64), np.arange(3, dtype=np.int64) + 9]
    assert traces.write_trace(chunks, tmp_path / "t", source="test", progress=False) == 8
    assert [c.tolist() for c in traces.iter_trace(tmp_path / "t")] == [c.tolist() for c in chunks]


def test_study_runs_writes_and_plots(tmp_path):
    trace = traces.zipf_trace(30_000, 3000, seed=1)
    rows = run_study(np.array_split(trace, 3), policies=["lru", "lfu"], admissions=["always"],
                     capacities=[0.02, 0.1], batch=256, backend="cpu", progress=False,
                     column_bytes={0: 512})
    policies = {r["policy"] for r in rows}
    assert policies == {"lru", "lfu", "belady", "belady-sets"}
    by = {(r["policy"], r["capacity"]): r for r in rows}
    for (policy, cap), r in by.items():
        assert 0 < r["hit_rate"] < 1 and r["lookups"] == 30_000
        if not policy.startswith("belady"):
            # an online batch-synchronous cache never beats the optimum of its own sets
            assert r["hit_rate"] <= by[("belady-sets", cap)]["hit_rate"] + 1e-12
            assert r["byte_hit_rate"] == pytest.approx(r["hit_rate"])  # one column: bytes weigh alike
    csv_path, json_path = write_results(rows, tmp_path, "s")
    assert csv_path.read_text().count("\n") == len(rows) + 1 and len(json.loads(json_path.read_text())) == len(rows)
    png, svg = plot_results(rows, tmp_path, "s", "test")
    assert png.read_bytes()[:4] == b"\x89PNG" and b"<svg" in svg.read_bytes()[:400]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([None, 4]))
def test_belady_curve_equals_one_capacity_at_a_time(seed, ways):
    trace = traces.zipf_trace(3000, 400, seed=seed)
    capacities = [8, 32, 128]
    expected = [belady_hits(trace, c) if ways is None else belady_hits_in_sets(trace, c // ways, ways)
                for c in capacities]
    assert belady_curve(trace, capacities, ways, threads=2) == expected


def test_static_keys_are_each_sets_most_frequent():
    rng = np.random.default_rng(5)
    warmup = rng.zipf(1.3, 5000).astype(np.int64)
    num_sets, ways = 8, 4
    chosen = static_keys(warmup, num_sets, ways)
    keys, counts = np.unique(warmup, return_counts=True)
    count = dict(zip(keys.tolist(), counts.tolist()))
    sets = sets_of(keys, num_sets)
    for s in range(num_sets):
        mine = keys[sets == s]
        ranked = sorted(mine.tolist(), key=lambda k: (-count[k], k))[:ways]
        assert sorted(chosen[sets_of(chosen, num_sets) == s].tolist()) == sorted(ranked)


def test_static_study_hits_exactly_the_preloaded_keys():
    trace = traces.zipf_trace(20_000, 2000, seed=3)
    rows = run_study(trace, policies=["static", "lfu"], admissions=["always", "min_frequency"],
                     capacities=[0.05], batch=512, backend="cpu", belady=False, static_warmup=0.25,
                     progress=False)
    static = [r for r in rows if r["policy"] == "static"]
    assert len(static) == 1 and len(rows) == 3  # admission is moot for a static cache: one run
    r = static[0]
    cached = static_keys(trace[:5000], r["capacity"] // r["ways"], r["ways"])
    assert r["hit_rate"] == np.isin(trace, cached).mean() and r["evictions"] == 0
    with pytest.raises(ValueError, match="static_warmup"):
        run_study(trace, policies=["static"], static_warmup=0.0, progress=False)


def test_study_command_on_a_trace_folder(tmp_path, capsys):
    traces.write_trace([traces.zipf_trace(20_000, 2000, seed=2)], tmp_path / "t", progress=False)
    assert main(["study", "--trace", str(tmp_path / "t"), "--policies", "lru,fifo", "--admissions", "always",
                 "--capacities", "0.05,400", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "belady-sets" in out and (tmp_path / "out" / "study.svg").exists()
