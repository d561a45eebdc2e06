"""The per-table return chances that ``TinyLFUTables`` ranks keys seen once by (issue 22).

A key's table is ``(key >> 32) & (TABLES - 1)``. ``reached`` is a (2, TABLES) int64 array of the
backend's array module: row 0 counts the keys of each table whose sketch estimate reached 1 as they
were counted, row 1 those that reached 2. Both backends run this same code (``xp`` is NumPy or CuPy),
and ``tests/reference.py`` counts the same way.
"""
from __future__ import annotations

from typing import Any

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
    table = (keys >> 32) & (TABLES - 1)
    before = estimates - counts
    # one histogram of codes row * TABLES + table (2 * TABLES: the key did not reach that level): no
    # boolean indexing (each would wait for the device once more on the GPU)
    codes = xp.concatenate([xp.where((before < level) & (estimates >= level), row * TABLES + table, 2 * TABLES)
                            for row, level in enumerate((1, 2))])
    reached += xp.bincount(codes, minlength=2 * TABLES + 1)[:2 * TABLES].reshape(2, TABLES)


def chances(xp: Any, reached: Any) -> Any:
    """Each table's return chance ``twice * CHANCE_ONE // once`` (``CHANCE_ONE`` while ``once`` is 0):
    a (TABLES,) int64 array of ``xp``."""
    once, twice = reached[0], reached[1]
    return xp.where(once > 0, (twice << 20) // xp.maximum(once, 1), CHANCE_ONE).astype(xp.int64)
