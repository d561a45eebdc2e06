"""embcache: set-associative embedding caches with pluggable eviction and admission policies.

>>> import numpy as np, embcache
>>> c = embcache.Cache(capacity=1024, dim=8, policy="lru")
>>> c.insert(np.array([1, 2]), np.ones((2, 8), np.float32))
>>> c.lookup(np.array([1, 3])).shape
(2, 8)
"""
from . import errors, policies, tiers
from .cache import Cache
from .errors import EmbCacheError, TierError
from .layout import RESERVED_KEYS
from .multi_gpu import MultiGPUCache
from .stats import Stats

__all__ = ["Cache", "MultiGPUCache", "Stats", "RESERVED_KEYS", "EmbCacheError", "TierError", "errors", "policies", "tiers"]
__version__ = "0.1.0"
