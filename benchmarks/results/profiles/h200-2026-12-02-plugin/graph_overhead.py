"""What a replay of a captured PyTorch CUDA graph costs from Python before any lookup work: the floor under
trt_table's "lookup alone in a CUDA graph" at batch 32 (46 us at c423d9c), which TorchGraphRunner times as
copy the feed into the static input, replay, torch.cuda.synchronize().

    python benchmarks/results/profiles/h200-2026-12-02-plugin/graph_overhead.py
"""
import time

import numpy as np
import torch


def wall(fn, reps=2000):
    out = np.empty(reps)
    for i in range(reps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn(i)
        torch.cuda.synchronize()
        out[i] = time.perf_counter() - t
    return np.median(out) * 1e6, np.percentile(out, 90) * 1e6


x = torch.zeros(1, device="cuda")
static = torch.zeros(832, dtype=torch.int64, device="cuda")  # batch 32 x 26 tables
feeds = [torch.randint(0, 1 << 40, (832,), device="cuda") for _ in range(8)]
side = torch.cuda.Stream()
with torch.cuda.stream(side):
    x.add_(1)
torch.cuda.synchronize()
one = torch.cuda.CUDAGraph()
with torch.cuda.graph(one):
    x.add_(1)
three = torch.cuda.CUDAGraph()
with torch.cuda.graph(three):
    for _ in range(3):
        x.add_(1)
cur = torch.cuda.current_stream()


def runner_like(i, g=one):
    f = feeds[i % 8]
    f.record_stream(torch.cuda.current_stream())
    static.copy_(f, non_blocking=True)
    g.replay()


cases = [("synchronize alone", lambda i: None),
         ("replay of a 1-kernel graph", lambda i: one.replay()),
         ("replay of a 3-kernel graph", lambda i: three.replay()),
         ("copy_ of 832 int64 alone", lambda i: static.copy_(feeds[i % 8], non_blocking=True)),
         ("copy_ + replay (1 kernel)", lambda i: (static.copy_(feeds[i % 8], non_blocking=True), one.replay())),
         ("as TorchGraphRunner.replay: record_stream + copy_ + replay (1 kernel)", runner_like),
         ("the same, 3 kernels", lambda i: runner_like(i, three))]
for rnd in range(2):
    for name, fn in cases:
        fn(0)
        med, p90 = wall(fn)
        print(f"round {rnd}: {name:<72} median {med:6.1f} us, p90 {p90:6.1f} us", flush=True)
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
gpu = []
for i in range(500):
    start.record()
    one.replay()
    end.record()
    end.synchronize()
    gpu.append(start.elapsed_time(end) * 1e3)
print(f"GPU time between events around a 1-kernel graph's replay: median {np.median(gpu):.1f} us")
