"""The Criteo sample: trace reader counts and hit rates against the shared reference vectors."""
import json

import numpy as np
import pytest

from embcache.demo import format_table, run_demo
from embcache.traces import criteo_files, iter_criteo, read_criteo


@pytest.fixture
def trace(criteo_dir):
    return read_criteo(criteo_files(criteo_dir.parent))


def test_reader_counts_match_the_data_readme(trace):
    assert trace.shape == (460_760,) and np.unique(trace).shape == (73_359,)
    assert (trace >> 32).min() == 0 and (trace >> 32).max() == 25


def test_reader_on_hand_made_rows(tmp_path):
    cats = ["0000000a"] + [""] * 24 + ["ffffffff"]
    (tmp_path / "t.txt").write_text("1\t" + "\t".join(["5"] * 13 + cats) + "\n" + "\t".join(["5"] * 13 + cats) + "\n")
    keys = read_criteo([tmp_path / "t.txt"])
    assert keys.tolist() == [10, (25 << 32) | 0xFFFFFFFF] * 2
    assert [b.tolist() for b in iter_criteo([tmp_path / "t.txt"], rows_per_batch=1)] == [keys[:2].tolist()] * 2


def test_small_batches_reproduce_the_reference_hit_rates(trace, vectors_dir):
    # the vectors are for a fully associative cache fed one key at a time; 32-way sets and
    # batches of 8 keys come within a point of them for LRU and FIFO, and of LFU within three
    reference = json.loads((vectors_dir / "criteo_hit_rates.json").read_text())["capacity_fraction"]["5%"]
    rows, backend = run_demo(trace, fractions=(0.05,), batch=8, dim=4, backend="cpu", progress=False)
    got = {r.policy: r.hit_rate for r in rows}
    assert got["lru"] == pytest.approx(reference["lru"], abs=0.01)
    assert got["fifo"] == pytest.approx(reference["fifo"], abs=0.01)
    assert got["lfu"] == pytest.approx(reference["lfu"], abs=0.03)
    assert backend == "cpu" and "lfu" in format_table(rows)
