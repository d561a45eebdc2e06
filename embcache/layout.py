"""The set-associative layout shared by every backend.

A cache of ``capacity`` rows is ``num_sets * ways`` slots, ``num_sets =
ceil(capacity / ways)``.  Key ``k`` lives in set ``mix64(k) % num_sets``, where
``mix64`` is the splitmix64 finalizer on the key's 64 bits (two's complement,
uint64 wrap-around).  Slot ``s = set * ways + way`` holds a key (int64), a score
(int64) and a row of ``dim`` values.  A policy whose victim is ``"hand"`` (CLOCK, SIEVE) also has a
hand per set (``new_hands``; ``embcache.policies._base`` says what it does).

The constants here are the single source of truth: the Numba kernels import
them and the CUDA kernels receive them as generated ``#define``s.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["EMPTY_KEY", "LOCKED_KEY", "RESERVED_KEYS", "MAX_SCORE", "mix64", "mix64_bits", "mix64_array", "set_of",
           "sets_of", "num_sets_for", "NO_HAND", "new_hands", "s3fifo_sizes", "set_state_width", "new_set_state"]

#: Marks an empty slot.
EMPTY_KEY = -(2**63)
#: Kept back for a slot that a GPU insertion holds while it writes the row.
LOCKED_KEY = -(2**63) + 1
#: Key values a batch may not contain; both are the two lowest int64 values.
RESERVED_KEYS = (EMPTY_KEY, LOCKED_KEY)
#: The way of a hand that rests nowhere (the next walk starts from the set's first slot).
NO_HAND = -1
#: Scores saturate here (``sat_add``), so an LFU count never wraps around.
MAX_SCORE = 2**63 - 1

MIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


def mix64_bits(z: Any) -> Any:
    """splitmix64 finalizer of uint64 ``z``: a NumPy or CuPy uint64 array or scalar, or (compiled
    as ``mix64``) a Numba uint64.  The one Python form of the hash; CUDA's is ``cuda_shared/layout.cuh``."""
    z = (z ^ (z >> _S30)) * MIX_M1  # uint64 arithmetic wraps, as splitmix64 wants
    z = (z ^ (z >> _S27)) * MIX_M2
    return z ^ (z >> _S31)


_mix64_bits = numba.njit(inline="always", nogil=True, cache=True)(mix64_bits)


@numba.njit(inline="always", nogil=True, cache=True)
def mix64(key: int) -> np.uint64:
    """splitmix64 finalizer of an int64 key, as uint64 (Numba and scalars)."""
    return _mix64_bits(np.uint64(key))


def mix64_array(keys: Any, xp: Any = np) -> Any:
    """splitmix64 of every key: ``keys`` (n,) int64, a NumPy or CuPy array (``xp`` its module) -> (n,) uint64."""
    return mix64_bits(xp.ascontiguousarray(keys, dtype=xp.int64).view(xp.uint64))


@numba.njit(inline="always", nogil=True, cache=True)
def set_of(key: int, num_sets: int) -> np.int64:
    """Set index of ``key`` in a cache of ``num_sets`` sets (int64)."""
    return set_and_digest(key, num_sets)[0]


@numba.njit(inline="always", nogil=True, cache=True)
def set_and_digest(key: int, num_sets: int) -> tuple:
    """``(set index, digest)`` of ``key`` from one mix: the set is the mix modulo ``num_sets``, the 1-byte
    digest its top byte (which the set leaves nearly independent; ``cuda/common.cuh``'s ``digest_of``).
    The CPU probe takes both at once; ``set_of`` and ``digest_of`` are its halves, so they cannot disagree."""
    h = mix64(key)
    return np.int64(h % np.uint64(num_sets)), np.uint8(h >> np.uint64(56))


@numba.njit(inline="always", nogil=True, cache=True)
def digest_of(key: int) -> np.uint8:
    """The 1-byte digest of ``key`` (see ``set_and_digest``)."""
    return np.uint8(mix64(key) >> np.uint64(56))


@numba.njit(nogil=True, cache=True)
def _sets_of(keys, num_sets):
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        out[i] = set_of(keys[i], num_sets)
    return out


def sets_of(keys: np.ndarray, num_sets: int) -> np.ndarray:
    """Set index of every key: ``keys`` (n,) int64 -> (n,) int64."""
    return _sets_of(np.ascontiguousarray(keys, dtype=np.int64), num_sets)


def num_sets_for(capacity: int, ways: int) -> int:
    """Number of sets for ``capacity`` rows rounded up to whole sets of ``ways``."""
    return -(-capacity // ways)


def new_hands(num_sets: int, xp: Any = np) -> Any:
    """Every set's hand, resting nowhere: ``(num_sets, 2)`` int64 ``[position, way]``, way ``NO_HAND``.

    ``xp``: numpy or cupy, where the array is made.
    """
    hands = xp.zeros((num_sets, 2), xp.int64)
    hands[:, 1] = NO_HAND
    return hands


def s3fifo_sizes(ways: int) -> tuple[int, int]:
    """S3-FIFO's ``(small, ghost)`` sizes in a set of ``ways``: ``max(1, ways // 10)`` keys of the small FIFO
    (libCacheSim's ``int(0.1 * ways)``, which is 0 below 10 ways, where it admits nothing), and
    ``ways * 9 // 10`` ghost entries (its ``int(0.9 * ways)``)."""
    return max(1, ways // 10), ways * 9 // 10


def set_state_width(victim: str, ways: int) -> int:
    """int64 words of per-set state a policy's ``victim`` rule keeps (0: none): a hand's ``[position, way]``,
    or S3-FIFO's ``[sequence, evicted yet, ghost keys (G), ghost stamps (G)]``."""
    return {"lowest": 0, "hand": 2}.get(victim, 2 + 2 * s3fifo_sizes(ways)[1])


def new_set_state(victim: str, num_sets: int, ways: int, xp: Any = np) -> Any:
    """The per-set state of a new cache, ``(num_sets, set_state_width)`` int64, or None (``victim = "lowest"``):
    every hand resting nowhere, or S3-FIFO's counters zero and its ghosts empty (stamp 0)."""
    if victim == "lowest":
        return None
    if victim == "hand":
        return new_hands(num_sets, xp)
    return xp.zeros((num_sets, set_state_width(victim, ways)), xp.int64)
