"""CUDA plumbing shared by the kernels and the tiers: CuPy import, NVRTC compilation, launch grids.

Neutral ground: it imports nothing from ``embcache.kernels`` or ``embcache.tiers``, so a tier that
owns a kernel (HostStore's index walk) and the cache's kernels both compile through it without
either knowing the other.  Nothing compiles at import time.
"""
from __future__ import annotations

import functools
import pathlib
from typing import TYPE_CHECKING

from .errors import MissingDependencyError
from .layout import EMPTY_KEY, LOCKED_KEY, MAX_SCORE, MIX_M1, MIX_M2

if TYPE_CHECKING:  # the annotations only
    from types import ModuleType

    import cupy

__all__ = ["require_cupy", "gpu_available", "compile_source", "launch_grid", "resident_blocks", "vector_bytes",
           "layout_defines", "SHARED_INCLUDE"]

#: headers every .cu file may include (``layout.cuh``: the key types, splitmix64, the sentinels)
SHARED_INCLUDE = pathlib.Path(__file__).with_name("cuda_shared")
_BLOCKS_PER_SM = 16  # grid-stride kernels: enough resident warps to hide memory latency


def require_cupy() -> ModuleType:
    """The cupy module, or a MissingDependencyError that names the pip extra."""
    try:
        import cupy
    except ImportError:
        from ._extras import install_hint

        raise MissingDependencyError(
            f"backend='gpu' needs CuPy: {install_hint('cuda')} (cupy-cuda13x; use the cupy wheel "
            "that matches your CUDA driver)"
        ) from None
    return cupy


@functools.lru_cache(maxsize=None)
def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, or no device: all mean "use the CPU"
        return False


def layout_defines() -> dict:
    """The ``#define``s of ``layout.cuh``: the sentinels and the splitmix64 multipliers, written once (layout.py)."""
    return {
        "EMPTY_KEY": f"({EMPTY_KEY + 1}LL - 1)",  # INT64_MIN has no literal of its own in C
        "LOCKED_KEY": f"({LOCKED_KEY}LL)",
        "MAX_SCORE": f"{MAX_SCORE}LL",
        "MIX_M1": f"{int(MIX_M1)}ULL",
        "MIX_M2": f"{int(MIX_M2)}ULL",
    }


@functools.lru_cache(maxsize=None)
def _module(device_id: int, path: str, define_items: tuple, include_dirs: tuple):
    cupy = require_cupy()
    # CuPy keys its on-disk kernel cache on the source text, not on the headers it includes: the
    # headers' digest goes into the text, so an edited (or upgraded) header never serves stale code
    text = (f"// headers {_headers_digest(include_dirs)}\n"
            + "".join(f"#define {k} {v}\n" for k, v in define_items) + pathlib.Path(path).read_text())
    options = ("-std=c++17", *(f"-I{d}" for d in include_dirs))
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=text, options=options)
        module.compile()
    return module


@functools.lru_cache(maxsize=None)
def _headers_digest(include_dirs: tuple) -> str:
    import hashlib

    digest = hashlib.sha256()
    for folder in include_dirs:
        for header in sorted(pathlib.Path(folder).glob("*.cuh")):
            digest.update(header.name.encode() + b"\0" + header.read_bytes())
    return digest.hexdigest()[:16]


def compile_source(path: str | pathlib.Path, defines: dict, include_dirs: tuple = ()) -> cupy.RawModule:
    """The CUDA file ``path`` compiled with ``defines`` prepended, for the current device (memoized).

    ``SHARED_INCLUDE`` and the file's own folder are always on the include path.
    """
    cupy = require_cupy()
    path = pathlib.Path(path)
    dirs = tuple(str(d) for d in (path.parent, SHARED_INCLUDE, *include_dirs))
    return _module(cupy.cuda.Device().id, str(path), tuple(sorted(defines.items())), dirs)


def launch_grid(threads: int, block: int) -> int:
    """Blocks for ``threads`` threads of grid-stride kernels: no more than the GPU keeps resident."""
    cupy = require_cupy()
    return max(1, min(-(-threads // block), resident_blocks(cupy.cuda.runtime.getDevice())))


def resident_blocks(device_id: int) -> int:
    """The most blocks a grid-stride kernel launches on device ``device_id``: its multiprocessors times 16."""
    return _multiprocessors(device_id) * _BLOCKS_PER_SM


@functools.lru_cache(maxsize=None)
def _multiprocessors(device_id: int) -> int:
    runtime = require_cupy().cuda.runtime
    return runtime.deviceGetAttribute(getattr(runtime, "cudaDevAttrMultiProcessorCount", 16), device_id)


def vector_bytes(row_bytes: int) -> int:
    """Widest word (16, 8, 4 or 2 bytes) that tiles a row exactly, so any dim has no tail to handle."""
    return min(16, row_bytes & -row_bytes)
