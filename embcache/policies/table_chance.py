"""TinyLFUEvict whose singletons rank by their table's learned return chance (issue 22's 20% bar)."""
from __future__ import annotations

from .tinylfu import TinyLFUEvict

__all__ = ["TinyLFUTables"]


class TinyLFUTables(TinyLFUEvict):
    """:class:`TinyLFUEvict` whose keys seen once rank by how often keys of their table come back.

    A key's table is ``(key >> 32) & 63``: the high half of a key, as ``embcache trace convert
    --columns`` and the Criteo trace make keys of several categorical columns, ``(column << 32) |
    value``, in one cache (keys in [0, 2^32) are all table 0). The cache learns, per table, two counts
    online: the keys whose sketch estimate reached 1 as they were counted (``once``), and reached 2
    (``twice``); a table's return chance is ``twice * 2^20 // once`` (``2^20`` while ``once`` is 0).
    Placement is :class:`TinyLFUEvict`'s with one more rank: in a full set the victim is the key with
    the lowest ``(estimate, chance, score, way)``, where ``chance`` is its table's return chance if its
    estimate is 1 and 0 otherwise, and the missed key enters only if its ``(estimate, chance, new
    score)`` is greater than that key's ``(estimate, chance, score)``. Among keys seen once, those of a
    table whose keys rarely return go first; a key seen twice or more ranks as under ``tinylfu_evict``.

    The counting is batch-synchronous: where the sketch adds a batch's distinct keys with their counts
    ``c`` (its misses, then its hits), a key whose estimate is ``e`` after the add is taken to have
    been at ``e - c`` before it (exact unless another key of the batch shares its counters), so it adds
    to ``once`` if ``e - c < 1 <= e`` and to ``twice`` if ``e - c < 2 <= e``. The chances are computed
    after the batch's halvings, before its placement. The counts are saved and loaded with the cache
    and kept by ``clear``, as the sketch is. With one table (every key in [0, 2^32)) the chance is the
    same for every key and the cache places keys exactly as ``tinylfu_evict`` does.

    Use it only with keys whose high half names their table. With hashed 64-bit ids, bits 32-37 split the
    keys into 64 arbitrary buckets whose chances differ by sampling noise alone, and that noise then
    orders the keys seen once instead of their scores: on a synthetic trace of fresh and Zipf ids a review
    measured 0.4051 against ``tinylfu_evict``'s 0.4302 at 20% with hashed keys (0.4294 for both with the
    same ids below 2^32). Use ``tinylfu_evict`` there.

    On the Criteo sample (one key a batch, 32 ways) the library reaches 0.6174 / 0.7298 /
    0.80975 at 1 / 5 / 20% of the distinct keys, against ``tinylfu_evict``'s 0.6172 / 0.7290 /
    0.80589 (docs/study.md), as its replay does. Lookups take the host path on the GPU, as TinyLFU's.

    Parameters
    ----------
    width, depth, seed, sample
        As :class:`TinyLFU`'s (``width`` None by default: sized to the cache).
    """

    name = "tinylfu_tables"
    victim_by_table_chance = True
