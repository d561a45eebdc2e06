"""Stores named by one string, for the command line: ``rocksdb:PATH``, ``redis://...``, ``redis-cluster://h:p,h:p``."""
from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError
from ._base import Tier
from .redis_store import redact as _redacted

__all__ = ["open_store"]

_FORMS = ("rocksdb:PATH (or a PATH with no scheme), redis://HOST:PORT/DB, rediss://HOST:PORT/DB (TLS), "
          "unix:///PATH/redis.sock, redis-cluster://HOST:PORT[,HOST:PORT...]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")




def _bad(spec, why: str) -> ConfigError:
    shown = _redacted(spec) if isinstance(spec, str) else spec
    return ConfigError(f"store {shown!r}: {why}. A store is one of: {_FORMS}")


def _port(spec: str, text: str) -> None:
    if not (text.isdigit() and 0 < int(text) < 65536):
        raise _bad(spec, f"the port {text!r} is not a number from 1 to 65535")


def _parse(spec) -> tuple[str, object]:
    """``(kind, target)`` of a spec, kind ``"rocksdb"``, ``"redis"`` or ``"cluster"``; ConfigError if malformed."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad(spec, "the store is empty")
    match = _SCHEME.match(spec)
    if match is None or (os.name == "nt" and len(match.group(1)) == 1):  # C:\... is a path
        return "rocksdb", spec
    scheme = match.group(1).lower()
    rest = spec[match.end():]
    if scheme == "rocksdb":
        if not rest.strip():
            raise _bad(spec, "an empty path after rocksdb:")
        return "rocksdb", rest
    if scheme in ("redis", "rediss", "redis-cluster"):
        if not rest.startswith("//"):
            fixed = f"{scheme}://{rest.lstrip('/')}"
            raise _bad(spec, f"a URL needs two slashes after the scheme: did you mean {_redacted(fixed)!r}?")
    if scheme in ("redis", "rediss"):
        url = urlsplit(spec)
        try:
            host = url.hostname
        except ValueError as exc:  # a malformed [IPv6] host
            raise _bad(spec, f"the host is malformed ({exc})") from None
        if not host:
            raise _bad(spec, "no host; write redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0")
        netloc = url.netloc.rpartition("@")[2]
        if not netloc.endswith("]") and ":" in netloc:
            _port(spec, netloc.rpartition(":")[2])
        db = url.path.strip("/")
        if db and not db.isdigit():
            raise _bad(spec, f"the database {db!r} after the port is not a number")
        return "redis", spec
    if scheme == "unix":  # a Redis server's socket, as redis-py's from_url takes it
        if not rest.startswith("//") or not urlsplit(spec).path.strip("/"):
            raise _bad(spec, "no socket path; write unix:///PATH/redis.sock")
        return "redis", spec
    if scheme == "redis-cluster":
        nodes = [n.strip() for n in rest[2:].split(",")]
        if not any(nodes):
            raise _bad(spec, "no node; list at least one as HOST:PORT")
        for node in nodes:
            host, sep, port = node.rpartition(":")
            if not (sep and host):
                raise _bad(spec, f"the node {node!r} is not HOST:PORT")
            _port(spec, port)
        return "cluster", nodes
    raise _bad(spec, f"unknown scheme {scheme!r} (for a local path with a colon in it, write rocksdb:PATH or ./PATH)")


def open_store(spec: str, dim: int, dtype: str = "float32", password: str | None = None,
               namespace: str = "embcache", create: bool = False, **redis_options: Any) -> Tier:
    """The store ``spec`` names: a RocksStore for ``rocksdb:PATH`` (or a bare path), a RedisStore for
    ``redis://host:port/db`` (``rediss://`` for TLS, ``unix:///path/redis.sock`` for a local
    socket), a Redis Cluster store for
    ``redis-cluster://host:port[,host:port...]``.

    ``create`` makes the table if the store holds none; without it a missing table is a
    ``StoreNotFoundError``.  An unknown scheme (``s3://bucket/x``) or a malformed spec
    (``redis:/host:6379``, ``redis://`` with no host, a port or database that is not a
    number, ``rocksdb:`` with no path) is a ``ConfigError`` naming the accepted forms,
    raised before anything is opened or created.  A bare path never has a scheme: a
    local path with a colon in it is written ``rocksdb:PATH`` or ``./PATH``.

    ``redis_options`` (``username``, ``tls``, ``tls_ca_certs``, ``tls_certfile``, ``tls_keyfile``,
    ``batch``, ``timeout``) go to :class:`RedisStore`; giving them for a RocksDB spec is a ``ConfigError``.
    """
    kind, target = _parse(spec)
    if kind in ("redis", "cluster"):
        from .redis_store import RedisStore

        return RedisStore(target, dim, dtype, password=password, namespace=namespace, create=create,
                          **redis_options)
    if redis_options or password is not None:
        raise _bad(spec, f"{', '.join(sorted(redis_options)) or 'password'} applies to Redis stores only")
    from .rocks import RocksStore

    return RocksStore(target, dim, dtype, create=create)
