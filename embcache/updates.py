"""Online updates through a Redis Stream, as HPS takes them from Kafka.

A training job calls :func:`publish` with (keys, rows) batches; every serving
host runs an :class:`UpdateConsumer` (or ``embcache serve-updates``).  The
consumer writes each batch to its store and refreshes the rows its caches hold
(``Cache.update``, which writes through to the cache's tier), and acknowledges
the message only after that write returned, so it is durable.  A consumer
killed between the write and the acknowledgement gets the message again when
it restarts (writes are idempotent): nothing acknowledged is lost, nothing is
applied half.

**Every consumer sees every update.**  Consumers in one Redis consumer group
*split* a stream between them, so by default each consumer gets a group of its
own, named from the host and the store it writes (``embcache:<host>:<hash of
the store>``; with caches, or a store in this process's memory, the process id
too, since those rows live in this process only).  Two servers therefore never
share a group by accident; pass ``group=`` (``--group``) to share one on purpose.

**Order.**  Messages are applied in stream order.  A batch is first checked
whole (its encoding, dim and dtype, reserved keys, NaN against every cache that
refuses NaN); a batch that fails the check is a bad message: it is moved to
``<stream>:dead`` with the reason and acknowledged, so it does not stop the
stream.  A batch that passes but cannot be written (a ``TierError``, a closed
store) is not acknowledged: ``poll`` raises, and the next ``poll`` retries that
batch, and every batch after it that was read, before it reads any new message.
So a later update of a key is never overtaken by an earlier one.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import check_keys, check_rows
from ._dtypes import raw, row_dtype
from .errors import ConfigError, DataFormatError, EmbCacheError, RowDtypeError, TierError
from .tiers import HostStore, RedisStore, RocksStore, Tier, TieredStore
from .tiers._base import require

__all__ = ["publish", "UpdateConsumer", "DEAD_ERROR", "DEAD_ID"]

#: Dead-letter fields that embcache adds: the reason a message was refused, and its id in the stream.
#: A message's own fields are kept beside them (one whose name starts with ``embcache.`` is renamed
#: ``embcache.message.<name>``), so a message cannot forge or hide the reason.
DEAD_ERROR, DEAD_ID = b"embcache.error", b"embcache.id"
_OURS = b"embcache."


def _client(redis_or_url, password=None):
    redis = require("redis")
    return redis.Redis.from_url(redis_or_url, password=password) if isinstance(redis_or_url, str) else redis_or_url


def _little(rows: np.ndarray) -> bytes:
    """Row bits in little-endian order, whatever order the machine keeps them in."""
    bits = raw(rows)
    return bits.astype(bits.dtype.newbyteorder("<"), copy=False).tobytes()


def publish(redis_or_url: Any, stream: str, keys: Any, rows: Any, maxlen: int | None = None) -> bytes:
    """Append one update batch; returns the message id.

    Parameters
    ----------
    keys : (n,) integer array
        Any integer dtype and byte order, converted by value as ``Cache`` does
        (uint64 taken as its 64 bits); no reserved key.
    rows : (n, dim) float32, float16 or bfloat16 array
        In either byte order: they are sent by value, little-endian.
    maxlen : int, optional
        Trim the stream to about this many messages.
    """
    keys = check_keys(keys)
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] != keys.shape[0]:
        raise DataFormatError(f"rows must be (len(keys), dim) = ({keys.shape[0]}, dim), got shape {rows.shape}")
    if rows.dtype.kind != "f" and rows.dtype.name != "bfloat16":
        raise RowDtypeError(f"rows must be float32, float16 or bfloat16, got dtype {rows.dtype}; convert with "
                            "rows.astype(np.float32)")
    dtype = row_dtype(rows.dtype.newbyteorder("=") if rows.dtype.kind == "f" else rows.dtype)
    rows = check_rows(rows, keys.shape[0], rows.shape[1], dtype)  # native order, by value
    fields = {b"keys": keys.astype("<i8").tobytes(), b"rows": _little(rows), b"dim": str(rows.shape[1]),
              b"dtype": dtype.name}
    return _client(redis_or_url).xadd(stream, fields, maxlen=maxlen, approximate=maxlen is not None)


def _decode(fields: dict, dim: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    try:
        got_dim, got_dtype = int(fields[b"dim"]), fields[b"dtype"].decode()
        key_bytes, row_bytes = fields[b"keys"], fields[b"rows"]
    except (KeyError, ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise DataFormatError(f"not an embcache update message (missing or bad field: {exc})") from None
    if got_dim != dim or got_dtype != dtype.name:
        raise DataFormatError(f"message holds dim={got_dim} {got_dtype} rows; this consumer applies dim={dim} "
                              f"{dtype.name}")
    if len(key_bytes) % 8 or len(row_bytes) != len(key_bytes) // 8 * dim * dtype.itemsize:
        raise DataFormatError(f"message sizes disagree: {len(key_bytes)} key bytes, {len(row_bytes)} row bytes")
    keys = np.frombuffer(key_bytes, "<i8").astype(np.int64)
    bits = raw(np.zeros(0, dtype)).dtype
    rows = np.frombuffer(row_bytes, bits.newbyteorder("<")).astype(bits).view(dtype)
    return keys, rows.reshape(-1, dim)


def _place(tier) -> tuple[str, bool]:
    """Where ``tier`` keeps its rows, as text without secrets, and whether that place is this process's memory."""
    if isinstance(tier, TieredStore):
        parts = [_place(t) for t in tier.tiers]
        return "tiered[" + ",".join(p for p, _ in parts) + "]", any(local for _, local in parts)
    if isinstance(tier, RocksStore):
        return "rocksdb:" + os.path.realpath(tier.path), False
    if isinstance(tier, RedisStore):
        return re.sub(r"//[^/@'\s]*@", "//", repr(tier)), False  # never a password, even hashed
    if isinstance(tier, HostStore):
        return f"host-memory@{id(tier):x}", True
    # unknown: assume its rows are this process's alone
    return f"{type(tier).__module__}.{type(tier).__qualname__}@{id(tier):x}", True


def _default_names(store: Tier | None, caches: Sequence = ()) -> tuple[str, str]:
    """The consumer group and consumer name that :class:`UpdateConsumer` takes when given none.

    The group is ``embcache:<host>:<hash>``, where the hash (12 hex digits of
    SHA-256) is of the places the consumer writes: the store (its RocksDB
    folder, or its Redis address and namespace without a password), and each
    cache (the object in this process, and its tier).  When the rows live in
    this process (caches, a HostStore) the group is
    ``embcache:<host>:pid<pid>:<hash>``, since another process on this host has
    caches of its own that need every update too.  The consumer name is the
    host name (``<host>:pid<pid>`` in the per-process case), stable across
    restarts so that a restarted consumer takes back its own unacknowledged
    messages.
    """
    places = ([_place(store)] if store is not None else [])
    # each cache is this process's own: two consumers refreshing two caches must not split the updates
    places += [(f"cache@{id(c):x}+{_place(getattr(c, 'tier', c))[0]}", True) for c in caches]
    local = any(mine for _, mine in places)
    digest = hashlib.sha256("\n".join(p for p, _ in places).encode()).hexdigest()[:12]
    host = socket.gethostname() or "localhost"
    if local:
        return f"embcache:{host}:pid{os.getpid()}:{digest}", f"{host}:pid{os.getpid()}"
    return f"embcache:{host}:{digest}", host


class UpdateConsumer:
    """Applies update batches from a Redis Stream to a store and the caches in front of it.

    Parameters
    ----------
    redis_or_url : str or redis.Redis
        Where the stream lives.
    stream : str
        Stream key.
    group : str, optional
        Consumer group, created if absent (from the stream's start).  By default
        one of this consumer's own, so that every server sees every update
        (consumers sharing a group split the stream): ``embcache:<host>:<hash>``,
        the hash being 12 hex digits of SHA-256 of where the consumer writes (the
        store's RocksDB folder or Redis address and namespace, never a password;
        each cache's tier).  With caches, or a HostStore, whose rows live in this
        process only, ``embcache:<host>:pid<pid>:<hash>``: each process needs
        every update, and a restarted one replays the stream from its start.
    consumer : str, optional
        This consumer's name in the group, stable across restarts so that it
        takes back its own unacknowledged messages; by default the host name
        (``<host>:pid<pid>`` with caches or a HostStore).
    store : Tier
        Where updates are written (before any cache is refreshed); with
        caches, each cache's ``update`` also writes through to its own tier.
    caches : sequence of Cache
        Caches whose cached rows must follow the updates.  They and the store
        must hold rows of one dim and dtype.
    password : str, optional
        AUTH password of the stream's server.

    Notes
    -----
    ``poll`` raises the store's error (``TierError``, ``ClosedError``) when a
    checked batch cannot be written; the batch stays unacknowledged and the
    next ``poll`` retries it before any later message, so a caller may keep
    polling (for example after a pause) until the tier is back.  ``run`` stops
    with that error.  A restarted consumer with the same group and name
    retries it too.
    """

    def __init__(self, redis_or_url: Any, stream: str, group: str | None = None, consumer: str | None = None,
                 store: Tier | None = None, caches: Sequence = (), password: str | None = None):
        if store is None and not caches:
            raise DataFormatError("UpdateConsumer needs a store or at least one cache to apply updates to")
        self.store, self.caches = store, list(caches)
        first = self.caches[0] if self.caches else store
        self.dim, self.dtype = first.dim, row_dtype(first.dtype)
        for other in ([store] if store is not None else []) + self.caches:
            if other.dim != self.dim or row_dtype(other.dtype) != self.dtype:
                raise ConfigError(f"UpdateConsumer: {first!r} holds dim={self.dim} {self.dtype} rows but {other!r} "
                                  f"holds dim={other.dim} {other.dtype}; give it stores and caches of one table")
        derived_group, derived_consumer = _default_names(store, self.caches)
        group = derived_group if group is None else group
        consumer = derived_consumer if consumer is None else consumer
        self.client = _client(redis_or_url, password)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.applied = self.rejected = 0
        redis = require("redis")
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TierError(f"UpdateConsumer({stream!r}, {group!r}): {exc}") from exc
        self._backlog = True  # first read this consumer's own pending messages (a previous run's)

    def _check(self, fields) -> tuple[np.ndarray, np.ndarray]:
        """The batch a message holds, checked whole against the store and every cache; DataFormatError etc."""
        keys, rows = _decode(fields, self.dim, self.dtype)
        keys = check_keys(keys)
        reject_nan = any(getattr(c, "reject_nan", False) for c in self.caches)
        rows = check_rows(rows, keys.shape[0], self.dim, self.dtype, reject_nan)
        return keys, rows

    def _dead_letter(self, msg_id, fields, exc: Exception) -> None:
        own = {}
        for k, v in fields.items():
            k = k if isinstance(k, bytes) else str(k).encode()  # a client made with decode_responses=True
            own[_OURS + b"message." + k if k.startswith(_OURS) else k] = v
        self.client.xadd(f"{self.stream}:dead", {**own, DEAD_ID: msg_id, DEAD_ERROR: str(exc)})

    def _apply(self, msg_id, fields) -> None:
        try:
            keys, rows = self._check(fields)
        except EmbCacheError as exc:  # a bad message: set aside, so that it does not stop the stream
            self._dead_letter(msg_id, fields, exc)
            self.rejected += 1
        else:
            # checked whole above: anything failing now is the store's or a cache's, not the message's; the
            # message stays pending and is retried first (writes are idempotent, so a part already written
            # is simply written again)
            if self.store is not None:
                self.store.put_many(keys, rows)
            for cache in self.caches:
                cache.update(keys, rows)
            self.applied += 1
        self.client.xack(self.stream, self.group, msg_id)

    def poll(self, count: int = 16, block_ms: int | None = 1000) -> int:
        """Apply up to ``count`` messages (waiting up to ``block_ms`` for new ones); returns how many were handled.

        Raises the store's error if a checked batch cannot be written; that batch
        and the ones read after it stay pending, and the next call retries them,
        in stream order, before reading anything new.
        """
        try:
            if self._backlog:
                reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=count)
                messages = reply[0][1] if reply else []
                if not messages:
                    self._backlog = False
            if not self._backlog:
                reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count,
                                               block=block_ms)
                messages = reply[0][1] if reply else []
            for msg_id, fields in messages:
                if fields:
                    self._apply(msg_id, fields)
                else:  # trimmed from the stream while pending: nothing left to apply
                    self.client.xack(self.stream, self.group, msg_id)
        except BaseException as exc:
            # whatever was read and not acknowledged is pending: read it again, in order, before anything new
            self._backlog = True
            if isinstance(exc, Exception) and hasattr(exc, "add_note"):
                exc.add_note(f"UpdateConsumer({self.stream!r}, group={self.group!r}): the unacknowledged updates "
                             "stay pending and the next poll retries them before any later message")
            raise
        return len(messages)
    def run(self, max_messages: int | None = None, idle_polls: int | None = None, progress: bool = True) -> int:
        """Poll until ``max_messages`` were handled or ``idle_polls`` polls in a row found nothing (forever if
        both are None).  Returns the number handled.

        Stops with the store's error when a checked batch cannot be written; that
        batch stays pending, and the next ``poll`` or ``run`` (of this object, or
        of a restarted consumer of the same group and name) applies it first.
        """
        from tqdm.auto import tqdm

        handled = idle = 0
        with tqdm(unit="batch", desc=f"updates from {self.stream}", disable=not progress) as bar:
            while max_messages is None or handled < max_messages:
                want = 16 if max_messages is None else min(16, max_messages - handled)
                got = self.poll(want)
                handled += got
                bar.update(got)
                idle = 0 if got else idle + 1
                if idle_polls is not None and idle >= idle_polls:
                    break
        return handled
