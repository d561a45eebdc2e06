"""Eviction policies (score rules) and admission policies.

Each eviction policy is one module here defining one :class:`Policy` subclass;
every module in this package is imported, so adding a policy means adding a
file.  Every class registers its ``name`` once, at definition (a duplicate is a
``ConfigError``), and every string (``Cache``'s arguments, saved files, the trt
config, ``embcache study``) resolves through that registry: :func:`get_policy`,
:func:`policy_names`, :func:`policy_class` and their admission twins.
"""
from __future__ import annotations

import importlib
import pkgutil

from ._base import Admission, Policy
from ._registry import (admission_class, admission_names, get_admission, get_policy, policy_class,
                        policy_names)
from .admission import Always, HitRateDeferred, HitRateThreshold, MinFrequency, RefuseBelowMin
from .clock import CLOCK
from .epoch_lru import EpochLRU
from .fifo import FIFO
from .lfu import LFU
from .lfu_aged import LFUAged
from .lru import LRU
from .lru2 import LRU2
from .s3fifo import S3FIFO
from .sieve import SIEVE
from .static import Static
from .table_chance import TinyLFUTables
from .tinylfu import TinyLFU, TinyLFUEvict

__all__ = [
    "Policy", "Admission", "LRU", "LFU", "FIFO", "Static", "EpochLRU", "LRU2", "LFUAged", "CLOCK", "SIEVE", "S3FIFO",
    "Always", "MinFrequency", "RefuseBelowMin", "HitRateThreshold", "HitRateDeferred", "TinyLFU", "TinyLFUEvict",
    "TinyLFUTables",
    "get_policy", "get_admission", "policy_names", "admission_names", "policy_class", "admission_class",
]

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
