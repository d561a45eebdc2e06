"""CUDA plumbing shared by the kernels and the tiers: CuPy import, NVRTC compilation, launch grids, and the
garbage collector held off during CUDA-graph captures (``no_collection``).

Neutral ground: it imports nothing from ``embcache.kernels`` or ``embcache.tiers``, so a tier that
owns a kernel (HostStore's index walk) and the cache's kernels both compile through it without
either knowing the other.  Nothing compiles at import time.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import pathlib
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MissingDependencyError
from .layout import EMPTY_KEY, LOCKED_KEY, MAX_SCORE, MIX_M1, MIX_M2

if TYPE_CHECKING:  # the annotations only
    from types import ModuleType

    import cupy

__all__ = ["require_cupy", "gpu_available", "compile_source", "launch_grid", "resident_blocks", "vector_bytes",
           "layout_defines", "SHARED_INCLUDE", "Launcher"]

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


# the C type of each NumPy scalar type a kernel argument may be (as CuPy passes them); an argument of another
# type (a Python number, say) makes that launch go through CuPy's own ``RawKernel.__call__``
_CELLS = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.uint64: ctypes.c_uint64, np.uint32: ctypes.c_uint32,
          np.float64: ctypes.c_double, np.float32: ctypes.c_float}


_PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION


class _LaunchAttributeValue(ctypes.Union):
    """``CUlaunchAttributeValue`` of cuda.h: 64 bytes, of which a programmatic launch sets one int.  (Bytes
    as ``c_ubyte``: a ``c_char`` array reads back as a new ``bytes`` object, not as the field's memory.)"""
    _fields_ = [("raw", ctypes.c_ubyte * 64), ("flag", ctypes.c_int)]


class _LaunchAttribute(ctypes.Structure):
    """``CUlaunchAttribute`` of cuda.h: an id (an enum), padding to 8 bytes, then the 64-byte value."""
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_ubyte * 4), ("value", _LaunchAttributeValue)]


def _programmatic_attribute() -> _LaunchAttribute:
    """The attribute that lets a launch overlap the kernel before it (programmaticStreamSerializationAllowed)."""
    attribute = _LaunchAttribute(_PROGRAMMATIC_STREAM_SERIALIZATION)
    attribute.value.flag = 1
    return attribute


class _LaunchConfig(ctypes.Structure):
    """``CUlaunchConfig`` of cuda.h (``cuLaunchKernelEx``'s first argument)."""
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("shared_mem", ctypes.c_uint),
                ("stream", ctypes.c_void_p), ("attrs", ctypes.POINTER(_LaunchAttribute)),
                ("num_attrs", ctypes.c_uint)]


# what cuLaunchKernelEx answers a driver that does not take the attribute: CUDA_ERROR_INVALID_VALUE, _NOT_SUPPORTED
_REFUSED = (1, 801)
#: whether launchers made with ``programmatic=True`` use it (a switch for A/B measurements, not an option)
_PROGRAMMATIC_LAUNCH = True


@functools.lru_cache(maxsize=None)
def _launch_kernel_ex():
    """The driver's ``cuLaunchKernelEx`` (CUDA 12.0 on), or None where the driver has none."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
        function = driver.cuLaunchKernelEx
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.POINTER(_LaunchConfig), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return function


class Launcher:
    """A CuPy ``RawKernel`` launched by the driver (``cuLaunchKernel``) from arguments packed in place.

    Called as the kernel is, ``launcher(grid, block, args)`` (grid and block as tuples), on CuPy's current
    stream, with the launcher's device current (the device its kernel was loaded for).  CuPy converts
    every argument on every launch (14 us for the probe's 25 arguments on the H200 machine, against 5 us
    for the driver's launch itself: benchmarks/results/profiles/h200-2026-12-02-host/): a small stream-ordered
    lookup is two launches and mostly host time.  Here each argument has a C cell that keeps its value,
    and a launch rewrites only the cells whose argument is not the object the last launch got (arrays
    and the scalars that backends make once stay as they are).  Device arrays pass their data pointer and
    NumPy scalars their value, as CuPy passes them; a launch with any other argument type is CuPy's.
    The last launch's arrays are held by weak references (a launcher keeps no memory alive) and its
    scalars by strong ones, so an object that compares identical is the one whose value the cell holds.
    One launch at a time (a lock), should two threads share a launcher; a thread's first launch makes
    sure the thread has the device's context, as CuPy's launch does.  ``kernel`` is the CuPy kernel.

    ``programmatic``: launch it with programmatic stream serialization (``cuLaunchKernelEx``; sm_90 on,
    where the driver has it), so that it may start while the kernel before it on the stream ends.  The
    kernel must then call ``wait_for_prior_grid`` (cuda/common.cuh) before it reads anything its
    predecessor wrote, but what the predecessor has announced with ``release_flag`` (read after
    ``acquire_flag``); a captured launch becomes a programmatic edge of the graph.
    """

    __slots__ = ("_address", "_attribute", "_cells", "_config", "_ex", "_function", "_last", "_launch", "_local",
                 "_lock", "_ndarray", "_params", "_ready", "_stream", "_types", "kernel")

    def __init__(self, kernel: Any, programmatic: bool = False) -> None:
        cupy = require_cupy()
        self.kernel = kernel
        self._function = kernel.kernel.ptr  # loads the kernel for the current device (the caller's)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._last: list = []
        self._types: tuple = ()
        self._cells: list = []
        self._params = None
        self._address = 0
        self._launch = cupy.cuda.driver.launchKernel
        self._ndarray = cupy.ndarray
        self._stream = cupy.cuda.get_current_stream
        self._ready = cupy.cuda.runtime.memGetInfo  # a runtime call: it binds the device's context to the thread
        self._ex = _launch_kernel_ex() if programmatic and _PROGRAMMATIC_LAUNCH else None
        if self._ex is not None:  # one configuration, rewritten in place by each launch
            self._attribute = _programmatic_attribute()
            self._config = _LaunchConfig(attrs=ctypes.pointer(self._attribute), num_attrs=1)

    @property
    def programmatic(self) -> bool:
        """Whether its launches let it start while the kernel before it ends (see the class)."""
        return self._ex is not None

    @property
    def function(self) -> int:
        """The ``CUfunction`` it launches (its device's), for the driver's attribute calls."""
        return self._function

    def __call__(self, grid: tuple, block: tuple, args: tuple, shared_mem: int = 0) -> None:
        ndarray = self._ndarray
        with self._lock:
            if not getattr(self._local, "ready", False):
                self._ready()
                self._local.ready = True
            last = self._last
            if len(args) == len(last):
                try:
                    for i, (x, was, cell, kind) in enumerate(zip(args, last, self._cells, self._types)):
                        if x is was:
                            continue
                        if type(x) is not kind:
                            break  # repacked below
                        if kind is ndarray:
                            if was() is x:
                                continue
                            cell.value = x.data.ptr
                            last[i] = weakref.ref(x)
                        else:
                            cell.value = x.item()
                            last[i] = x
                    else:
                        self._go(grid, block, shared_mem)
                        return
                except BaseException:
                    self._last = []  # a cell may be ahead of its record: repack next time
                    raise
            if not self._pack(args):
                self._types, self._last = (), []
                self.kernel(grid, block, args, shared_mem=shared_mem)
                return
            self._go(grid, block, shared_mem)

    def _go(self, grid: tuple, block: tuple, shared_mem: int) -> None:
        # CuPy launches at least one block of one thread in each dimension: so does this
        if self._ex is not None:
            self._go_programmatic(grid, block, shared_mem)
        elif len(grid) == 1 and len(block) == 1:
            self._launch(self._function, grid[0] or 1, 1, 1, block[0] or 1, 1, 1, shared_mem, self._stream().ptr,
                         self._address, 0)
        else:
            gx, gy, gz = (max(1, g) for g in (*grid, 1, 1)[:3])
            bx, by, bz = (max(1, b) for b in (*block, 1, 1)[:3])
            self._launch(self._function, gx, gy, gz, bx, by, bz, shared_mem, self._stream().ptr, self._address, 0)

    def _go_programmatic(self, grid: tuple, block: tuple, shared_mem: int) -> None:
        config = self._config
        config.grid[:] = [max(1, g) for g in (*grid, 1, 1)[:3]]
        config.block[:] = [max(1, b) for b in (*block, 1, 1)[:3]]
        config.shared_mem = shared_mem
        config.stream = self._stream().ptr
        status = self._ex(ctypes.byref(config), self._function, self._address, None)
        if status in _REFUSED:  # a driver without the attribute: launches in plain stream order from now on
            self._ex = None
            self._go(grid, block, shared_mem)
        elif status:
            from cupy.cuda import driver

            raise driver.CUDADriverError(status)

    def _pack(self, args: tuple) -> bool:
        """Cells for ``args``, written; False (and nothing packed) if one has no C cell here."""
        ndarray, types, cells = self._ndarray, tuple(map(type, args)), []
        for x, kind in zip(args, types):
            cell = ctypes.c_void_p if kind is ndarray else _CELLS.get(kind)
            if cell is None:
                return False
            cells.append(cell(x.data.ptr if kind is ndarray else x.item()))
        self._params = (ctypes.c_void_p * max(1, len(cells)))(*[ctypes.addressof(c) for c in cells])
        self._cells, self._types = cells, types
        self._last = [weakref.ref(x) if kind is ndarray else x for x, kind in zip(args, types)]
        self._address = ctypes.addressof(self._params)
        return True


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


_collection_lock = threading.Lock()
_collection_holders = 0
_collection_was_enabled = False


@contextlib.contextmanager
def no_collection():
    """Hold off Python's cyclic garbage collector while the body runs (a CUDA-graph capture).

    A collection that frees pinned host memory (a tier's buffers in a garbage cycle) calls
    ``cudaFreeHost``, which voids a capture: one begun in thread-local mode when the capturing thread
    frees it, one begun in global mode when any thread does.  Re-entrant and shared between threads: the
    first holder disables the collector, and the last to leave enables it again if it was enabled when
    the first came (two threads capturing at once each stay covered until both are done).
    """
    global _collection_holders, _collection_was_enabled
    with _collection_lock:
        if not _collection_holders:
            _collection_was_enabled = gc.isenabled()
            gc.disable()
        _collection_holders += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collection_holders -= 1
            if not _collection_holders and _collection_was_enabled:
                gc.enable()
