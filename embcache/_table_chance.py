"""The per-table return chances that ``TinyLFUTables`` ranks keys seen once by (issue 22).

A key's table is ``(key >> 32) & (TABLES - 1)``. ``reached`` is a (2, TABLES) int64 array of the
backend's array module: row 0 counts the keys of each table whose sketch estimate reached 1 as they
were counted, row 1 those that reached 2. The array code (``xp`` NumPy or CuPy) is the definition;
NumPy arrays take a compiled loop that gives the same integers (a one-key batch's ten NumPy calls cost
more than the lookup; tests/test_issue22_table_chance.py holds the two together), and
``tests/reference.py`` counts the same way.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

__all__ = ["CHANCE_ONE", "TABLES", "chances", "count_reached", "new_reached"]

#: tables told apart (a power of two): the key's bits 32-37
TABLES = 64
#: the unit of ``chances``: as many keys of the table reached 2 as reached 1 (the rows count events, so a
#: chance may exceed it: a key that a collision or a halving took to 2 without a counted 1)
CHANCE_ONE = 1 << 20


def new_reached(xp: Any) -> Any:
    """Zero counts: a (2, TABLES) int64 array of ``xp``."""
    return xp.zeros((2, TABLES), xp.int64)


def count_reached(xp: Any, reached: Any, keys: Any, estimates: Any, counts: Any) -> None:
    """Add to ``reached`` a batch's distinct ``keys`` (u,) that the sketch has just counted ``counts``
    (u,) times each, ``estimates`` (u,) their estimates after that add (each taken to have been
    ``estimate - count`` before it)."""
    if not keys.shape[0]:
        return
    if xp is np:
        _count_reached_host(reached, keys, estimates, counts)
    else:
        _count_reached_arrays(xp, reached, keys, estimates, counts)


def chances(xp: Any, reached: Any) -> Any:
    """Each table's return chance ``twice * CHANCE_ONE // once`` (``CHANCE_ONE`` while ``once`` is 0):
    a (TABLES,) int64 array of ``xp``."""
    if xp is np:
        return _chances_host(reached)
    return _chances_arrays(xp, reached)


def _count_reached_arrays(xp: Any, reached: Any, keys: Any, estimates: Any, counts: Any) -> None:
    table = (keys >> 32) & (TABLES - 1)
    before = estimates - counts
    # one histogram of codes row * TABLES + table (2 * TABLES: the key did not reach that level): no
    # boolean indexing (each would wait for the device once more on the GPU)
    codes = xp.concatenate([xp.where((before < level) & (estimates >= level), row * TABLES + table, 2 * TABLES)
                            for row, level in enumerate((1, 2))])
    reached += xp.bincount(codes, minlength=2 * TABLES + 1)[:2 * TABLES].reshape(2, TABLES)


def _chances_arrays(xp: Any, reached: Any) -> Any:
    once, twice = reached[0], reached[1]
    return xp.where(once > 0, (twice << 20) // xp.maximum(once, 1), CHANCE_ONE).astype(xp.int64)


@numba.njit(nogil=True, cache=True)
def _count_reached_host(reached, keys, estimates, counts):
    for i in range(keys.shape[0]):
        table = (keys[i] >> 32) & (TABLES - 1)
        before = estimates[i] - counts[i]
        if before < 1 <= estimates[i]:
            reached[0, table] += 1
        if before < 2 <= estimates[i]:
            reached[1, table] += 1


@numba.njit(nogil=True, cache=True)
def _chances_host(reached):
    out = np.empty(TABLES, np.int64)
    for t in range(TABLES):
        once = reached[0, t]
        out[t] = (reached[1, t] << 20) // once if once > 0 else CHANCE_ONE
    return out
