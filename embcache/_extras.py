"""Optional dependencies: the pip extra that brings each one, and the install line that works from a clone.

embcache is not on PyPI, so ``pip install embcache[study]`` fetches nothing (or someone else's package);
the extra is installed from the clone: ``pip install '.[study]'`` run in its top folder.
"""
from __future__ import annotations

import importlib
import pathlib
from types import ModuleType

from .errors import MissingDependencyError

__all__ = ["EXTRA_OF", "clone_root", "install_hint", "require_module"]

#: module -> the extra of setup.cfg that installs it
EXTRA_OF = {"matplotlib": "study", "redis": "tiers", "rocksdict": "tiers", "onnx": "trt", "onnxruntime": "trt",
            "onnx_graphsurgeon": "trt", "cupy": "cuda"}


def clone_root() -> pathlib.Path | None:
    """The clone this package runs from, or was installed from; None when neither is known.

    Run from a clone (or installed editable), the folder above the package holds setup.cfg.  Installed
    with ``pip install .`` from a clone, pip recorded the clone's path (PEP 610 ``direct_url.json``).
    """
    root = pathlib.Path(__file__).resolve().parents[1]
    if (root / "setup.cfg").is_file():
        return root
    try:
        import json
        from importlib.metadata import PackageNotFoundError, distribution
        from urllib.parse import unquote, urlsplit

        url = json.loads(distribution("embcache").read_text("direct_url.json") or "{}").get("url", "")
    except (PackageNotFoundError, ValueError, OSError):
        return None
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    source = pathlib.Path(unquote(parts.path))
    return source if (source / "setup.cfg").is_file() else None


def install_hint(extra: str) -> str:
    """``pip install '.[extra]'`` with where to run it, e.g. for a message that names a missing module."""
    root = clone_root()
    where = f"in the clone ({root})" if root is not None else "in your clone of embcache"
    return f"pip install '.[{extra}]' {where}; embcache is not on PyPI"


def require_module(module: str, why: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying ``why`` it is needed and how to get it.

    ``why`` is a clause about the module, e.g. ``"embcache study draws its plots with it"``.  An import
    that fails inside the module (a broken install) counts as missing too: the message says what failed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = extra or EXTRA_OF.get(module.split(".")[0], "all")
        detail = "" if isinstance(exc, ModuleNotFoundError) and exc.name == module.split(".")[0] \
            else f" (importing it failed: {exc})"
        raise MissingDependencyError(f"{module} is not installed{detail}; {why}. Install it with "
                                     f"{install_hint(extra)}") from None
