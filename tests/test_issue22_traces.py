"""The drifting-popularity trace (``traces.drifting_zipf_trace``) and its ``drift:`` name in the study."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from embcache.errors import ConfigError
from embcache.study import load_trace_source, run_study
from embcache.traces import drifting_zipf_trace


def whole(**kw) -> np.ndarray:
    return np.concatenate(list(drifting_zipf_trace(**kw)) or [np.empty(0, np.int64)])


@given(lookups=st.integers(0, 3000), keys=st.integers(1, 300), interval=st.integers(1, 700),
       fraction=st.sampled_from([0.0, 0.1, 0.5, 1.0]), seed=st.integers(0, 2**32), chunk=st.integers(1, 1000))
def test_the_trace_is_a_function_of_its_arguments_not_of_the_chunk(lookups, keys, interval, fraction, seed, chunk):
    args = dict(lookups=lookups, keys=keys, exponent=1.0, interval=interval, fraction=fraction, seed=seed)
    chunks = list(drifting_zipf_trace(**args, chunk=chunk))
    assert all(c.dtype == np.int64 and 0 < c.shape[0] <= chunk for c in chunks)
    got = np.concatenate(chunks) if chunks else np.empty(0, np.int64)
    assert got.shape == (lookups,) and ((got >= 0) & (got < keys)).all()
    assert (got == whole(**args)).all()


def test_between_reshuffles_it_is_the_zipf_law():
    keys = 50
    trace = whole(lookups=200_000, keys=keys, exponent=1.0, interval=10**9, fraction=0.5, seed=3)
    counts = np.sort(np.bincount(trace, minlength=keys))[::-1] / trace.shape[0]
    law = 1.0 / np.arange(1, keys + 1)
    assert np.abs(counts - law / law.sum()).max() < 0.005
    assert not (whole(lookups=1000, keys=keys, interval=10**9, seed=4) == trace[:1000]).all()  # the seed matters


def test_a_reshuffle_moves_the_ranking_and_fraction_zero_keeps_it():
    def top_keys(trace, interval):
        return [int(np.bincount(trace[i:i + interval]).argmax()) for i in range(0, trace.shape[0], interval)]

    still = whole(lookups=400_000, keys=1000, interval=40_000, fraction=0.0, seed=1)
    assert len(set(top_keys(still, 40_000))) == 1
    moving = whole(lookups=400_000, keys=1000, interval=40_000, fraction=1.0, seed=1)
    assert len(set(top_keys(moving, 40_000))) > 5


def _hit_rates(trace, capacities):
    rows = run_study([trace], ["lru", "lfu"], ["always"], capacities, batch=16, backend="cpu", belady=False,
                     progress=False)
    return {(r["policy"], r["capacity_asked"]): r["hit_rate"] for r in rows}


def test_lfu_without_aging_loses_to_lru_when_popularity_drifts():
    # the demand of the generator: old counts keep fallen keys cached
    trace = whole(lookups=100_000, keys=1000, exponent=1.0, interval=1000, fraction=0.1, seed=0)
    rates = _hit_rates(trace, [0.05, 0.2])
    for size in (50, 200):
        assert rates[("lfu", size)] < rates[("lru", size)] - 0.1, rates
    # and it is the drift that does it: the same law without reshuffles favours LFU
    still = whole(lookups=100_000, keys=1000, exponent=1.0, interval=1000, fraction=0.0, seed=0)
    rates = _hit_rates(still, [0.05, 0.2])
    for size in (50, 200):
        assert rates[("lfu", size)] > rates[("lru", size)], rates


def test_the_study_reads_drift_names():
    chunks, text = load_trace_source("drift:5000")
    trace = np.concatenate(list(chunks))
    assert trace.shape == (5000,) and trace.max() < 50 and "DRIFTING" in text and "every 50 lookups" in text
    chunks, text = load_trace_source("drift:5000:100:500:0.5:0.8:7")
    assert (np.concatenate(list(chunks)) == whole(lookups=5000, keys=100, exponent=0.8, interval=500, fraction=0.5,
                                                  seed=7)).all()
    assert "Zipf(0.8) over 100 keys" in text


@pytest.mark.parametrize("spec", ["drift:", "drift:x", "drift:10.5", "drift:100:0", "drift:100:10:0", "drift:100:10:5:2",
                                  "drift:100:10:5:0.1:0", "drift:100:10:5:0.1:1:-1", "drift:1:2:3:4:5:6:7"])
def test_bad_drift_names_say_the_form(spec):
    with pytest.raises(ConfigError, match=r"drift:LOOKUPS\[:KEYS"):
        load_trace_source(spec)


def test_bad_arguments_are_config_errors():
    for kw in ({"keys": 0}, {"lookups": -1}, {"interval": 0}, {"fraction": 1.5}, {"exponent": 0.0}, {"chunk": 0}):
        with pytest.raises(ConfigError):
            drifting_zipf_trace(**{"lookups": 10, "keys": 10, **kw})
