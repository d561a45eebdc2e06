"""Where trt_table's "lookup alone in a CUDA graph" at batch 32 spends its time: trt_table's own 16 GiB setup
(26 Criteo-shaped tables of dim 128 in a pinned HostStore, a 20% LFU cache, 832 fresh keys a batch), the lookup
captured by TorchGraphRunner as trt_table captures it.  Per replay, medians of fresh batches:

- wall: copy the feed, replay, synchronize (trt_table's figure);
- host: until ``replay`` returns;
- GPU: events recorded on the stream before the feed's copy and after the replay;
- kernels: torch.profiler's CUDA events over replays of fresh batches (each node of the graph).

    python benchmarks/results/profiles/h200-2026-12-02-serve/lookup32.py [--gib 16]
"""
import argparse
import time

import numpy as np
import torch

from benchmarks.kernel_profile import _kernel_table
from benchmarks.trt_table import _zipf_rows, dlrm_cache, plugin_path_model
from trt_plugin.torch_runner import TorchGraphRunner

parser = argparse.ArgumentParser()
parser.add_argument("--gib", type=float, default=16.0)
parser.add_argument("--batch", type=int, default=32)
args = parser.parse_args()
import cupy as cp

made = dlrm_cache(args.gib, progress=False)
cache, cdfs, offsets = made["cache"], made["cdfs"], made["offsets"]
dim, b = 128, args.batch
n = b * 26


def lookup(fields, keys, out, stream):
    cache.lookup(keys.reshape(-1), out=out.reshape(-1, dim), stream=stream)


keys = _zipf_rows(cp, cdfs, b, 900, 99) - 1
feeds = [{"k": torch.as_tensor((keys[i] + offsets).reshape(-1), device="cuda")} for i in range(900)]
runner = TorchGraphRunner(plugin_path_model("(benchmark)", n, dim), lookup)
runner.capture(feeds[0])
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s0 = cache.stats
for rnd in range(2):
    wall, host, gpu = [], [], []
    for i in range(1 + rnd * 300, 1 + rnd * 300 + 250):
        torch.cuda.synchronize()
        t = time.perf_counter()
        start.record()
        runner.replay(feeds[i])
        end.record()
        h = time.perf_counter()
        torch.cuda.synchronize()
        w = time.perf_counter()
        wall.append(w - t)
        host.append(h - t)
        gpu.append(start.elapsed_time(end) * 1e-3)
    med = [np.median(x) * 1e6 for x in (wall, host, gpu)]
    print(f"round {rnd}: batch {b} ({n} keys), {args.gib:g} GiB: wall {med[0]:.1f} us (p99 "
          f"{np.percentile(wall, 99) * 1e6:.1f}), host until replay returns {med[1]:.1f} us, GPU between events "
          f"{med[2]:.1f} us", flush=True)
s1 = cache.stats
print(f"hit rate of these replays {(s1.hits - s0.hits) / (s1.lookups - s0.lookups):.3f}, distinct misses a batch "
      f"{(s1.unique_misses - s0.unique_misses) / ((s1.lookups - s0.lookups) / n):.0f}")
rows = _kernel_table(torch, lambda i: runner.replay(feeds[601 + i]), 200)
print(f"kernels of a replay (fresh batches): {sum(r[2] for r in rows):.1f} us, {sum(r[1] for r in rows)} nodes")
for name, count, us in rows:
    print(f"    {us:8.2f} us  x{count:<3} {name}")
