"""HostStore: rows in host memory behind a Numba open-addressing hash index."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .._checks import check_keys
from .._dtypes import raw
from .._llvm import copy_row
from ..layout import EMPTY_KEY, mix64
from .._source import INDEX_SPLITMIX64_LINEAR_ROWS, DeviceSource
from ..errors import CaptureError, ConfigError, EmbCacheError, TierError
from ._base import Tier
from ._gather import gather_source


__all__ = ["HostStore"]

_EMPTY = np.int64(EMPTY_KEY)


@numba.njit(inline="always", nogil=True, cache=True)
def _home(key, mask):
    return np.int64(mix64(key) & np.uint64(mask))


@numba.njit(inline="always", nogil=True, cache=True)
def _probe(table, key, mask):
    h = _home(key, mask)
    while table[h] != _EMPTY and table[h] != key:
        h = (h + 1) & mask
    return h


# aux (slots, 2): per slot the put stamp and the use count, for a bounded store's overflow policy;
# an unbounded store passes a (0, 2) array and keeps none
@numba.njit(nogil=True, cache=True)
def _get_many(table, values, aux, keys, out, found):
    mask = table.shape[0] - 1
    for i in range(keys.shape[0]):
        h = _probe(table, keys[i], mask)
        if table[h] == keys[i]:
            out[i, :] = values[h]
            found[i] = True
            if aux.shape[0]:
                aux[h, 1] += 1


@numba.njit(nogil=True, cache=True)
def _put_many(table, values, aux, keys, rows, stamp):
    mask = table.shape[0] - 1
    added = 0
    for i in range(keys.shape[0]):
        h = _probe(table, keys[i], mask)
        if table[h] == _EMPTY:
            table[h] = keys[i]
            added += 1
            if aux.shape[0]:
                aux[h, 1] = 0
        values[h, :] = rows[i]
        if aux.shape[0]:
            aux[h, 0] = stamp
    return added


@numba.njit(nogil=True, cache=True)
def _delete_many(table, values, aux, keys):
    # linear probing with backward-shift deletion: no tombstones, probes stay short
    mask = table.shape[0] - 1
    removed = 0
    for n in range(keys.shape[0]):
        i = _probe(table, keys[n], mask)
        if table[i] != keys[n]:
            continue
        removed += 1
        j = i
        while True:
            j = (j + 1) & mask
            if table[j] == _EMPTY:
                break
            k = _home(table[j], mask)
            # the entry at j may move to i only if its home is not cyclically in (i, j]
            if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
                continue
            table[i] = table[j]
            values[i, :] = values[j]
            if aux.shape[0]:
                aux[i, :] = aux[j]
            i = j
        table[i] = _EMPTY
    return removed


# HostStore's own layout: an index of (key, row) pairs, the rows stored densely (row r of the row
# array), so that they span their own size, not the index's (a slot per row at load factor <= 1/2).
# The GPU reads rows in place over PCIe, and a fresh row costs a translation of its address: rows
# over twice the memory read slower (docs/serving.md).  slot_of[r] is row r's index slot.  The
# functions above keep rows at their slot (SharedHostStore's segment layout).
@numba.njit(inline="always", nogil=True, cache=True)
def _find(pairs, key, mask):
    h = _home(key, mask)
    while pairs[h, 0] != _EMPTY and pairs[h, 0] != key:
        h = (h + 1) & mask
    return h


@numba.njit(nogil=True, cache=True)
def _get_rows(pairs, values, aux, keys, out, found):
    # rows by copy_row: a row slice's assignment cost three times as much (16,384 rows: 1,140 -> 365 us)
    mask = pairs.shape[0] - 1
    for i in range(keys.shape[0]):
        h = _find(pairs, keys[i], mask)
        if pairs[h, 0] == keys[i]:
            copy_row(out, i, values, pairs[h, 1])
            found[i] = True
            if aux.shape[0]:
                aux[h, 1] += 1


@numba.njit(nogil=True, cache=True)
def _put_rows(pairs, values, slot_of, aux, keys, rows, stamp, size):
    mask = pairs.shape[0] - 1
    added = 0
    for i in range(keys.shape[0]):
        h = _find(pairs, keys[i], mask)
        if pairs[h, 0] == _EMPTY:
            r = size + added
            pairs[h, 0] = keys[i]
            pairs[h, 1] = r
            slot_of[r] = h
            added += 1
            if aux.shape[0]:
                aux[h, 1] = 0
        values[pairs[h, 1], :] = rows[i]
        if aux.shape[0]:
            aux[h, 0] = stamp
    return added


@numba.njit(nogil=True, cache=True)
def _delete_rows(pairs, values, slot_of, aux, keys, size):
    # the last row moves into the freed one (rows stay dense); then backward-shift deletion in the index
    mask = pairs.shape[0] - 1
    removed = 0
    for n in range(keys.shape[0]):
        i = _find(pairs, keys[n], mask)
        if pairs[i, 0] != keys[n]:
            continue
        removed += 1
        r, last = pairs[i, 1], size - removed
        if r != last:
            values[r, :] = values[last]
            moved = slot_of[last]
            pairs[moved, 1] = r
            slot_of[r] = moved
        j = i
        while True:
            j = (j + 1) & mask
            if pairs[j, 0] == _EMPTY:
                break
            k = _home(pairs[j, 0], mask)
            # the entry at j may move to i only if its home is not cyclically in (i, j]
            if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
                continue
            pairs[i, 0] = pairs[j, 0]
            pairs[i, 1] = pairs[j, 1]
            slot_of[pairs[i, 1]] = i
            if aux.shape[0]:
                aux[i, :] = aux[j]
            i = j
        pairs[i, 0] = _EMPTY
    return removed


@numba.njit(nogil=True, cache=True)
def _slots_of(pairs, keys):
    mask = pairs.shape[0] - 1
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        out[i] = _find(pairs, keys[i], mask)
    return out


@numba.njit(nogil=True, cache=True)
def _rehash(old_pairs, old_aux, pairs, slot_of, aux):
    # the rows do not move: only the index is rebuilt
    mask = pairs.shape[0] - 1
    for i in range(old_pairs.shape[0]):
        if old_pairs[i, 0] != _EMPTY:
            h = _find(pairs, old_pairs[i, 0], mask)
            pairs[h, 0] = old_pairs[i, 0]
            pairs[h, 1] = old_pairs[i, 1]
            slot_of[old_pairs[i, 1]] = h
            if aux.shape[0]:
                aux[h, :] = old_aux[i]


class _DeviceIndex:
    """A copy of a pinned HostStore's hash index in one GPU's memory, kept in step with the host's."""

    def __init__(self):
        self.table = None  # device int64 array, or None until the first sync
        self.stale = True  # changed in ways that need a whole upload
        self.added: list[np.ndarray] = []  # keys added since the last sync, when not stale

    def note(self, added_keys, slots: int) -> None:
        if added_keys is None or self.stale:
            self.stale, self.added = True, []
            return
        # without deletions, linear probing only fills empty slots: those of the keys added
        self.added.append(np.array(added_keys, np.int64))
        if sum(k.shape[0] for k in self.added) > slots // 8:
            self.stale, self.added = True, []  # a whole upload is cheaper by then

    def sync(self, host_table: np.ndarray):
        """The device copy of ``host_table``, up to date on CuPy's current stream."""
        import cupy

        if not self.stale and not self.added and self.table is not None:
            return self.table
        stream = cupy.cuda.get_current_stream()
        if stream.ptr != 0 and stream.is_capturing():
            raise CaptureError("a pinned HostStore's device index is made and kept current by copies from the "
                               "host, which a CUDA graph capture cannot take: look up once (or call the store's "
                               "device_source()) before capturing, and write the store outside the capture")
        if self.table is None or self.table.shape != host_table.shape:
            self.table = cupy.asarray(host_table)
        elif self.stale:  # into the same memory: a captured graph keeps reading the index at its address
            self.table.set(host_table)
        else:
            slots = np.unique(_slots_of(host_table, np.concatenate(self.added)))
            self.table[cupy.asarray(slots)] = cupy.asarray(host_table[slots])
        # the host table may change as soon as this returns: the copies must have read it by then
        cupy.cuda.get_current_stream().synchronize()
        self.stale, self.added = False, []
        return self.table


class HostStore(Tier):
    """Rows in host memory, indexed by an open-addressing hash table (load factor <= 1/2).

    Parameters
    ----------
    dim : int
        Values per row.
    dtype : str
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.
    initial_rows : int
        Rows to make room for up front; the table doubles as it fills.
    pinned : bool
        Keep the index and rows in page-locked host memory mapped into the GPU's
        address space (needs CuPy), so that a GPU cache reads missed rows
        straight from here over PCIe (zero-copy), with no staging copy.
    device_index : bool
        With ``pinned``: also keep a copy of the hash index ((key, row) pairs, 16 bytes
        a slot, 32 to 64 bytes a row) in GPU memory, so that the GPU finds missed keys without
        a PCIe round trip per probe; only the rows cross PCIe.  Writes that add
        keys update it incrementally, deletions and growth upload it whole.
    capacity : int, optional
        Most rows kept, as HPS's volatile database: a ``put_many`` that would
        exceed it first drops other rows by ``overflow``.  Unbounded if None.
    overflow : str
        ``"oldest"`` (earliest put), ``"least_used"`` (fewest reads since put,
        then oldest) or ``"random"`` (seeded by ``seed``).  Rows of the batch
        being put are never dropped for it.  ``"error"``: drop nothing; a
        ``put_many`` whose new keys do not fit raises ``TierError`` and writes
        nothing (keys already stored take no room).
    seed : int
        Seed of the ``"random"`` overflow policy.

    Memory is about ``rows * (40 + dim * itemsize)`` bytes (rows stored densely, an
    index of (key, row) pairs at load factor 1/4 to 1/2), plus 32 bytes a row with a
    capacity.  Overflow scans the index: fine for a host cache tier,
    not meant for per-key calls on huge stores.

    Safe to share between threads and caches (see :class:`Tier`): every call
    holds ``lock``, so the Numba kernels, which run without the GIL, never see
    the index while another call changes or regrows it.  The GPU paths hold it
    too: ``gather_to_device`` until its kernel has finished, and
    ``device_source`` while it brings the device index up to date; a caller
    that reads ``device_source``'s addresses holds ``lock`` until its kernels
    have finished (the store may regrow, and free the old memory, as soon as
    the lock is let go).
    """

    OVERFLOW = ("oldest", "least_used", "random", "error")

    def __init__(self, dim: int, dtype: str | np.dtype | type = "float32", initial_rows: int = 1024,
                 pinned: bool = False,
                 capacity: int | None = None, overflow: str = "oldest", seed: int = 0, device_index: bool = True):
        super().__init__(dim, dtype)
        if capacity is not None and (int(capacity) <= 0):
            raise ConfigError(f"capacity must be a positive number of rows or None, got {capacity!r}")
        if overflow not in self.OVERFLOW:
            raise ConfigError(f"overflow must be one of {', '.join(self.OVERFLOW)}, got {overflow!r}")
        self.capacity = None if capacity is None else int(capacity)
        self.overflow = overflow
        self._rng = np.random.default_rng(seed)
        self._stamp = 0
        self._size = 0
        self.pinned = bool(pinned)
        self.device_index = bool(device_index) and self.pinned
        self._pinned_buffers = ()
        # GPU copies of the index, one per device that gathers: {device id: _DeviceIndex}
        self._device_indexes: dict[int, _DeviceIndex] = {}
        self._source = None  # (device, the DeviceSource last described), until the store changes
        self._mapped = None  # (index, rows) device addresses of the pinned arrays, until they move
        # float32 rows are read as they are (copy_row copies bytes); 16-bit rows as their bits (raw)
        self._rows_as_stored = self.dtype == np.float32
        # a power of two at least twice the rows, so the table starts at load factor <= 1/2
        self._alloc(max(16, 1 << (2 * int(initial_rows) - 1).bit_length()))

    def _alloc(self, slots):
        """An empty index of ``slots`` (key, row) pairs and room for ``slots // 2`` rows (load <= 1/2)."""
        self._index_changed(None)
        self._mapped = None
        self._aux = np.zeros((slots if self.capacity is not None else 0, 2), np.int64)
        rows = slots // 2
        self._slot_of = np.zeros(rows, np.int64)  # row r's slot in the index
        if not self.pinned:
            self._table = np.full((slots, 2), EMPTY_KEY, np.int64)
            self._values = np.zeros((rows, self.dim), self.dtype)
            self._raw_values = raw(self._values)  # made once an allocation, not once a read
            return
        from .._cuda import require_cupy

        cupy = require_cupy()
        buffers = tuple(cupy.cuda.PinnedMemory(max(1, nbytes), cupy.cuda.runtime.hostAllocMapped)
                        for nbytes in (slots * 16, rows * self.dim * self.dtype.itemsize))
        views = [cupy.cuda.PinnedMemoryPointer(b, 0) for b in buffers]  # these expose the buffer protocol
        self._table = np.frombuffer(views[0], np.int64, 2 * slots).reshape(slots, 2)
        self._values = np.frombuffer(views[1], self.dtype, rows * self.dim).reshape(rows, self.dim)
        self._table.fill(EMPTY_KEY)
        self._values.fill(0)
        self._raw_values = raw(self._values)
        self._pinned_buffers = buffers  # the arrays above only borrow this memory

    def __repr__(self) -> str:
        bound = "" if self.capacity is None else f", capacity={self.capacity}, overflow={self.overflow!r}"
        return f"HostStore(dim={self.dim}, dtype={self.dtype.name!r}{bound}{', pinned=True' if self.pinned else ''})"

    def __len__(self) -> int:
        with self.lock:
            return self._size

    @property
    def reads_count(self) -> bool:
        """Whether reads change the store: a ``least_used`` store counts them, so GPU reads in place
        (``device_source``, ``gather_to_device``), which do not, would drop other rows than host reads; such a
        store offers no device source."""
        return self.capacity is not None and self.overflow == "least_used"

    @property
    def fences_device_reads(self) -> bool:
        """True: this store's writes and ``close`` wait for the GPU kernels still reading it (``Tier._fence``)."""
        return True

    @property
    def offers_device_source(self) -> bool:
        """A pinned store whose reads need not be counted offers a device source (fixed at construction)."""
        return self.pinned and not self.reads_count

    def _reserve(self, more):
        if 2 * (self._size + more) <= self._table.shape[0]:
            return
        slots = self._table.shape[0]
        while 2 * (self._size + more) > slots:
            slots *= 2
        old_table, old_values, old_aux = self._table, self._values, self._aux
        self._alloc(slots)
        _rehash(old_table, old_aux, self._table, self._slot_of, self._aux)
        self._values[:self._size] = old_values[:self._size]  # rows keep their numbers

    def get_many(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """Rows of ``keys`` (n,) int64: ``(values (n, dim), found (n,) bool)``; missing rows are zero.

        ``Tier.get_many`` with its ``_run`` written out, the same checks and errors: a cache's miss reads
        here, and a call fewer counts in a one-key miss (issue 22's CPU bar)."""
        keys = check_keys(keys)
        with self.lock:
            if self.closed:
                self._check_open("get_many")
            try:
                return self._get_many(keys)
            except EmbCacheError:
                raise
            except Exception as exc:  # as Tier._run words it
                raise TierError(f"{self!r}.get_many failed: {type(exc).__name__}: {exc}") from exc

    def _get_many(self, keys):
        n = keys.shape[0]
        found = np.zeros(n, np.bool_)
        if self._rows_as_stored:  # float32: the kernel copies bytes, so the rows go as they are
            out = np.zeros((n, self.dim), self.dtype)
            _get_rows(self._table, self._values, self._aux, keys, out, found)
            return out, found
        out = np.zeros((n, self.dim), self._raw_values.dtype)  # Numba has no 16-bit floats: their bits
        _get_rows(self._table, self._raw_values, self._aux, keys, out, found)
        return out.view(self.dtype), found

    def _put_many(self, keys, values):
        if self.capacity is not None and self.overflow == "error":
            new = self._new_keys(keys).shape[0]
            if self._size + new > self.capacity:
                raise TierError(f"{self!r}.put_many: {new} new {'key does' if new == 1 else 'keys do'} not fit (it holds {self._size} rows of "
                                f"capacity {self.capacity}, overflow='error'); nothing was written. Delete rows, "
                                "or use a larger capacity or another overflow policy")
        elif self.capacity is not None:
            if keys.shape[0] > self.capacity:  # only the batch's last rows fit
                keys, values = keys[-self.capacity:], values[-self.capacity:]
            self._make_room(keys)
        self._reserve(keys.shape[0])
        self._stamp += 1
        added = int(_put_rows(self._table, raw(self._values), self._slot_of, self._aux, keys, raw(values),
                              self._stamp, self._size))
        self._size += added
        if added:
            self._index_changed(keys)
        self._sync_device_indexes()

    def _new_keys(self, keys):
        """The distinct ``keys`` not stored yet (probed without counting a use)."""
        new = np.unique(keys)
        if self._size:
            found = np.zeros(new.shape[0], np.bool_)
            _get_rows(self._table, raw(self._values), self._aux[:0], new,
                      np.zeros((new.shape[0], self.dim), raw(self._values).dtype), found)
            new = new[~found]
        return new

    def _make_room(self, keys):
        """Drop rows by the overflow policy so that ``keys`` fit within the capacity."""
        new = self._new_keys(keys)  # keys already stored take no room
        over = self._size + new.shape[0] - self.capacity
        if over <= 0:
            return
        slots = np.flatnonzero(self._table[:, 0] != EMPTY_KEY)
        slots = slots[~np.isin(self._table[slots, 0], keys)]
        over = min(over, slots.shape[0])
        if self.overflow == "random":
            victims = self._rng.choice(slots, over, replace=False)
        else:
            stamp, uses = self._aux[slots, 0], self._aux[slots, 1]
            order = np.lexsort((stamp, uses)) if self.overflow == "least_used" else np.argsort(stamp, kind="stable")
            victims = slots[order[:over]]
        self._delete_many(self._table[victims, 0].copy())

    def _delete_many(self, keys):
        removed = int(_delete_rows(self._table, raw(self._values), self._slot_of, self._aux, keys, self._size))
        self._size -= removed
        if removed:
            self._index_changed(None)  # backward shifts move entries: upload it whole
        self._sync_device_indexes()

    def keys(self) -> np.ndarray:
        """All stored keys (m,) int64, in no particular order."""
        return self._run("keys", lambda: self._table[self._table[:, 0] != EMPTY_KEY, 0].copy())

    def device_source(self) -> DeviceSource | None:
        """Where a GPU kernel reads this store in place, on the current device, or None.

        A :class:`embcache._source.DeviceSource` when the store is ``pinned`` and its
        reads need not be counted (not ``reads_count``: a ``least_used`` store must
        see every read, which a kernel reading in place would not report); None
        otherwise.  Its ``index`` is the device copy of the hash index (brought up to
        date by this call), or with ``device_index=False`` the device address of the
        mapped host index; ``rows`` the device address of the mapped rows.  Valid
        while ``lock`` is held: hold it from this call until the kernels that read
        these addresses have finished (the store may regrow, and free the old
        memory, as soon as the lock is let go).
        """
        if not self.pinned or self.reads_count:
            return None
        with self.lock:  # not _run: a CUDA error stays itself, not a TierError that a cache may answer with defaults
            self._check_open("device_source")
            from .._cuda import require_cupy

            device = require_cupy().cuda.Device().id
            if self._source is None or self._source[0] != device:  # the same object until the store changes
                index, mask, rows = self._device_rows()
                self._source = (device, DeviceSource(index, mask, rows, self.dim, self.dtype,
                                                     layout=INDEX_SPLITMIX64_LINEAR_ROWS, owner=self))
            return self._source[1]

    def device_rows(self) -> tuple:
        """``(index, mask, rows)`` of :meth:`device_source`, for a pinned store whether or not it counts
        reads; kept for callers of the tier itself (nothing outside embcache.tiers uses it)."""
        with self.lock:
            self._check_open("device_rows")
            return self._device_rows()

    def _device_rows(self) -> tuple:
        """``(index, mask, rows)``: the device index (brought up to date) or the mapped host index's device
        address, the slot mask, and the mapped rows' device address; call with ``lock`` held."""
        if not self.pinned:
            raise ConfigError("device_rows needs a HostStore made with pinned=True")
        if self._mapped is None:  # a runtime query: about a microsecond, so once per allocation
            self._mapped = (self._device_pointer(self._table), self._device_pointer(self._values))
        if self.device_index:
            from .._cuda import require_cupy

            device = require_cupy().cuda.Device().id
            index = self._device_indexes.setdefault(device, _DeviceIndex()).sync(self._table)
        else:
            index = self._mapped[0]
        return index, np.int64(self._table.shape[0] - 1), self._mapped[1]

    def gather_to_device(self, keys: Any, default_row: Any) -> tuple[Any, Any]:
        """GPU reads of a pinned store: ``(rows, found)`` of device ``keys`` (n,) int64, on the device.

        ``rows`` (n, dim) holds the raw bits of each stored row (``default_row``,
        a device array of raw bits, where absent).  The GPU walks this store's
        index and copies its rows over PCIe itself; nothing is staged.  Runs on
        CuPy's current stream, and waits for it: the store stays locked until the
        kernel has read it.
        """
        with self.lock:
            self._check_open("gather_to_device")
            return self._gather_to_device(keys, default_row)

    def _gather_to_device(self, keys, default_row):
        if not self.pinned:
            raise ConfigError("gather_to_device needs a HostStore made with pinned=True")
        # any pinned store, a counting one too (its gathers are not counted: the caller's choice)
        index, mask, rows = self._device_rows() if keys.shape[0] else (0, np.int64(0), np.uint64(0))
        return gather_source(DeviceSource(index, mask, rows, self.dim, self.dtype,
                                          layout=INDEX_SPLITMIX64_LINEAR_ROWS, owner=self), keys, default_row)

    def _index_changed(self, added_keys) -> None:
        """Tell the GPU copies of the index: ``added_keys`` were added, or (None) anything else changed."""
        self._source = None  # the next device_source() describes the store anew
        for index in self._device_indexes.values():
            index.note(added_keys, self._table.shape[0])

    def _sync_device_indexes(self) -> None:
        """Bring the GPU copies of the index up to date, at the end of a write rather than at the next read:
        a lookup captured in a CUDA graph can copy nothing from the host, so the copy it reads must be
        current already."""
        if not self._device_indexes:
            return
        from .._cuda import require_cupy

        cupy = require_cupy()
        for device, index in self._device_indexes.items():
            with cupy.cuda.Device(device):
                index.sync(self._table)

    @staticmethod
    def _device_pointer(array) -> np.uint64:
        """Where the GPU sees a mapped pinned array (the host address itself under unified addressing)."""
        import cupy

        return np.uint64(cupy.cuda.runtime.pointerGetAttributes(array.ctypes.data).devicePointer)

    def _close(self):
        self._table = self._values = self._raw_values = self._slot_of = self._mapped = self._source = None
        self._device_indexes = {}
        self._pinned_buffers = ()
