"""ordered_small phase by phase in each of its blocks (a diagnostic, run on a GPU; it reads private members and
patches a copy of the kernel sources), for the one launch of 1, 8 and 16 blocks.

    python benchmarks/results/profiles/h200-2026-12-02-day/small_phases_blocks.py [--gib 16] [--batches 32,40]
        [--blocks 1,8] [--patch benchmarks/results/profiles/h200-2026-12-02-day/fused-touch.patch]

As ../h200-2026-12-01-night/small_phases.py, but every block's thread 0 stamps clock64() at its start and
after each barrier of ordered_small's body (stamps[64 * block + k]).  Per phase: the median over fresh
batches of the longest block's time in it and of the blocks' mean; the whole kernel per block (start to end)
likewise.  clock64 is per SM, so only differences within a block are used.
"""
import argparse
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import cupy as cp
import numpy as np

import embcache.kernels.gpu as gpu
from embcache._cuda import compile_source

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=16.0)
p.add_argument("--batches", default="32,40")
p.add_argument("--blocks", default="1,8,16")
p.add_argument("--reps", type=int, default=40)
p.add_argument("--patch", help="a diff of embcache/kernels/cuda applied to the copy first (an A/B's variant, e.g. "
                               "fused-touch.patch beside this script)")
a = p.parse_args()

tmp = pathlib.Path(tempfile.mkdtemp()) / "cuda"
shutil.copytree(gpu.CUDA_DIR, tmp)
if a.patch:  # paths in the diff start a/embcache/kernels/cuda/: four components off, relative to the copy
    import subprocess

    diff = str(pathlib.Path(a.patch).resolve())
    try:
        subprocess.run(["patch", "-p4", "-d", str(tmp), "-i", diff], check=True)
    except FileNotFoundError:
        subprocess.run(["git", "apply", "-p4", diff], cwd=tmp, check=True)
    print(f"variant: {a.patch} applied", flush=True)
src = (tmp / "ordered.cu").read_text()
sig = "extern \"C\" __global__ void __launch_bounds__(ORDERED_BLOCK) ordered_small("
head, body = src.split(sig, 1)
lines = body.split("\n")
i_open = next(i for i, line in enumerate(lines) if line.rstrip().endswith("{"))
out, k = [], 0


def stamp(j):
    return f"if (threadIdx.x == 0) ordered_stamps[64 * blockIdx.x + {j}] = clock64();"


for i, line in enumerate(lines):
    out.append(line)
    if i == i_open:
        out.append("    " + stamp(0))
    elif "__syncthreads();" in line:
        k += 1
        out.append(" " * (len(line) - len(line.lstrip())) + stamp(k))
    if line.startswith("}"):
        k += 1
        out.insert(len(out) - 1, "    __syncthreads(); " + stamp(k))
        out.extend(lines[i + 1:])
        break
(tmp / "ordered.cu").write_text(head + "__device__ long long ordered_stamps[64 * 64];\n" + sig + "\n".join(out))
gpu.CUDA_DIR = tmp
names = ["touch", "misses", "distinct", "sketch add", "sketch admit", "group", "insert + last_block", "finish"]
assert k == len(names), (k, names)

from benchmarks.trt_table import QUICK, _zipf_rows, dlrm_cache  # noqa: E402

setup = dlrm_cache(a.gib, warm=QUICK["warm"] if a.gib <= 1 else (1 << 17, 32))
cache, cdfs, offsets = setup["cache"], setup["cdfs"], setup["offsets"]
b = cache._backend
mod = compile_source(tmp / "ordered.cu", dict(b._k._config))
stamps = cp.ndarray((64 * 64,), cp.int64, mod.get_global("ordered_stamps"))
rate_khz = cp.cuda.runtime.deviceGetAttribute(cp.cuda.runtime.cudaDevAttrClockRate, 0)
print(f"SM clock attribute {rate_khz / 1e6:.2f} GHz; ORDERED_BLOCK {b._oblock}; tuned: {b._small_blocks} blocks "
      f"up to {b._small} keys", flush=True)
tuned = (b._small, b._small_blocks, b._small_one)
s = cp.cuda.Stream(non_blocking=True)
for batch in map(int, a.batches.split(",")):
    keys = _zipf_rows(cp, cdfs, batch, a.reps * 3 + 2, batch) - 1
    lk = [(keys[i] + offsets).reshape(-1) for i in range(keys.shape[0])]
    n = lk[0].shape[0]
    o = cp.empty((n, cache.dim), cp.float32)
    turn = iter(range(len(lk)))
    for blocks in map(int, a.blocks.split(",")):
        b._small, b._small_blocks, b._small_one = max(tuned[0], n), blocks, max(tuned[0], n)
        longest, mean, whole, umiss = [], [], [], []
        ev0, ev1, gpu_us = cp.cuda.Event(), cp.cuda.Event(), []
        for rep in range(a.reps):
            st0 = cache.stats
            with s:
                stamps.fill(0)
                ev0.record(s)
            cache.lookup(lk[next(turn)], out=o, stream=s)
            with s:
                ev1.record(s)
            s.synchronize()
            gpu_us.append(cp.cuda.get_elapsed_time(ev0, ev1) * 1e3)
            umiss.append(cache.stats.unique_misses - st0.unique_misses)
            v = stamps.get().reshape(64, 64)[:blocks, :k + 1].astype(np.float64)
            d = np.zeros((blocks, k))
            for bl in range(blocks):
                last = v[bl, 0]
                for j in range(1, k + 1):
                    if v[bl, j]:
                        d[bl, j - 1], last = v[bl, j] - last, v[bl, j]
            longest.append(d.max(axis=0))
            mean.append(d.mean(axis=0))
            whole.append((v[:, k] - v[:, 0]).max())
        to_us = 1e3 / rate_khz
        print(f"batch {batch} ({n} keys, {np.median(umiss):.0f} distinct misses), {blocks} blocks: the longest "
              f"block {np.median(whole) * to_us:.2f} us start to end; the lookup's kernels between events "
              f"{np.median(gpu_us):.2f} us (eager)", flush=True)
        for name, lo, me in zip(names, np.median(longest, axis=0), np.median(mean, axis=0)):
            if lo:
                print(f"    {name:<22} longest block {lo * to_us:6.2f} us   mean block {me * to_us:6.2f} us",
                      flush=True)
b._small, b._small_blocks, b._small_one = tuned
cache.close()
