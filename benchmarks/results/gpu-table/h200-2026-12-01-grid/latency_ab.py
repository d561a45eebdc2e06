"""gpu_table's 1,024-key rows (issue 21's bar: GPU time <= 15 us, wall <= 40 us) with the small batch's one
launch in 1 block and in ``--blocks`` blocks, alternating (a diagnostic, run on a GPU; it replaces the tuning
table's answer that the backend reads when a cache is made).

    python benchmarks/results/gpu-table/h200-2026-12-01-grid/latency_ab.py [--blocks 8] [--rounds 2]
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import embcache.kernels.gpu as gpu
from benchmarks import gpu_table as g

p = argparse.ArgumentParser()
p.add_argument("--blocks", type=int, default=8)
p.add_argument("--rounds", type=int, default=2)
a = p.parse_args()
tuned = gpu.ordered_shape
for rnd in range(a.rounds):
    for blocks in (1, a.blocks):
        # (block, max keys, blocks, max keys in one block): this run's blocks
        gpu.ordered_shape = lambda cc, table=None, blocks=blocks: tuned(cc, table)[:2] + (blocks,) + tuned(cc, table)[3:]
        for args in ((), (0.1,), (0.1, True)):
            row = g.latency_row(128, 1024, 20, *args)
            print(f"round {rnd}, {blocks} block(s): {row['case']}: GPU {row['gpu_us']:.1f} us (graph replay), "
                  f"wall {row['wall_us']:.1f} us", flush=True)
gpu.ordered_shape = tuned
