"""What the processes of tests/test_shared_host.py run: a writer's program of commits, fixed by its
generation numbers, and a plain dict model of the table at any generation.

Kept apart from the test module so that a spawned process imports only NumPy and embcache.
"""
from __future__ import annotations

import traceback

import numpy as np

KEYS = 300  # the key space of the program: keys 0 .. KEYS-1
DIM = 4


def commit_of(g: int, dim: int = DIM):
    """The write that makes generation ``g`` (g >= 1): ("put", keys, rows) or ("delete", keys, None).

    Put rows carry their key and generation, so a torn or mixed read cannot pass for a whole one.
    """
    rng = np.random.default_rng(g)
    if g % 4 == 0:
        return "delete", rng.integers(0, KEYS, 25).astype(np.int64), None
    keys = rng.integers(0, KEYS, 60).astype(np.int64)  # repeats: the last row wins
    rows = rng.random((keys.shape[0], dim)).astype(np.float32)
    rows[:, 0], rows[:, 1 % dim] = keys, g
    return "put", keys, rows


def apply(store, g: int, dim: int = DIM) -> None:
    op, keys, rows = commit_of(g, dim)
    if op == "put":
        store.put_many(keys, rows)
    else:
        store.delete_many(keys)


class Model:
    """The table as a dict, advanced one generation at a time."""

    def __init__(self, dim: int = DIM):
        self.dim, self.generation, self.rows = dim, 0, {}

    def advance(self, to: int) -> None:
        assert to >= self.generation, f"generation went back from {self.generation} to {to}"
        while self.generation < to:
            self.generation += 1
            op, keys, rows = commit_of(self.generation, self.dim)
            for i, k in enumerate(keys.tolist()):
                if op == "put":
                    self.rows[k] = rows[i]
                else:
                    self.rows.pop(k, None)

    def expect(self, keys):
        rows = np.zeros((keys.shape[0], self.dim), np.float32)
        found = np.zeros(keys.shape[0], np.bool_)
        for i, k in enumerate(keys.tolist()):
            if k in self.rows:
                rows[i], found[i] = self.rows[k], True
        return rows, found


def check_snapshot(store, model: Model) -> int:
    """Read every key of the program and its generation as one step; compare with the model there."""
    keys = np.arange(KEYS, dtype=np.int64)
    with store.lock:  # one pinned generation for the three reads
        g = store.generation
        rows, found = store.get_many(keys)
        size = len(store)
    model.advance(g)
    want_rows, want_found = model.expect(keys)
    assert found.tolist() == want_found.tolist(), f"generation {g}: other keys than the model's"
    assert rows.tobytes() == want_rows.tobytes(), f"generation {g}: other rows than the model's"
    assert size == len(model.rows), f"generation {g}: {size} rows, the model has {len(model.rows)}"
    return g


def reader(name: str, root: str, final: int, ready, results) -> None:
    """A reader process: check snapshots until it has seen generation ``final``; report
    ``(generations seen, checks)`` or the traceback."""
    try:
        from embcache.tiers import SharedHostStore

        with SharedHostStore(name, DIM, "float32", root=root) as store:
            model, seen, checks = Model(), set(), 0
            ready.set()
            while True:
                g = check_snapshot(store, model)
                seen.add(g)
                checks += 1
                if g >= final:
                    break
        results.put(("ok", sorted(seen), checks))
    except BaseException:
        results.put(("error", traceback.format_exc(), 0))


def killed_writer(name: str, root: str, first: int, big: int, ready) -> None:
    """A writer process: commit generations 1..first, say so, then start one big put (and be killed)."""
    from embcache.tiers import SharedHostStore

    store = SharedHostStore(name, DIM, "float32", writer=True, root=root)
    for g in range(1, first + 1):
        apply(store, g)
    keys = np.arange(10_000, 10_000 + big, dtype=np.int64)
    rows = np.full((big, DIM), 7.0, np.float32)
    ready.set()
    store.put_many(keys, rows)  # the parent kills this process during the commit
    ready.clear()  # not reached if the kill came in time (the test checks)
