"""gpu_table's three 1,024-key latency rows alone (dim 128, a pinned HostStore; all hits, 102 misses not
admitted, 102 fresh misses admitted), as ``benchmarks.gpu_table`` runs them (``latency_row``, repeat 20): the
GPU time of a replayed graph (idle and queued) and the wall time of ``Cache.lookup`` from Python.

    python benchmarks/results/profiles/h200-2026-12-04/latency.py [--json F]
"""
import argparse
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
from benchmarks import gpu_table as g  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--json")
p.add_argument("--repeat", type=int, default=20)
a = p.parse_args()
rows = [g.latency_row(128, 1024, a.repeat), g.latency_row(128, 1024, a.repeat, 0.1),
        g.latency_row(128, 1024, a.repeat, 0.1, True)]
for r in rows:
    print(f"{r['case']}: GPU {r['gpu_us']:.2f} us (queued {r['gpu_queued_us']:.2f}), wall {r['wall_us']:.2f} us, "
          f"with graphs=True {r['wall_graphs_us']:.2f} us; last misses {r['last_misses']}", flush=True)
if a.json:
    pathlib.Path(a.json).write_text(json.dumps({"commit": os.environ.get("EMBCACHE_COMMIT", "unknown"), "rows": rows},
                                               indent=1))
