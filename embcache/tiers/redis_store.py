"""RedisStore: rows in a Redis server or Redis Cluster (redis-py), shared by many inference servers."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from ..errors import ConfigError, StoreNotFoundError, TierError
from ._base import Tier, require
from ._codec import META_FORMAT, check_meta, decode_keys, decode_rows, encode_keys, encode_rows, meta_blob

__all__ = ["RedisStore", "redact"]

# Recorded in the table's metadata; a table without it was written in the first layout
# (rows ``<namespace>:`` + 8 key bytes), in which namespaces could overlap.
_LAYOUT = "ns-escaped-v2"
_MASK = "***"
# a roll back's write of one slot's keys: each key back to its old row (ARGV 2i; '' = it had none: deleted)
# only if it still holds this call's row (ARGV 2i - 1), so a row another writer put meanwhile is kept
_RESTORE = """
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[2 * i - 1] then
    if ARGV[2 * i] == '' then redis.call('DEL', key) else redis.call('SET', key, ARGV[2 * i]) end
  end
end
return 0
"""
_ROLLBACK_WINDOW_S = 10.0  # seconds a roll back keeps retrying the nodes that refuse it
# ``scheme://userinfo@``: everything up to the last '@' is userinfo, so a password holding
# '/', '#' or '@' is masked whole (over-masking is safe, under-masking leaks)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^\s'\"]*)@")
_QUERY_SECRET = re.compile(r"(?i)(?P<name>[?&](?:password|pass|pwd)=)[^&\s'\"]*")


def redact(spec: str) -> str:
    """``spec`` with any password in it replaced by ``***``, for printing.

    ``redis://user:pw@host:6379/0`` becomes ``redis://user:***@host:6379/0``,
    ``redis://:pw@host/0`` becomes ``redis://:***@host/0`` and a ``?password=``
    query value is masked too; a spec without a password comes back unchanged.
    """
    def userinfo(m: re.Match) -> str:
        user, sep, _ = m["info"].partition(":")
        return f"{m['scheme']}{user}{sep and ':' + _MASK}@"

    return _QUERY_SECRET.sub(lambda m: m["name"] + _MASK, _USERINFO.sub(userinfo, str(spec)))


def _url_password(url: str) -> str | None:
    m = _USERINFO.match(url)
    if m and ":" in m["info"]:
        return m["info"].partition(":")[2]
    return None


def _node(spec):
    if isinstance(spec, str):
        host, _, port = spec.rpartition(":")
        return host or "127.0.0.1", int(port)
    host, port = spec
    return str(host), int(port)


def _escaped_namespace(namespace: str) -> bytes:
    """The namespace's key prefix with no ``:`` in it ('%' -> '%25', ':' -> '%3A', as in URLs).

    Every key is ``<escaped namespace>:`` then ``meta`` or ``r`` + 8 key bytes.  The first
    ``:`` of a key therefore ends its namespace, and what follows it starts with ``m`` for the
    metadata and ``r`` for a row: two stores' keys are equal only if their namespaces are.
    """
    if not isinstance(namespace, str):
        raise ConfigError(f"RedisStore: namespace must be a str, got {type(namespace).__name__}")
    try:
        raw = namespace.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"RedisStore: namespace {namespace!r} is not valid text (lone surrogate)") from None
    return raw.replace(b"%", b"%25").replace(b":", b"%3A")


def _glob_literal(text: bytes) -> bytes:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", text)


class RedisStore(Tier):
    """Rows in Redis: one binary value per key, read and written in pipelined multi-key batches.

    Parameters
    ----------
    target : str or sequence
        ``"redis://host:port/db"`` for one server (``"rediss://..."`` for TLS;
        ``redis://user:password@host:port/db`` also authenticates), or Redis
        Cluster start-up nodes as ``["host:port", ...]`` or ``[(host, port), ...]``
        (any one node is enough; the client discovers the rest).
    dim : int
        Values per row.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    password : str, optional
        AUTH password (a wrong one raises ``ConfigError`` before anything is
        written).  A password in the URL wins over this one.  Neither is ever
        printed: ``repr``, error messages and :func:`redact` show ``***``.
    namespace : str
        Any text; several tables share one server, each in its own namespace.
        The namespace is escaped ('%' -> '%25', ':' -> '%3A', UTF-8) and a row is
        stored under ``b"<escaped>:r" + 8 key bytes`` (big-endian), the table's
        dim and dtype under ``b"<escaped>:meta"``.  Two namespaces never share a
        key, and a key scan of one never lists another's (glob characters are
        matched literally).  A table written by an older embcache (rows under
        ``<namespace>:`` + 8 bytes) is refused with a ``ConfigError``: import it
        again into a fresh namespace.  On a Redis Cluster, a namespace holding
        ``{tag}`` is a hash tag: all its rows land in one slot, on one node.
    batch : int
        Keys per MGET/MSET command.
    timeout : float
        Socket timeout in seconds; a server that does not answer in time is a ``TierError``.
    create : bool
        Record a new table in ``namespace`` if it holds none.  Off by default:
        a namespace with no table is a ``StoreNotFoundError``, not zero rows.
    username : str, optional
        ACL user name for ``AUTH username password`` (Redis 6+); without it the
        password is the ``default`` user's (``requirepass``).
    tls : bool
        Speak TLS (as ``rediss://`` does, and HPS's ``enable_tls``); the server's
        certificate is verified, host name included.
    tls_ca_certs : str or Path, optional
        PEM file of the CA(s) that signed the server's certificate (default:
        the system's trust store).
    tls_certfile, tls_keyfile : str or Path, optional
        This client's certificate and key (PEM), for a server that checks
        clients (``tls-auth-clients yes``, Redis' default).

    Notes
    -----
    **Failed writes.**  On one server a ``put_many`` or ``delete_many`` call is
    one ``MULTI``/``EXEC`` transaction (however many ``batch``-key commands it
    takes), so it is all or nothing: if the server refused it (out of memory,
    ``EXECABORT``), the ``TierError`` says no row was written; if the connection
    broke, the server applied either every row of the call or none, never some,
    and the error says so.  The server runs the transaction as one command, so
    keep a call to what it may stall for (``embcache import`` writes 65,536 rows a call).

    A Redis Cluster has no transaction across slots.  ``put_many`` reads the
    rows it is about to replace, writes node by node, and on a failure writes
    those rows back (and deletes the keys that were new) on every node it
    reached.  The ``TierError`` lists the keys whose state it could not restore
    (on a node that failed) and carries them as ``maybe_written`` (int64 array):
    each holds its old row or its new one; every other key of the call holds its
    old row, or the row another writer put after this call wrote it: the roll
    back restores a key only if it still holds this call's row (a script a
    slot, compare and set).  A row another writer put between this call's
    read of the old rows and its write is not kept: the roll back restores the
    row read before it; nor is one equal, byte for byte, to this call's.  A
    user the server's ACL denies scripts (``@scripting``) gets the old rows
    put back as they are, over any other writer's.  A cluster that needs every slot served
    (``cluster-require-full-coverage yes``, the default) stops answering on
    every node once a failed one is declared down (``cluster-node-timeout``),
    so a roll back that comes later cannot run: then ``maybe_written`` holds
    the keys of every node it could not restore.  A failed cluster
    ``delete_many`` may have removed some of its keys (never a wrong row: a
    removed row is read from a slower tier).

    A failing cluster call returns in bounded time: each node gets one round
    trip a chunk (within ``timeout``; three for a slot being migrated), and
    redis-py's own cluster retries, which resend every failed command alone up
    to ten times and could take minutes while a cluster is down, are not used.
    A failed round trip reloads the slot map, which may itself wait ``timeout``
    for each unresponsive node it asks.  A roll back starts no new attempt on a
    refusing node after ``max(10, 3 * timeout)`` seconds, about the time a
    cluster takes to declare a node failed; the attempt under way then finishes,
    which with its round trips and map reloads can take a few times
    ``timeout`` more.  A key of a slot being migrated (``redis-cli --cluster reshard``)
    is followed to the node it moves to (ASK).  A read or delete that meets a
    slot moved since the store last read the slot map (MOVED) reloads the map
    and runs again once; a write that meets one fails and rolls back.  A lost
    connection reloads the map for the next call.

    Writes are as durable as the server makes them (``appendonly yes`` with
    ``appendfsync always`` for no loss on a crash).  One store may be used from
    several threads at once (the client keeps a pool of connections).
    """

    def __init__(self, target: str | Sequence, dim: int, dtype: str | np.dtype | type = "float32",
                 password: str | None = None,
                 namespace: str = "embcache", batch: int = 10_000, timeout: float = 5.0, *,
                 create: bool = False, username: str | None = None, tls: bool = False,
                 tls_ca_certs: str | Path | None = None, tls_certfile: str | Path | None = None,
                 tls_keyfile: str | Path | None = None):
        super().__init__(dim, dtype)
        redis = require("redis")
        self.closed = True  # until a client exists, so a failed __init__ leaves nothing to close
        self._secrets = [s for s in {password, _url_password(target) if isinstance(target, str) else None} if s]
        self._secrets += [unquote(s) for s in self._secrets if unquote(s) != s]
        self._secrets.sort(key=len, reverse=True)  # mask the longest first: one may contain another
        escaped = _escaped_namespace(namespace)
        self.namespace = namespace
        self._meta_key, self._rows = escaped + b":meta", escaped + b":r"
        self._step = int(batch)
        self._timeout = float(timeout)
        self._scripts = True  # until a server refuses EVAL (an ACL user without @scripting): roll backs by value
        if self._step <= 0:
            raise ConfigError(f"RedisStore: batch must be a positive number of keys, got {batch}")
        self.cluster = not isinstance(target, str)
        common = dict(username=username, password=password, socket_timeout=timeout, socket_connect_timeout=timeout)
        if self.cluster:
            from redis.cluster import ClusterNode, RedisCluster

            try:
                nodes = [_node(n) for n in target]
            except (TypeError, ValueError):
                raise ConfigError("RedisStore: cluster nodes are 'host:port' or (host, port), "
                                  f"got {redact(str(target))}") from None
            if not nodes:
                raise ConfigError("RedisStore: give at least one cluster node as 'host:port'")
            self._where = ",".join(f"{h}:{p}" for h, p in nodes)
            tls_args = self._tls_args(tls, tls_ca_certs, tls_certfile, tls_keyfile)
            if tls:
                tls_args["ssl"] = True
            make = lambda: RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes],  # noqa: E731
                                        **common, **tls_args)
        else:
            scheme = target.partition("://")[0].lower() if "://" in target else ""
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(f"RedisStore: {redact(target)!r} is not a redis://, rediss:// or unix:// URL")
            tls = tls or scheme == "rediss"
            if tls and scheme == "unix":
                raise ConfigError("RedisStore: tls=True needs a redis:// or rediss:// URL, not a unix socket")
            url = "rediss" + target[len(scheme):] if tls else target
            self._where = redact(url)
            tls_args = self._tls_args(tls, tls_ca_certs, tls_certfile, tls_keyfile)
            make = lambda: redis.Redis.from_url(url, **common, **tls_args)  # noqa: E731
        try:
            self._client = make()  # a cluster client connects here; a single server's on first use
            self.closed = False
            stored = self._client.get(self._meta_key)
            legacy = (self._client.get(namespace.encode() + b":meta")
                      if stored is None and namespace.encode() != escaped else None)
        except (ValueError, TypeError) as exc:  # the URL or an option redis-py could not parse
            self.close()
            raise ConfigError(f"{self!r}: {self._scrub(exc)}") from None
        except redis.AuthenticationError as exc:
            self.close()
            who = f"user {username!r} and password" if username else "password"
            raise ConfigError(f"{self!r}: the server refused the {who} ({self._scrub(exc)}); "
                              "check username= and password= (or the URL's user:password@)") from None
        except redis.ResponseError as exc:
            self.close()
            if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
                raise ConfigError(f"{self!r}: the server needs a password ({self._scrub(exc)}); pass password= "
                                  "(and username= for an ACL user)") from None
            if "NOPERM" in str(exc):
                raise ConfigError(f"{self!r}: the server's ACL denies this user ({self._scrub(exc)}); "
                                  f"it needs read and write access to keys {self._meta_key[:-4].decode()}* (and "
                                  "EVAL, for a cluster's roll back by compare and set)") from None
            raise TierError(f"{self!r}: {self._scrub(exc)}") from None
        except (redis.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            self.close()
            raise TierError(f"{self!r}: cannot reach the server: {self._scrub(exc)}; check the address "
                            "(and for a TLS server tls=True, tls_ca_certs= and the client certificate)") from None
        layout = None if stored is None else self._layout(stored)
        if layout == "unknown":
            self.close()
            check_meta(stored, self.dim, self.dtype, repr(self))  # raises: not an embcache table
        if stored is not None and layout is None or legacy is not None and self._layout(legacy) is None:
            self.close()
            raise ConfigError(f"{self!r} holds a table in embcache's first key layout (rows under "
                              f"'{namespace}:' + 8 key bytes, where namespaces can overlap); it is not read. "
                              "Import the table again into a new namespace (embcache import ... --namespace NEW), "
                              "or delete the old keys first")
        if stored is not None and layout != _LAYOUT:
            self.close()
            raise ConfigError(f"{self!r} holds a table in key layout {layout!r}, which this embcache does not "
                              f"know ({_LAYOUT!r}); upgrade embcache")
        if stored is None:
            if not create:
                self.close()
                raise StoreNotFoundError(f"{self!r} holds no embcache table; check the address and namespace, "
                                         "or pass create=True to make one")
            self._run("open", self._client.set, self._meta_key, meta_blob(self.dim, self.dtype, redis_keys=_LAYOUT))
        else:
            try:
                check_meta(stored, self.dim, self.dtype, repr(self))
            except ConfigError:
                self.close()
                raise

    @staticmethod
    def _layout(blob: bytes) -> str | None:
        try:
            meta = json.loads(blob)
        except ValueError:
            return "unknown"  # not embcache metadata at all: check_meta says so
        if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
            return "unknown"
        return meta.get("redis_keys")

    @staticmethod
    def _tls_args(tls, ca, cert, key) -> dict:
        given = {"tls_ca_certs": ca, "tls_certfile": cert, "tls_keyfile": key}
        given = {k: v for k, v in given.items() if v is not None}
        if given and not tls:
            raise ConfigError(f"RedisStore: {', '.join(given)} given without TLS; pass tls=True or a rediss:// URL")
        if key is not None and cert is None:
            raise ConfigError("RedisStore: tls_keyfile needs tls_certfile (the certificate it belongs to)")
        for name, path in given.items():
            if not Path(path).is_file():
                raise ConfigError(f"RedisStore: {name}={str(path)!r} is not a file; give a PEM file")
        if not tls:
            return {}
        out = {"ssl_cert_reqs": "required"}
        for name, path in given.items():
            out["ssl_" + name[len("tls_"):]] = str(path)
        return out

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, namespace={self.namespace!r})"

    def _scrub(self, exc, limit: int = 300) -> str:
        """The client library's text (which may quote the URL, or a command's binary arguments) without
        any password in it, cut to ``limit`` characters."""
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = redact(text)
        # redis-py quotes a failed pipeline command's arguments: binary keys and rows, of no use to a reader
        text = re.sub(r"Command # (\d+) \(.*\) of pipeline", r"Command # \1 of the pipeline", text, flags=re.DOTALL)
        text = "".join(c if c.isprintable() else "?" for c in text)
        return text if len(text) <= limit else text[:limit] + " [...]"

    def _run(self, op: str, fn, *args):
        # the base class words the error; the text it quotes from redis-py is scrubbed here, and the
        # original exception is not chained (its text and arguments may hold the password)
        try:
            return super()._run(op, fn, *args)
        except TierError as exc:
            clean = TierError(self._scrub(exc, limit=1000))
            clean.__dict__.update(exc.__dict__)  # maybe_written
            raise clean from None

    def _chunks(self, n):
        return range(0, n, self._step)

    def _get_many(self, keys):
        names = encode_keys(keys, self._rows)
        if self.cluster:
            found = self._moved_once(self._get_cluster, names)
            blobs = [found[n] for n in names]
        else:
            blobs = []
            for i in self._chunks(len(names)):
                blobs.extend(self._client.mget(names[i:i + self._step]))
        return decode_rows(blobs, self.dim, self.dtype, repr(self))

    def _get_cluster(self, names) -> dict:
        found = {}
        for node, chunk in self._node_chunks(dict.fromkeys(names)):
            found.update(zip(chunk, self._on_node(node, "MGET", chunk)))
        return found

    def _node_chunks(self, names) -> list[tuple[str, list]]:
        """``names`` grouped by the cluster node that holds their slot, in chunks of at most ``batch`` keys."""
        by_node: dict[str, list] = {}
        for name in names:
            by_node.setdefault(self._client.get_node_from_key(name).name, []).append(name)
        return [(node, group[i:i + self._step]) for node, group in by_node.items()
                for i in range(0, len(group), self._step)]

    def _reload_slots(self) -> None:
        try:
            self._client.nodes_manager.initialize()
        except Exception:  # noqa: BLE001, S110  the cluster is unreachable now; the next call will say so
            pass

    def _moved_once(self, fn, *args):
        """``fn(*args)``, again once if a slot had moved (the slot map was reloaded meanwhile)."""
        redis = require("redis")
        try:
            return fn(*args)
        except redis.exceptions.MovedError:
            return fn(*args)

    @staticmethod
    def _migrating(reply) -> bool:
        """Whether a reply says its slot is being migrated: ASK (MOVED is a subclass of it) or TRYAGAIN."""
        redis = require("redis")
        return isinstance(reply, (redis.exceptions.AskError, redis.exceptions.TryAgainError)) and \
            not isinstance(reply, redis.exceptions.MovedError)

    def _on_node(self, node: str, command: str, names: list, mapping: dict | None = None) -> list:
        """One round trip to one cluster node: ``command`` (MGET, MSET, DEL or RESTORE, a roll back's compare and
        set) once per hash slot of ``names``.

        The commands go through the node's own connection, which redis-py's cluster client gives no retries,
        on purpose: that client resends each failed command of a pipeline alone, up to ten times with a
        0.25 s pause and a reload of the slot map each, so while a cluster is down one call of thousands of
        slots could take minutes. Here a call fails after one round trip (or the socket timeout), and the
        caller decides what to retry. A slot being migrated (ASK, or TRYAGAIN for keys split between the
        two nodes) is followed key by key: two more round trips, the second with ASKING to the node the
        keys move to. Returns MGET's values in the order of ``names``; raises the first other error of the
        round trip (CLUSTERDOWN, MOVED after a resharding, a lost connection).
        """
        redis = require("redis")
        by_slot: dict[int, list] = {}
        for name in names:
            by_slot.setdefault(self._client.keyslot(name), []).append(name)
        groups = list(by_slot.values())
        replies = self._send(node, command, groups, mapping)
        migrating = [n for group, reply in zip(groups, replies) if self._migrating(reply) for n in group]
        values = {}
        if migrating:  # each key alone: it is either still here or, with ASK, on the node it moves to
            asked: dict[tuple, list] = {}
            for name, reply in zip(migrating, self._send(node, command, [[n] for n in migrating], mapping)):
                if isinstance(reply, Exception) and not (self._migrating(reply) and hasattr(reply, "host")):
                    raise reply  # any error but ASK (a lone key meets no TRYAGAIN)
                if isinstance(reply, Exception):
                    asked.setdefault((reply.host, reply.port), []).append(name)
                elif command == "MGET":
                    values[name] = reply[0]
            for (host, port), moving in asked.items():
                for name, reply in zip(moving, self._send(f"{host}:{port}", command, [[n] for n in moving],
                                                          mapping, asking=True)):
                    if isinstance(reply, Exception):
                        raise reply
                    if command == "MGET":
                        values[name] = reply[0]
        for group, reply in zip(groups, replies):
            if isinstance(reply, Exception):
                if not self._migrating(reply):
                    raise reply  # MOVED among them (_send has reloaded the map: the next call goes right)
            elif command == "MGET":
                values.update(zip(group, reply))
        return [values[n] for n in names] if command == "MGET" else []

    def _send(self, node: str, command: str, groups: list, mapping: dict | None, asking: bool = False) -> list:
        """``command`` once per group of names on ``node`` ('host:port'), in one pipeline (each preceded by
        ASKING if ``asking``): the replies, errors among them; a lost connection raises."""
        redis = require("redis")
        where = self._client.get_node(node_name=node)
        if where is None or where.redis_connection is None:
            raise redis.ConnectionError(f"{node} is not in the cluster's slot map")
        pipe = where.redis_connection.pipeline(transaction=False)
        for group in groups:
            if asking:
                pipe.execute_command("ASKING")
            if command == "MSET":
                pipe.mset({n: mapping[n] for n in group})
            elif command == "RESTORE":  # mapping: name -> (this call's row, the old row or b"")
                pipe.eval(_RESTORE, len(group), *group, *(row for n in group for row in mapping[n]))
            elif command == "DEL":
                pipe.delete(*group)
            else:
                pipe.mget(group)
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.ConnectionError, redis.TimeoutError):
            self._reload_slots()
            raise
        replies = replies[1::2] if asking else replies
        # a resharding or a failover moved a slot: the next round trip goes by the new map, in whichever of
        # _on_node's rounds the MOVED came (a migration can end between them)
        if any(isinstance(r, redis.exceptions.MovedError) for r in replies):
            self._reload_slots()
        return replies

    def _put_many(self, keys, values):
        if not keys.shape[0]:
            return
        # a dict keeps the last row of a repeated key, as put_many promises
        mapping = dict(zip(encode_keys(keys, self._rows), encode_rows(values)))
        if self.cluster:
            return self._put_cluster(mapping)
        names = list(mapping)
        pipe = self._client.pipeline(transaction=True)
        for i in self._chunks(len(names)):
            pipe.mset({n: mapping[n] for n in names[i:i + self._step]})
        self._execute(pipe, "put_many", keys)

    def _execute(self, pipe, op: str, keys: np.ndarray):
        """Run one MULTI/EXEC; on failure, say whether the server applied none of it or maybe all."""
        redis = require("redis")
        n = np.unique(keys).shape[0]
        done, did = ("written", "wrote") if op == "put_many" else ("deleted", "deleted")
        try:
            pipe.execute()
        except redis.ResponseError as exc:  # the server answered: EXEC refused, or the queue was (EXECABORT)
            err = TierError(f"{self!r}.{op} failed: {type(exc).__name__}: {self._scrub(exc)}; the server refused "
                            f"the transaction, so none of the call's {n} keys was {done}")
            err.maybe_written = np.zeros(0, np.int64)
            raise err from None
        except Exception as exc:
            err = TierError(f"{self!r}.{op} failed: {type(exc).__name__}: {self._scrub(exc)}; the server "
                            f"{did} either all {n} keys of the call or none of them (one MULTI/EXEC transaction, "
                            "never some): read them back to know; they are the error's maybe_written")
            err.maybe_written = np.unique(keys)
            raise err from None

    def _put_cluster(self, mapping: dict):
        redis = require("redis")
        old = self._moved_once(self._get_cluster, list(mapping))  # what a roll back restores; nothing written yet
        chunks = self._node_chunks(mapping)
        for done, (node, chunk) in enumerate(chunks):
            try:
                self._on_node(node, "MSET", chunk, mapping)
            except Exception as exc:
                failure = exc
                break
        else:
            return
        unknown, restored, failed_nodes, why = [], 0, set(), None
        # a cluster answers CLUSTERDOWN for about its node timeout while it declares a node failed: worth
        # waiting for, but only so long, and never again for a node that has refused until the end
        end = time.monotonic() + max(_ROLLBACK_WINDOW_S, 3 * self._timeout)
        for node, chunk in chunks[:done + 1]:
            if node in failed_nodes:
                unknown.extend(chunk)
                continue
            # each key's (new row, old row): it goes back only if it still holds the new one
            pairs = {n: (mapping[n], b"" if old[n] is None else old[n]) for n in chunk}
            gone = [n for n in chunk if old[n] is None]
            back = [n for n in chunk if old[n] is not None]
            wait = 0.125
            while True:
                try:
                    # by the slot map as it is now: a MOVED reply reloaded it, so a moved slot is restored
                    # where it went
                    for where, part in self._node_chunks(gone):  # first: it frees memory on a node that
                        self._restore(where, part, pairs)         # refused the write for lack of it
                    for where, part in self._node_chunks(back):
                        self._restore(where, part, pairs)
                    restored += len(chunk)
                    break
                except Exception as exc:
                    # a refusal of the ACL's does not pass with time: no waiting for it
                    if isinstance(exc, redis.exceptions.NoPermissionError) or time.monotonic() + wait > end:
                        unknown.extend(chunk)
                        failed_nodes.add(node)
                        why = why or f"{type(exc).__name__}: {self._scrub(exc, 200)}"
                        break
                    time.sleep(wait)
                    wait = min(2 * wait, 1.0)
        maybe = np.unique(decode_keys(unknown, self._rows))
        shown = ", ".join(map(str, maybe[:10].tolist())) + (", ..." if maybe.shape[0] > 10 else "")
        state = (f"{maybe.shape[0]} keys on {', '.join(sorted(failed_nodes))} may hold their new rows or their old "
                 f"ones ({shown}; all in the error's maybe_written; restoring them failed: {why}); "
                 "every other key of the call holds its old row"
                 if maybe.shape[0] else "every key of the call holds its old row")
        state += " (or a row another writer put since this call wrote it: that one is kept)"
        err = TierError(f"{self!r}.put_many failed: {type(failure).__name__}: {self._scrub(failure)}; "
                        f"rolled back {restored} keys written before or during the failure: {state}")
        err.maybe_written = maybe
        raise err from None

    def _restore(self, node: str, names: list, pairs: dict) -> None:
        """A roll back's write of ``names`` on ``node`` (``pairs``: name -> (this call's row, the old row or
        b"")): compare and set, a script a slot; where the server refuses scripts (an ACL user without
        ``@scripting``, EVAL renamed away), the old rows put back as they are (DEL, MSET), as before."""
        redis = require("redis")
        if self._scripts:
            try:
                return self._on_node(node, "RESTORE", names, pairs)
            except redis.exceptions.ResponseError as exc:
                if not (isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in str(exc)):
                    raise
                self._scripts = False
        gone = [n for n in names if not pairs[n][1]]
        back = {n: pairs[n][1] for n in names if pairs[n][1]}
        if gone:
            self._on_node(node, "DEL", gone)
        if back:
            self._on_node(node, "MSET", list(back), back)

    def _delete_many(self, keys):
        names = encode_keys(keys, self._rows)
        if not names:
            return
        if self.cluster:
            def delete():  # idempotent, so a second pass after a moved slot is safe
                for node, chunk in self._node_chunks(dict.fromkeys(names)):
                    self._on_node(node, "DEL", chunk)
            return self._moved_once(delete)
        pipe = self._client.pipeline(transaction=True)
        for i in self._chunks(len(names)):
            pipe.delete(*names[i:i + self._step])
        self._execute(pipe, "delete_many", keys)

    def _close(self):
        self._client.close()

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64 (a SCAN over this namespace's rows only)."""
        self._check_open("keys")
        size = len(self._rows) + 8
        match = _glob_literal(self._rows) + b"*"
        found = self._run("keys", lambda: [k for k in self._client.scan_iter(match=match, count=10_000)
                                            if len(k) == size])
        return decode_keys(found, self._rows)
