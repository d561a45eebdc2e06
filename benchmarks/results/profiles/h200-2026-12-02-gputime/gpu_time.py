"""Where a replayed 1,024-key lookup's GPU time goes (issue 21's bar: <= 15 us with misses).

    python benchmarks/results/profiles/h200-2026-12-02-gputime/gpu_time.py [--reps 40]

For gpu_table's three latency rows: the replay's GPU time (events, as the row) and each captured
node's mean GPU time over the replays (CUPTI through torch.profiler).  Then the same event timing of
graphs of empty kernels (1 and 3 nodes, and a 64-byte memset before 2 kernels): what a replay costs
before any work.
"""
import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
from benchmarks import gpu_table as g  # noqa: E402
from benchmarks.kernel_profile import _kernel_table  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=40)
args = p.parse_args()
import cupy  # noqa: E402
import torch  # noqa: E402


def show(label):
    def hook(replay):
        rows = _kernel_table(torch, replay, args.reps)
        print(f"  {label}: {sum(r[2] for r in rows):.1f} us of nodes a replay, {sum(r[1] for r in rows)} nodes")
        for name, count, us in rows:
            print(f"    {us:7.2f} us  x{count:<2} {name}")
    return hook


for extra in ((), (0.1,), (0.1, True)):
    label = "all hits" if not extra else ("misses admitted" if len(extra) > 1 else "misses not admitted")
    row = g.latency_row(128, 1024, 20, *extra, on_graph=show(label))
    print(f"{row['case']}: GPU {row['gpu_us']:.1f} us (graph replay, events), wall {row['wall_us']:.1f} us",
          flush=True)

empty = cupy.RawKernel(r'extern "C" __global__ void e(long long* p) { if (p == nullptr) p[0] = 1; }', "e")
buf = cupy.zeros(8, cupy.int64)
stream = cupy.cuda.Stream(non_blocking=True)
for label, kernels, memset in (("1 empty kernel", 1, False), ("3 empty kernels", 3, False),
                               ("a 64-byte memset + 2 empty kernels", 2, True)):
    with stream:
        empty((1,), (32,), (buf,))
        stream.synchronize()
        stream.begin_capture()
        if memset:
            cupy.cuda.runtime.memsetAsync(buf.data.ptr, 0, 64, stream.ptr)
        for _ in range(kernels):
            empty((8,), (1024,), (buf,))
        graph = stream.end_capture()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(200):
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end) * 1e3)
    print(f"graph of {label}: GPU {np.median(times):.2f} us a replay (events, median of 200)", flush=True)
