"""gpu_table's 1,024-key latency rows (issue 21: GPU time <= 15 us, wall <= 40 us), ``--rounds`` times.

    python benchmarks/results/profiles/h200-2026-12-02-host/latency_rows.py [--rounds 2]
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
from benchmarks import gpu_table as g

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=2)
for r in range(p.parse_args().rounds):
    for args in ((), (0.1,), (0.1, True)):
        row = g.latency_row(128, 1024, 20, *args)
        print(f"round {r}: {row['case']}: GPU {row['gpu_us']:.1f} us (graph replay), wall {row['wall_us']:.1f} us",
              flush=True)
