"""SharedHostStore: one host tier in shared memory (``/dev/shm``) that every process of a host opens.

As HPS's ``multi_process_hash_map``: one inference process per GPU opens the same table, and each
GPU reads it zero-copy (the mapping registered with CUDA).  One process writes; any number read.

Files
    ``<root>/embcache-<name>/`` holds ``data`` (a header page, then two *copies* of the table, each a
    HostStore-style index of ``slots`` int64 keys, ``mix64(key) & (slots - 1)`` then linear probing,
    and ``slots`` rows beside it) and three lock files: ``writer``, ``copy0``, ``copy1``, locked
    with ``flock``, which the kernel releases when the process that held them dies.

Commit protocol (left-right: two copies, one being written while readers read the other)
    The header's generation word ``gen`` names the last committed generation; copy ``gen % 2``
    holds it, and each copy records the generation it holds (``copy_gen``, ``-1`` while written).
    A write (one ``put_many`` or ``delete_many``, committed whole) at generation ``g``:

    1. takes ``copy{d}`` exclusively, ``d = (g + 1) % 2``: it waits for the readers still reading
       generation ``g - 1`` there (none read it after ``g`` was committed: readers go to ``gen``);
    2. marks copy ``d`` dirty (``copy_gen[d] = -1``);
    3. brings it from generation ``g - 1`` to ``g`` (the keys the last commit touched, copied from
       the other copy), then applies the batch;
    4. records ``copy_gen[d] = g + 1``, then publishes ``gen = g + 1``: the one store that commits;
    5. lets ``copy{d}`` go.

    A read takes ``copy{gen % 2}`` shared (``flock(LOCK_SH)``), checks that copy is not dirty
    (retrying with a fresh ``gen`` if it is, or if the writer holds it), reads it, and lets it go.
    Every word a reader trusts is read under that lock and written by the writer under its
    exclusive lock (the lock calls are the memory barriers), so a read that races a commit gets
    the old generation or the new one, whole, never a torn row or index.

How long a generation stays readable
    A reader holds its copy from the first read under this object's ``lock`` until the outermost
    release of ``lock``: calls under one ``with store.lock:`` see one generation, and a
    :meth:`device_source` stays valid, for the GPU too, until ``lock`` is let go.  Meanwhile the
    writer can commit once more (into the other copy); its next commit waits for that reader.
    Hold ``lock`` for a lookup, not for minutes, and never write through the writer from a thread
    that holds a reader's ``lock`` (its second commit would wait for that thread).

A killed writer
    ``SIGKILL`` mid-batch leaves ``gen`` at the last commit and that copy untouched: readers keep
    serving exactly the last committed rows.  The kernel drops the dead writer's locks; the next
    writer to open the table copies the committed copy over the other one (which the dead writer
    may have left half-written) and continues.  A second writer while one lives is refused.

Memory: two copies of ``slots * (8 + dim * itemsize)`` bytes, ``slots`` the power of two at least
``2 * capacity``, reserved up front (``posix_fallocate``: a full ``/dev/shm`` is an error at create,
not a crash later).  Linux only (``/dev/shm``, ``flock``).
"""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
import secrets
import shutil
import threading

from typing import Any

import numpy as np

from .._dtypes import raw
from .._source import DeviceSource
from ..errors import ConfigError, StoreNotFoundError, TierError
from ..layout import EMPTY_KEY
from ._base import Tier
from .host import _delete_many, _get_many, _put_many

__all__ = ["SharedHostStore"]

DEFAULT_ROOT = "/dev/shm"
_MAGIC = 0x31304D4853424D45  # b"EMBSHM01" little-endian
_VERSION = 1
_PAGE = 4096
_HEADER_WORDS = _PAGE // 8
# header words
_W_MAGIC, _W_VERSION, _W_DIM, _W_ITEMSIZE, _W_CAPACITY, _W_SLOTS, _W_GEN = range(7)
_W_COPY_GEN = 7  # and 8: the generation each copy holds, _DIRTY while the writer writes it
_W_SIZE = 9  # and 10: the rows each copy holds
_DTYPE_AT, _DTYPE_BYTES = 128, 32  # the dtype's name, in bytes of the header
_DIRTY = -1
_SPIN = 64  # non-blocking tries for a reader's copy before it waits on the lock
_TRIES = 4096
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}")
_NO_AUX = np.zeros((0, 2), np.int64)  # host.py's kernels keep no overflow bookkeeping here


def _pages(nbytes: int) -> int:
    return -(-nbytes // _PAGE) * _PAGE


def _layout(slots: int, row_bytes: int) -> tuple[int, int, int]:
    """``(index offset of copy 0, rows offset of copy 0, bytes per copy)``; copy 1 follows copy 0."""
    index_bytes, rows_bytes = _pages(slots * 8), _pages(slots * row_bytes)
    return _PAGE, _PAGE + index_bytes, index_bytes + rows_bytes


class _PinLock:
    """A reentrant lock that lets a reader's pinned copy go at its outermost release (see the module)."""

    def __init__(self, on_last_release):
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread that owns _lock
        self._on_last_release = on_last_release

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if got:
            self._depth += 1
        return got

    def release(self) -> None:
        self._depth -= 1
        try:
            if self._depth == 0:
                self._on_last_release()
        finally:
            self._lock.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class SharedHostStore(Tier):
    """Rows in a shared-memory table that several processes of one host open at once.

    Parameters
    ----------
    name : str
        The table's name (letters, digits, ``_ . -``); its files are ``<root>/embcache-<name>/``.
    dim : int
        Values per row; must match the table's.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``; must match the table's.
    writer : bool
        Open as the table's one writer (``put_many``, ``delete_many``).  A second writer while one is
        alive (in any process) is refused with ``TierError``.  Readers (the default) are read-only:
        their ``put_many``/``delete_many`` raise ``ConfigError``.
    create : bool
        Make the table if it does not exist (then ``capacity`` is needed).  Off by default, so that a
        mistyped name is a ``StoreNotFoundError`` rather than an empty table serving zero rows.
    capacity : int, optional
        Most rows the table holds (fixed; a ``put_many`` whose new keys do not fit raises
        ``TierError`` and writes nothing).  Needed to create; checked against the table when given.
    root : str
        Folder of the tables; ``/dev/shm`` (memory) by default.

    Use :meth:`create` to make one as its writer, :meth:`unlink` to remove one (processes that
    have it open keep their mapping until they close it).  The files are made readable and
    writable by their owner only.  Every call holds ``lock`` (see :class:`Tier`); the module
    docstring says how reads and commits of different processes are ordered.
    """

    def __init__(self, name: str, dim: int, dtype: str = "float32", *, writer: bool = False, create: bool = False,
                 capacity: int | None = None, root: str | os.PathLike = DEFAULT_ROOT):
        super().__init__(dim, dtype)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"a SharedHostStore name is letters, digits, '_', '.' and '-' (not first), got {name!r}")
        if capacity is not None and int(capacity) <= 0:
            raise ConfigError(f"capacity must be a positive number of rows, got {capacity!r}")
        self.name = name
        self.writer = bool(writer)
        self.root = os.fspath(root)
        self.path = os.path.join(self.root, f"embcache-{name}")
        self.lock = _PinLock(self._unpin)
        self._fds: list[int] = []
        self._mm = None
        self._pinned: int | None = None
        self._registered: int | None = None  # host address registered with CUDA
        self._device_base: int | None = None
        self._log = np.zeros(0, np.int64)  # the keys the last commit touched (writer)
        self._stale = True  # the other copy may differ anywhere: the next commit copies it whole (writer)
        if not os.path.isfile(os.path.join(self.path, "data")):
            if not create:
                raise StoreNotFoundError(f"{self!r}: no shared table at {self.path!r}; check the name and root, or "
                                         "create it (SharedHostStore.create(name, dim, dtype, capacity))")
            if capacity is None:
                raise ConfigError(f"{self!r}: creating a shared table needs a capacity (rows)")
            self._make(int(capacity))
        try:
            self._open(capacity)
        except BaseException:
            self._release_files()
            raise

    @classmethod
    def create(cls, name: str, dim: int, dtype: str = "float32", capacity: int = 1 << 20, *,
               root: str | os.PathLike = DEFAULT_ROOT) -> SharedHostStore:
        """The table ``name``, made if absent (else opened and checked), opened as its writer."""
        return cls(name, dim, dtype, writer=True, create=True, capacity=capacity, root=root)

    @staticmethod
    def unlink(name: str, *, root: str | os.PathLike = DEFAULT_ROOT, missing_ok: bool = False) -> None:
        """Remove the table ``name``'s files; open handles keep working until they close."""
        path = os.path.join(os.fspath(root), f"embcache-{name}")
        if not os.path.isdir(path):
            if missing_ok:
                return
            raise StoreNotFoundError(f"no shared table {name!r} at {path!r}")
        shutil.rmtree(path, ignore_errors=True)

    def __repr__(self) -> str:
        role = "writer" if self.writer else "reader"
        return f"SharedHostStore({self.name!r}, dim={self.dim}, dtype={self.dtype.name!r}, {role})"

    # ------------------------------------------------------------------ files
    def _make(self, capacity: int) -> None:
        """Build the table under a temporary name and rename it into place (atomic: whole or absent)."""
        slots = max(16, 1 << (2 * capacity - 1).bit_length())
        row_bytes = self.dim * self.dtype.itemsize
        first_index, first_rows, per_copy = _layout(slots, row_bytes)
        os.makedirs(self.root, exist_ok=True)
        tmp = os.path.join(self.root, f".embcache-{self.name}.{os.getpid()}.{secrets.token_hex(4)}")
        os.mkdir(tmp, 0o700)
        try:
            for lock in ("writer", "copy0", "copy1"):
                os.close(os.open(os.path.join(tmp, lock), os.O_CREAT | os.O_WRONLY, 0o600))
            fd = os.open(os.path.join(tmp, "data"), os.O_CREAT | os.O_RDWR, 0o600)
            try:
                size = _PAGE + 2 * per_copy
                try:
                    os.posix_fallocate(fd, 0, size)  # reserve now: a full tmpfs fails here, not with SIGBUS later
                except OSError as exc:
                    raise TierError(f"{self!r}: cannot reserve {size} bytes in {self.root!r}: {exc}; free space "
                                    "there or use a smaller capacity") from exc
                with mmap.mmap(fd, size) as mm:
                    header = np.frombuffer(mm, np.int64, _HEADER_WORDS)
                    for c in (0, 1):
                        np.frombuffer(mm, np.int64, slots, first_index + c * per_copy).fill(EMPTY_KEY)
                    header[[_W_VERSION, _W_DIM, _W_ITEMSIZE, _W_CAPACITY, _W_SLOTS, _W_GEN]] = (
                        _VERSION, self.dim, self.dtype.itemsize, capacity, slots, 0)
                    header[_W_COPY_GEN:_W_COPY_GEN + 2] = 0
                    header[_W_SIZE:_W_SIZE + 2] = 0
                    name = self.dtype.name.encode()
                    np.frombuffer(mm, np.uint8, _DTYPE_BYTES, _DTYPE_AT)[:len(name)] = np.frombuffer(name, np.uint8)
                    header[_W_MAGIC] = _MAGIC  # last: a header with the magic is whole
                    del header
                    mm.flush()
            finally:
                os.close(fd)
            try:
                os.rename(tmp, self.path)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another process made it first: open theirs
            else:
                tmp = None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    def _open(self, capacity: int | None) -> None:
        fd = os.open(os.path.join(self.path, "data"), os.O_RDWR)
        self._fds.append(fd)
        size = os.fstat(fd).st_size
        if size < _PAGE:
            raise ConfigError(f"{self!r}: {self.path!r} is not a SharedHostStore table ({size} bytes)")
        self._mm = mmap.mmap(fd, size)
        header = np.frombuffer(self._mm, np.int64, _HEADER_WORDS)
        if int(header[_W_MAGIC]) != _MAGIC or int(header[_W_VERSION]) != _VERSION:
            raise ConfigError(f"{self!r}: {self.path!r} is not a version-{_VERSION} SharedHostStore table")
        stored = bytes(np.frombuffer(self._mm, np.uint8, _DTYPE_BYTES, _DTYPE_AT)).rstrip(b"\0").decode()
        if int(header[_W_DIM]) != self.dim or stored != self.dtype.name:
            raise ConfigError(f"{self!r}: the table holds dim={int(header[_W_DIM])} {stored} rows; open it with those")
        self.capacity = int(header[_W_CAPACITY])
        if capacity is not None and int(capacity) != self.capacity:
            raise ConfigError(f"{self!r}: the table's capacity is {self.capacity} rows, not {int(capacity)}")
        slots = int(header[_W_SLOTS])
        first_index, first_rows, per_copy = _layout(slots, self.dim * self.dtype.itemsize)
        if size < _PAGE + 2 * per_copy:
            raise ConfigError(f"{self!r}: {self.path!r} is truncated ({size} bytes)")
        self._header = header
        self._offsets = [(first_index + c * per_copy, first_rows + c * per_copy) for c in (0, 1)]
        rawtype = raw(np.zeros(1, self.dtype)).dtype
        self._tables = [np.frombuffer(self._mm, np.int64, slots, i) for i, _ in self._offsets]
        self._rows = [np.frombuffer(self._mm, rawtype, slots * self.dim, r).reshape(slots, self.dim)
                      for _, r in self._offsets]
        if not self.writer:
            for a in self._tables + self._rows:
                a.flags.writeable = False  # a reader never writes the table, not even by mistake
        for lock in ("copy0", "copy1"):
            self._fds.append(os.open(os.path.join(self.path, lock), os.O_RDWR))
        self._copy_fds = self._fds[1:3]
        if self.writer:
            wfd = os.open(os.path.join(self.path, "writer"), os.O_RDWR)
            self._fds.append(wfd)
            try:
                fcntl.flock(wfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TierError(f"{self!r}: another process (or object) is this table's writer; open it as a "
                                "reader, or stop that writer first") from None
            with self.lock:
                self._repair()

    def _release_files(self) -> None:
        self._unpin()
        if self._registered is not None:
            import cupy

            cupy.cuda.runtime.hostUnregister(self._registered)
            self._registered = self._device_base = None
        self._header = None
        self._tables = self._rows = []
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a view still lives (a failed open's traceback): the collector unmaps it
                pass
            self._mm = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _close(self) -> None:
        self._release_files()

    def __del__(self):
        # a store dropped unclosed still lets its locks go (a writer's above all: the next writer waits
        # on nothing else) and its file descriptors
        try:
            if self._fds:
                self._release_files()
        except Exception:  # at interpreter exit CUDA or os may be gone; the kernel cleans up then
            pass

    # ------------------------------------------------------------------ reading
    def _unpin(self) -> None:
        if self._pinned is not None:
            fcntl.flock(self._copy_fds[self._pinned], fcntl.LOCK_UN)
            self._pinned = None

    def _copy(self) -> int:
        """The copy this object reads (under ``lock``): a reader's pinned one (pinned here if none yet,
        until ``lock``'s outermost release), or the writer's committed one."""
        if self.writer:
            return int(self._header[_W_GEN]) & 1  # only this object changes the table, under this lock
        if self._pinned is not None:
            return self._pinned
        for attempt in range(_TRIES):
            c = int(self._header[_W_GEN]) & 1
            try:
                fcntl.flock(self._copy_fds[c], fcntl.LOCK_SH | (0 if attempt >= _SPIN else fcntl.LOCK_NB))
            except BlockingIOError:
                continue  # the writer is writing it: gen has moved on to the other copy
            if int(self._header[_W_COPY_GEN + c]) != _DIRTY:
                self._pinned = c
                return c
            fcntl.flock(self._copy_fds[c], fcntl.LOCK_UN)  # left dirty by a dead writer: gen names the other
        raise TierError(f"{self!r}: found no committed copy in {_TRIES} tries; the table looks damaged, "
                        "recreate it")

    def _get_many(self, keys):
        c = self._copy()
        out = np.zeros((keys.shape[0], self.dim), self.dtype)
        found = np.zeros(keys.shape[0], np.bool_)
        _get_many(self._tables[c], self._rows[c], _NO_AUX, keys, raw(out), found)
        return out, found

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64, in no particular order."""
        def stored():
            table = self._tables[self._copy()]
            return table[table != EMPTY_KEY].copy()
        return self._run("keys", stored)

    def __len__(self) -> int:
        with self.lock:
            self._check_open("__len__")
            return int(self._header[_W_SIZE + self._copy()])

    @property
    def generation(self) -> int:
        """The committed generation this object reads now (0 for a new table; +1 per commit)."""
        with self.lock:
            self._check_open("generation")
            return int(self._header[_W_COPY_GEN + self._copy()])

    offers_device_source = True  # every shared table: its mapping is registered with CUDA on first use

    def device_source(self) -> DeviceSource:
        """The committed generation's index and rows where the current GPU reads them in place.

        The mapping is registered with CUDA (mapped, portable) on first use.  Valid while ``lock``
        is held: the generation stays pinned until its outermost release (see the module docstring).
        Needs CuPy.
        """
        with self.lock:
            self._check_open("device_source")
            c = self._copy()
            base = self._device_address()
            index, rows = self._offsets[c]
            return DeviceSource(np.uint64(base + index), np.int64(self._tables[c].shape[0] - 1),
                                np.uint64(base + rows), self.dim, self.dtype, owner=self)

    def _device_address(self) -> int:
        if self._device_base is None:
            from .._cuda import require_cupy

            cupy = require_cupy()
            host = np.frombuffer(self._mm, np.uint8).ctypes.data
            # cudaHostRegisterPortable | cudaHostRegisterMapped: pinned for every context, device-addressable
            cupy.cuda.runtime.hostRegister(host, len(self._mm), 1 | 2)
            self._registered = host
            self._device_base = int(cupy.cuda.runtime.pointerGetAttributes(host).devicePointer)
        return self._device_base

    # ------------------------------------------------------------------ writing
    def _check_writer(self, op: str) -> None:
        if not self.writer:
            raise ConfigError(f"{self!r}.{op}: a reader is read-only; write through the table's writer "
                              "(SharedHostStore(name, dim, dtype, writer=True) in one process)")

    def put_many(self, keys: Any, values: Any) -> None:
        """Store ``values`` (n, dim) under ``keys`` (n,) as one commit: readers see all of it or none (writer only)."""
        self._check_writer("put_many")
        super().put_many(keys, values)


    def delete_many(self, keys: Any) -> None:
        """Remove ``keys`` (n,) as one commit (writer only); absent keys are ignored."""
        self._check_writer("delete_many")
        super().delete_many(keys)

    delete_many.__doc__ = Tier.delete_many.__doc__ + "  One commit (writer only)."

    def _put_many(self, keys, values):
        if not keys.shape[0]:
            return
        src = int(self._header[_W_GEN]) & 1
        touched = np.unique(keys)
        found = np.zeros(touched.shape[0], np.bool_)
        _get_many(self._tables[src], self._rows[src], _NO_AUX, touched,
                  np.zeros((touched.shape[0], self.dim), self._rows[src].dtype), found)
        new = int((~found).sum())
        size = int(self._header[_W_SIZE + src])
        if size + new > self.capacity:
            raise TierError(f"{self!r}.put_many: {new} new keys do not fit (it holds {size} rows of capacity "
                            f"{self.capacity}); nothing was written. Delete rows, or create a larger table")
        rows = raw(values)
        self._commit(touched, lambda table, stored: _put_many(table, stored, _NO_AUX, keys, rows, 0))

    def _delete_many(self, keys):
        if keys.shape[0]:
            self._commit(np.unique(keys), lambda table, stored: -_delete_many(table, stored, _NO_AUX, keys))

    def _repair(self) -> None:
        """Make the other copy equal to the committed one, if it may differ (a new or restarted writer)."""
        h = self._header
        g = int(h[_W_GEN])
        src, dst = g & 1, 1 - (g & 1)
        if int(h[_W_COPY_GEN + dst]) == g and not self._stale:
            return
        if int(h[_W_COPY_GEN + dst]) != g:
            fcntl.flock(self._copy_fds[dst], fcntl.LOCK_EX)  # readers of the older generation finish first
            try:
                h[_W_COPY_GEN + dst] = _DIRTY
                self._tables[dst][:] = self._tables[src]
                self._rows[dst][:] = self._rows[src]
                h[_W_SIZE + dst] = h[_W_SIZE + src]
                h[_W_COPY_GEN + dst] = g
            finally:
                fcntl.flock(self._copy_fds[dst], fcntl.LOCK_UN)
        self._log, self._stale = np.zeros(0, np.int64), False

    def _commit(self, touched: np.ndarray, apply) -> None:
        """Write the next generation into the other copy with ``apply(table, rows) -> rows added``, then
        publish it (the module docstring's steps 1-5)."""
        h = self._header
        if self._stale:
            self._repair()
        g = int(h[_W_GEN])
        src, dst = g & 1, 1 - (g & 1)
        fcntl.flock(self._copy_fds[dst], fcntl.LOCK_EX)
        try:
            self._stale = True  # until this commit is published, the other copy is unknown
            h[_W_COPY_GEN + dst] = _DIRTY
            if self._log.shape[0]:
                # generation g - 1 -> g: the last commit's keys, as the committed copy has them
                log = self._log
                found = np.zeros(log.shape[0], np.bool_)
                rows = np.zeros((log.shape[0], self.dim), self._rows[src].dtype)
                _get_many(self._tables[src], self._rows[src], _NO_AUX, log, rows, found)
                _delete_many(self._tables[dst], self._rows[dst], _NO_AUX, log[~found])
                _put_many(self._tables[dst], self._rows[dst], _NO_AUX, log[found], rows[found], 0)
            h[_W_SIZE + dst] = int(h[_W_SIZE + src]) + int(apply(self._tables[dst], self._rows[dst]))
            h[_W_COPY_GEN + dst] = g + 1
            h[_W_GEN] = g + 1  # the commit: readers go to this copy from here on
            self._log, self._stale = touched, False
        finally:
            fcntl.flock(self._copy_fds[dst], fcntl.LOCK_UN)
