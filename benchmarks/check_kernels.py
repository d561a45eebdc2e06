"""Compile every CUDA file of embcache with nvcc, with the #defines the GPU backend generates.

    python -m benchmarks.check_kernels [--quick]

The GPU backend compiles its kernels with NVRTC on the device at hand; this machine check needs
no GPU, only nvcc: each family file of ``embcache/kernels/cuda`` (and the benchmarks' own .cu files)
is compiled to PTX for several architectures with the defines the backend makes (``gpu._kernel_defines``) for
each policy, row size (dims 8, 32, 128 of float32 and float16), launch shape of the tuning table and
digests on and off (a "split" shape compiles the same files: it only launches other kernels), and the
PTX must hold an entry for every kernel the backend takes from that file.  CUDA 13's nvcc has no
sm_70: the sm_70 entry's shapes are compiled for compute_75, the lowest it has.

    python -m benchmarks.check_kernels --same-code-as 3fe9f1b

compiles the kernels of that commit (its ``embcache/kernels/cuda`` and ``embcache/cuda_shared``) and
of the working tree to machine code (ptxas, sm_75/80/90, a few configurations with today's defines)
and compares each kernel's SASS bytes: a change meant to move code only must leave them equal.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from embcache._cuda import SHARED_INCLUDE
from embcache.kernels import gpu
from embcache.kernels.tuning import launch_shape, utility_block

from ._internals import kernel_defines

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
            defines = kernel_defines(policy, 32, row_bytes, num_sets, shape, utility_block(cc))
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
        out.append((BENCH_DIR / "ceilings.cu", arch, {}, ("gather_chunk", "gather_chunk_cs", "gather_chunk_st", "gather_chunk4",
                                                      "gather_warp", "spin"),
                    "ceilings"))
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


def _sass(cubin: pathlib.Path) -> dict:
    """Each kernel's machine code in a cubin: the bytes of its ``.text.<name>`` ELF section."""
    data = cubin.read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = data[headers[shstrndx][4]:headers[shstrndx][4] + headers[shstrndx][5]]
    out = {}
    for h in headers:
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        if name.startswith(".text."):
            out[name[len(".text."):]] = data[h[4]:h[4] + h[5]]
    return out


def _cubins(cuda_dir: pathlib.Path, shared: pathlib.Path, arch: str, defines: dict, work: pathlib.Path) -> dict:
    """Kernel name -> SASS bytes of every .cu file in ``cuda_dir`` (its own #defines may repeat ours)."""
    out = {}
    for path in sorted(cuda_dir.glob("*.cu")):
        src = work / path.name
        src.write_text("".join(f"#define {k} {v}\n" for k, v in defines.items()) + path.read_text())
        cubin = work / (path.stem + ".cubin")
        subprocess.run(["nvcc", f"-arch={arch}", "-cubin", "-std=c++17", f"-I{cuda_dir}", f"-I{shared}",
                        "-o", str(cubin), str(src)], check=True, capture_output=True)
        out.update(_sass(cubin))
    return out


def same_code(rev: str) -> list[str]:
    """The kernels whose SASS differs between commit ``rev`` and the working tree (empty: none)."""
    from embcache.policies import LFU, LRU

    root = pathlib.Path(tempfile.mkdtemp(prefix="embcache-sass-"))
    repo = BENCH_DIR.parent
    try:
        old = root / "old"
        for folder in ("embcache/kernels/cuda", "embcache/cuda_shared"):
            files = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", f"{rev}:{folder}"],
                                   check=True, capture_output=True, text=True).stdout.split()
            (old / folder).mkdir(parents=True)
            for name in files:
                text = subprocess.run(["git", "-C", str(repo), "show", f"{rev}:{folder}/{name}"], check=True,
                                      capture_output=True).stdout
                (old / folder / name).write_bytes(text)
        differ = []
        for (cc, arch), (policy, row_bytes, digests) in itertools.product(
                {"7.0": "sm_75", "8.0": "sm_80", "9.0": "sm_90"}.items(),
                [(LRU(), 128, False), (LRU(), 64, True), (LFU(), 512, True), (LFU(), 16, False)]):
            shape = {**launch_shape(cc, row_bytes), "digests": digests}
            defines = kernel_defines(policy, 32, row_bytes, 1000, shape, utility_block(cc))
            work = root / f"{arch}-{policy.name}-{row_bytes}-{digests}"
            (work / "old").mkdir(parents=True)
            (work / "new").mkdir()
            before = _cubins(old / "embcache/kernels/cuda", old / "embcache/cuda_shared", arch, defines, work / "old")
            after = _cubins(gpu.CUDA_DIR, SHARED_INCLUDE, arch, defines, work / "new")
            kernels = {name for names in gpu.FAMILIES.values() for name in names}
            if not kernels <= set(after) or not kernels <= set(before):
                differ.append(f"kernels missing from the cubins: {sorted(kernels - (set(after) & set(before)))}")
            for name in sorted(set(before) | set(after)):
                if before.get(name) != after.get(name):
                    differ.append(f"{name} ({arch}, {policy.name}, {row_bytes}-byte rows, digests {digests})")
        return differ
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a covering subset of the configurations (as the test)")
    parser.add_argument("--same-code-as", metavar="REV", help="compare each kernel's SASS with commit REV's instead")
    args = parser.parse_args()
    if shutil.which("nvcc") is None:
        sys.exit("nvcc is not on PATH")
    start = time.time()
    if args.same_code_as:
        differ = same_code(args.same_code_as)
        print(*differ, sep="\n")
        print(f"{'no kernel' if not differ else len(differ)} differs from {args.same_code_as}'s "
              f"({time.time() - start:.0f} s)")
        sys.exit(1 if differ else 0)
    n = len(jobs(not args.quick))
    failures = check(not args.quick)
    print(*failures, sep="\n")
    print(f"{n - len(failures)} of {n} compiles passed in {time.time() - start:.0f} s")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
