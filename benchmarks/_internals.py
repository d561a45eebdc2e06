"""The one module of ``benchmarks/`` that reads embcache's private members.

The GPU benchmarks time the backend's kernels one by one beside ``Cache.lookup`` (the probe alone, the
insertion alone, a ceiling over the cache's own row array), and they fill a cache to load factor 1.0
faster than lookups could.  None of that is public API, nor should it be: it is what a benchmark of the
internals needs.  So that knowledge lives here, once, and the benchmarks import it instead of each
reaching into ``Cache._backend`` (``tests/test_issue20_plan.py`` holds them to that).  When a private
member is renamed, this file is the one to change.

Nothing here is used by the package or its tests of behaviour.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

import numpy as np

import embcache
from embcache.autotune import fill_every_set as _fill_backend
from embcache.layout import EMPTY_KEY

__all__: list[str] = []  # a private helper: nothing here is for import outside benchmarks/


def backend(cache: embcache.Cache) -> Any:
    """The cache's backend (``embcache.kernels.gpu.GPUBackend`` or ``cpu.CPUBackend``): its arrays
    (``keys``, ``values``, ``table``, ``digests``) and kernel-level operations (``find``,
    ``find_and_gather``, ``insert_and_evict``, ``tally``), which the benchmarks time on their own."""
    return cache._backend


def fill_every_set(cache: embcache.Cache, seed: int = 0) -> None:
    """Insert distinct keys with random rows straight into the backend until every set is full (GPU),
    and bring ``len(cache)`` up to what the arrays hold."""
    b = backend(cache)
    _fill_backend(b, seed)
    cache._size = int((b.keys != EMPTY_KEY).sum())


def phase_kernels(cache: embcache.Cache) -> None:
    """Make a GPU cache's stream-ordered lookups run their miss path as a kernel a phase, the large batch's
    path, whatever their length (``tests/test_ordered.py``'s "a-kernel-a-phase" draws do the same)."""
    b = cache._backend
    b._small = b._small_one = 0


def kernel(cache: embcache.Cache, name: str) -> Any:
    """The backend's launcher of CUDA kernel ``name`` (one of ``embcache.kernels.gpu.FAMILIES``): called as a CuPy
    kernel is; ``.kernel`` is the compiled CuPy kernel."""
    return backend(cache)._k[name]


def kernel_defines(*args: Any, **kwargs: Any) -> dict:
    """``embcache.kernels.gpu._kernel_defines``: every #define a backend compiles its kernels with."""
    from embcache.kernels import gpu

    return gpu._kernel_defines(*args, **kwargs)


def host_rows(store: embcache.tiers.HostStore) -> np.ndarray:
    """A HostStore's row array (slots, dim), pinned host memory when the store is ``pinned``."""
    return store._values


@contextlib.contextmanager
def timed_phases(cache: embcache.Cache, totals: dict, synchronize):
    """Within the block, every call of the backend's lookup phases and of the tier fetch adds its seconds
    to ``totals`` (keyed by a label); ``synchronize()`` runs before and after each call (the device's).

    The host lookup's plan is timed at its class (``commit``, ``rollback``): plans are made per lookup.
    ``plan_or_hits`` counts as ``backend.plan_lookup`` (on the CPU it includes an all-hit batch's commit).
    """
    b = backend(cache)
    depth = [0]  # a phase called inside another (the GPU's plan_or_hits calls plan_lookup) is the outer's

    def wrap(owner, name: str, label: str, at_class: bool = False):
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            if depth[0]:
                return inner(*args, **kwargs)
            synchronize()
            depth[0] += 1
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                synchronize()
                totals[label] += time.perf_counter() - t
                depth[0] -= 1

        setattr(owner, name, timed)
        return owner, name, inner, at_class

    plan_class = sys.modules[type(b).__module__]._LookupPlan  # the class plan_lookup makes its plans of
    patched = [wrap(b, n, f"backend.{n}") for n in ("plan_lookup", "scatter", "insert_and_evict", "unique",
                                                   "sketch_add")]
    # the plain call's plan (on the CPU, an all-hit batch's commit with it): the same phase
    patched.append(wrap(b, "plan_or_hits", "backend.plan_lookup"))
    patched += [wrap(plan_class, n, f"plan.{n}", at_class=True) for n in ("commit", "rollback")]
    patched.append(wrap(cache, "_fetch", "tier fetch (Cache._fetch)"))
    try:
        yield
    finally:
        for owner, name, inner, at_class in patched:
            if at_class:
                setattr(owner, name, inner)
            else:
                delattr(owner, name)  # the instance attribute shadowed the class's method
