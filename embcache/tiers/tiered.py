"""TieredStore: a chain of stores, fastest first, read through with promotion, written through."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, TierError
from ._base import Tier

__all__ = ["TieredStore"]


class TieredStore(Tier):
    """Stores in order of speed, e.g. ``[HostStore(...), RocksStore(...), RedisStore(...)]``.

    The slowest tier is the table; the faster ones hold copies of some of its
    rows, never a row it does not agree with.

    Reads
        ``get_many`` asks each tier in turn for the keys the faster ones lack
        and, with ``promote``, copies what a slower tier had into every faster
        one.  A tier that fails a read raises ``TierError`` naming it.  A tier
        that cannot take promoted rows (a full ``HostStore`` with
        ``overflow="error"``, a Redis server that went away) does not fail the
        read, whose rows were found: the rows it did take are current, it is
        counted in ``promote_failures`` and a ``RuntimeWarning`` names it.
    Writes
        ``put_many`` and ``delete_many`` go to every tier, slowest (most
        durable) first, so a write that returned is in every tier.
    A failed write
        Say tier ``i`` fails after the slower tiers took the write.  The
        faster tiers, not written yet, and tier ``i`` itself may still hold
        rows from before the write, older than what the slower tiers now hold,
        which they would serve until evicted.  So the store drops its copies of
        the batch's keys from tier ``i`` and every faster tier (a faster tier's
        copy is only a copy: the slower tiers have the rows), then raises a
        ``TierError`` that says which tiers hold what, e.g. ``RocksStore('db')
        has the new rows; HostStore(...) failed (...) and its copies were
        dropped``.  The slowest tier is never dropped from: if it fails, it
        holds what its own failure left (a RocksStore's batch is all or
        nothing, so its rows from before), nothing was written to the faster
        tiers, and their copies are dropped all the same.  A tier whose copies
        cannot be dropped either (a Redis server that is down) is remembered,
        in this object: reads first try again to drop those keys there, and
        until that or a later write of the keys succeeds there, reads go past
        that tier for them and never serve its copies.  So after a failed
        write a read returns what the slower tiers took, and is the same read
        whichever tier answers it.  Retry the write once the tier is back:
        writes are idempotent.

    Device source: none (``device_source()`` is None), even when the first
    tier offers one.  A tiered read must see every tier: a GPU kernel reading
    the first tier in place would serve the default row for keys that only a
    slower tier holds, promote nothing, and read past the suspect keys above.
    A GPU cache over a TieredStore reads it on the host; give the cache the
    pinned HostStore (or SharedHostStore) itself to read it zero-copy.

    Thread safety: each call holds this store's ``lock`` for its whole run (a
    read with its promotions, a write through every tier), and each tier's
    own lock while it calls that tier, so a read that promotes a row cannot
    interleave with a write of that key: no faster tier is left with the older
    row.  Any number of threads and caches may share one TieredStore.  Write
    through it, not straight into one of its tiers (that write would not
    reach the others); dropping keys from a faster tier directly is fine, the
    rows come back from the slower ones.
    """

    def __init__(self, tiers: Sequence[Tier], promote: bool = True):
        tiers = list(tiers)
        if not tiers:
            raise ConfigError("TieredStore needs at least one tier")
        first = tiers[0]
        for t in tiers[1:]:
            if t.dim != first.dim or t.dtype != first.dtype:
                raise ConfigError(f"every tier must hold the same rows: {first!r} has dim={first.dim} {first.dtype}, "
                                  f"{t!r} has dim={t.dim} {t.dtype}")
        if len({id(t) for t in tiers}) != len(tiers):
            raise ConfigError("a tier appears twice in the TieredStore; give each store once")
        super().__init__(first.dim, first.dtype)
        self.tiers = tiers
        self.promote = bool(promote)
        self.promote_failures = 0  # promotions a faster tier refused (reads still returned the rows)
        # per tier: sorted keys whose copies there may be older than the slower tiers' (a drop failed)
        self._suspect = [np.zeros(0, np.int64) for _ in tiers]
        self._last_drop_error = ""

    def __repr__(self) -> str:
        return f"TieredStore([{', '.join(map(repr, self.tiers))}])"

    def device_source(self) -> None:
        """None: a tiered read must see every tier (see the class docstring), never the first one alone."""
        return None

    def _get_many(self, keys):
        rows = np.zeros((keys.shape[0], self.dim), self.dtype)
        found = np.zeros(keys.shape[0], np.bool_)
        wanted = np.arange(keys.shape[0])
        for depth, tier in enumerate(self.tiers):
            if not wanted.shape[0]:
                break
            ask, past = wanted, wanted[:0]
            if self._suspect[depth].shape[0]:
                doubtful = np.isin(keys[wanted], self._suspect[depth])
                if doubtful.any() and not self._drop(depth, keys[wanted[doubtful]]):
                    ask, past = wanted[~doubtful], wanted[doubtful]  # read past this tier's old copies
            missed = ask
            if ask.shape[0]:
                got, here = tier.get_many(keys[ask])
                hit = ask[here]
                rows[hit], found[hit] = got[here], True
                if self.promote and depth and hit.shape[0]:
                    self._promote(depth, keys[hit], got[here])
                missed = ask[~here]
            wanted = np.concatenate([missed, past])
        return rows, found

    def _promote(self, depth: int, keys: np.ndarray, rows: np.ndarray) -> None:
        for faster in range(depth):
            try:
                self.tiers[faster].put_many(keys, rows)
            except Exception as exc:  # the rows were found; a cache tier that cannot take them is no read error
                self.promote_failures += 1
                warnings.warn(f"{self!r}: {self.tiers[faster]!r} did not take {keys.shape[0]} promoted rows "
                              f"({type(exc).__name__}: {exc}); reads still return them from the slower tiers",
                              RuntimeWarning, stacklevel=5)
            else:
                self._trust(faster, keys)  # it holds the current rows now

    def _put_many(self, keys, values):
        self._write("put_many", keys, lambda tier: tier.put_many(keys, values))

    def _delete_many(self, keys):
        self._write("delete_many", keys, lambda tier: tier.delete_many(keys))

    def _write(self, op: str, keys: np.ndarray, apply) -> None:
        for depth in reversed(range(len(self.tiers))):
            try:
                apply(self.tiers[depth])
            except Exception as exc:
                raise self._failed(op, np.unique(keys), depth, exc) from exc
            self._trust(depth, keys)

    def _failed(self, op: str, keys: np.ndarray, failed: int, exc: Exception) -> TierError:
        """Drop the copies of ``keys`` that may now be older than the slower tiers'; the error to raise."""
        tier, slowest = self.tiers[failed], len(self.tiers) - 1
        why = f"{type(exc).__name__}: {exc}"
        parts = []
        slower = self.tiers[failed + 1:]
        if slower:
            verb = "has" if len(slower) == 1 else "have"
            took = f"{verb} the new rows" if op == "put_many" else f"{verb} deleted the keys"
            parts.append(f"{', '.join(map(repr, slower))} {took}")
        drops = {}
        for depth in range(failed if failed < slowest else failed - 1, -1, -1):
            dropped, error = self._drop(depth, keys), None
            if not dropped:
                self._suspect[depth] = np.union1d(self._suspect[depth], keys)
                error = self._last_drop_error
            drops[depth] = error

        def fate(depth: int) -> str:
            error = drops[depth]
            return ("its copies were dropped" if error is None else
                    f"its copies could not be dropped ({error}): reads go past it for these keys until they are "
                    "dropped or written there again")

        if failed == slowest:
            parts.append(f"{tier!r} failed ({why}) and holds what that failure left (its rows from before unless "
                         "its error says otherwise); nothing was written to the faster tiers")
        else:
            parts.append(f"{tier!r} failed ({why}) and {fate(failed)}")
        parts += [f"{self.tiers[d]!r}: {fate(d)}" for d in range(failed - 1, -1, -1)]
        return TierError(f"{self!r}.{op} of {keys.shape[0]} keys failed at {tier!r}: {'; '.join(parts)}. No tier "
                         "serves an older row than the slower tiers hold; retry the write once the tier is back")

    def _drop(self, depth: int, keys: np.ndarray) -> bool:
        """Delete ``keys``' copies from tier ``depth``; whether that worked (the reason in ``_last_drop_error``)."""
        try:
            self.tiers[depth].delete_many(keys)
        except Exception as exc:
            self._last_drop_error = f"{type(exc).__name__}: {exc}"
            return False
        self._trust(depth, keys)
        return True

    def _trust(self, depth: int, keys: np.ndarray) -> None:
        """Tier ``depth`` now holds the current state of ``keys``."""
        if self._suspect[depth].shape[0]:
            self._suspect[depth] = np.setdiff1d(self._suspect[depth], keys)

    def _close(self):
        errors = []
        for tier in self.tiers:  # every tier, even after one fails to close
            try:
                tier.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
