"""CPU backend: Numba kernels over the set-associative arrays.

Arrays (``S = num_sets * ways`` slots, slot ``set * ways + way``):

* ``table_keys``: (S,) int64, ``EMPTY_KEY`` where a slot is free;
* ``digests``: (S,) uint8, ``digest_of(table_keys[s])`` wherever slot ``s`` holds a key (a free slot's is
  stale: a digest only ever narrows which keys a probe compares);
* ``scores``: (S,) int64;
* ``values``: (S, dim) rows, viewed as same-width unsigned ints so copies are bit-exact.

Kernels that depend on a policy's score rules are compiled from the policy's
expressions by :func:`policy_kernels` (the source comes from ``kernels._rules``), once per
distinct pair of rules.
"""
from __future__ import annotations

import contextlib
import functools
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from .._checks import gather_rules
from .._dtypes import raw
from ..errors import ConfigError
from .._llvm import copy_bytes, match8, match16, match32, match64, prefetch, prefetch_row
from ..layout import EMPTY_KEY, LOCKED_KEY, MAX_SCORE, digest_of, mix64, new_set_state, set_and_digest, set_of
from . import _rules
from ._backend import _OncePlan
from ._shared import GOLDEN, OUTCOMES

if TYPE_CHECKING:  # the annotations only
    from .._source import DeviceSource
    from ..policies import Policy

__all__ = ["CPUBackend", "policy_kernels", "age_kernel", "kernel_cache_dir", "sat_add", "sketch_column",
           "sketch_estimate", "hand_victim", "hand_walk", "next_use", "s3fifo_place", "frequency_victim",
           "gather_and_touch", "probe_and_touch"]

_MAX = np.int64(MAX_SCORE)
_EMPTY = np.int64(EMPTY_KEY)
_LOCKED = np.int64(LOCKED_KEY)  # every reserved key is <= this
_MAX_KEY = np.int64(2**63 - 1)
_NO_SKETCH = np.zeros((0, 1), np.int64)  # insert_and_evict_cpu's victim_sketch when there is no comparison
_NO_SKIP = np.zeros(0, np.bool_)  # hand_walk's skip when every way is seen
_NO_PROTECT = np.zeros(0, np.int64)  # insert_and_evict_cpu's protect and ranks when nothing is protected
_NO_MISSES = np.zeros(0, np.int64)  # a plan's missed when every key hit (read only, never written)
# a one-key batch's inverse and last (unique) and its list of misses (plan_lookup): one shared array, read
# only so that no caller can change it for the next (its readers index with it in NumPy; never passed to a
# kernel, where a read-only array would be another compiled signature); counts are copied (kernels read them)
_ZERO_1, _ONE_1 = np.zeros(1, np.int64), np.ones(1, np.int64)
_ZERO_1.flags.writeable = False
#: keys a placement may have to take the one-call path (insert_tally_cpu): a small batch's placement costs
#: mostly its dispatch, a larger one's its keys
_SMALL_PLACEMENT = 64


@numba.njit(inline="always", nogil=True, cache=True)
def sat_add(a: np.int64, b: np.int64) -> np.int64:
    """a + b stopping at MAX_SCORE, for any int64 a and b (below it the sum wraps, as the rule evaluator
    says): the test is on b > 0 so that MAX_SCORE - b cannot overflow for a negative a."""
    if b > 0 and a > _MAX - b:
        return _MAX
    return a + b


@numba.njit(inline="always", nogil=True, cache=True)
def _walks_first(after_a, pos_a, way_a, after_b, pos_b, way_b):
    """Whether a hand's walk reaches slot a before slot b: the slots after the hand come first, then
    the rest, each part in (position, way) order."""
    if after_a != after_b:
        return after_a
    if pos_a != pos_b:
        return pos_a < pos_b
    return way_a < way_b


@numba.njit(nogil=True, cache=True)
def hand_walk(scores: np.ndarray, hands: np.ndarray, set_index: int, base: int, ways: int,
              skip: np.ndarray) -> int:
    """The way a missed key takes in the full set at slot ``base`` under ``victim = "hand"`` (see
    ``embcache.policies._base``): the walk's visited bits cleared in ``scores``, ``hands[set_index]``
    (``[position, way]``, way -1 for none) moved to the victim.

    The walk is not stepped: its stop is the first unvisited slot in walk order (after the hand, then
    from the first), or the first slot in that order when every slot is visited (the walk then clears
    every bit and comes round to it); the bits it clears are those of the visited slots before its stop,
    or all of them.  ``cuda/insert_one.cuh`` computes the same with warp reductions.

    ``skip`` (lookahead, ``Cache.lookup(upcoming=)``): (ways,) bool, the ways the walk does not see (a
    key of ``upcoming``): it neither stops at them nor clears their bits, as if they were not in the
    set; whether the hand becomes none still counts every slot.  Empty: every way is seen.
    """
    guarded = skip.shape[0] > 0
    hand_pos, hand_way = hands[set_index, 0], hands[set_index, 1]
    stop, stop_after, stop_pos = -1, False, np.int64(0)  # the first unvisited slot in walk order
    first, first_after, first_pos = -1, False, np.int64(0)  # the first slot in walk order
    for w in range(ways):
        if guarded and skip[w]:
            continue
        s = scores[base + w]
        pos = s - (s & 1)
        after = hand_way < 0 or pos > hand_pos or (pos == hand_pos and w > hand_way)
        if first < 0 or _walks_first(after, pos, w, first_after, first_pos, first):
            first, first_after, first_pos = w, after, pos
        if (s & 1) == 0 and (stop < 0 or _walks_first(after, pos, w, stop_after, stop_pos, stop)):
            stop, stop_after, stop_pos = w, after, pos
    full_turn = stop < 0
    if full_turn:
        stop, stop_after, stop_pos = first, first_after, first_pos
    last = True  # no slot is after the victim in (position, way) order: the hand becomes none
    for w in range(ways):
        s = scores[base + w]
        pos = s - (s & 1)
        if pos > stop_pos or (pos == stop_pos and w > stop):
            last = False
        after = hand_way < 0 or pos > hand_pos or (pos == hand_pos and w > hand_way)
        seen = not (guarded and skip[w])
        if s & 1 and seen and (full_turn or _walks_first(after, pos, w, stop_after, stop_pos, stop)):
            scores[base + w] = s - 1
    hands[set_index, 0] = 0 if last else stop_pos
    hands[set_index, 1] = -1 if last else stop
    return stop


@numba.njit(nogil=True, cache=True)
def hand_victim(scores: np.ndarray, hands: np.ndarray, set_index: int, base: int, ways: int) -> int:
    """The way a missed key takes in the full set at slot ``base`` under ``victim = "hand"``: :func:`hand_walk`
    with every way seen."""
    return hand_walk(scores, hands, set_index, base, ways, _NO_SKIP)


@numba.njit(inline="always", nogil=True, cache=True)
def next_use(sorted_keys: np.ndarray, ranks: np.ndarray, key: np.int64) -> np.int64:
    """Lookahead: ``ranks[i]`` where ``sorted_keys[i] == key`` (ascending int64, binary search), else -1 (the
    key is not protected).  A rank is where the key first occurs in the window (``Cache.lookup(upcoming=)``)."""
    i = np.searchsorted(sorted_keys, key)
    if i < sorted_keys.shape[0] and sorted_keys[i] == key:
        return ranks[i]
    return np.int64(-1)


@numba.njit(inline="always", nogil=True, cache=True)
def _s3fifo_oldest(scores, base, ways, main):
    """The way of the oldest key (lowest score) of the small (main = 0) or main (4) FIFO of a full set, or -1."""
    best = -1
    for w in range(ways):
        s = scores[base + w]
        if (s & 4) == main and (best < 0 or s < scores[base + best]):
            best = w
    return best


@numba.njit(nogil=True, cache=True)
def s3fifo_place(table_keys: np.ndarray, scores: np.ndarray, state: np.ndarray, set_index: int, base: int,
                 ways: int, key: int, empty: int) -> tuple:
    """``(way, score)`` of a missed ``key`` under ``victim = "s3fifo"`` (``embcache.policies.S3FIFO``): the
    set's FIFOs moved and its ghost updated in ``scores`` and ``state[set_index]``; ``empty`` is the set's
    first empty way or -1 (then the way is the evicted key's).

    A score is ``sequence * 8 + main * 4 + freq`` (freq 0..3, the hit rule's); ``state[set_index]`` is
    ``[sequence, evicted yet, ghost keys (G), ghost stamps (G)]``, stamp 0 an empty ghost entry.
    """
    small_size, g = max(1, ways // 10), ways * 9 // 10
    st = state[set_index]
    from_ghost = False
    for j in range(g):
        if st[2 + g + j] != 0 and st[2 + j] == key:
            st[2 + g + j] = 0
            from_ghost = True
            break
    way = empty
    while way < 0:  # the set is full: evict (one pass may only move small's keys to main)
        st[1] = 1
        small = 0
        for w in range(ways):
            small += (scores[base + w] & 4) == 0
        if ways - small > ways - small_size or small == 0:
            while way < 0:
                w = _s3fifo_oldest(scores, base, ways, 4)
                f = scores[base + w] & 3
                if f >= 1:
                    st[0] += 1
                    scores[base + w] = st[0] * 8 + 4 + f - 1
                else:
                    way = w
        else:
            while way < 0 and small > 0:
                w = _s3fifo_oldest(scores, base, ways, 0)
                if scores[base + w] & 3 >= 2:
                    st[0] += 1
                    scores[base + w] = st[0] * 8 + 4
                    small -= 1
                else:
                    way = w
                    _s3fifo_ghost(st, g, table_keys[base + w])
    small = 0
    for w in range(ways):
        small += w != way and table_keys[base + w] != _EMPTY and (scores[base + w] & 4) == 0
    main = from_ghost or (st[1] == 0 and small >= small_size)
    st[0] += 1
    return way, st[0] * 8 + (4 if main else 0)


@numba.njit(inline="always", nogil=True, cache=True)
def _s3fifo_ghost(st, g, key):
    """``key`` into the set's ghost FIFO (``st``: its state row) unless there: an empty entry, else the oldest."""
    at = -1
    for j in range(g):
        stamp = st[2 + g + j]
        if stamp != 0 and st[2 + j] == key:
            return
        if at < 0 or (st[2 + g + at] != 0 and (stamp == 0 or stamp < st[2 + g + at])):
            at = j
    if at >= 0:
        st[0] += 1
        st[2 + at] = key
        st[2 + g + at] = st[0]


@numba.njit(inline="always", nogil=True, cache=True)
def sketch_column(key: np.int64, row: int, seed: np.uint64, width: int) -> np.int64:
    """Column of ``key`` in count-min sketch row ``row`` (see ``MinFrequency``)."""
    h = mix64(np.uint64(key) + np.uint64(row + 1) * GOLDEN + np.uint64(seed))
    return np.int64(h & np.uint64(width - 1))


# a set's matching way as one bit of a mask (no branch per way), then the lowest set bit's index: at
# 8 to 64 ways the mask is one vector compare (_llvm.match32 ...), elsewhere a loop whose bits come from
# a table (a 32-way probe of 14 ns became 4 ns, the loop's signed indices having compiled to gathers)
_WAY_BITS = np.array([1 << w for w in range(64)], np.uint64)


@numba.njit(inline="always", nogil=True, cache=True)
def _ways_matching(table_keys, ways, base, key):
    """The ways of the set at slot ``base`` that hold ``key``, as bits of a uint64 (ways <= 64): of the keys
    (int64), or of the digests (uint8, ``key`` a digest)."""
    if ways == 32:
        return match32(table_keys, base, key)
    if ways == 16:
        return match16(table_keys, base, key)
    if ways == 64:
        return match64(table_keys, base, key)
    if ways == 8:
        return match8(table_keys, base, key)
    hit = np.uint64(0)
    for w in range(ways):
        hit |= _WAY_BITS[w] * np.uint64(table_keys[base + w] == key)
    return hit


@numba.njit(inline="always", nogil=True, cache=True)
def _probe_set(table_keys, ways, num_sets, key):
    return _probe_at(table_keys, ways, set_of(key, num_sets) * ways, key)


@numba.njit(inline="always", nogil=True, cache=True)
def _probe_at(table_keys, ways, base, key):
    """Slot holding ``key`` in the set at slot ``base``, or -1 (the lowest way, were it held twice)."""
    if ways > 64:
        for w in range(ways):
            if table_keys[base + w] == key:
                return base + w
        return -1
    hit = _ways_matching(table_keys, ways, base, key)
    if hit == 0:
        return -1
    return base + np.int64(trailing_zeros(hit))  # the lowest way, were the key held twice


@numba.njit(inline="always", nogil=True, cache=True)
def sketch_estimate(sketch: np.ndarray, seed: np.uint64, key: np.int64) -> np.int64:
    """The count-min estimate of ``key``: the minimum of its counters over the rows of ``sketch`` (depth, width)."""
    depth, width = sketch.shape
    best = _MAX
    for r in range(depth):
        best = min(best, sketch[r, sketch_column(key, r, seed, width)])
    return best


@numba.njit(inline="always", nogil=True, cache=True)
def _singleton_chance(chance: np.ndarray, key: np.int64, estimate: np.int64) -> np.int64:
    """TinyLFUTables' second rank: the return chance of ``key``'s table if its estimate is 1, else 0
    (also 0 without chances: ``chance`` empty)."""
    if estimate != 1 or chance.shape[0] == 0:
        return np.int64(0)
    return chance[(key >> 32) & (chance.shape[0] - 1)]


@numba.njit(inline="always", nogil=True, cache=True)
def frequency_victim(table_keys: np.ndarray, scores: np.ndarray, base: int, ways: int, sketch: np.ndarray,
                     seed: np.uint64, key: np.int64, new: np.int64, chance: np.ndarray) -> int:
    """``victim_by_frequency`` (TinyLFUEvict) in the full set at slot ``base``: the way of the lowest
    ``(estimate, chance, score, way)``, or -1 when ``key`` with its new score ``new`` is not greater than
    that key's ``(estimate, chance, score)`` (the newcomer is the least: refused).  ``chance``: the (64,)
    per-table return chances of TinyLFUTables (``_singleton_chance``), or empty (the rank is 0).
    ``cuda/insert_one.cuh`` does the same."""
    low, low_est, low_chance = -1, _MAX, np.int64(0)
    for w in range(ways):
        x = table_keys[base + w]
        e = sketch_estimate(sketch, seed, x)
        c = _singleton_chance(chance, x, e)
        if low < 0 or e < low_est or (e == low_est and (c < low_chance or (
                c == low_chance and scores[base + w] < scores[base + low]))):
            low, low_est, low_chance = w, e, c
    mine = sketch_estimate(sketch, seed, key)
    mine_chance = _singleton_chance(chance, key, mine)
    if mine > low_est or (mine == low_est and (mine_chance > low_chance or (
            mine_chance == low_chance and new > scores[base + low]))):
        return low
    return -1


@numba.njit(inline="always", nogil=True, cache=True)
def probe(table_keys, ways, key):
    """Slot holding ``key``, or -1: a scan of the key's set (the lowest way, were it held twice)."""
    return _probe_set(table_keys, ways, table_keys.shape[0] // ways, key)


@numba.njit(nogil=True, cache=True)
def digests_of(table_keys: np.ndarray, digests: np.ndarray) -> None:
    """digests[s] = digest_of(table_keys[s]) for every slot (after the keys were replaced wholesale)."""
    for s in range(table_keys.shape[0]):
        digests[s] = digest_of(table_keys[s])


@numba.njit(inline="always", nogil=True, cache=True)
def _probe_digests(table_keys, digests, ways, base, key):
    """Slot holding ``key`` in the set at slot ``base``, or -1: the keys behind matching digests, lowest
    way first (so the lowest way, were the key held twice, as ``_probe_at``)."""
    candidates = _ways_matching(digests, ways, base, digest_of(key))
    while candidates:
        w = np.int64(trailing_zeros(candidates))
        if table_keys[base + w] == key:
            return base + w
        candidates &= candidates - np.uint64(1)
    return np.int64(-1)


#: keys a probe's prefetch hint runs ahead of its compare (a 65,536-key probe on the 2-core dev machine:
#: 333-361 us at 8 to 32 keys ahead, 425-438 us without a hint)
_AHEAD = 16


@numba.njit(inline="always", nogil=True, cache=True)
def _probe_all(table_keys, digests, ways, keys, slots, missed, listed):
    """slots[i] = the slot of keys[i] or -1; with ``listed``, missed[:m] = the indices of the m misses;
    returns m.  Inlined into each kernel twice, once with ``ways`` the constant 32 (the default: its
    compares unroll).  Two passes: the first compares each key's digest with its set's (a byte a slot, an
    eighth of the keys' bytes: a 131,072-slot cache's fit the core's L2) and keeps the first matching way as
    the key's likely slot (-1 for none: a miss); the second reads the key behind each likely slot, after a
    prefetch hint ``_AHEAD`` keys earlier, so that those random reads overlap.  A wrong guess (about 1 in 8
    of a 32-way set's misses, 1 in 256 a way by chance) compares the set's other matching ways.  Against
    comparing every way's key (4 cache lines a 32-way set): a 65,536-key probe 305-335 us against 556 on
    the dev machine.  ``keys`` hold no reserved key (``_count_reserved`` and ``check_keys`` keep them
    out): a free slot's digest is stale, so what a reserved key would find is unspecified."""
    num_sets = table_keys.shape[0] // ways
    n = keys.shape[0]
    for i in range(n):
        set_index, digest = set_and_digest(keys[i], num_sets)
        base = set_index * ways
        if ways > 64:  # no vector compare of that width: every way's key, so the slot is the answer itself
            slots[i] = _probe_at(table_keys, ways, base, keys[i])
            continue
        candidates = _ways_matching(digests, ways, base, digest)
        slots[i] = base + np.int64(trailing_zeros(candidates)) if candidates else np.int64(-1)
    for i in range(min(_AHEAD, n)):  # the hints the loop's first keys would have had
        if slots[i] >= 0:
            prefetch(table_keys, slots[i])
    m = 0
    for i in range(n):
        if i + _AHEAD < n and slots[i + _AHEAD] >= 0:
            prefetch(table_keys, slots[i + _AHEAD])
        slot = slots[i]
        if slot >= 0 and table_keys[slot] != keys[i]:
            slot = _probe_digests(table_keys, digests, ways, slot - slot % ways, keys[i])
            slots[i] = slot
        if slot < 0:
            if listed:
                missed[m] = i
            m += 1
    return m


#: rows a gather's prefetch hints run ahead of its copies (65,536 rows of 128 bytes on the 2-core dev
#: machine, with the touch: 412-433 us at 32 rows ahead, 429-456 at 16, 553-605 without hints)
_ROWS_AHEAD = 32


@numba.njit(inline="always", nogil=True, cache=True)
def _copy_hit_rows(values, slots, out, nbytes):
    n = slots.shape[0]
    for i in range(min(_ROWS_AHEAD, n)):  # the hints the loop's first rows would have had
        if slots[i] >= 0:
            prefetch_row(values, slots[i], nbytes)
    for i in range(n):
        if i + _ROWS_AHEAD < n and slots[i + _ROWS_AHEAD] >= 0:
            prefetch_row(values, slots[i + _ROWS_AHEAD], nbytes)
        slot = slots[i]
        if slot >= 0:
            copy_bytes(out, i, values, slot, nbytes)


@numba.njit(inline="always", nogil=True, cache=True)
def _gather_rows(values, slots, out):
    """out[i] = values[slots[i]] for every slot >= 0.  After all the probes, not between them: the
    probes' compares and the rows' memory reads then overlap instead of taking turns.  A row of a
    common size is copied at that constant size (a few vector moves, not a memcpy call)."""
    nbytes = values.shape[1] * values.itemsize
    if nbytes == 128:  # dim 32 float32, dim 64 16-bit
        _copy_hit_rows(values, slots, out, 128)
    elif nbytes == 256:
        _copy_hit_rows(values, slots, out, 256)
    elif nbytes == 512:
        _copy_hit_rows(values, slots, out, 512)
    else:
        _copy_hit_rows(values, slots, out, nbytes)


@numba.njit(nogil=True, cache=True)
def find_cpu(table_keys, digests, ways, keys, slots):
    """slots[i] = slot holding keys[i], or -1.  keys (n,) int64, slots (n,) int64."""
    if ways == 32:
        _probe_all(table_keys, digests, 32, keys, slots, slots, False)
    else:
        _probe_all(table_keys, digests, ways, keys, slots, slots, False)


@numba.njit(nogil=True, cache=True)
def find_and_gather_cpu(table_keys, digests, values, ways, keys, out, slots):
    """find_cpu, and out[i] = values[slots[i]] for every hit; returns the number of hits."""
    if ways == 32:
        misses = _probe_all(table_keys, digests, 32, keys, slots, slots, False)
    else:
        misses = _probe_all(table_keys, digests, ways, keys, slots, slots, False)
    _gather_rows(values, slots, out)
    return keys.shape[0] - misses


@numba.njit(nogil=True, cache=True)
def probe_hits_cpu(table_keys, digests, values, ways, keys, out, slots, missed, gather_all_hits=True):
    """find_and_gather_cpu that also lists the misses: missed[:m] = the indices of the m missed keys, in
    order (``missed`` has room for every key); returns m.  The host lookup's probe (``plan_lookup``, through
    ``probe_and_touch``).  Without ``gather_all_hits``, a batch whose every key hit leaves its rows to
    ``gather_and_touch``."""
    if ways == 32:
        m = _probe_all(table_keys, digests, 32, keys, slots, missed, True)
    else:
        m = _probe_all(table_keys, digests, ways, keys, slots, missed, True)
    if m or gather_all_hits:
        _gather_rows(values, slots, out)
    return m


@numba.njit(inline="always", nogil=True, cache=True)
def _touch_one(scores, slot, clock, hit_fn):
    """The hit rule at ``clock`` applied to one hit of ``slot``: 1 if it stored a new score, else 0 (a score
    the rule leaves as it was is not stored)."""
    new = hit_fn(scores[slot], clock, np.int64(1))
    if new != scores[slot]:
        scores[slot] = new
        return 1
    return 0


@numba.njit(inline="always", nogil=True, cache=True)
def _copy_and_touch(values, slots, out, scores, clock, hit_fn, nbytes):
    stored = 0
    n = slots.shape[0]
    for i in range(min(_ROWS_AHEAD, n)):  # the hints the loop's first rows would have had
        prefetch_row(values, slots[i], nbytes)
        prefetch(scores, slots[i])
    for i in range(n):
        if i + _ROWS_AHEAD < n:
            ahead = slots[i + _ROWS_AHEAD]
            prefetch_row(values, ahead, nbytes)
            prefetch(scores, ahead)
        slot = slots[i]
        copy_bytes(out, i, values, slot, nbytes)
        stored += _touch_one(scores, slot, clock, hit_fn)
    return stored


@numba.njit(inline="always", nogil=True, cache=True)
def gather_and_touch(values: np.ndarray, slots: np.ndarray, out: np.ndarray, scores: np.ndarray, clock: int,
                     hit_fn: Callable[..., Any]) -> int:
    """out[i] = values[slots[i]] for ``slots`` that are all hits, and the hit rule ``hit_fn`` applied at
    ``clock`` to each occurrence in order, as each policy module's ``touch_cpu`` does; returns the scores
    stored.  Inlined into each policy module's ``gather_touch_cpu`` with its own ``hit_fn``.  One pass
    for both: the score stores overlap the row copies' memory reads (a 65,536-key lookup ~150 us less
    than a pass of each).  Four copies of the loop, three at a constant row size: with a fifth (64 bytes)
    the 128-byte copy took 537 us for 65,536 rows where with these four it takes 463-467 (the dev
    machine; why, not found), and a call of its own for the rest cannot take ``hit_fn`` and stay cached."""
    nbytes = values.shape[1] * values.itemsize
    if nbytes == 128:  # dim 32 float32, dim 64 16-bit
        return _copy_and_touch(values, slots, out, scores, clock, hit_fn, 128)
    if nbytes == 256:
        return _copy_and_touch(values, slots, out, scores, clock, hit_fn, 256)
    if nbytes == 512:
        return _copy_and_touch(values, slots, out, scores, clock, hit_fn, 512)
    return _copy_and_touch(values, slots, out, scores, clock, hit_fn, nbytes)


@numba.njit(inline="always", nogil=True, cache=True)
def _count_reserved(keys):
    """How many of ``keys`` are reserved: a vectorised minimum, then a count only if one is."""
    low = _MAX_KEY
    for i in range(keys.shape[0]):
        low = min(low, keys[i])
    if low > _LOCKED:
        return 0
    count = 0
    for i in range(keys.shape[0]):
        count += keys[i] <= _LOCKED
    return count


@numba.njit(inline="always", nogil=True, cache=True)
def probe_and_touch(table_keys: np.ndarray, digests: np.ndarray, values: np.ndarray, ways: int, keys: np.ndarray,
                    out: np.ndarray, slots: np.ndarray, missed: np.ndarray, scores: np.ndarray, clock: int,
                    touches: bool, hit_fn: Callable[..., Any]) -> int:
    """The host lookup's probe in one call (``CPUBackend.plan_lookup``): the slots, the misses and the hits'
    rows as :func:`probe_hits_cpu` gives them, and when every key hit and ``touches``, the hit rule
    ``hit_fn`` applied at ``clock`` to each occurrence in order, as :func:`gather_and_touch` does.
    Returns ``m`` in ``1..n`` when ``m`` of the ``n`` keys missed (``missed[:m]``; no score changed);
    ``-1 - stored`` when every key hit and the rule was applied (``stored``: the scores it stored); 0
    when every key hit and nothing was touched; ``n + r`` when ``r`` keys are reserved sentinels (no
    score changed; the slots, misses and rows then mean nothing).  Inlined into each policy module's
    ``probe_touch_cpu``: one dispatch, not two.  The probe is a pass, and the rows with the touch another,
    at every batch size.  (Until 2026-12-04 batches of up to 16,384 keys copied each row 16 keys behind its
    probe and touched in a third pass: faster on a batch whose sets the caches hold, 16.3 against 17.8 us at
    1,024 keys, but slower on the trace of the cachetools bar, whose keys come from the whole cache, on the
    2-core dev machine: 53.7-53.8 against 36.3-36.4 us at 1,024 keys, 657-671 against 403-410 at 16,384.)"""
    n = keys.shape[0]
    reserved = _count_reserved(keys)
    if reserved:
        return n + reserved
    m = probe_hits_cpu(table_keys, digests, values, ways, keys, out, slots, missed, not touches)
    if m or not touches:
        return m
    return -1 - gather_and_touch(values, slots, out, scores, clock, hit_fn)


@numba.njit(nogil=True, cache=True)
def scatter_cpu(out, where, rows, inverse):
    """out[where[i]] = rows[inverse[i]]: a lookup's missed rows into its output (raw row bits)."""
    for i in range(where.shape[0]):
        out[where[i], :] = rows[inverse[i]]


@numba.njit(nogil=True, cache=True)
def _tally(outcome, codes):
    """How many entries of ``outcome`` hold each code in ``range(codes)``: (codes,) int64."""
    counts = np.zeros(codes, np.int64)
    for i in range(outcome.shape[0]):
        counts[outcome[i]] += 1
    return counts


@numba.njit(nogil=True, cache=True)
def erase_cpu(table_keys, scores, ways, keys):
    """Free the slots of ``keys`` (unique); returns how many were cached."""
    erased = 0
    for i in range(keys.shape[0]):
        slot = probe(table_keys, ways, keys[i])
        if slot >= 0:
            table_keys[slot] = _EMPTY
            scores[slot] = 0
            erased += 1
    return erased


@numba.njit(nogil=True, cache=True)
def update_cpu(table_keys, values, ways, keys, rows):
    """Overwrite the rows of those ``keys`` (unique) that are cached; returns how many."""
    updated = 0
    for i in range(keys.shape[0]):
        slot = probe(table_keys, ways, keys[i])
        if slot >= 0:
            values[slot, :] = rows[i]
            updated += 1
    return updated


@numba.njit(nogil=True, cache=True)
def sketch_cpu(sketch, seed, keys, counts, estimate):
    """Add counts[i] to every sketch row's counter of keys[i]; then estimate[i] = min over rows.

    Batch-synchronous: every estimate sees all of the batch's additions, so the
    result does not depend on the order in which keys are processed.
    """
    depth, width = sketch.shape
    for i in range(keys.shape[0]):
        for r in range(depth):
            c = sketch_column(keys[i], r, seed, width)
            sketch[r, c] = sat_add(sketch[r, c], counts[i])
    for i in range(keys.shape[0]):
        estimate[i] = sketch_estimate(sketch, seed, keys[i])


def kernel_cache_dir() -> pathlib.Path | None:
    """The folder for generated kernel modules (Numba caches their machine code beside them).

    ``$EMBCACHE_KERNEL_CACHE`` if set, else ``$NUMBA_CACHE_DIR/embcache-kernels`` if that is set, else
    ``$XDG_CACHE_HOME/embcache/kernels`` (``~/.cache/embcache/kernels``); when none of these can be
    made and written, a folder of this user's own (mode 0700) under the temporary directory.  None when
    no folder is usable: the kernels are then compiled in memory, every process, as before.
    """
    import os
    import tempfile

    candidates = []
    if os.environ.get("EMBCACHE_KERNEL_CACHE"):
        candidates.append(pathlib.Path(os.environ["EMBCACHE_KERNEL_CACHE"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        candidates.append(pathlib.Path(os.environ["NUMBA_CACHE_DIR"]) / "embcache-kernels")
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    candidates.append(pathlib.Path(xdg) / "embcache" / "kernels")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(pathlib.Path(tempfile.gettempdir()) / f"embcache-{uid}" / "kernels")
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            st = folder.stat()
        except OSError:
            continue
        # an imported file runs as code: only a folder this user owns and others cannot write will do
        if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & 0o022):
            continue
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    return None


def _policy_module_text(new_score: str, hit_score: str, age_score: str = "score", victim: str = "lowest") -> str:
    from .. import __version__

    return _rules.numba_module(new_score, hit_score, __version__, age_score, victim) + _PROBE_TOUCH_TEXT


# appended to each policy module (its hit_fn, the rule; the rest is this module's): the host lookup's
# probe and, when every key hit, its gather and touch, as one compiled call (probe_and_touch); and the
# placement of a batch that no sketch, lookahead or table chance takes part in, with its tally, as one
# call of 13 arguments where it was two of 22 (a Numba call costs ~0.05 us an argument: issue 22's bar
# for a one-key miss)
_PROBE_TOUCH_TEXT = '''

from embcache.kernels.cpu import probe_and_touch


@numba.njit(nogil=True, cache=True)
def probe_touch_cpu(table_keys, digests, values, ways, keys, out, slots, missed, scores, clock, touches):
    # CPUBackend.plan_lookup's one call: the probe, then (every key hit, touches) the rows and this
    # rule's touch at clock, else the hits' rows; returns m > 0, -1 - stored, 0, or n + reserved keys
    return probe_and_touch(table_keys, digests, values, ways, keys, out, slots, missed, scores, clock, touches,
                           hit_fn)


@numba.njit(nogil=True, cache=True)
def insert_tally_cpu(table_keys, digests, scores, values, ways, keys, counts, rows, admit, clock, refuse_below_min,
                     hands, tally):
    # CPUBackend.insert_and_evict without a sketch, lookahead or table chances: insert_and_evict_cpu with
    # the stand-ins it then never reads made here, and its outcomes counted into tally (5,) by code
    n = keys.shape[0]
    outcome = np.empty(n, np.int8)
    evicted = np.empty(n, np.int64)
    none = np.zeros(0, np.int64)
    insert_and_evict_cpu(table_keys, digests, scores, values, ways, keys, counts, rows, admit, clock,
                         refuse_below_min, outcome, evicted, np.zeros((0, 1), np.int64), np.uint64(0), hands, False,
                         none, none, none)
    tally[:] = 0
    for i in range(n):
        tally[outcome[i]] += 1
'''


def _source_digest() -> str:
    """A hash of the sources the generated kernels compile in (Numba does not notice their changes)."""
    import hashlib

    from .. import _llvm, layout
    from . import _shared

    h = hashlib.sha256(numba.__version__.encode())
    for module in (layout, _shared, _rules, _llvm, __import__(__name__, fromlist=["_"])):
        h.update(pathlib.Path(module.__file__).read_bytes())
    return h.hexdigest()


def _import_policy_module(text: str):
    """Write ``text`` as a module under ``kernel_cache_dir()`` (once) and import it; None if impossible."""
    import hashlib
    import importlib.util
    import os
    import sys

    folder = kernel_cache_dir()
    if folder is None:
        return None
    name = "_embcache_policy_" + hashlib.sha256((text + _source_digest()).encode()).hexdigest()[:24]
    if name in sys.modules:
        return sys.modules[name]
    path = folder / f"{name}.py"
    try:
        current = path.read_text() if path.exists() else None
        if current != text:  # rewrite only when absent or damaged: a new mtime would void Numba's cache
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text)
            os.replace(tmp, path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except OSError:
        sys.modules.pop(name, None)
        return None
    return module


@functools.lru_cache(maxsize=None)
def _policy_module(new_score: str, hit_score: str, age_score: str, victim: str):
    # the texts become source code: _rules checks them again (callers may bypass Policy)
    text = _policy_module_text(new_score, hit_score, age_score, victim)
    module = _import_policy_module(text)
    if module is None:  # no writable cache folder: compile in memory, as every process did before
        import types

        module = types.ModuleType("_embcache_policy_in_memory")
        # checked rules only; cache=True needs a source file, which there is none of here
        exec(compile(text.replace(", cache=True)", ")"), "<embcache policy kernels>", "exec"), module.__dict__)
    return module


def policy_kernels(new_score: str, hit_score: str, age_score: str = "score",
                   victim: str = "lowest") -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``touch`` and ``insert_and_evict`` for one policy's score rules, compiled once per machine.

    The rules are the policy's expression texts (see ``embcache.policies``); ``score`` is 0 in
    ``new_score``.  ``embcache.kernels._rules`` writes them into a module under :func:`kernel_cache_dir`
    whose kernels are ``cache=True``, so Numba keeps their machine code on disk and later processes load
    it instead of compiling (set ``NUMBA_CACHE_DIR`` or ``EMBCACHE_KERNEL_CACHE`` to move it).  Whether
    ``touch`` is needed is the policy's trait ``hit_changes_score``, which the backend reads.  ``touch``
    returns how many scores it stored (a hit whose rule leaves the score as it was stores nothing).
    ``victim`` is the policy's: with ``"hand"`` or ``"s3fifo"``, ``insert_and_evict``'s last argument is
    the per-set state (``layout.new_set_state``).
    """
    module = _policy_module(new_score, hit_score, age_score, victim)
    return module.touch_cpu, module.insert_and_evict_cpu


def age_kernel(new_score: str, hit_score: str, age_score: str, victim: str = "lowest") -> Callable[..., Any]:
    """The aging pass of a policy with an ``age_period``: ``age(table_keys, scores, clock)`` applies
    ``age_score`` to every occupied slot's score (from the module :func:`policy_kernels` uses)."""
    return _policy_module(new_score, hit_score, age_score, victim).age_cpu


@numba.njit(nogil=True, cache=True)
def _unique(keys):
    """``CPUBackend.unique`` in one compiled pass after a stable sort (a small batch's miss path is mostly
    the Python of the NumPy version)."""
    n = keys.shape[0]
    order = np.argsort(keys, kind="mergesort")  # stable: a run's last position is its last occurrence
    u = 0
    for j in range(n):
        if j == 0 or keys[order[j]] != keys[order[j - 1]]:
            u += 1
    ukeys = np.empty(u, np.int64)
    counts = np.zeros(u, np.int64)
    last = np.empty(u, np.int64)
    inverse = np.empty(n, np.int64)
    r = -1
    for j in range(n):
        i = order[j]
        if j == 0 or keys[i] != keys[order[j - 1]]:
            r += 1
            ukeys[r] = keys[i]
        counts[r] += 1
        last[r] = i
        inverse[i] = r
    return ukeys, inverse, counts, last


_ALIGN = 128  # bytes: a pair of cache lines, which the L2's adjacent-line prefetcher fetches together


def _aligned_zeros(shape: tuple, dtype: Any) -> np.ndarray:
    """``np.zeros(shape, dtype)`` whose first byte is a multiple of 128 (``_ALIGN``) bytes: then a set's
    32 keys (256 bytes) are 4 cache lines, not 5, and a 128-byte row (dim 32 float32) 2, not 3, where
    malloc's 16-byte alignment left them (a 1,024-key lookup ~14% faster: issue 22's CPU bar)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.zeros(nbytes + _ALIGN, np.uint8)  # calloc: untouched pages stay unallocated, as np.zeros's
    start = -buf.ctypes.data % _ALIGN
    return buf[start:start + nbytes].view(dtype).reshape(shape)


class _LookupPlan(_OncePlan):
    """``CPUBackend.plan_lookup``'s plan (``Backend.LookupPlan``).  A probe with a miss changed nothing:
    the commit does all of the hits' work and a rollback has nothing to put back.  A probe that found
    every key has nothing that can fail after it, and plan_lookup applied the hit rule with the rows'
    copy, at the coming tick's clock (``stored``: the scores it stored, -1 if it did not): the commit
    then ticks, and so does the rollback, as the GPU's does.  A probe that met ``reserved`` keys changed
    nothing either (the Cache raises ReservedKeyError and rolls it back)."""

    __slots__ = ("slots", "missed", "reserved", "keys", "invalid", "_backend", "_stored")

    def __init__(self, backend: CPUBackend, keys: np.ndarray, invalid: int, slots: np.ndarray, missed: np.ndarray,
                 stored: int = -1, reserved: int = 0):
        self.slots, self.missed, self.reserved, self._backend, self._stored = slots, missed, reserved, backend, stored
        self.keys, self.invalid = keys, invalid

    def commit(self) -> None:
        """Advance the clock, then apply the hit rule once per occurrence of every hit's slot (unless
        plan_lookup did: then the tick alone, which plan_lookup made sure does not age)."""
        backend = self._end("commit")
        if self._stored < 0:
            # a batch of misses alone stores no score: its touch is left out (a call's cost, no more)
            if self.missed.shape[0] < self.slots.shape[0]:
                backend._tick_and_touch(self.slots)
            else:
                backend.tick()
        else:
            backend.clock += 1
            backend.score_writes += self._stored

    def rollback(self) -> None:
        """Nothing to put back: the probe changed nothing (or found every key: then as ``commit``)."""
        if self._stored < 0:
            self._end("rollback")
        else:
            self.commit()


class CPUBackend:
    """The cache arrays in host memory and the Numba kernels that work on them.

    Parameters
    ----------
    num_sets, ways : int
        Layout; ``num_sets * ways`` slots.
    dim : int
        Values per row.
    dtype : numpy.dtype
        Row dtype (float32, float16 or bfloat16).
    policy : embcache.policies.Policy
        Supplies the score rules compiled into ``touch`` and ``insert_and_evict``.
    sketch_shape : (depth, width) or None
        Count-min sketch of missed keys, when the admission policy has one.
    """

    name = "cpu"

    def __init__(self, num_sets: int, ways: int, dim: int, dtype: np.dtype | str, policy: Policy,
                 sketch_shape: tuple[int, int] | None = None, sketch_seed: int = 0):
        self.ways = ways
        slots = num_sets * ways
        self.keys = _aligned_zeros((slots,), np.int64)
        self.keys.fill(EMPTY_KEY)
        self.digests = _aligned_zeros((slots,), np.uint8)  # digest_of each slot's key (free slots' stale)
        self.scores = _aligned_zeros((slots,), np.int64)
        self.values = _aligned_zeros((slots, dim), dtype)
        self._raw_values = raw(self.values)
        self._raw_dtype = self._raw_values.dtype
        # float32 rows go to the lookup kernels as they are (Numba has no float16 or bfloat16: their bits)
        self._copies_into_rows = self.values.dtype == np.float32
        rule = policy.rule()
        touch, self._insert = policy_kernels(rule["new_score"], rule["hit_score"], rule.get("age_score", "score"),
                                             policy.victim)
        # every set's hand (victim = "hand"), else None; the kernel then gets a stand-in it never reads
        self.hands = new_set_state(policy.victim, num_sets, ways)
        self._hands_arg = np.zeros((1, 2), np.int64) if self.hands is None else self.hands
        self._victim = policy.victim
        self._touch = touch if policy.hit_changes_score else None  # the policy's trait, not its text
        # set: an all-hit probe applies the hit rule itself (probe_and_touch; the large batches' pass is this
        # kernel's, gather_and_touch); None: the commit's touch does (tests set it for the plain path)
        module = _policy_module(rule["new_score"], rule["hit_score"], rule.get("age_score", "score"), policy.victim)
        self._gather_touch = None if self._touch is None else module.gather_touch_cpu
        # the probe and (every key hit, _gather_touch set) that pass, in one call (probe_and_touch)
        self._probe_touch = module.probe_touch_cpu
        self._insert_tally = module.insert_tally_cpu  # insert_and_evict's one call when nothing else takes part
        self._small_tally = np.zeros(len(OUTCOMES), np.int64)  # that call's tally, rewritten by each
        self._missed = np.empty(1024, np.int64)  # plan_lookup's list of misses, grown to the largest batch
        # the policy's aging pass (Policy.age_period): at every tick to a multiple of the period
        self._age_period = int(policy.age_period) if policy.ages else 0
        self._age = age_kernel(rule["new_score"], rule["hit_score"], rule["age_score"], policy.victim) if self._age_period else None
        #: scores the hit path has stored since the backend was made (one per hit occurrence whose rule
        #: changed its score); a measure for studies, counted on the CPU backend only
        self.score_writes = 0
        self.sketch = None if sketch_shape is None else np.zeros(sketch_shape, np.int64)
        self._sketch_seed = np.uint64(sketch_seed)
        self.dtype = np.dtype(dtype)
        self.dim = dim
        self.clock = 0
        self._default = np.zeros(dim, self.dtype)  # until set_default

    # ------------------------------------------------------------------ arrays in and out
    # the same names as GPUBackend's, so Cache is written once for both
    xp = np
    #: missed rows are read on the host (``Tier.get_many``), never from a device source
    reads_device_sources = False
    #: reserved keys are refused on the host before any work
    checks_reserved_keys = True
    replay_graphs = False  # no CUDA graphs here: Cache(graphs=True) sets it and nothing reads it

    def on_stream(self, stream: Any) -> contextlib.AbstractContextManager:
        """A context that does nothing: streams are a GPU matter (``ConfigError`` unless ``stream`` is None)."""
        if stream is not None:
            raise ConfigError("stream= is for the GPU backend; this cache runs on the CPU")
        return contextlib.nullcontext()

    def capturing(self) -> bool:
        """Always False: there is no CUDA graph capture on the CPU."""
        return False

    def to_device(self, array: Any) -> np.ndarray:
        """``array`` as a contiguous NumPy array (a copy only when it is not one already)."""
        # the array itself when it is one already: the call returns it (34 ns, where testing its type, ndim and
        # flags in Python took 87; a miss path makes two)
        return np.ascontiguousarray(array)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        """``array`` itself: host memory is all there is."""
        return array

    def new_rows(self, n: int) -> np.ndarray:
        """An uninitialised (n, dim) array of the row dtype, for a lookup's output."""
        return np.empty((n, self.dim), self.dtype)

    def set_default(self, default: np.ndarray) -> None:
        """Keep ``default``, (dim,) of the row dtype: the row ``find_and_gather(fill_misses=True)`` gives misses."""
        self._default = default

    def tick(self) -> None:
        """Advance the batch clock by one; at a multiple of the policy's ``age_period``, then age every score."""
        self.clock += 1
        if self._age_period and self.clock % self._age_period == 0:
            self._age(self.keys, self.scores, np.int64(self.clock))

    def set_clock(self, clock: int) -> None:
        """Set the batch clock to ``clock`` (``Cache.load``)."""
        self.clock = int(clock)

    # the members of the GPU backend's stream-ordered lookup, so that Cache asks both the same way
    def current_stream(self) -> int:
        """0: there are no CUDA streams on the CPU."""
        return 0

    def record_event(self) -> None:
        """None: work on the CPU is done when a call returns."""
        return None

    def wait_event(self, event: Any) -> None:
        """Nothing to wait for on the CPU."""

    def synchronize(self) -> None:
        """Nothing to wait for on the CPU."""

    @property
    def max_batch(self) -> int:
        """0: the CPU backend has no stream-ordered lookup (``reads_device_sources`` is False)."""
        return 0

    def reserve(self, max_batch: int, deferred: bool = False) -> None:
        """Nothing to reserve: the CPU backend's lookups need no scratch made ahead."""

    def flush_pending(self) -> None:
        """Nothing pending: a deferred insertion on the CPU is the Cache's (``Cache._flush``)."""

    #: no CUDA device
    device_id = None

    @property
    def default(self) -> np.ndarray:
        """The row misses get (``set_default``'s), (dim,) of the row dtype."""
        return self._default

    @staticmethod
    def found_in_source(slots: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Whether the keys at indices ``at`` were found in a device source: never on the CPU, which reads
        none, but computed as the GPU backend does (a slot below -1 is a source row)."""
        return slots[at] != -1

    def count_source_misses(self, keys: np.ndarray, slots: np.ndarray, misses: int) -> tuple[int, int]:
        """``(distinct missed keys, how many of those are in neither the cache nor a source)``, as the GPU
        backend counts them after a probe of a source (on the CPU every miss is in neither)."""
        missed = slots < 0
        distinct = np.unique(keys[missed])
        absent = np.unique(keys[missed & (slots == -1)])
        return int(distinct.shape[0]), int(absent.shape[0])

    def lookup_ordered(self, keys: Any, out: Any, source: Any, admit_mode: int, hit_rate: float,
                       refuse_below_min: bool, sketch_threshold: int, index_rows: int = 0,
                       defer_at: float = -1.0) -> None:
        """Refused: a stream-ordered lookup reads a tier's device source, which the CPU backend never does."""
        raise ConfigError("the CPU backend has no stream-ordered lookup: it reads tiers on the host "
                          "(reads_device_sources is False)")

    def absorb_ordered(self) -> tuple[dict, None]:
        """No stream-ordered lookups on the CPU: zero counters, and no last batch."""
        return {"lookups": 0, "misses": 0, "unique": 0, "absent": 0, "admitted": 0,
                "outcomes": np.zeros(len(OUTCOMES), np.int64), "invalid": 0, "batches": 0}, None

    def scatter(self, out: np.ndarray, where: np.ndarray, rows: np.ndarray, inverse: np.ndarray) -> None:
        """``out[where[i]] = rows[inverse[i]]``: missed rows into a lookup's output (``where``, ``inverse``: int64)."""
        if where.shape[0] == 1:  # one missed key: a row copy costs less than the call
            if out.shape[0] == 1 and rows.shape[0] == 1:  # of a one-key lookup: the whole output
                out[...] = rows
            else:
                out[where.item()] = rows[inverse.item()]
        else:
            scatter_cpu(raw(out), where, raw(rows), inverse)

    @staticmethod
    def unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(ukeys, inverse, counts, last)`` of keys (n,): ascending unique keys, each key's index into
        them, multiplicities, and the position of each unique key's last occurrence."""
        if keys.shape[0] == 1:  # one key (a one-key lookup's miss): nothing to sort, two new arrays
            return keys.astype(np.int64), _ZERO_1, _ONE_1.copy(), _ZERO_1
        return _unique(np.ascontiguousarray(keys, dtype=np.int64))

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(keys (S,) int64, scores (S,) int64, rows (S, dim))``: the arrays themselves, not copies (read
        them only: a key written there would also need its digest, ``digests_of``)."""
        return self.keys, self.scores, self.values

    def release(self) -> None:
        """Drop the arrays (``Cache.close``); the backend is unusable afterwards."""
        self.keys = self.digests = self.scores = self.values = self.sketch = self._raw_values = self.hands = None

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Slot of every key or -1: keys (n,) int64 -> (n,) int64."""
        slots = np.empty(keys.shape[0], np.int64)
        find_cpu(self.keys, self.digests, self.ways, keys, slots)
        return slots

    def query(self, keys: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, int]:
        """``Backend.query``: ``find_and_gather`` with the default row for misses; ``(found, 0)`` (reserved
        keys were refused by ``check_keys``)."""
        slots, _, reserved = self.find_and_gather(keys, out, fill_misses=True)
        return slots >= 0, reserved

    def find_and_gather(self, keys: np.ndarray, out: np.ndarray,
                        fill_misses: bool = False) -> tuple[np.ndarray, int, int]:
        """Slots of ``keys`` (n,) and cached rows copied into ``out`` (n, dim): ``(slots, misses, 0)``.

        With ``fill_misses`` the default row goes to the misses.  (The last item
        counts reserved keys, which ``check_keys`` has already refused here.)
        """
        slots = np.empty(keys.shape[0], np.int64)
        hits = find_and_gather_cpu(self.keys, self.digests, self._raw_values, self.ways, keys, raw(out), slots)
        if fill_misses:
            out[slots < 0] = self._default
        return slots, keys.shape[0] - int(hits), 0

    def plan_lookup(self, keys: np.ndarray, out: np.ndarray, source: DeviceSource | None = None,
                    index_rows: int = 0) -> _LookupPlan:
        """Probe ``keys`` (n,) int64 and copy the hits' rows into ``out`` (n, dim), in one pass: the host
        lookup's plan (``Backend.plan_lookup``).  ``index_rows`` > 0: Gather's rules first (``plan.keys``,
        ``plan.invalid``).

        When a key misses, nothing changes until the plan is committed: ``commit``
        ticks the clock and applies the hit rule, ``rollback`` has nothing to put
        back.  When every key hits, nothing can fail after the probe: the rows are
        copied and the hit rule applied at the coming tick's clock in one pass (unless
        that tick ages the scores), as the GPU's probe does; the plan then only ticks.
        ``reserved`` counts the reserved keys (``check_keys`` refuses them first except on
        ``Cache.lookup``'s plain call with int64 keys, which leaves them to this probe): such
        a plan changed nothing.  ``source`` is always None here: rows read in place are a GPU matter.
        """
        invalid = 0
        if index_rows:
            keys, invalid = gather_rules(np, keys, index_rows)
        slots, got = self._probe_rows(keys, out)
        return self._plan(keys, invalid, slots, got)

    def plan_or_hits(self, keys: np.ndarray, out: np.ndarray) -> _LookupPlan | None:
        """``plan_lookup(keys, out)``, except that a batch whose every key hit, with the hit rule applied
        along with the rows' copy, is committed here: None (a small lookup's cost is mostly Python: the
        plan and its commit are about a tenth of a 1,024-key lookup, issue 22's CPU bars)."""
        slots, got = self._probe_rows(keys, out)
        if got < 0:  # the plan's commit (a tick that plan_lookup made sure does not age), without the plan
            self.clock += 1
            self.score_writes += -1 - got
            return None
        return self._plan(keys, 0, slots, got)

    def _probe_rows(self, keys: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, int]:
        """The probe with the hits' rows into ``out``: ``(slots, got)``, ``got`` as ``probe_touch_cpu``'s
        (more than n: reserved keys; 1..n: misses; -1 - stored: every key hit, the hit rule applied with the
        copy and ``stored`` scores stored; 0: every key hit, the rule left to the commit)."""
        n = keys.shape[0]
        slots = np.empty(n, np.int64)
        missed = self._missed  # scratch: the misses are copied out of it (an all-hit batch allocates less)
        if missed.shape[0] < n:
            missed = self._missed = np.empty(max(n, 2 * missed.shape[0]), np.int64)
        rows = out if self._copies_into_rows else out.view(self._raw_dtype)  # the kernels copy bytes
        clock = self.clock + 1  # the commit's tick
        touches = self._gather_touch is not None and not (self._age_period and clock % self._age_period == 0)
        return slots, self._probe_touch(self.keys, self.digests, self._raw_values, self.ways, keys, rows, slots,
                                        missed, self.scores, clock, touches)

    def _plan(self, keys: np.ndarray, invalid: int, slots: np.ndarray, got: int) -> _LookupPlan:
        n = keys.shape[0]
        if got > n:
            return _LookupPlan(self, keys, invalid, slots, _NO_MISSES, -1, got - n)
        if got > 0:  # a one-key miss's list is [0]: the shared constant, not a copy
            return _LookupPlan(self, keys, invalid, slots, _ZERO_1 if n == 1 else self._missed[:got].copy())
        return _LookupPlan(self, keys, invalid, slots, _NO_MISSES, -1 - got if got else -1)

    def _tick_and_touch(self, slots: np.ndarray) -> None:
        """Advance the clock (aging at a multiple of ``age_period``), then apply the hit rule once per
        occurrence of ``slots`` (-1 entries skipped)."""
        self.tick()
        if self._touch is not None and slots.shape[0]:
            self.score_writes += int(self._touch(self.scores, slots, np.int64(self.clock)))

    def insert_and_evict(self, keys: np.ndarray, counts: np.ndarray, rows: np.ndarray, admit: np.ndarray,
                         refuse_below_min: bool, compares_victim: int = 0, protect: Any = None,
                         chance: Any = None) -> None:
        """Insert unique ascending ``keys`` (u,) with ``rows`` (u, dim) where ``admit`` (u,) bool, at the clock.

        ``compares_victim`` (``Admission.victim_mode``): 1 (TinyLFU), a key enters a full set only if its
        sketch estimate is greater than its victim's; 2 (TinyLFUEvict), the sketch picks the victim
        (``frequency_victim``); 3 (TinyLFUTables), as 2 with ``chance``, the (64,) int64 per-table return
        chances (``embcache._table_chance``).  ``protect`` (lookahead, ``Cache.lookup(upcoming=)``; not
        with modes 2 and 3):
        None, or ``(keys, ranks)``, ascending distinct int64 keys (p,) and where each first occurs in the
        window (p,) int64: a full set's victim is the policy's choice among the ways whose keys are not
        protected; when every way's key is, the one of the farthest first occurrence goes, and only for a
        key that occurs before it (else the key is refused, outcome REFUSED).  ``tally`` then counts the
        keys of each outcome code.
        """
        n = keys.shape[0]
        if n <= _SMALL_PLACEMENT and not (compares_victim or protect is not None or chance is not None):
            # a small batch's common placement (no sketch, lookahead or table chances): one call, tally
            # included; a larger one takes the general call below, whose extra arguments cost it nothing
            # the kernel zeroes the backend's own tally before it counts (tally() is read at once: Cache._place)
            self._tally = tally = self._small_tally
            if n:
                # the clock as a Python int: Numba types it int64 as np.int64's, without making one
                self._insert_tally(self.keys, self.digests, self.scores, self._raw_values, self.ways, keys, counts,
                                   raw(rows), admit, self.clock, bool(refuse_below_min), self._hands_arg, tally)
            else:
                tally.fill(0)
            return
        outcome = np.empty(n, np.int8)
        evicted = np.empty(n, np.int64)
        if n:
            self._insert(self.keys, self.digests, self.scores, self._raw_values, self.ways, keys, counts, raw(rows),
                         admit, np.int64(self.clock), bool(refuse_below_min), outcome, evicted,
                         self.sketch if compares_victim else _NO_SKETCH, self._sketch_seed, self._hands_arg,
                         int(compares_victim) >= 2, _NO_PROTECT if chance is None else chance,
                         *((_NO_PROTECT, _NO_PROTECT) if protect is None else protect))
        self._tally = _tally(outcome, len(OUTCOMES))

    def tally(self) -> np.ndarray:
        """How many keys of the last ``insert_and_evict`` got each outcome code: (5,) int64, which the next
        small placement may overwrite (read it before)."""
        return self._tally

    def update(self, keys: np.ndarray, rows: np.ndarray) -> int:
        """Overwrite cached rows of unique ``keys``; returns how many were cached."""
        return int(update_cpu(self.keys, self._raw_values, self.ways, keys, raw(rows)))

    def erase(self, keys: np.ndarray) -> int:
        """Remove unique ``keys``; returns how many were cached."""
        return int(erase_cpu(self.keys, self.scores, self.ways, keys))

    def clear(self) -> None:
        """Empty every slot, zero every score and make every hand none; the clock and the sketch stay."""
        self.keys.fill(EMPTY_KEY)
        self.scores.fill(0)
        if self.hands is not None:
            self.hands[:] = new_set_state(self._victim, self.hands.shape[0], self.ways)

    def sketch_add(self, keys: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Count missed ``keys`` (n,) ``counts`` (n,) times; returns their estimates (n,) int64."""
        est = np.empty(keys.shape[0], np.int64)
        sketch_cpu(self.sketch, self._sketch_seed, keys, counts, est)
        return est

    def set_occupancy(self) -> np.ndarray:
        """Filled ways per set: (num_sets,) int64."""
        return (self.keys.reshape(-1, self.ways) != EMPTY_KEY).sum(axis=1)

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All cached (keys, rows, scores), ascending by key, as host arrays."""
        slots = np.flatnonzero(self.keys != EMPTY_KEY)
        slots = slots[np.argsort(self.keys[slots], kind="stable")]
        return self.keys[slots].copy(), self.values[slots].copy(), self.scores[slots].copy()

    def load(self, keys: np.ndarray, scores: np.ndarray, values: np.ndarray) -> None:
        """Replace the arrays (from ``Cache.load``); shapes must match this layout."""
        self.keys[:] = keys
        digests_of(self.keys, self.digests)
        self.scores[:] = scores
        self.values[:] = values
