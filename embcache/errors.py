"""Exceptions raised by embcache.

Every error is an :class:`EmbCacheError` and also the matching built-in
exception, so ``except ValueError`` keeps working for callers who do not know
embcache.  Each message says what was wrong and what to do about it.
"""
from __future__ import annotations

__all__ = [
    "EmbCacheError",
    "KeyDtypeError",
    "KeyShapeError",
    "ReservedKeyError",
    "RowDtypeError",
    "RowShapeError",
    "NaNRowError",
    "ConfigError",
    "ClosedError",
    "PreloadOverflowError",
    "StaticInsertError",
    "TierError",
    "DataFormatError",
    "MissingDependencyError",
    "StoreNotFoundError",
    "CaptureError",
]


class EmbCacheError(Exception):
    """Base class of every error embcache raises on purpose."""


class KeyDtypeError(EmbCacheError, TypeError):
    """Keys are not integers (float, bool, object, ...)."""


class KeyShapeError(EmbCacheError, ValueError):
    """Keys are not a 1-D array."""


class ReservedKeyError(EmbCacheError, ValueError):
    """A batch contains one of :data:`embcache.RESERVED_KEYS`."""


class RowDtypeError(EmbCacheError, TypeError):
    """Rows are not floating point."""


class RowShapeError(EmbCacheError, ValueError):
    """Rows are not ``(len(keys), dim)``."""


class NaNRowError(EmbCacheError, ValueError):
    """Rows contain NaN and the cache was made with ``reject_nan=True``."""


class ConfigError(EmbCacheError, ValueError):
    """A constructor argument is out of range or names nothing known."""


class ClosedError(EmbCacheError, ValueError):
    """An operation on a cache or store after ``close()``."""


class PreloadOverflowError(EmbCacheError, ValueError):
    """``preload`` would need more ways in some set than the set has."""


class StaticInsertError(EmbCacheError, ValueError):
    """An ``insert`` into a cache with the ``Static`` policy would add a key."""


class TierError(EmbCacheError, OSError):
    """A backing tier failed; the message names the tier and the operation."""


class DataFormatError(EmbCacheError, ValueError):
    """A file to import (or an update message) is corrupt, truncated or of another shape."""


class MissingDependencyError(EmbCacheError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class StoreNotFoundError(EmbCacheError, FileNotFoundError):
    """A store opened to be read does not exist or holds no table; pass ``create=True`` to make one."""


class CaptureError(EmbCacheError, RuntimeError):
    """An operation was asked for while its CUDA stream captures a graph, and it cannot be captured:
    a lookup whose misses need the host (a tier the GPU cannot read), scratch that must grow first, or
    any other operation than ``lookup``."""
