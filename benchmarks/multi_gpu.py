"""MultiGPUCache throughput, as ratios to one GPU's Cache in the same run (issue 8's bars).

    python -m benchmarks.multi_gpu [--devices 0,1] [--out results.json]

* sharded: one caller looks up 2^20 keys, all hits, dim 128, through a cache sharded over ``devices``,
  against the same lookup on one GPU's Cache holding every key;
  The ceiling printed beside it: the remote shards' half of the rows (n * dim * 4 / 2 bytes) must
  cross to the caller's GPU, so a sharded lookup cannot beat one peer copy of that size;
* replicated: one caller thread per device, each looking up its own 2^20 keys on its own replica,
  against one caller on one replica (aggregate keys per second).

With a repeated device (``--devices 0,0``) this checks that the code runs; its ratios then say
nothing about several GPUs.
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import numpy as np


def _timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def measure(devices=(0, 1), n: int = 1 << 20, dim: int = 128, rows: int = 1 << 21, repeats: int = 20) -> dict:
    import cupy as cp

    from embcache import Cache, MultiGPUCache
    from embcache.tiers import HostStore

    def sync():
        for d in sorted(set(devices)):
            with cp.cuda.Device(d):
                cp.cuda.get_current_stream().synchronize()

    tier = HostStore(dim, initial_rows=rows)
    for start in range(0, rows, 1 << 18):
        keys = np.arange(start, start + (1 << 18), dtype=np.int64)
        tier.put_many(keys, np.random.default_rng(start).standard_normal((keys.shape[0], dim)).astype(np.float32))
    capacity = 2 * rows  # room for every key, so the timed lookups are all hits
    keys = [cp.asarray(np.random.default_rng(i).integers(0, rows, n)) for i in range(len(devices))]
    with cp.cuda.Device(devices[0]):
        single = Cache(capacity, dim, backend="gpu", tier=tier)
        for _ in range(3):
            single.lookup(keys[0])
        t_single = _timed(lambda: single.lookup(keys[0]), repeats, sync)
        single.close()
    out = {"devices": list(devices), "keys": n, "dim": dim, "single_us": t_single * 1e6}
    if len(set(devices)) > 1:  # the ceiling: the remote shards' rows must cross to the caller's GPU
        half = n * dim * 4 // 2
        with cp.cuda.Device(devices[1]):
            src = cp.empty(half, cp.uint8)
        with cp.cuda.Device(devices[0]):
            dst = cp.empty(half, cp.uint8)
            t_copy = _timed(lambda: dst.data.copy_from_device_async(src.data, half), repeats, sync)
        out.update(peer_copy_gb_s=half / t_copy / 1e9, peer_copy_of_remote_rows_us=t_copy * 1e6,
                   sharded_speedup_ceiling=t_single / t_copy)
        del src, dst
    sharded = MultiGPUCache(capacity, dim, devices=devices, mode="sharded", tier=tier)
    with cp.cuda.Device(devices[0]):
        for _ in range(3):
            sharded.lookup(keys[0])
        misses = sharded.stats.misses
        t_sharded = _timed(lambda: sharded.lookup(keys[0]), repeats, sync)
        assert sharded.stats.misses == misses, "the sharded lookups were not all hits"
    sharded.close()
    out.update(sharded_us=t_sharded * 1e6, sharded_speedup=t_single / t_sharded)
    distinct = sorted(set(devices))
    replicated = MultiGPUCache(capacity, dim, devices=distinct, mode="replicated", tier=tier)
    for i, d in enumerate(distinct):
        with cp.cuda.Device(d):
            for _ in range(3):
                replicated.lookup(keys[i])

    def caller(i, d, barrier, seconds):
        with cp.cuda.Device(d):
            k = cp.asarray(keys[i])
            barrier.wait()
            seconds[i] = _timed(lambda: replicated.lookup(k), repeats, cp.cuda.get_current_stream().synchronize)

    seconds = [0.0] * len(distinct)
    barrier = threading.Barrier(len(distinct))
    threads = [threading.Thread(target=caller, args=(i, d, barrier, seconds)) for i, d in enumerate(distinct)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replicated.close()
    aggregate = sum(n / s for s in seconds)
    out.update(replicated_callers=len(distinct), replicated_keys_per_s=aggregate,
               replicated_scaling=aggregate / (n / t_single))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="0,1")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    result = measure(tuple(int(d) for d in args.devices.split(",")))
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
