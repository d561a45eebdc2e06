"""Eviction policies (score rules) and admission policies.

Each eviction policy is one module here defining one :class:`Policy` subclass;
every module in this package is imported, so adding a policy means adding a
file.  Strings given to :class:`embcache.Cache` map to classes by ``name``.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..errors import ConfigError
from ._base import Admission, Policy
from .admission import Always, HitRateThreshold, MinFrequency, RefuseBelowMin
from .fifo import FIFO
from .lfu import LFU
from .lru import LRU
from .static import Static

__all__ = [
    "Policy", "Admission", "LRU", "LFU", "FIFO", "Static",
    "Always", "MinFrequency", "RefuseBelowMin", "HitRateThreshold",
    "get_policy", "get_admission",
]

for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _resolve(value, base, what):
    if isinstance(value, base):
        return value
    if isinstance(value, type) and issubclass(value, base):
        return value()
    if isinstance(value, str):
        names = {c.name: c for c in _all_subclasses(base) if "name" in c.__dict__}
        if value.lower() in names:
            return names[value.lower()]()
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(sorted(names))} or pass an object")
    raise ConfigError(f"{what} must be a name or a {base.__name__} object, not {type(value).__name__}")


def get_policy(value: "str | Policy") -> Policy:
    """The eviction policy that ``value`` (a name such as ``"lru"``, a class or an instance) means."""
    return _resolve(value, Policy, "eviction policy")


def get_admission(value: "str | Admission") -> Admission:
    """The admission policy that ``value`` (a name such as ``"always"``, a class or an instance) means."""
    return _resolve(value, Admission, "admission policy")
