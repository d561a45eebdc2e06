"""Diagnostic (reads private members): trt_table's plugin-path rows on the pinned table, with the table's GPU
cache replaying its lookups from graphs (Cache(graphs=True)'s flag set on the cache trt_plugin opens), against
the same rows eager.  Both direct Cache.lookup(out=) and lookup_into use the one cache.

    python benchmarks/results/profiles/h200-2026-12-02-night/plugin_graphs.py
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import numpy as np

import trt_plugin.tables as tables
from benchmarks import trt_table

real = tables.table_cache


def graphed(*args, **kwargs):
    cache, entry = real(*args, **kwargs)
    cache._backend.replay_graphs = True
    return cache, entry


values = np.random.default_rng(0).standard_normal((1 << 20, 128), np.float32)
for label, patch in (("eager", False), ("graphs=True", True), ("eager", False), ("graphs=True", True)):
    tables.table_cache = graphed if patch else real
    for r in trt_table._plugin_path_one("memory:pinned", "pinned memory", values, 1 << 16, 50):
        print(f"{label:<12} {r['case']}: {r['us']:.1f} us, {r['ratio_to_direct']:.3f} of direct")
