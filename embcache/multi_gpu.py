"""Several caches as one: a full replica per GPU, or keys sharded over GPUs by hash.

* ``mode="replicated"`` (HPS's ``deployed_device_list``): each device holds a whole cache of
  ``capacity`` rows.  A lookup runs on the caller's device (CuPy's current device, or ``device=``);
  writes (insert, update, erase, preload, clear) go to every replica.  Callers on different GPUs
  run at once: each replica has its own lock.
* ``mode="sharded"`` (as TorchRec shards tables): key ``k`` belongs to shard
  ``shard_of(k) = (splitmix64(k) >> 32) % shards``; the high half of the hash, so that a shard's
  keys still spread over all of its cache's sets (which use the whole hash modulo the set count).
  A lookup splits the caller's keys by shard (stably: each shard sees its keys in the caller's
  order), sends each part to its shard's device (peer-to-peer copies), looks them up there, all
  shards at once, and brings the rows back to the caller's device in the caller's order.  Shard
  ``s``'s results and stats equal those of a single Cache of ``capacity_per_shard`` rows fed only
  the keys of shard ``s``.

``devices`` may repeat a device (several shards on one GPU) and ``backend="cpu"`` runs the same
routing on the CPU; that is how the routing is tested without several GPUs.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache import Cache
from .errors import ConfigError
from .layout import mix64_array
from .stats import Stats
from .tiers import Tier

if TYPE_CHECKING:  # the annotations only
    from .policies import Admission, Policy

__all__ = ["MultiGPUCache", "shard_of"]

MODES = ("replicated", "sharded")


def shard_of(keys: Any, shards: int, xp: Any = np) -> Any:
    """The shard of each key: ``(splitmix64(key) >> 32) % shards`` as int64 (NumPy or CuPy arrays)."""
    z = mix64_array(keys, xp)
    return ((z >> np.uint64(32)) % np.uint64(shards)).astype(xp.int64)


class MultiGPUCache:
    """One cache API over several devices.

    Parameters
    ----------
    capacity : int
        Replicated: rows per replica.  Sharded: rows in all, split evenly (``capacity_per_shard``
        rounded up).
    devices : sequence of int
        GPU ordinals, one replica or shard each (a device may repeat).
    mode : "replicated" or "sharded"
    backend : "gpu" or "cpu"
        ``"cpu"`` ignores the ordinals (one CPU cache per entry of ``devices``).
    Other parameters are ``embcache.Cache``'s, given to every replica or shard; the ``tier`` is
    shared by all of them.
    """

    def __init__(self, capacity: int, dim: int, policy: str | Policy = "lru", admission: str | Admission = "always",
                 dtype: str = "float32", devices: Sequence[int] = (0,), mode: str = "replicated",
                 backend: str = "gpu", tier: Tier | None = None, default: float | np.ndarray = 0.0,
                 ways: int = 32):
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if backend not in ("gpu", "cpu"):
            raise ConfigError(f"backend must be 'gpu' or 'cpu', got {backend!r}")
        devices = [int(d) for d in devices]
        if not devices or min(devices) < 0:
            raise ConfigError(f"devices must list GPU ordinals, got {devices!r}")
        if mode == "replicated" and len(set(devices)) != len(devices):
            raise ConfigError(f"replicated mode wants one replica per device; {devices} repeats one")
        if backend == "gpu":
            from .kernels.gpu import require_cupy

            cupy = require_cupy()
            count = cupy.cuda.runtime.getDeviceCount()
            if max(devices) >= count:
                raise ConfigError(f"devices {devices}: this machine has {count} GPU(s)")
            _enable_peer_access(cupy, sorted(set(devices)))
        if tier is None:
            from .tiers import HostStore

            tier = HostStore(dim, dtype)
            self._owns_tier = True
        else:
            self._owns_tier = False
        self.mode = mode
        self.devices = tuple(devices)
        self.backend = backend
        self.capacity_per_shard = -(-int(capacity) // len(devices)) if mode == "sharded" else int(capacity)
        self._tier = tier
        shared = _SharedTier(tier)
        self._caches: list[Cache] = []
        for d in devices:
            with self._on(d):
                self._caches.append(Cache(self.capacity_per_shard, dim, policy, admission, dtype, backend, shared,
                                          default, ways))
        self._pool = ThreadPoolExecutor(len(devices)) if len(devices) > 1 else None

    # ---- plumbing ----

    def _on(self, device: int):
        if self.backend == "cpu":
            import contextlib

            return contextlib.nullcontext()
        import cupy

        return cupy.cuda.Device(device)

    @property
    def shards(self) -> int:
        """How many caches: one per entry of ``devices``."""
        return len(self._caches)

    @property
    def caches(self) -> tuple[Cache, ...]:
        """The replicas or shards, in ``devices`` order."""
        return tuple(self._caches)

    def _xp(self):
        if self.backend == "cpu":
            return np
        import cupy

        return cupy

    def _caller(self, device: int | None) -> int:
        if device is not None:
            return int(device)
        if self.backend == "cpu":
            return self.devices[0]
        import cupy

        return cupy.cuda.Device().id

    def _each(self, fn, items):
        """``fn(i, item)`` for every shard, all at once when there are several."""
        if self._pool is None:
            return [fn(i, item) for i, item in enumerate(items)]
        return list(self._pool.map(lambda pair: fn(*pair), enumerate(items)))

    def _to(self, array, device: int):
        """``array`` on ``device`` (a peer-to-peer copy when it lives elsewhere), after its producer."""
        if self.backend == "cpu":
            return array
        import cupy

        if array.device.id == device:
            return array
        with array.device:
            done = cupy.cuda.Event()
            done.record()
        with cupy.cuda.Device(device):
            cupy.cuda.get_current_stream().wait_event(done)
            out = cupy.empty_like(array)
            out.data.copy_from_device_async(array.data, array.nbytes)
            return out

    def _split(self, keys, caller: int):
        """(order, parts): keys grouped by shard, stably, and each shard's part."""
        xp = self._xp()
        with self._on(caller):
            keys = xp.asarray(keys, dtype=xp.int64)
            if xp is not np:
                keys = self._to(keys, caller)
            owner = shard_of(keys, self.shards, xp)
            order = xp.argsort(owner, kind="stable") if xp is np else xp.argsort(owner)  # CuPy's sort is stable
            counts = xp.bincount(owner, minlength=self.shards)
            bounds = np.concatenate([[0], np.cumsum(counts.get() if xp is not np else counts)])
            grouped = keys[order]
        return order, [grouped[bounds[s]:bounds[s + 1]] for s in range(self.shards)]

    def _replica(self, device: int | None) -> Cache:
        caller = self._caller(device)
        if caller not in self.devices:
            raise ConfigError(f"no replica on device {caller}; replicas are on {list(self.devices)}")
        return self._caches[self.devices.index(caller)]

    # ---- the Cache API ----

    def lookup(self, keys: Any, device: int | None = None) -> Any:
        """Rows of ``keys`` (n,) on the caller's device, as ``Cache.lookup``: (n, dim).

        ``device``: the caller's GPU (default: CuPy's current device).  Replicated: that device's
        replica serves the lookup (a device with no replica is a ``ConfigError``).  Sharded: every
        shard looks up its keys at once and the rows come back in the caller's order.
        """
        if self.mode == "replicated":
            cache = self._replica(device)
            with self._on(cache_device := self.devices[self._caches.index(cache)]):
                return cache.lookup(self._to(self._xp().asarray(keys), cache_device)
                                    if self.backend == "gpu" else keys)
        return self._gathered(keys, device, lambda cache, part: (cache.lookup(part),))[0]

    def query(self, keys: Any, device: int | None = None) -> tuple[Any, Any]:
        """``(rows, found)`` as ``Cache.query``: no tier access, no state change."""
        if self.mode == "replicated":
            cache = self._replica(device)
            with self._on(self.devices[self._caches.index(cache)]):
                return cache.query(keys)
        return self._gathered(keys, device, lambda cache, part: cache.query(part))

    def _gathered(self, keys, device, fn) -> tuple:
        """``fn(shard cache, its keys)`` -> a tuple of arrays (one row per key) on every shard; each
        array reassembled on the caller's device in the caller's key order."""
        caller = self._caller(device)
        order, parts = self._split(keys, caller)
        total = sum(p.shape[0] for p in parts)

        def run(s, part):
            if not part.shape[0] and (s or total):  # a shard with no keys does nothing (its clock stays)
                return None
            with self._on(self.devices[s]):
                return fn(self._caches[s], self._to(part, self.devices[s]))

        results = self._each(run, parts)
        xp = self._xp()
        first = next(r for r in results if r is not None)
        outs = []
        with self._on(caller):
            for i, like in enumerate(first):
                out = xp.empty((order.shape[0],) + like.shape[1:], like.dtype)
                at = 0
                for r in results:  # each shard's rows straight to their places: no concatenated copy
                    if r is not None:
                        out[order[at:at + r[i].shape[0]]] = self._to(r[i], caller)
                        at += r[i].shape[0]
                outs.append(out)
        return tuple(outs)

    def _write(self, method: str, keys, rows=None) -> None:
        if self.mode == "replicated":
            def run(s, cache):
                with self._on(self.devices[s]):
                    args = (keys,) if rows is None else (keys, rows)
                    getattr(cache, method)(*[self._to(self._xp().asarray(a), self.devices[s])
                                             if self.backend == "gpu" else a for a in args])
            self._each(run, self._caches)
            return
        xp = self._xp()
        caller = self._caller(None)
        order, parts = self._split(keys, caller)
        if rows is not None:
            with self._on(caller):
                grouped_rows = xp.asarray(rows)[order]
            sizes = np.cumsum([0] + [p.shape[0] for p in parts])
            row_parts = [grouped_rows[sizes[s]:sizes[s + 1]] for s in range(self.shards)]

        def run(s, part):
            if not part.shape[0]:
                return
            with self._on(self.devices[s]):
                args = (self._to(part, self.devices[s]),)
                if rows is not None:
                    args += (self._to(row_parts[s], self.devices[s]),)
                getattr(self._caches[s], method)(*args)

        self._each(run, parts)

    def insert(self, keys: Any, rows: Any) -> None:
        """``Cache.insert`` of ``keys`` (n,) and ``rows`` (n, dim): on every replica, or on each key's shard."""
        self._write("insert", keys, rows)

    def update(self, keys: Any, rows: Any) -> None:
        """``Cache.update``: the tier and the cached copies (every replica, or each key's shard)."""
        self._write("update", keys, rows)

    def erase(self, keys: Any) -> None:
        """``Cache.erase`` of ``keys`` (n,): from every replica, or from each key's shard (not the tier)."""
        self._write("erase", keys)

    def preload(self, keys: Any) -> None:
        """``Cache.preload`` of ``keys`` (n,): into every replica, or into each key's shard."""
        self._write("preload", keys)

    def clear(self) -> None:
        """``Cache.clear`` on every replica or shard (the tier keeps its rows)."""
        for s, cache in enumerate(self._caches):
            with self._on(self.devices[s]):
                cache.clear()

    @property
    def stats(self) -> Stats:
        """Counters summed over the replicas or shards (occupancy: their mean)."""
        total = Stats()
        parts = [c.stats for c in self._caches]
        for p in parts:
            total.add(p)
        total.occupancy = float(np.mean([p.occupancy for p in parts]))
        total.last = None
        return total

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sharded: every shard's contents, ascending by key.  Replicated: the first replica's."""
        parts = [c.export() for c in (self._caches if self.mode == "sharded" else self._caches[:1])]
        keys, rows, scores = (np.concatenate([p[i] for p in parts]) for i in range(3))
        order = np.argsort(keys, kind="stable")
        return keys[order], rows[order], scores[order]

    def close(self) -> None:
        """Close every replica or shard, and the tier if this object made it."""
        for s, cache in enumerate(self._caches):
            with self._on(self.devices[s]):
                cache.close()
        if self._pool is not None:
            self._pool.shutdown()
        if self._owns_tier:
            self._tier.close()

    def __enter__(self) -> "MultiGPUCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SharedTier:
    """The one tier behind every replica or shard, one call at a time (shards run in threads).

    Its lock is the tier's own ``lock`` (reentrant), not a second one: a replica's lookup holds
    ``tier.lock`` while its kernels read the tier's device source, and a shard's write takes the
    same lock, so the two cannot wait on each other in opposite orders.
    """

    _CALLS = ("get_many", "put_many", "delete_many", "keys", "gather_to_device", "device_source")

    def __init__(self, tier: Tier):
        self._inner = tier
        self._lock = tier.lock

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if name in self._CALLS:
            def locked(*args, **kwargs):
                with self._lock:
                    return value(*args, **kwargs)
            return locked
        return value


def _enable_peer_access(cupy, devices: list[int]) -> None:
    """Let each pair of devices read each other's memory directly where the hardware allows."""
    for d in devices:
        with cupy.cuda.Device(d):
            for peer in devices:
                if peer != d and cupy.cuda.runtime.deviceCanAccessPeer(d, peer):
                    try:
                        cupy.cuda.runtime.deviceEnablePeerAccess(peer)
                    except cupy.cuda.runtime.CUDARuntimeError:  # already enabled
                        pass

