"""TorchGraphRunner.replay with its feed copied as before (record_stream + torch's copy_) and as now (no record on
the caller's own stream, a raw cudaMemcpyAsync): the lookup alone in a CUDA graph at trt_table's batch 32 (832
keys, dim 128, LFU, a 20% cache over a pinned store, Zipf keys: misses read in place), rounds alternating.

    python benchmarks/results/profiles/h200-2026-12-02-plugin/runner_copy_ab.py
"""
import time

import numpy as np
import torch

import embcache
from benchmarks.trt_table import plugin_path_model
from embcache.tiers import HostStore
from trt_plugin import torch_runner

dim, n, rows = 128, 832, 1 << 19
store = HostStore(dim, "float32", pinned=True, initial_rows=rows)
values = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
store.put_many(np.arange(rows, dtype=np.int64), values)
cache = embcache.Cache(rows // 5, dim, "lfu", "always", "float32", "gpu", store, max_batch=n)


def lookup(fields, keys, out, stream):
    cache.lookup(keys, out=out, stream=stream)


runner = torch_runner.TorchGraphRunner(plugin_path_model("(benchmark)", n, dim), lookup)
rng = np.random.default_rng(1)
feeds = [{"k": torch.as_tensor((rng.zipf(1.1, n) % rows).astype(np.int64), device="cuda")} for _ in range(400)]
runner.capture(feeds[0])
new = torch_runner._Captured.copy_inputs


def old(self, feeds, torch, record=False):
    stream = torch.cuda.current_stream()
    for name, static in self.inputs.items():
        value = feeds[name]
        value.record_stream(stream)
        static.copy_(value, non_blocking=True)


def wall(k0):
    out = []
    for i in range(300):
        torch.cuda.synchronize()
        t = time.perf_counter()
        runner.replay(feeds[(k0 + i) % 400])
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return np.median(out) * 1e6, np.percentile(out, 99) * 1e6


for r in range(3):
    for name, f in (("before: record_stream + copy_", old), ("now: raw cudaMemcpyAsync, no record", new)):
        torch_runner._Captured.copy_inputs = f
        med, p99 = wall(r * 100)
        print(f"round {r}: {name:<40} lookup alone in a graph, {n} keys: median {med:6.1f} us, p99 {p99:6.1f} us",
              flush=True)
torch_runner._Captured.copy_inputs = new
keys = feeds[7]["k"]
out = runner.replay(feeds[7])[0]
torch.cuda.synchronize()
same = np.array_equal(out.cpu().numpy(), values[keys.cpu().numpy()])
print(f"replayed rows equal the store's rows of the fed keys: {same}; hit rate {cache.stats.hit_rate:.3f}")
