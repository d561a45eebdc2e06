"""Online updates through a Redis Stream, as HPS takes them from Kafka.

A training job calls :func:`publish` with (keys, rows) batches; every serving
host runs an :class:`UpdateConsumer` (or ``embcache serve-updates``) in a
consumer group.  The consumer writes each batch to its store and refreshes the
rows its caches hold (``Cache.update``, which writes through to the cache's
tier), and acknowledges the message only after that write returned, so it is
durable.  A consumer killed between the write and the acknowledgement gets the
message again when it restarts (writes are idempotent): nothing acknowledged
is lost, nothing is applied half.

A message that cannot be applied (another dim or dtype, a reserved key,
damaged bytes) is moved to ``<stream>:dead`` with the reason and acknowledged,
so one bad message does not stop the stream.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._dtypes import row_dtype
from .errors import DataFormatError, EmbCacheError, TierError
from .tiers import Tier
from .tiers._base import require

__all__ = ["publish", "UpdateConsumer"]


def _client(redis_or_url, password=None):
    redis = require("redis")
    return redis.Redis.from_url(redis_or_url, password=password) if isinstance(redis_or_url, str) else redis_or_url


def publish(redis_or_url, stream: str, keys, rows, maxlen: int | None = None) -> bytes:
    """Append one update batch: keys (n,) int64 and rows (n, dim) float32/float16/bfloat16.  Returns the message id."""
    keys = np.ascontiguousarray(keys, np.int64)
    rows = np.ascontiguousarray(rows)
    if rows.ndim != 2 or rows.shape[0] != keys.shape[0]:
        raise DataFormatError(f"rows must be (len(keys), dim) = ({keys.shape[0]}, dim), got shape {rows.shape}")
    dtype = row_dtype(rows.dtype)
    fields = {b"keys": keys.astype("<i8").tobytes(), b"rows": rows.tobytes(), b"dim": str(rows.shape[1]),
              b"dtype": dtype.name}
    return _client(redis_or_url).xadd(stream, fields, maxlen=maxlen, approximate=maxlen is not None)


def _decode(fields: dict, dim: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    try:
        got_dim, got_dtype = int(fields[b"dim"]), fields[b"dtype"].decode()
        key_bytes, row_bytes = fields[b"keys"], fields[b"rows"]
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"not an embcache update message (missing or bad field: {exc})") from None
    if got_dim != dim or got_dtype != dtype.name:
        raise DataFormatError(f"message holds dim={got_dim} {got_dtype} rows; this consumer applies dim={dim} "
                              f"{dtype.name}")
    if len(key_bytes) % 8 or len(row_bytes) != len(key_bytes) // 8 * dim * dtype.itemsize:
        raise DataFormatError(f"message sizes disagree: {len(key_bytes)} key bytes, {len(row_bytes)} row bytes")
    keys = np.frombuffer(key_bytes, "<i8").astype(np.int64)
    return keys, np.frombuffer(row_bytes, dtype).reshape(-1, dim)


class UpdateConsumer:
    """Applies update batches from a Redis Stream to a store and the caches in front of it.

    Parameters
    ----------
    redis_or_url : str or redis.Redis
        Where the stream lives.
    stream, group, consumer : str
        Stream key, consumer group (created if absent, from the stream's start),
        and this consumer's name (stable across restarts, so that it takes back
        its own unacknowledged messages).
    store : Tier
        Where updates are written when no cache is given; with caches, each
        cache's ``update`` writes through to its own tier.
    caches : sequence of Cache
        Caches whose cached rows must follow the updates.
    """

    def __init__(self, redis_or_url, stream: str, group: str, consumer: str, store: Tier | None = None,
                 caches: Sequence = (), password: str | None = None):
        if store is None and not caches:
            raise DataFormatError("UpdateConsumer needs a store or at least one cache to apply updates to")
        self.client = _client(redis_or_url, password)
        self.stream, self.group, self.consumer = stream, group, consumer
        self.store, self.caches = store, list(caches)
        first = self.caches[0] if self.caches else store
        self.dim, self.dtype = first.dim, row_dtype(first.dtype)
        self.applied = self.rejected = 0
        redis = require("redis")
        try:
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise TierError(f"UpdateConsumer({stream!r}, {group!r}): {exc}") from exc
        self._backlog = True  # first read this consumer's own pending messages (a previous run's)

    def _apply(self, msg_id, fields) -> None:
        try:
            keys, rows = _decode(fields, self.dim, self.dtype)
            if self.store is not None:
                self.store.put_many(keys, rows)
            for cache in self.caches:
                cache.update(keys, rows)
        except TierError:
            raise  # not acknowledged: the message comes back after the tier does
        except EmbCacheError as exc:
            self.client.xadd(f"{self.stream}:dead", {b"id": msg_id, b"error": str(exc), **fields})
            self.rejected += 1
        else:
            self.applied += 1
        self.client.xack(self.stream, self.group, msg_id)

    def poll(self, count: int = 16, block_ms: int | None = 1000) -> int:
        """Apply up to ``count`` messages (waiting up to ``block_ms`` for new ones); returns how many were handled."""
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
        return len(messages)

    def run(self, max_messages: int | None = None, idle_polls: int | None = None, progress: bool = True) -> int:
        """Poll until ``max_messages`` were handled or ``idle_polls`` polls in a row found nothing (forever if
        both are None).  Returns the number handled."""
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
