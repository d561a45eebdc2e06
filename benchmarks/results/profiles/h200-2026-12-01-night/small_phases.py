"""Where ordered_small (the small stream-ordered lookup's one-block miss path) spends its time, phase by phase
(a diagnostic, run on a GPU; it reads private members and patches a copy of the kernel sources).

    python benchmarks/results/profiles/h200-2026-12-01-night/small_phases.py [--gib 1] [--batches 32,64,128,256]

A copy of embcache/kernels/cuda with ordered_small's thread 0 reading clock64() at its start and after every
barrier into a __device__ array; the backend compiles that copy (gpu.CUDA_DIR points there).  For the DLRM
benchmark's tables and cache (benchmarks.trt_table.dlrm_cache) and fresh Criteo-shaped batches, eager
stream-ordered lookups; per phase the median cycles over the batches and us at the SM clock read from the device.
"""
import argparse
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[4]))
import numpy as np
import cupy as cp

import embcache.kernels.gpu as gpu
from embcache._cuda import compile_source

p = argparse.ArgumentParser()
p.add_argument("--gib", type=float, default=1.0)
p.add_argument("--batches", default="32,64,128,256")
p.add_argument("--reps", type=int, default=40)
a = p.parse_args()

tmp = pathlib.Path(tempfile.mkdtemp()) / "cuda"
shutil.copytree(gpu.CUDA_DIR, tmp)
src = (tmp / "ordered.cu").read_text()
head, body = src.split("extern \"C\" __global__ void __launch_bounds__(ORDERED_BLOCK) ordered_small(", 1)
names = ["start"]
def stamp(k):
    return (f"if (threadIdx.x == 0) ordered_stamps[{k}] = clock64();")
count = iter(range(1, 64))
out_body = []
depth = 0
# a stamp after every barrier of ordered_small's body, and one at its start and at its end
lines = body.split("\n")
i_open = next(i for i, l in enumerate(lines) if l.rstrip().endswith("{"))
for i, line in enumerate(lines):
    out_body.append(line)
    if i == i_open:
        out_body.append("    " + stamp(0))
    elif "__syncthreads();" in line:
        k = next(count)
        out_body.append(" " * (len(line) - len(line.lstrip())) + stamp(k))
    if line.startswith("}"):
        k = next(count)
        out_body.insert(len(out_body) - 1, "    __syncthreads(); " + stamp(k))
        out_body.extend(lines[i + 1:])
        break
src = head + "__device__ long long ordered_stamps[64];\n" + \
    "extern \"C\" __global__ void __launch_bounds__(ORDERED_BLOCK) ordered_small(" + "\n".join(out_body)
(tmp / "ordered.cu").write_text(src)
gpu.CUDA_DIR = tmp
names = ["start", "touch (the hits' scores)", "tick", "misses", "distinct", "sketch add", "sketch admit",
         "group", "insert", "finish"]
stamps_n = len(names)

from benchmarks.trt_table import QUICK, _zipf_rows, dlrm_cache  # noqa: E402

setup = dlrm_cache(a.gib, warm=QUICK["warm"] if a.gib <= 1 else (1 << 17, 32))
cache, cdfs, offsets = setup["cache"], setup["cdfs"], setup["offsets"]
b = cache._backend
mod = compile_source(tmp / "ordered.cu", dict(b._k._config))
ptr = mod.get_global("ordered_stamps")
stamps = cp.ndarray((64,), cp.int64, ptr)
rate_khz = cp.cuda.runtime.deviceGetAttribute(cp.cuda.runtime.cudaDevAttrClockRate, 0)
print(f"SM clock attribute {rate_khz / 1e6:.2f} GHz; ORDERED_BLOCK {b._oblock}; small up to {b._small} keys", flush=True)
for batch in map(int, a.batches.split(",")):
    keys = _zipf_rows(cp, cdfs, batch, a.reps + 2, batch) - 1
    lk = [(keys[i] + offsets).reshape(-1) for i in range(a.reps + 2)]
    n = lk[0].shape[0]
    if n > b._small:
        print(f"batch {batch}: {n} keys, past the small path"); continue
    out = cp.empty((n, cache.dim), cp.float32)
    s = cp.cuda.Stream(non_blocking=True)
    rows, umiss = [], []
    for i, k in enumerate(lk):
        st0 = cache.stats
        with s:
            stamps.fill(0)
        cache.lookup(k, out=out, stream=s)
        s.synchronize()
        st1 = cache.stats
        v = stamps[:stamps_n].get()
        if i >= 2:  # a phase that did not run (no sketch) wrote no stamp: its time is 0
            d, last = np.zeros(stamps_n - 1), v[0]
            for j in range(1, stamps_n):
                if v[j]:
                    d[j - 1], last = v[j] - last, v[j]
            rows.append(d)
            umiss.append(st1.unique_misses - st0.unique_misses)
    d = np.median(np.array(rows), axis=0)
    total = float(np.sum(d))
    print(f"batch {batch} ({n} keys, {np.median(umiss):.0f} distinct misses): ordered_small {total:.0f} cycles = "
          f"{total / rate_khz * 1e3:.1f} us at the attribute clock", flush=True)
    for name, c in zip(names[1:], d):
        print(f"    {c:9.0f} cycles {c / rate_khz * 1e3:7.2f} us   up to {name}", flush=True)
cache.close()
