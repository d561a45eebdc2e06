"""benchmarks.trt_table's report against issue 21's bars (CPU-only: it formats a result, measures nothing)."""
from __future__ import annotations

import math

from benchmarks.trt_table import format_table, verdicts


def _row(batch, median, p99, e2e_floor, lookup_graph, lookup_floor, bar_e2e, bar_lookup):
    return {"case": f"DLRM batch {batch}", "batch": batch, "runner": "test", "capture": "CUDA graph",
            "median_us": median, "p99_us": p99, "fp32_median_us": median, "fp32_p99_us": p99, "hit_rate": 0.8,
            "unique_misses_per_batch": 10, "lookup_only_median_us": lookup_graph + 10,
            "lookup_only_p99_us": lookup_graph + 20, "lookup_graph_median_us": lookup_graph,
            "lookup_graph_p99_us": lookup_graph + 5, "qps_pipelined": 1e6, "qps_sequential": 1e6,
            "dense_only_median_us": 50, "dense_only_fp32_median_us": 60, "zero_copy_floor_us": lookup_floor - 1,
            "hit_gather_floor_us": 1, "lookup_floor_us": lookup_floor, "lookup_over_floor": lookup_graph / lookup_floor,
            "e2e_floor_us": e2e_floor, "hps_a100_us": 380, "ratio_to_hps": median / 380, "bar_e2e_us": bar_e2e,
            "bar_lookup_us": bar_lookup, "rows": 100, "gib": 1.0, "cache_rows": 20, "fill_s": 1.0, "policy": "lfu",
            "misses_from": "pinned store"}


def test_each_bar_reads_met_missed_or_below_the_runs_own_floor():
    met, floor_over, missed = verdicts([_row(32, 116, 131, 126, 46, 19, 150, 40),
                                        _row(1024, 325, 337, 276, 206, 118, 250, 80),
                                        _row(8192, 900, 1400, 800, 300, 200, 1000, 400)])
    assert met.startswith("batch 32: e2e 116 us against <= 150: met;")
    assert "lookup alone 46 us against <= 40: missed by 6 us;" in met and "floor" not in met
    assert "e2e 325 us against <= 250: missed by 75 us, and this run's floor (276 us) is itself over" in floor_over
    assert "lookup alone 206 us against <= 80: missed by 126 us, and this run's floor (118 us)" in floor_over
    assert "p99 / median 1.04 against <= 1.5: met" in floor_over  # 337 / 325
    assert "e2e 900 us against <= 1,000: met" in missed and "p99 / median 1.56 against <= 1.5: missed" in missed


def test_a_lookup_that_was_not_captured_is_judged_by_its_eager_time():
    row = _row(32, 116, 131, 126, 46, 19, 150, 40)
    row["lookup_graph_median_us"] = math.nan
    assert "lookup alone 56 us against <= 40: missed by 16 us" in verdicts([row])[0]


def test_the_plugin_path_prints_three_decimals_so_a_ratio_under_the_bar_does_not_read_as_it():
    def result(ratio):
        cases = [{"case": "direct Cache.lookup(out=), pinned memory, stream-ordered", "us": 73.8, "m_keys_s": 888.0,
                  "ratio_to_direct": 1.0},
                 {"case": "plugin path (lookup_into), pinned memory, stream-ordered", "us": 73.8 / ratio,
                  "m_keys_s": 888.0 * ratio, "ratio_to_direct": ratio}]
        return {"device": "test", "date": "today", "commit": "abc", "rows": cases}

    under = format_table(result(0.9492))
    assert "| 0.949 |" in under and "0.949 of direct against >= 0.95: missed by 0.001." in under
    assert "0.960 of direct against >= 0.95: met." in format_table(result(0.96))
