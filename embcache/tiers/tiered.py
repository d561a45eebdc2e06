"""TieredStore: a chain of stores, fastest first, read through with promotion, written through."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ._base import Tier

__all__ = ["TieredStore"]


class TieredStore(Tier):
    """Stores in order of speed, e.g. ``[HostStore(...), RocksStore(...), RedisStore(...)]``.

    ``get_many`` asks each tier in turn for the keys the faster ones lack and,
    with ``promote``, copies what a slower tier had into every faster one.
    ``put_many`` and ``delete_many`` go to every tier, slowest (most durable)
    first, so a write that returned is in the persistent tiers even if a fast
    one fails after.  A failing tier raises ``TierError`` naming it.
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
        super().__init__(first.dim, first.dtype)
        self.tiers = tiers
        self.promote = bool(promote)

    def __repr__(self) -> str:
        return f"TieredStore([{', '.join(map(repr, self.tiers))}])"

    def _get_many(self, keys):
        rows = np.zeros((keys.shape[0], self.dim), self.dtype)
        found = np.zeros(keys.shape[0], np.bool_)
        wanted = np.arange(keys.shape[0])
        for depth, tier in enumerate(self.tiers):
            if not wanted.shape[0]:
                break
            got, here = tier.get_many(keys[wanted])
            hit = wanted[here]
            rows[hit], found[hit] = got[here], True
            if self.promote and depth and hit.shape[0]:
                for faster in self.tiers[:depth]:
                    faster.put_many(keys[hit], got[here])
            wanted = wanted[~here]
        return rows, found

    def _put_many(self, keys, values):
        for tier in reversed(self.tiers):
            tier.put_many(keys, values)

    def _delete_many(self, keys):
        for tier in reversed(self.tiers):
            tier.delete_many(keys)

    def _close(self):
        for tier in self.tiers:
            tier.close()
