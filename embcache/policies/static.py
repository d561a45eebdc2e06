from ._base import Policy

__all__ = ["Static"]


class Static(Policy):
    """Static: contents are whatever ``preload`` put there; lookups never insert or evict.

    Missed keys are served from the tiers and counted as refusals.  ``insert``
    of a key that is not cached raises :class:`embcache.errors.StaticInsertError`;
    ``preload`` that would overflow a set raises ``PreloadOverflowError``.
    The score is the clock of the ``preload`` that brought the key in.
    """

    name = "static"
    new_score = "clock"
    hit_score = "score"
    inserts_on_lookup = False
