"""Compile every CUDA file of embcache with nvcc, with the #defines the GPU backend generates.

    python -m benchmarks.check_kernels [--quick]

The GPU backend compiles its kernels with NVRTC on the device at hand; this machine check needs
no GPU, only nvcc: each family file of ``embcache/kernels/cuda`` (and the benchmarks' own .cu files)
is compiled to PTX for several architectures with the defines ``gpu._kernel_defines`` makes for
each policy, row size (dims 8, 32, 128 of float32 and float16), launch shape of the tuning table and
digests on and off (a "split" shape compiles the same files: it only launches other kernels), and the
PTX must hold an entry for every kernel the backend takes from that file.  CUDA 13's nvcc has no
sm_70: the sm_70 entry's shapes are compiled for compute_75, the lowest it has.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from embcache._cuda import SHARED_INCLUDE
from embcache.kernels import gpu
from embcache.kernels.tuning import launch_shape, utility_block

BENCH_DIR = pathlib.Path(__file__).parent
#: tuning entry -> the virtual architecture its shapes compile for (nvcc 13 has no compute_70)
ARCHS = {"7.0": "compute_75", "8.0": "compute_80", "9.0": "compute_90"}
DIMS = (8, 32, 128)
DTYPES = ("float32", "float16")


def policies() -> list:
    """The policies whose score rules the kernels compile in: the registry's, else the built-ins."""
    from embcache import policies as p

    if hasattr(p, "policy_names") and hasattr(p, "get_policy"):
        return [p.get_policy(name) for name in p.policy_names()]
    return [p.LRU(), p.LFU(), p.FIFO(), p.Static()]


def configs(full: bool = True) -> list[tuple[str, str, dict]]:
    """``(arch, label, defines)`` for every configuration to compile (a covering subset unless ``full``)."""
    out = []
    rules = policies()
    for cc, arch in ARCHS.items():
        grid = list(itertools.product(rules, DIMS, DTYPES, (False, True)))
        if not full:  # every policy, dim, dtype and digests setting at least once per architecture
            grid = [(rules[i % len(rules)], DIMS[i % len(DIMS)], DTYPES[i % len(DTYPES)], bool(i % 2))
                    for i in range(max(len(rules), len(DIMS), 4))]
        for policy, dim, dtype, digests in grid:
            row_bytes = dim * np.dtype(dtype).itemsize
            shape = {**launch_shape(cc, row_bytes), "digests": digests}
            num_sets = 1000 if digests else 2**33  # 32- and 64-bit set indices
            defines = gpu._kernel_defines(policy, 32, row_bytes, num_sets, shape, utility_block(cc))
            out.append((arch, f"{policy.name} dim {dim} {dtype} digests {digests} (sm_{cc})", defines))
    return out


def _entries(ptx: str) -> set:
    return set(re.findall(r"\.entry\s+(\w+)\s*\(", ptx))


def compile_one(path: pathlib.Path, arch: str, defines: dict, workdir: pathlib.Path,
                include_dirs=()) -> tuple[int, str, set]:
    """nvcc ``path`` to PTX for ``arch`` with ``defines`` prepended, as CuPy's RawModule compiles it:
    ``(returncode, messages, kernel entries)``."""
    src = workdir / path.name
    src.write_text("".join(f"#define {k} {v}\n" for k, v in defines.items()) + path.read_text())
    ptx = workdir / (path.stem + ".ptx")
    cmd = ["nvcc", f"-arch={arch}", "--ptx", "-std=c++17", "-Werror", "all-warnings",
           *(f"-I{d}" for d in (path.parent, SHARED_INCLUDE, *include_dirs)), "-o", str(ptx), str(src)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    return run.returncode, run.stdout + run.stderr, _entries(ptx.read_text()) if run.returncode == 0 else set()


def jobs(full: bool = True) -> list[tuple[pathlib.Path, str, dict, tuple, str]]:
    """``(file, arch, defines, expected kernels, label)`` of every compile."""
    out = []
    for arch, label, defines in configs(full):
        for family, names in gpu.FAMILIES.items():
            out.append((gpu.CUDA_DIR / family, arch, defines, names, label))
    for arch in sorted(set(ARCHS.values())):  # the benchmarks' kernels, as benchmarks/*.py compile them
        out.append((BENCH_DIR / "probe_bound.cu", arch, gpu.defines(WAYS=32, ROW_BYTES=128, VEC=16),
                    ("probe_apart", "probe_beside", "make_slab"), "probe_bound"))
        out.append((BENCH_DIR / "ceilings.cu", arch, {}, ("gather_chunk", "gather_chunk4", "gather_warp"), "ceilings"))
    return out


def check(full: bool = True, workers: int | None = None) -> list[str]:
    """Compile every job; the failures, one message each (empty: all compiled, every kernel there)."""
    todo = jobs(full)
    root = pathlib.Path(tempfile.mkdtemp(prefix="embcache-nvcc-"))
    try:
        def one(i_job):
            i, (path, arch, defines, names, label) = i_job
            work = root / str(i)
            work.mkdir()
            code, messages, entries = compile_one(path, arch, defines, work, (gpu.CUDA_DIR,))
            if code:
                return f"{path.name} ({label}, {arch}) does not compile:\n{messages}"
            missing = set(names) - entries
            if missing:
                return f"{path.name} ({label}, {arch}) has no kernel {sorted(missing)}"
            return None

        with concurrent.futures.ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
            return [m for m in pool.map(one, enumerate(todo)) if m]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a covering subset of the configurations (as the test)")
    args = parser.parse_args()
    if shutil.which("nvcc") is None:
        sys.exit("nvcc is not on PATH")
    start = time.time()
    n = len(jobs(not args.quick))
    failures = check(not args.quick)
    print(*failures, sep="\n")
    print(f"{n - len(failures)} of {n} compiles passed in {time.time() - start:.0f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
