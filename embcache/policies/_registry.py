"""The one table of policy names: every name a string may mean, registered once at class definition.

A class registers itself when its own body sets ``name`` (``Policy.__init_subclass__`` and
``Admission.__init_subclass__`` call :func:`_register`); a base or intermediate class that sets no
``name`` registers nothing.  A second class with a registered name is a ``ConfigError`` at its
definition, so a user's class called ``"lru"`` cannot replace the built-in LRU.  Running the same
definition again (same module and qualified name, as ``importlib.reload`` or a re-run notebook cell
does) replaces the earlier class.

A string names a class in one of two ways: its registered ``name`` (case-insensitive), or its import
path ``"package.module:QualName"``, which imports the module first (so a command line or a config file
can name a user's policy that nothing has imported yet).  The path must lead to a registered class.
"""
from __future__ import annotations

import importlib
import re

from ..errors import ConfigError

__all__ = ["get_policy", "get_admission", "policy_names", "admission_names", "policy_class", "admission_class",
           "import_path"]

# kind ("eviction policy" / "admission policy") -> name -> class
_TABLES: dict[str, dict[str, type]] = {"eviction policy": {}, "admission policy": {}}
_POLICY, _ADMISSION = "eviction policy", "admission policy"
_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def import_path(cls: type) -> str:
    """Where ``cls`` is defined, as ``"module:QualName"`` (what ``Cache.save`` records)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _register(cls: type, kind: str) -> None:
    name = cls.__dict__["name"]
    if not isinstance(name, str) or not name or name != name.strip().lower() or ":" in name:
        raise ConfigError(f"{cls.__qualname__}.name = {name!r}: a {kind} name is a non-empty lower-case string "
                          "without spaces at its ends or ':', e.g. 'mru'")
    table = _TABLES[kind]
    old = table.get(name)
    if old is not None and import_path(old) != import_path(cls):
        raise ConfigError(f"{cls.__qualname__} ({import_path(cls)}) is named {name!r}, but {name!r} is already "
                          f"the {kind} {import_path(old)}; give the new class another name")
    table[name] = cls


def _forget(cls: type) -> None:
    """Unregister ``cls`` (for tests that define throw-away policies)."""
    for table in _TABLES.values():
        for name, registered in list(table.items()):
            if registered is cls:
                del table[name]


def _names(kind: str) -> list[str]:
    return sorted(_TABLES[kind])


def policy_names() -> list[str]:
    """The registered eviction policy names, sorted (the built-ins and every imported user policy)."""
    return _names(_POLICY)


def admission_names() -> list[str]:
    """The registered admission policy names, sorted."""
    return _names(_ADMISSION)


def _from_path(text: str, kind: str) -> type:
    module_name, qualname = text.split(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as exc:  # the module's own code may raise anything; the message says which
        raise ConfigError(f"the {kind} {text!r} names module {module_name!r}, which cannot be imported "
                          f"({type(exc).__name__}: {exc}); install it or put its folder on sys.path") from None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    table = _TABLES[kind]
    if not isinstance(obj, type) or table.get(getattr(obj, "name", None)) is not obj:
        raise ConfigError(f"{text!r} is not a registered {kind} class; registered: "
                          f"{', '.join(import_path(c) for c in table.values())}")
    return obj


def _class(value: str, kind: str) -> type:
    if not isinstance(value, str):
        raise ConfigError(f"a {kind} name must be a string, not {type(value).__name__}")
    if _PATH.match(value):
        return _from_path(value, kind)
    cls = _TABLES[kind].get(value.strip().lower())
    if cls is None:
        raise ConfigError(f"unknown {kind} {value!r}; choose one of {', '.join(_names(kind))}, give a class's "
                          "import path 'module:Class', or pass an object")
    return cls


def policy_class(name: str) -> type:
    """The eviction policy class that ``name`` (a registered name or ``"module:Class"``) means."""
    return _class(name, _POLICY)


def admission_class(name: str) -> type:
    """The admission policy class that ``name`` (a registered name or ``"module:Class"``) means."""
    return _class(name, _ADMISSION)


def _resolve(value, kind: str):
    from ._base import Admission, Policy

    base = Policy if kind == _POLICY else Admission
    if isinstance(value, str):
        return _class(value, kind)()
    cls = value if isinstance(value, type) else type(value)
    if not (isinstance(value, base) or isinstance(value, type) and issubclass(value, base)):
        raise ConfigError(f"{kind} must be a name or a {base.__name__} object, not {type(value).__name__}")
    # only a registered class: it is what Cache.save records and Cache.load finds again
    if _TABLES[kind].get(getattr(cls, "name", None)) is not cls:
        raise ConfigError(f"{cls.__qualname__} is not a registered {kind}: set name = '...' in its class body")
    return value() if isinstance(value, type) else value


def get_policy(value: "str | type | Policy") -> "Policy":  # noqa: F821 (the class is imported lazily: _base imports this module)
    """The eviction policy that ``value`` means: a name (``"lru"``), ``"module:Class"``, a class or an instance.

    Raises ``ConfigError`` for an unknown name (listing the registered ones) or an unregistered class.
    """
    return _resolve(value, _POLICY)


def get_admission(value: "str | type | Admission") -> "Admission":  # noqa: F821
    """The admission policy that ``value`` means: a name (``"always"``), ``"module:Class"``, a class or an instance."""
    return _resolve(value, _ADMISSION)
