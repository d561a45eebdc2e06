"""The host time of TorchGraphRunner.replay's parts for the lookup alone at trt_table's batch 32 (832 int64 keys,
dim 128, a small pinned store): the input signature, the feed's copy, the graph's launch, the whole replay, and
torch.cuda.current_stream(); each call timed from Python after a synchronize, medians of 1,500, two rounds.
(Run inline on the device as below; kept here as the record of what ran.)  Written against 3231dc8's runner:
``_replay`` and ``copy_inputs(feeds, torch)`` are gone since 1cb737f, so it runs only on that code;
../h200-2026-12-02-day/replay_parts2.py is its successor.

    python benchmarks/results/profiles/h200-2026-12-02-serve/replay_parts.py
"""
import time

import numpy as np
import torch

import embcache
from benchmarks.trt_table import plugin_path_model
from embcache.tiers import HostStore
from trt_plugin.torch_runner import TorchGraphRunner, _replay

n, dim = 832, 128
store = HostStore(dim, "float32", pinned=True, initial_rows=1 << 16)
store.put_many(np.arange(1 << 16), np.zeros((1 << 16, dim), np.float32))
cache = embcache.Cache(1 << 14, dim, "lfu", backend="gpu", tier=store, max_batch=n)
r = TorchGraphRunner(plugin_path_model("(b)", n, dim), lambda f, k, o, s: cache.lookup(k, out=o, stream=s))
feeds = [{"k": torch.randint(0, 1 << 16, (n,), device="cuda")} for _ in range(8)]
r.capture(feeds[0])
cap = r._graphs[r._signature(feeds[0])]
parts = {"_signature": lambda f: r._signature(f), "copy_inputs": lambda f: cap.copy_inputs(f, torch),
         "graph replay": lambda f: _replay(cap.graphs[0]), "runner.replay": lambda f: r.replay(f),
         "current_stream": lambda f: torch.cuda.current_stream(0).cuda_stream,
         # added after the run of replay_parts-3231dc8.txt, for the next one: torch's own copy beside the raw one
         "static.copy_": lambda f: cap.inputs["k"].copy_(f["k"], non_blocking=True)}
for rnd in range(2):
    for name, fn in parts.items():
        ts = []
        for i in range(1500):
            torch.cuda.synchronize()
            t = time.perf_counter()
            fn(feeds[i % 8])
            ts.append(time.perf_counter() - t)
        print(f"round {rnd}: {name:<16} host {np.median(ts)*1e6:6.2f} us", flush=True)
