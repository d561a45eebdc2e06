"""Belady's MIN: the offline optimum hit rate of a cache of a given size on a trace.

One key at a time, demand fetching: a missed key is always brought in, and a
full cache evicts the key whose next use is farthest in the future (a key never
used again first).  No online policy can hit more often.  Two forms:

* fully associative: any key may take any slot (``belady_hits``);
* set-restricted: the same sets as ``embcache.Cache`` (key -> ``mix64(key) %
  num_sets``, ``ways`` slots each), so the gap between the two is what
  associativity costs (``belady_hits_in_sets``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .layout import sets_of

__all__ = ["next_uses", "belady_hits", "belady_hits_in_sets", "belady_curve"]


def next_uses(trace: np.ndarray) -> np.ndarray:
    """For each lookup, the index of the same key's next lookup (``len(trace)`` if none)."""
    n = trace.shape[0]
    order = np.argsort(trace, kind="stable")
    nxt = np.full(n, n, np.int64)
    same = trace[order[1:]] == trace[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    return nxt


@numba.njit(nogil=True, cache=True)
def _heap_push(heap_key, heap_item, size, key, item):
    i = size
    heap_key[i], heap_item[i] = key, item
    while i > 0:
        parent = (i - 1) // 2
        if heap_key[parent] >= heap_key[i]:
            break
        heap_key[i], heap_key[parent] = heap_key[parent], heap_key[i]
        heap_item[i], heap_item[parent] = heap_item[parent], heap_item[i]
        i = parent
    return size + 1


@numba.njit(nogil=True, cache=True)
def _heap_pop(heap_key, heap_item, size):
    top_key, top_item = heap_key[0], heap_item[0]
    size -= 1
    heap_key[0], heap_item[0] = heap_key[size], heap_item[size]
    i = 0
    while True:
        left, right, big = 2 * i + 1, 2 * i + 2, i
        if left < size and heap_key[left] > heap_key[big]:
            big = left
        if right < size and heap_key[right] > heap_key[big]:
            big = right
        if big == i:
            break
        heap_key[i], heap_key[big] = heap_key[big], heap_key[i]
        heap_item[i], heap_item[big] = heap_item[big], heap_item[i]
        i = big
    return top_key, top_item, size


@numba.njit(nogil=True, cache=True)
def _belady(ids, nxt, distinct, capacity):
    n = ids.shape[0]
    pending = np.full(distinct, -1, np.int64)  # a cached key's next use; -1 when not cached
    # max-heap of (next use, key); an entry is stale once its key's next use moved on
    heap_key = np.empty(n + 1, np.int64)
    heap_item = np.empty(n + 1, np.int64)
    size = cached = hits = 0
    for t in range(n):
        k = ids[t]
        if pending[k] >= 0:
            hits += 1
        else:
            if cached == capacity:
                while True:
                    when, victim, size = _heap_pop(heap_key, heap_item, size)
                    if pending[victim] == when:
                        break
                pending[victim] = -1
                cached -= 1
            cached += 1
        pending[k] = nxt[t]
        # one push per lookup, so the heap (16 bytes a lookup) never overflows
        size = _heap_push(heap_key, heap_item, size, nxt[t], k)
    return hits


@numba.njit(nogil=True, cache=True)
def _belady_sets(ids, sets, nxt, num_sets, ways):
    slot_key = np.full((num_sets, ways), -1, np.int64)
    slot_next = np.zeros((num_sets, ways), np.int64)
    hits = 0
    for t in range(ids.shape[0]):
        k, s = ids[t], sets[t]
        way = -1
        for w in range(ways):
            if slot_key[s, w] == k:
                way = w
                break
        if way >= 0:
            hits += 1
        else:
            far = -1
            for w in range(ways):
                if slot_key[s, w] < 0:  # an empty way
                    way = w
                    break
                if slot_next[s, w] > far:
                    far, way = slot_next[s, w], w
            slot_key[s, way] = k
        slot_next[s, way] = nxt[t]
    return hits


def _ids(trace: np.ndarray):
    _, ids = np.unique(trace, return_inverse=True)
    ids = ids.ravel().astype(np.int64)
    return ids, (int(ids.max()) + 1 if ids.shape[0] else 0)


def belady_hits(trace: np.ndarray, capacity: int) -> int:
    """Hits of an optimal fully associative cache of ``capacity`` keys on ``trace`` (one key at a time)."""
    trace = np.ascontiguousarray(trace, np.int64)
    if capacity <= 0 or not trace.shape[0]:
        return 0
    ids, distinct = _ids(trace)
    return int(_belady(ids, next_uses(trace), distinct, int(capacity)))


def belady_hits_in_sets(trace: np.ndarray, num_sets: int, ways: int) -> int:
    """Hits of an optimal cache restricted to ``Cache``'s sets: ``num_sets`` sets of ``ways`` slots."""
    trace = np.ascontiguousarray(trace, np.int64)
    if not trace.shape[0]:
        return 0
    ids, _ = _ids(trace)
    sets = sets_of(trace, num_sets).astype(np.int64)
    return int(_belady_sets(ids, sets, next_uses(trace), int(num_sets), int(ways)))


def belady_curve(trace: np.ndarray, capacities: Sequence[int], ways: int | None = None,
                 threads: int | None = None) -> list[int]:
    """Belady hits for several capacities at once, sharing the sort of the trace.

    Parameters
    ----------
    trace : (n,) int64
    capacities : slots per cache; with ``ways``, each must be a multiple of it
    ways : int, optional
        Restrict each cache to ``capacity // ways`` sets of ``ways`` (as ``belady_hits_in_sets``);
        fully associative if None.
    threads : int, optional
        Capacities run in parallel (the kernels release the GIL); default: one per capacity,
        at most the CPU count.  Each fully associative run holds a 16-bytes-a-lookup heap.

    Returns
    -------
    list of int, the hits for each capacity, in order.
    """
    trace = np.ascontiguousarray(trace, np.int64)
    if not trace.shape[0] or not len(capacities):
        return [0] * len(capacities)
    ids, distinct = _ids(trace)
    nxt = next_uses(trace)

    def one(capacity: int) -> int:
        if capacity <= 0:
            return 0
        if ways is None:
            return int(_belady(ids, nxt, distinct, int(capacity)))
        num_sets = int(capacity) // ways
        return int(_belady_sets(ids, sets_of(trace, num_sets), nxt, num_sets, int(ways)))

    workers = threads or max(1, min(len(capacities), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, capacities))
