"""Tiers describe themselves: ``Tier.device_source()``, the one capability a GPU cache reads a tier by.

Nothing outside embcache/tiers probes a tier for ``pinned``, ``reads_count`` or ``device_rows``; the
cache's zero-copy decision is ``tier.device_source() is not None``; a TieredStore offers none; the
multi-GPU wrapper forwards the capability under the tier's own lock; tiers import no kernels.
"""
from __future__ import annotations

import ast
import pathlib
import threading

import numpy as np
import pytest

import embcache
from embcache._source import DeviceSource
from embcache.kernels.gpu import gpu_available
from embcache.multi_gpu import _SharedTier
from embcache.tiers import HostStore, Tier, TieredStore

from .strategies import host, rows_for

PACKAGE = pathlib.Path(embcache.__file__).parent
GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]


class _Mapped(HostStore):
    """A host store that says the GPU may read it in place (a made-up source: CPU tests never launch)."""

    def device_source(self):
        assert self.lock._is_owned(), "device_source() was asked without the tier's lock held"
        return DeviceSource(0, 15, 0, self.dim, self.dtype, owner=self)


def test_a_tier_offers_no_device_source_unless_it_declares_one():
    assert Tier(4).device_source() is None
    assert HostStore(4).device_source() is None  # not pinned: the GPU cannot address it


def test_a_tiered_store_offers_none_even_over_a_tier_that_does():
    first = _Mapped(4)
    with first.lock:
        assert first.device_source() is not None
    assert TieredStore([first, HostStore(4)]).device_source() is None


def _probes(path: pathlib.Path) -> list[str]:
    """Where a module reads a tier's private capabilities: attributes or getattr/hasattr strings."""
    found = []
    names = {"pinned", "reads_count", "device_rows"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in names:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in names):
            found.append(f"{path.name}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
        if isinstance(node, ast.Constant) and node.value in names:  # a whitelist of names to forward
            found.append(f"{path.name}:{node.lineno} {node.value!r}")
    return found


def test_nothing_outside_the_tiers_probes_a_tier():
    """The capability is declared by the tier (device_source); no user asks for pinned/reads_count/device_rows."""
    tiers = PACKAGE / "tiers"
    found = [p for path in sorted(PACKAGE.rglob("*.py")) if tiers not in path.parents for p in _probes(path)]
    assert not found, found


def test_tiers_import_nothing_from_kernels():
    found = []
    for path in sorted((PACKAGE / "tiers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                if module.startswith("..kernels") or module.startswith("embcache.kernels"):
                    found.append(f"{path.name}:{node.lineno} from {module}")
            elif isinstance(node, ast.Import):
                found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names
                          if a.name.startswith("embcache.kernels")]
    assert not found, found


def test_the_multi_gpu_wrapper_forwards_the_source_under_the_tiers_own_lock():
    """One lock, the tier's: a replica's lookup holds tier.lock while it reads the source, and a shard's
    write must take the same lock, not a second one in the other order."""
    store = _Mapped(4)
    shared = _SharedTier(store)
    assert shared.lock is store.lock and shared._lock is store.lock
    with shared.lock:
        source = shared.device_source()
    assert source.owner is store and source.dim == 4

    # a thread holding the tier's lock and asking for the source, while another writes through the wrapper
    done = threading.Event()
    go = threading.Event()

    def write():
        go.wait(30)
        shared.put_many(np.arange(4), np.zeros((4, 4), np.float32))
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    with store.lock:
        go.set()
        shared.device_source()
    assert done.wait(30), "the write never got the tier's lock"
    writer.join(30)


def test_a_cpu_cache_never_asks_for_a_device_source():
    cache = embcache.Cache(64, 4, "lru", "always", "float32", "cpu", _Mapped(4), ways=4)
    cache.tier.put_many(np.arange(10), rows_for(np.arange(10), 4, "float32", seed=0))
    assert not cache._zero_copy
    out = cache.lookup(np.arange(12))
    assert out[:10].tobytes() == rows_for(np.arange(10), 4, "float32", seed=0).tobytes()


# ---------------------------------------------------------------------- on the GPU
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
@pytest.mark.parametrize("device_index", [True, False])
def test_a_pinned_host_store_describes_its_rows(device_index):
    store = HostStore(8, "float16", pinned=True, device_index=device_index)
    store.put_many(np.arange(100), rows_for(np.arange(100), 8, np.float16, seed=1))
    with store.lock:
        source = store.device_source()
        index, mask, rows = store.device_rows()
    assert isinstance(source, DeviceSource) and source.owner is store
    assert int(source.mask) == int(mask) and int(source.rows) == int(rows) and source.row_bytes == 16
    assert (source.index is index) if device_index else int(source.index) == int(index)
    counting = HostStore(8, pinned=True, capacity=10, overflow="least_used")
    assert counting.device_source() is None  # it must see every read: read on the host


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_gpu_cache_reads_on_the_host_a_pinned_store_that_offers_no_source(monkeypatch):
    """The decision is the capability, not the attributes: a pinned store whose device_source() is
    None is read with get_many, with the CPU cache's rows and stats."""
    class Declines(HostStore):
        def device_source(self):
            return None

    keys = np.arange(0, 2000, 3, dtype=np.int64)
    caches = []
    for backend, store in (("cpu", HostStore(16)), ("gpu", Declines(16, pinned=True))):
        store.put_many(keys, rows_for(keys, 16, "float32", seed=0))
        caches.append(embcache.Cache(128, 16, "lru", "always", "float32", backend, store, ways=16))
    cpu, gpu = caches
    assert not gpu._zero_copy

    def fetch(*args):
        raise AssertionError("gathered from a store that offers no device source")

    monkeypatch.setattr(gpu.tier, "gather_to_device", fetch)
    rng = np.random.default_rng(0)
    for _ in range(6):
        batch = rng.integers(0, 2100, 300)
        assert host(cpu.lookup(batch)).tobytes() == host(gpu.lookup(batch)).tobytes()
    assert cpu.stats.as_dict() == gpu.stats.as_dict()
