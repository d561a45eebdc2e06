"""Where the batch-32 lookup graph's wall time goes, and why the plugin path trails direct (a diagnostic, run on
a GPU; it reads private members).

    python benchmarks/results/profiles/h200-2026-12-02-eve/timeline.py [--gib 4] [--out DIR] [--batches 32]
        [--skip-graph] [--skip-plugin]

1. trt_table's "lookup alone in a CUDA graph" at each of --batches (32: 832 keys; dim 128, its LFU cache over a
   pinned store of --gib): 30 replays with fresh keys, each replay + torch.cuda.synchronize() in one torch.profiler
   annotation.  Per replay, from the CUPTI timestamps: host start -> first GPU op, every GPU op (start offset
   and duration), last GPU op's end -> the annotation's end (the synchronize's wake-up).  Medians printed.
2. The plugin path's all-hit lookup (65,536 keys, dim 128, a cache holding the whole 2^20-row pinned table):
   ``lookup(keys, out=)`` against ``lookup(keys, out=, index_rows=rows)`` (what ``lookup_into`` calls), the
   kernels of one call of each with their durations; then both back to back (50 calls, 5 alternating rounds,
   best round each) and each call's GPU time between events.
"""
import argparse
import json
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy as cp
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile, record_function

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=4.0)
p.add_argument("--out", default=os.environ.get("OUT", "."))
p.add_argument("--skip-graph", action="store_true")
p.add_argument("--skip-plugin", action="store_true")
p.add_argument("--batches", default="32", help="DLRM batch sizes of the graph part (26 keys a sample)")
a = p.parse_args()

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def trace_events(prof, name):
    path = pathlib.Path(a.out) / name
    prof.export_chrome_trace(str(path))
    return [e for e in json.loads(path.read_text())["traceEvents"] if e.get("ph") == "X"]


def short(name):
    return name.split("(")[0][:40]


def windows(events, prefix):
    """Per annotation named prefix*: (its start, its end, the GPU ops that start inside it, sorted)."""
    marks = sorted((e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith(prefix)),
                   key=lambda e: e["ts"])
    gpu = sorted((e for e in events if e.get("cat") in GPU_CATS), key=lambda e: e["ts"])
    out = []
    for m in marks:
        t0, t1 = m["ts"], m["ts"] + m["dur"]
        out.append((t0, t1, [g for g in gpu if t0 <= g["ts"] <= t1]))
    return out


def profile_graph(batch, cache, cdfs, offsets, dim, lookup):
    from benchmarks.trt_table import _zipf_rows, plugin_path_model
    from trt_plugin.torch_runner import TorchGraphRunner

    keys = _zipf_rows(cp, cdfs, batch, 60, batch) - 1
    feeds = [{"k": torch.as_tensor((keys[i] + offsets).reshape(-1), device="cuda")} for i in range(keys.shape[0])]
    n = feeds[0]["k"].shape[0]
    runner = TorchGraphRunner(plugin_path_model("(benchmark)", n, dim), lookup)
    runner.capture(feeds[0])
    for _ in range(3):
        runner.replay(feeds[0])
    torch.cuda.synchronize()
    walls = []
    for i in range(1, 21):  # untraced, as trt_table times them
        torch.cuda.synchronize()
        t = time.perf_counter()
        runner.replay(feeds[i])
        torch.cuda.synchronize()
        walls.append((time.perf_counter() - t) * 1e6)
    print(f"lookup graph, batch {batch} ({n} keys), {a.gib:g} GiB: untraced wall median {np.median(walls):.1f} us "
          f"(min {min(walls):.1f})", flush=True)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(21, 51):
            torch.cuda.synchronize()
            with record_function(f"replay {i}"):
                runner.replay(feeds[i])
                torch.cuda.synchronize()
    ev = trace_events(prof, f"graph{batch}.json")
    rows, names = [], None
    for t0, t1, gpu in windows(ev, "replay "):
        if not gpu:
            continue
        ops = [(short(g["name"]), g["ts"] - t0, g["dur"]) for g in gpu]
        names = names or [o[0] for o in ops]
        if [o[0] for o in ops] != names:
            print("  a replay with other ops:", [o[0] for o in ops], flush=True)
            continue
        last = max(g["ts"] + g["dur"] for g in gpu)
        rows.append([t1 - t0, gpu[0]["ts"] - t0] + [x for o in ops for x in o[1:]] + [t1 - last])
    r = np.median(np.array(rows), axis=0)
    print(f"traced: annotation (replay + sync) median {r[0]:.1f} us over {len(rows)} replays; host start -> "
          f"first GPU op {r[1]:.1f} us; last GPU op's end -> sync returns {r[-1]:.1f} us", flush=True)
    prev_end = None
    for k, nm in enumerate(names):
        start, dur = r[2 + 2 * k], r[3 + 2 * k]
        gap = "" if prev_end is None else f"  gap after the previous op {start - prev_end:5.1f}"
        print(f"    {nm:<40} starts at {start:6.1f} us, lasts {dur:5.1f} us{gap}", flush=True)
        prev_end = start + dur
    cpu = {}
    for e in ev:
        if e.get("cat") in ("cuda_runtime", "cuda_driver"):
            cpu.setdefault(e["name"], []).append(e["dur"])
    for nm, d in sorted(cpu.items(), key=lambda kv: -sum(kv[1])):
        print(f"    host {nm:<38} {len(d) / len(rows):4.1f} a replay, median {np.median(d):5.1f} us", flush=True)
    runner.reset()


if not a.skip_graph:
    from benchmarks.trt_table import dlrm_cache

    setup = dlrm_cache(a.gib, progress=False)
    cache, cdfs, offsets, dim = setup["cache"], setup["cdfs"], setup["offsets"], 128

    def lookup(fields, keys, out=None, stream=None):
        return cache.lookup(keys.reshape(-1), out=out.reshape(-1, dim), stream=stream)

    for batch in map(int, a.batches.split(",")):
        profile_graph(batch, cache, cdfs, offsets, dim, lookup)
    cache.close()
    setup["store"].close()
    del setup, cache

if a.skip_plugin:
    sys.exit(0)

# 2. plugin path against direct
import embcache
from embcache.tiers import HostStore

rows_n, dim, n = 1 << 20, 128, 1 << 16
store = HostStore(dim, "float32", pinned=True, initial_rows=rows_n)
store.put_many(np.arange(rows_n), np.random.default_rng(0).standard_normal((rows_n, dim)).astype(np.float32))
cache = embcache.Cache(rows_n, dim, "lfu", backend="gpu", tier=store)
keys = cp.random.randint(0, rows_n, n, dtype=cp.int64)
for _ in range(50):
    before = cache.stats.misses
    cache.lookup(keys)
    if cache.stats.misses == before:
        break
buf = cp.empty((n, dim), cp.float32)
direct = lambda: cache.lookup(keys, out=buf)
plugin = lambda: cache.lookup(keys, out=buf, index_rows=rows_n)
direct(), plugin()
cp.cuda.get_current_stream().synchronize()
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for name, fn in (("direct", direct), ("plugin", plugin)) * 3:
        cp.cuda.get_current_stream().synchronize()
        with record_function(f"call {name}"):
            fn()
            cp.cuda.get_current_stream().synchronize()
ev = trace_events(prof, "plugin.json")
for t0, t1, gpu in windows(ev, "call ")[-2:]:
    print(f"one call: annotation {t1 - t0:.1f} us; GPU busy {sum(g['dur'] for g in gpu):.1f} us in {len(gpu)} ops",
          flush=True)
    for g in gpu:
        print(f"    {short(g['name']):<40} {g['dur']:6.1f} us", flush=True)
stream = cp.cuda.get_current_stream()


def loop(fn, repeats=50):
    fn()
    stream.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    stream.synchronize()
    return (time.perf_counter() - t) / repeats * 1e6


def host_only(fn, repeats=50):
    stream.synchronize()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    stream.synchronize()
    return float(np.median(ts)) * 1e6


def gpu_us(fn, repeats=20):
    e0, e1, out = cp.cuda.Event(), cp.cuda.Event(), []
    for _ in range(repeats):
        stream.synchronize()
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        out.append(cp.cuda.get_elapsed_time(e0, e1) * 1e3)
    return float(np.median(out))


rounds = [(loop(direct), loop(plugin)) for _ in range(5)]
d, q = min(r[0] for r in rounds), min(r[1] for r in rounds)
print(f"back to back (best of 5 rounds of 50): direct {d:.1f} us, plugin {q:.1f} us, plugin / direct speed "
      f"{d / q:.3f}; rounds {[tuple(round(x, 1) for x in r) for r in rounds]}", flush=True)
print(f"GPU time between events (median of 20): direct {gpu_us(direct):.1f} us, plugin {gpu_us(plugin):.1f} us",
      flush=True)
print(f"host enqueue alone, in a queue (median of 50): direct {host_only(direct):.1f} us, plugin "
      f"{host_only(plugin):.1f} us", flush=True)
cache.close()
store.close()
