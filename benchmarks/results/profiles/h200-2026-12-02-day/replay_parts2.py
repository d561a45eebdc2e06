"""TorchGraphRunner.replay's parts after the raw-stream and direct-launch change, beside what they replace, for
the lookup alone at trt_table's batch 32 (832 int64 keys, dim 128, a small pinned store): each call timed from
Python after a synchronize, medians of 1,500, two rounds; then the lookup graph's wall as trt_table times it
(replay + torch.cuda.synchronize) with the direct launch and with CUDAGraph.replay, and the same wall with a
stream synchronize in place of the device synchronize.

    python benchmarks/results/profiles/h200-2026-12-02-day/replay_parts2.py
"""
import time

import numpy as np
import torch

import embcache
from benchmarks.trt_table import plugin_path_model
from embcache.tiers import HostStore
from trt_plugin import torch_runner
from trt_plugin.torch_runner import TorchGraphRunner

n, dim = 832, 128
store = HostStore(dim, "float32", pinned=True, initial_rows=1 << 16)
store.put_many(np.arange(1 << 16), np.zeros((1 << 16, dim), np.float32))
cache = embcache.Cache(1 << 14, dim, "lfu", backend="gpu", tier=store, max_batch=n)
r = TorchGraphRunner(plugin_path_model("(b)", n, dim), lambda f, k, o, s: cache.lookup(k, out=o, stream=s))
feeds = [{"k": torch.randint(0, 1 << 16, (n,), device="cuda")} for _ in range(8)]
r.capture(feeds[0])
cap = r._graphs[r._signature(feeds[0])]
raw = r._raw_stream(0)
g = cap.graphs[0]
print("executable:", torch_runner._executable(g), "raw getter:", r._raw_stream, flush=True)
parts = {"_signature": lambda f: r._signature(f),
         "raw stream (new)": lambda f: r._raw_stream(0),
         "current_stream (old)": lambda f: torch.cuda.current_stream(0).cuda_stream,
         "copy_inputs": lambda f: cap.copy_inputs(f, torch, raw),
         "launch (new)": lambda f: cap.launch(0, torch, raw),
         "graph.replay (old)": lambda f: g.replay(),
         "runner.replay": lambda f: r.replay(f)}
for rnd in range(2):
    for name, fn in parts.items():
        ts = []
        for i in range(1500):
            torch.cuda.synchronize()
            t = time.perf_counter()
            fn(feeds[i % 8])
            ts.append(time.perf_counter() - t)
        print(f"round {rnd}: {name:<22} host {np.median(ts)*1e6:6.2f} us", flush=True)


def wall(sync, label):
    ts = []
    for i in range(1500):
        sync()
        t = time.perf_counter()
        r.replay(feeds[i % 8])
        sync()
        ts.append(time.perf_counter() - t)
    print(f"{label:<44} wall median {np.median(ts)*1e6:6.2f} us  p99 {np.percentile(ts, 99)*1e6:6.2f}", flush=True)


stream = torch.cuda.current_stream()
for rnd in range(2):
    cap._execs = None
    wall(torch.cuda.synchronize, f"round {rnd}: direct launch, device sync")
    wall(stream.synchronize, f"round {rnd}: direct launch, stream sync")
    cap._execs = [0]
    wall(torch.cuda.synchronize, f"round {rnd}: CUDAGraph.replay, device sync")
cap._execs = None
store.close()
