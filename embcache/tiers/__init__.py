"""Backing tiers: where rows live when the cache does not hold them."""
from ._base import Tier
from .host import HostStore

__all__ = ["Tier", "HostStore"]
