"""GPU backend: the CPU backend's operations as CUDA kernels (``cuda/*.cu``) through CuPy.

Arrays live in device memory: ``table`` (S, 2) int64, each slot's key and score
side by side (``keys`` and ``scores`` are its two strided columns), rows (S, dim) as raw
same-width unsigned ints (so copies are bit-exact and bfloat16 needs no CuPy
dtype), and ``state``, a few int64 words the kernels share with the host:
the batch clock and per-call counters.  The clock lives on the device so that a
lookup captured in a CUDA graph advances it on every replay.

The kernels live in one file per operation family (``cuda/probe.cu``: the hit
path; ``source.cu``: misses served from a :class:`~embcache._source.DeviceSource`;
``insert.cu``, ``unique.cu``, ``writes.cu``, ``sketch.cu``), each kernel behind a
memoized factory ``_get_<kernel>_kernel(device_id, config)`` that compiles only its
family's file, by NVRTC on first use, per device and configuration (policy rules,
ways, row bytes, launch shape); nothing compiles at import time.  The constants
reach CUDA as generated ``#define``s (``_shared.cuda_defines``, ``_cuda.layout_defines``),
and every launch shape comes from the tuning table (``tuning.py``).  Every operation runs on CuPy's current
stream (``Cache`` enters the caller's ``stream=``), and the hit path reads back
one small counter block from that stream only: never a device-wide synchronize.  The
probe and the insertion publish their counters themselves (their last block writes
them into pinned host memory), so the host only waits for the stream and reads.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
from typing import TYPE_CHECKING, Any

import numpy as np

from .._cuda import (Launcher, compile_source, gpu_available, launch_grid, layout_defines, no_collection, require_cupy,
                     resident_blocks)
from .._dtypes import raw
from .._source import INDEX_LAYOUTS, DeviceSource
from ..errors import ConfigError
from ..layout import EMPTY_KEY, new_set_state, set_state_width
from . import _rules
from ._backend import _OncePlan
from ._shared import (FIELDS, ORD_FIELDS, ORDERED, ORDERED_WORDS, OUTCOMES, SMALL_SHARED, STATE, STATE_WORDS, TICK,
                      TOUCH, cuda_defines)
from .tuning import launch_shape, ordered_shape, utility_block, vector_bytes

if TYPE_CHECKING:  # the annotations only
    import cupy

    from ..policies import Policy

__all__ = ["GPUBackend", "gpu_available", "require_cupy", "compile_module", "defines", "launch_grid"]

CUDA_DIR = pathlib.Path(__file__).with_name("cuda")
# words of GPUBackend.state (kernels/_shared.py, which gives the kernels the same STATE_* names)
STATE_CLOCK, STATE_MISSES, STATE_RESERVED = STATE["STATE_CLOCK"], STATE["STATE_MISSES"], STATE["STATE_RESERVED"]
STATE_LISTED, STATE_OUTCOMES, STATE_HOST = STATE["STATE_LISTED"], STATE["STATE_OUTCOMES"], STATE["STATE_HOST"]
STATE_DISTINCT, STATE_ABSENT = STATE["STATE_DISTINCT"], STATE["STATE_ABSENT"]  # count_source_misses' counts
STATE_INVALID = STATE["STATE_INVALID"]
_STATE_WORDS = STATE_WORDS
_OUTCOME_CODES = len(OUTCOMES)

#: every kernel the backend launches, by the file of its family (``cuda/<file>``)
FAMILIES = {
    "probe.cu": ("probe_gather", "gather_slots", "list_misses", "tick", "touch", "age_scores"),
    "source.cu": ("probe_gather_source", "count_source_misses"),
    "insert.cu": ("insert_and_evict", "insert_and_evict_general"),
    "unique.cu": ("run_starts", "run_scatter", "sets_of"),
    "writes.cu": ("update_rows", "erase_keys", "scatter_rows", "restore_scores", "make_digests"),
    "sketch.cu": ("sketch_add", "sketch_estimate", "ordered_sketch_add", "ordered_sketch_admit"),
    "ordered.cu": ("ordered_misses", "ordered_distinct", "ordered_group", "ordered_insert", "ordered_finish",
                   "ordered_flushed", "ordered_small"),
}
# the hit path's kernels, compiled when the launch shape is set: a lookup captured in a CUDA graph
# then compiles nothing (the other families compile on their first use)
_EAGER = "probe.cu"


# Occurrences a block of the touch kernel counts per round in shared memory: a 2x table of 8-byte
# slots and 4-byte counts is 24 KiB, inside the 48 KiB of static shared memory of every
# architecture in the tuning table.
_TOUCH_CHUNK = 1024
_SMALL_SHARED_KEYS = SMALL_SHARED["SMALL_SHARED_KEYS"]


def defines(**values: Any) -> dict:
    """The #defines every .cu file needs, plus ``values`` (layout, row size, launch shape)."""
    out = {
        **layout_defines(),
        **cuda_defines(),
        "OUTCOME_CODES": _OUTCOME_CODES,
        "NEW_SCORE_EXPR": "0",
        "HIT_SCORE_EXPR": "score",
        "AGE_SCORE_EXPR": "score",
        "SET_BITS": 64,
    }
    out.update(values)
    return out


def compile_module(source: str, **values: Any) -> cupy.RawModule:
    """``cuda/<source>`` compiled with ``defines(**values)`` for the current device (memoized)."""
    return compile_source(CUDA_DIR / source, defines(**values))


def _factory(family: str, name: str):
    """The memoized factory of kernel ``name`` of ``cuda/<family>``, as cupyx's ``_get_<op>_kernel``."""

    def get(device_id: int, config: tuple):
        cupy = require_cupy()
        with cupy.cuda.Device(device_id):  # a module and its functions belong to one device
            return compile_source(CUDA_DIR / family, dict(config)).get_function(name)

    get.__name__ = get.__qualname__ = f"_get_{name}_kernel"
    get.__doc__ = (f"``{name}`` of ``cuda/{family}`` for device ``device_id``, compiled with the #defines "
                   "``config`` (sorted (name, value) pairs) on first use, then memoized.")
    return functools.lru_cache(maxsize=None)(get)


# one factory per kernel; a factory compiles its family's file only
_get_probe_gather_kernel = _factory("probe.cu", "probe_gather")
_get_gather_slots_kernel = _factory("probe.cu", "gather_slots")
_get_list_misses_kernel = _factory("probe.cu", "list_misses")
_get_tick_kernel = _factory("probe.cu", "tick")
_get_touch_kernel = _factory("probe.cu", "touch")
_get_age_scores_kernel = _factory("probe.cu", "age_scores")
_get_probe_gather_source_kernel = _factory("source.cu", "probe_gather_source")
_get_count_source_misses_kernel = _factory("source.cu", "count_source_misses")
_get_insert_and_evict_kernel = _factory("insert.cu", "insert_and_evict")
_get_insert_and_evict_general_kernel = _factory("insert.cu", "insert_and_evict_general")
_get_run_starts_kernel = _factory("unique.cu", "run_starts")
_get_run_scatter_kernel = _factory("unique.cu", "run_scatter")
_get_sets_of_kernel = _factory("unique.cu", "sets_of")
_get_update_rows_kernel = _factory("writes.cu", "update_rows")
_get_erase_keys_kernel = _factory("writes.cu", "erase_keys")
_get_scatter_rows_kernel = _factory("writes.cu", "scatter_rows")
_get_restore_scores_kernel = _factory("writes.cu", "restore_scores")
_get_make_digests_kernel = _factory("writes.cu", "make_digests")
_get_sketch_add_kernel = _factory("sketch.cu", "sketch_add")
_get_sketch_estimate_kernel = _factory("sketch.cu", "sketch_estimate")
_get_ordered_sketch_add_kernel = _factory("sketch.cu", "ordered_sketch_add")
_get_ordered_sketch_admit_kernel = _factory("sketch.cu", "ordered_sketch_admit")
_get_ordered_misses_kernel = _factory("ordered.cu", "ordered_misses")
_get_ordered_distinct_kernel = _factory("ordered.cu", "ordered_distinct")
_get_ordered_group_kernel = _factory("ordered.cu", "ordered_group")
_get_ordered_insert_kernel = _factory("ordered.cu", "ordered_insert")
_get_ordered_finish_kernel = _factory("ordered.cu", "ordered_finish")
_get_ordered_flushed_kernel = _factory("ordered.cu", "ordered_flushed")
_get_ordered_small_kernel = _factory("ordered.cu", "ordered_small")
_FACTORIES = {name: globals()[f"_get_{name}_kernel"] for names in FAMILIES.values() for name in names}


def _kernel_defines(policy, ways: int, row_bytes: int, num_sets: int, shape: dict, utility_block: int,
                    ordered_block: int = 1024) -> dict:
    """Every #define of a backend's kernels: layout, row size, launch ``shape`` and the policy's rules."""
    digests = bool(shape.get("digests", False))
    return defines(
        WAYS=ways, ROW_BYTES=row_bytes, VEC=vector_bytes(row_bytes),
        SET_BITS=32 if num_sets <= 2**32 else 64, GROUP=min(int(shape["group"]), ways),
        KEYS_PER_GROUP=int(shape["keys_per_group"]), BLOCK=int(shape["block"]), TOUCH_CHUNK=_TOUCH_CHUNK,
        DIGESTS=int(digests), UTILITY_BLOCK=utility_block, ORDERED_BLOCK=ordered_block,
        NEW_SCORE_EXPR=_rules.c_expression(policy.rule()["new_score"]),
        HIT_SCORE_EXPR=_rules.c_expression(policy.rule()["hit_score"]),
        AGE_SCORE_EXPR=_rules.c_expression(policy.rule().get("age_score", "score")),
        HAND_VICTIM=int(policy.victim == "hand"), S3FIFO_VICTIM=int(policy.victim == "s3fifo"),
        SET_STATE_WIDTH=set_state_width(policy.victim, ways),
    )


# kernels launched programmatically (sm_90 on, _cuda.Launcher): ordered_small starts while the probe before
# it runs (its launch and its tables' zeroing off the small lookup's critical path), reads the probe's slots
# once the probe announces them (F_PROBED) and its rows only after waiting for the probe's grid (ordered.cu)
_PROGRAMMATIC = frozenset({"ordered_small"})


class _Kernels(dict):
    """A backend's kernels by name, each fetched from its factory on first use (then a plain dict read)."""

    def __init__(self, device_id: int, config: tuple):
        super().__init__()
        self._device_id, self._config = device_id, config

    def __missing__(self, name: str):
        # the compiled kernel is shared (memoized per device and configuration); its launcher, which keeps
        # the last launch's arguments packed (arrays weakly), is this backend's own
        with require_cupy().cuda.Device(self._device_id):  # the launcher loads the kernel for this device
            compiled = _FACTORIES[name](self._device_id, self._config)
            # the machine code's architecture, not the device's: griddepcontrol compiles to nothing below sm_90
            # (an NVRTC without sm_90 builds compute_87 code for an sm_90 device), and then nothing may overlap
            programmatic = name in _PROGRAMMATIC and int(compiled.attributes.get("binary_version", 0)) >= 90
            kernel = self[name] = Launcher(compiled, programmatic)
        return kernel


@dataclasses.dataclass(frozen=True, slots=True)
class _ProbeLaunch:
    """A probe's kernels (compiled for its launch shape) and the figures its launch takes from that shape.
    ``_k`` as the backend's own: tests/test_kernel_sources.py finds launched kernels by ``._k["name"]``."""
    _k: _Kernels
    group: int
    keys_per_group: int
    block: int
    split: bool


def _i64(x) -> np.int64:
    return np.int64(x)


_FLAG = {False: np.int32(0), True: np.int32(1)}  # int flags of kernels, made once
_MAX_GRAPHS = 16  # replay graphs a backend keeps (Cache(graphs=True)): each holds a key buffer and an executable
# probe_gather's touch argument (TOUCH_* of _shared.py): none; store hit scores and tick if every key
# hit; store them and tick (captured lookups)
_TOUCH_NONE, _TOUCH_IF_CLEAN, _TOUCH_ALWAYS = TOUCH["TOUCH_NONE"], TOUCH["TOUCH_IF_CLEAN"], TOUCH["TOUCH_ALWAYS"]
_TOUCH_FLAG = {t: np.int32(t) for t in TOUCH.values()}
# ordered_small's touch argument (TICK_* of _shared.py), as kernel arguments
_TICK_NONE, _TICK_ONLY, _TICK_TOUCH, _TICK_TOUCH_AGED = (
    np.int32(TICK[k]) for k in ("TICK_NONE", "TICK_ONLY", "TICK_TOUCH", "TICK_TOUCH_AGED"))
_NULL = np.uint64(0)  # a null pointer argument
# probe_gather_source's keys need no converting (no word counts invalid keys then: -1)
_NO_RAW = (_NULL, np.int32(8), np.int64(0), _NULL, np.int32(-1))
_NO_SOURCE = (_NULL, np.int64(0), _NULL, np.int32(1))  # a source of no keys: the probe only converts raw keys
# the state word that counts the keys Gather's rules replaced: a stream-ordered batch's counter, or the
# host path's (published with the probe's counts, so that reading it needs no wait of its own)
_ORDERED_INVALID = np.int32(ORDERED["ORD_BATCH"] + FIELDS["F_INVALID"])
_HOST_INVALID = np.int32(STATE_INVALID)
# the state words probe_gather_source counts misses and reserved keys into: the host path's (which
# its operations zero first), or a stream-ordered batch's own (zero between batches: its last kernel
# empties them, so the captured graph needs no memset node before the probe)
_HOST_COUNTS = (np.int32(STATE_MISSES), np.int32(STATE_RESERVED), np.int32(-1))
_ORDERED_COUNTS = (np.int32(ORDERED["ORD_BATCH"] + FIELDS["F_MISSES"]), _ORDERED_INVALID, np.int32(-1))
# ... and a small batch's, whose probe also announces its slots in F_PROBED (ordered_small waits for that,
# not for the rows the probe then reads over PCIe; ordered_small's end zeroes the word with the batch's)
_SMALL_COUNTS = _ORDERED_COUNTS[:2] + (np.int32(ORDERED["ORD_BATCH"] + FIELDS["F_PROBED"]),)
_KEY_BYTES = {4: np.int32(4), 8: np.int32(8)}
_ONE_THREAD = ((1,), (1,))  # the launch shape of a kernel that does one thing once (the clock tick)
_ONE_WARP = ((1,), (32,))  # a batch's counters, a word a lane (ordered_finish)


def _source_args(source: DeviceSource, dim: int, dtype: np.dtype) -> tuple:
    """The kernel arguments ``(index, mask, rows, words a slot)`` of ``source``, checked against a cache of
    rows of ``dim`` values of ``dtype``: the kernels know the index layouts of ``INDEX_LAYOUTS`` and copy
    rows of the cache's size."""
    if not isinstance(source, DeviceSource):
        raise ConfigError(f"plan_lookup takes an embcache._source.DeviceSource as source, not "
                          f"{type(source).__name__}: describe the tier's rows with one (Tier.device_source())")
    if source.layout not in INDEX_LAYOUTS:
        raise ConfigError(f"the GPU kernels read a DeviceSource of the index layouts {', '.join(map(repr, INDEX_LAYOUTS))}"
                          f" only, not {source.layout!r}: give the tier one of those, or no device source")
    dtype = np.dtype(dtype)
    if np.dtype(source.dtype) != dtype or source.row_bytes != dim * dtype.itemsize:
        raise ConfigError(f"the DeviceSource holds rows of {source.dim} {np.dtype(source.dtype).name} "
                          f"({source.row_bytes} bytes), the cache rows of {dim} {dtype.name} "
                          f"({dim * dtype.itemsize} bytes): make the tier with the cache's dim and dtype")
    index = source.index  # a device array, or the device address of mapped host memory
    if isinstance(index, (int, np.integer)):
        index = np.uint64(int(index))
    return index, np.int64(source.mask), np.uint64(int(source.rows)), np.int32(INDEX_LAYOUTS[source.layout])


_COUNTER_NAMES = ("lookups", "misses", "unique", "absent", "admitted", "outcomes", "invalid", "batches")


def _counters(words: np.ndarray) -> dict:
    """A block of ``_shared.FIELDS`` counter words as a dict (``outcomes``: the 5 outcome words)."""
    out = {name: int(words[FIELDS[f"F_{name.upper()}"]]) for name in _COUNTER_NAMES if name != "outcomes"}
    at = FIELDS["F_OUTCOMES"]
    out["outcomes"] = words[at:at + _OUTCOME_CODES].astype(np.int64)
    return out


@functools.lru_cache(maxsize=None)
def _device_name(device_id: int) -> str:
    """The CUDA device's name (``"NVIDIA H200"``): the tuning table's per-GPU shapes are keyed by it."""
    name = require_cupy().cuda.runtime.getDeviceProperties(device_id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


class _LookupPlan(_OncePlan):
    """``GPUBackend.plan_lookup``'s plan (``Backend.LookupPlan``).  It knows what the probe did: whether
    it already applied the lookup on the device (every key hit), and the old scores of the hits an LRU
    probe touched, which a rollback puts back."""

    __slots__ = ("slots", "missed", "reserved", "keys", "invalid", "_backend", "_old", "_applied")

    def __init__(self, backend: GPUBackend, slots: Any, old: Any, keys: Any, invalid: int = 0):
        self.slots, self.missed, self.reserved = slots, backend._no_misses, 0
        self.keys, self.invalid = keys, invalid
        self._backend, self._old, self._applied = backend, old, False

    def commit(self) -> None:
        """Advance the clock and apply the hit rule, as far as the probe has not done so already."""
        b = self._end("commit")
        if self._applied:  # the device clock ticked and the hits' scores are stored: the host's clock follows
            b.clock += 1
        elif self._old is not None:  # the probe stored the hits' scores (of the clock ticked now)
            b.tick()
        else:
            b._tick_and_touch(self.slots, if_clean=False)
            b.clock += 1

    def rollback(self) -> None:
        """Put back the scores the probe stored.  A plan the probe applied whole (every key hit; nothing
        can fail after it) has ticked the device clock: it is committed instead, as it cannot be undone."""
        b = self._end("rollback")
        if self._applied:
            b.clock += 1  # the host's clock follows the device's, as a commit would
        elif self._old is not None:
            b._restore_scores(self.slots, self._old)


class GPUBackend:
    """The cache arrays in device memory and the CUDA kernels that work on them.

    Parameters are those of :class:`embcache.kernels.cpu.CPUBackend`, plus
    ``shape``: a launch shape (``group``, ``keys_per_group``, ``block``) that
    overrides the tuning table's (``embcache autotune`` uses this).
    """

    name = "gpu"
    #: the probe reads a tier's DeviceSource in place (``plan_lookup(source=)``, ``lookup_ordered``)
    reads_device_sources = True
    #: reserved keys are counted by the probe (the host path raises after it), not checked on the host
    checks_reserved_keys = False

    def __init__(self, num_sets: int, ways: int, dim: int, dtype: np.dtype | str, policy: Policy,
                 sketch_shape: tuple[int, int] | None = None, sketch_seed: int = 0, shape: dict | None = None):
        cupy = require_cupy()
        self.xp = cupy
        self.device_id = cupy.cuda.Device().id
        self.ways, self.num_sets, self.dim, self.dtype = ways, num_sets, dim, np.dtype(dtype)
        self.raw_dtype = raw(np.zeros(0, self.dtype)).dtype
        self.row_bytes = dim * self.dtype.itemsize
        cc = cupy.cuda.Device().compute_capability  # e.g. "90"
        self.compute_capability = f"{cc[:-1]}.{cc[-1]}"
        touching = policy.hit_is_idempotent and not policy.ages  # the probe stores each hit's score (below)
        name = _device_name(cupy.cuda.Device().id)
        self.shape = dict(shape or launch_shape(self.compute_capability, self.row_bytes, device=name,
                                                touching=touching))
        # query reads and stores nothing: where the table gives a probe that stores (LRU's) its own
        # shape, query takes the shape of one that only reads (the table's; a shape given here is query's
        # too), with the digests setting of the lookup's shape, which the arrays follow
        reading = None if shape is not None or not touching else {
            **launch_shape(self.compute_capability, self.row_bytes, device=name), "digests": self.shape["digests"]}
        slots = num_sets * ways
        # a slot's key and score in one 16-byte record: a hit's score write lands in the sector its probe read
        self.table = cupy.zeros((slots, 2), cupy.int64)
        self.keys, self.scores = self.table[:, 0], self.table[:, 1]
        self.keys.fill(EMPTY_KEY)
        self.values = cupy.zeros((slots, dim), self.raw_dtype)
        self.state = cupy.zeros(_STATE_WORDS, cupy.int64)
        # pinned, so a counter read-back is one small DMA, and the kernels that report write it
        # themselves (frombuffer keeps the buffer alive)
        host = cupy.cuda.alloc_pinned_memory(_STATE_WORDS * 8)
        self._host_state = np.frombuffer(host, np.int64, _STATE_WORDS)
        self.state[STATE_HOST] = cupy.cuda.runtime.pointerGetAttributes(host.ptr).devicePointer
        self._no_misses = cupy.empty(0, cupy.int64)
        self._views = None  # (buffer, n, touch) and the slots and old-score views of the scratch buffer
        self._dummy = cupy.zeros(16, cupy.uint8)
        self._scratch, self._scratch_stream = cupy.empty(0, cupy.int64), None
        self._inserted = False  # whether the last insert_and_evict launched (and so published)
        self.default = cupy.zeros(dim, self.raw_dtype)
        self.clock = 0
        self._ordered = None  # the stream-ordered lookup's scratch (reserve)
        self._small_shared = None  # dynamic shared memory of ordered_small's blocks (the first reserve)
        self._kept = []  # earlier scratch that captured graphs still read
        self._event = None  # record_event's
        self._source_seen = (None, None)  # the last DeviceSource a stream-ordered lookup read, and its arguments
        # Cache(graphs=True): stream-ordered lookups replayed from CUDA graphs of themselves (_replayed)
        self.replay_graphs = False
        self._graphs = {}  # (length, key dtype, out address, rule, index_rows) -> (static keys, graph)
        self._sightings = {}  # such keys seen once and not captured yet (None: capture failed, never again)
        self._capture_stream = None
        self._ordered_seen = np.zeros(FIELDS["F_COUNTERS"], np.int64)
        # set from a stream-ordered lookup's probe until its last launch is enqueued: a lookup interrupted
        # in between (an exception, a KeyboardInterrupt) left counts in the batch words that the next one's
        # probe would add to, so that one zeroes them first
        self._ordered_unfinished = False
        self.sketch = None if sketch_shape is None else cupy.zeros(sketch_shape, cupy.int64)
        # every set's hand or S3-FIFO state (layout.new_set_state), its address in the state for insert_one.cuh
        self.hands = new_set_state(policy.victim, num_sets, ways, cupy)
        self.state[STATE["STATE_HANDS"]] = 0 if self.hands is None else self.hands.data.ptr
        self._sketch_seed = np.uint64(sketch_seed)
        self._set_dtype = cupy.uint32 if num_sets <= 2**32 else cupy.uint64
        # kernel arguments that never change, made once: a small lookup is mostly Python time
        self._num_sets_arg = np.uint64(num_sets)
        # lookups write rows as raw bits into arrays of the row dtype (bfloat16: its uint16 bits)
        self._out_dtype = self.raw_dtype if self.dtype.name == "bfloat16" else self.dtype
        self._blocks = resident_blocks(self.device_id)
        self._ublock = utility_block(self.compute_capability)  # threads a block of every other kernel
        self._external: dict = {}  # raw stream handle -> its CuPy wrapper (on_stream)
        # the fused miss path's block, the batches it takes in several blocks and in one, and how many blocks
        self._oblock, self._small, self._small_blocks, self._small_one = ordered_shape(self.compute_capability)
        self._small_blocks = min(self._small_blocks, self._blocks)
        self._utility = (self._ublock,)
        self._hits_change_scores = policy.hit_changes_score
        # an idempotent hit rule without count (LRU's clock, SIEVE's visited bit) gives every occurrence
        # the score the first one stored: stored, not counted, by the probe itself, into the record it read
        # (not with aging, whose pass must run between the tick and the hits' rule: the touch kernel's way)
        self._probe_touches = touching
        self._age_period = _i64(policy.age_period if policy.ages else 0)  # 0: the policy never ages
        #: the CPU backend's measure of hit-path score stores; the GPU backend does not count them
        self.score_writes = None
        self._policy = policy
        self.digests = None
        self.retune(self.shape, reading)

    def retune(self, shape: dict, query_shape: dict | None = None) -> None:
        """Compile the kernels for launch ``shape`` (group, keys_per_group, block, digests, split); the
        arrays stay.  ``query_shape``: another shape for ``query``'s probe (with the same digests setting:
        a ``ConfigError`` otherwise, before anything changes), else ``query`` probes with ``shape``.

        Digests cost one byte a slot of device memory; turning them on computes
        them from the keys, turning them off frees them.
        """
        digests = bool(shape.get("digests", False))
        if query_shape is not None and dict(query_shape) == dict(shape):
            query_shape = None
        if query_shape is not None and bool(query_shape.get("digests", False)) != digests:
            # checked before anything changes: the arrays follow one digests setting
            raise ConfigError(f"query_shape {query_shape} and shape {shape} differ in digests: give both the same")
        self.shape = dict(shape)
        self._drop_graphs()  # they launch the kernels of the old shape
        self._launch = self._probe_launch(self.shape)
        self._k = self._launch._k
        # the new kernels' own attribute: set again now if a scratch exists (a captured lookup sets nothing)
        self._small_shared = None if self._ordered is None else self._small_shared_bytes()
        self._chunks = self.row_bytes // vector_bytes(self.row_bytes)
        self._query_shape = None if query_shape is None else dict(query_shape)
        self._query_launch = None if query_shape is None else self._probe_launch(self._query_shape)
        for kernels in (self._k,) if self._query_launch is None else (self._k, self._query_launch._k):
            for name in FAMILIES[_EAGER]:
                kernels[name]  # compiled now, query's too: a first call compiles nothing
        if digests and self.digests is None:
            self.digests = self.xp.empty(self.keys.shape[0], self.xp.uint8)
            self._make_digests()
        elif not digests:
            self.digests = None
        self._digests_arg = self._dummy if self.digests is None else self.digests

    @property
    def query_shape(self) -> dict | None:
        """The launch shape ``query`` probes with where it differs from :attr:`shape` (else None)."""
        return self._query_shape

    def _probe_launch(self, shape: dict) -> _ProbeLaunch:
        """The kernels and launch figures of a probe with launch ``shape``."""
        config = _kernel_defines(self._policy, self.ways, self.row_bytes, self.num_sets, shape, self._ublock,
                                 self._oblock)
        return _ProbeLaunch(_Kernels(self.device_id, tuple(sorted(config.items()))), min(int(shape["group"]), self.ways),
                            int(shape["keys_per_group"]), int(shape["block"]), bool(shape.get("split", False)))

    def _make_digests(self) -> None:
        if self.digests is not None:
            n = self.keys.shape[0]
            self._k["make_digests"]((launch_grid(n, self._ublock),), self._utility, (self.table, _i64(n), self.digests))

    # ------------------------------------------------------------------ arrays in and out
    def on_stream(self, stream: Any) -> contextlib.AbstractContextManager:
        """Context in which CuPy (and so every kernel here) uses ``stream``: a cupy Stream or a raw pointer."""
        cupy = self.xp
        if stream is None:
            return contextlib.nullcontext()
        if isinstance(stream, int):
            # one wrapper per raw stream: making one costs microseconds (and a deprecation warning) a call
            wrapped = self._external.get(stream)
            if wrapped is None:
                if len(self._external) > 64:
                    self._external.clear()
                wrapped = self._external[stream] = cupy.cuda.ExternalStream(stream)
            stream = wrapped
        return stream

    def capturing(self) -> bool:
        """Whether the current stream is capturing a CUDA graph."""
        stream = self.xp.cuda.get_current_stream()
        return stream.ptr != 0 and bool(stream.is_capturing())

    def to_device(self, array: Any) -> Any:
        """A host or device array as a contiguous device array (rows come back as their raw bits)."""
        cupy = self.xp
        if isinstance(array, np.ndarray) and array.dtype == self.dtype and array.ndim == 2:
            array = raw(np.ascontiguousarray(array))
        out = cupy.ascontiguousarray(cupy.asarray(array))
        if out.data.ptr % 16:
            out = out.copy()  # the kernels read rows with aligned 16-byte words
        return out

    def to_host(self, array: Any) -> np.ndarray:
        """A device array as a NumPy array (raw row bits become the row dtype)."""
        out = self.xp.asnumpy(array)
        return out.view(self.dtype) if out.dtype == self.raw_dtype and out.ndim == 2 else out

    def new_rows(self, n: int) -> Any:
        """A lookup's output: float32/float16 rows as such; bfloat16 as uint16 bits (CuPy has no bfloat16)."""
        return self.xp.empty((n, self.dim), self._out_dtype)

    def set_default(self, default: np.ndarray) -> None:
        """Copy ``default`` (dim,), a host row of the row dtype, to the device as raw bits: the misses' row."""
        self.default = self.to_device(raw(np.ascontiguousarray(default)))

    # ------------------------------------------------------------------ device state
    def _read_state(self) -> np.ndarray:
        self.state.get(out=self._host_state)  # waits on this stream only
        return self._host_state

    def _published(self) -> np.ndarray:
        """The state words that the last reporting kernel on this stream wrote to the host (waits for it)."""
        self.xp.cuda.get_current_stream().synchronize()
        return self._host_state

    def _zero_counters(self, first: int = STATE_MISSES, words: int = STATE_RESERVED - STATE_MISSES + 1):
        # a memset, not a CuPy fill kernel: cheaper to issue, and capturable; whoever zeroes them counts
        # into them next and leaves the counts there (a stream-ordered lookup counts into its own batch words)
        self.xp.cuda.runtime.memsetAsync(self.state.data.ptr + 8 * first, 0, 8 * words,
                                         self.xp.cuda.get_current_stream().ptr)

    def _age(self, flag) -> None:
        """The policy's aging pass (``age_scores``), enqueued before the tick that may reach a multiple of
        its period (``flag``: only if the probe before found no miss and no reserved key)."""
        if self._age_period:
            n = self.keys.shape[0]
            grid = max(1, min(launch_grid(n, self._ublock), self._blocks))
            self._k["age_scores"]((grid,), self._utility, (self.table, _i64(n), self._age_period, self.state, flag))

    def tick(self) -> None:
        """Advance the batch clock by one (on the device), aging the scores first at a multiple of the period."""
        self._age(_FLAG[False])
        self._k["tick"](*_ONE_THREAD, (self.state, np.int32(0)))
        self.clock += 1

    def set_clock(self, clock: int) -> None:
        """Set the batch clock to ``clock``, on the device and on the host (``Cache.load``)."""
        self.state[STATE_CLOCK] = clock
        self.clock = int(clock)

    def current_stream(self) -> int:
        """The current CUDA stream's handle (CuPy's current stream)."""
        return self.xp.cuda.get_current_stream().ptr

    def record_event(self) -> Any:
        """A CUDA event recorded on the current stream now: done once the work enqueued so far is.

        One event object per backend, recorded again each time: waiting for a later
        recording waits for at least as much (callers order other streams after it).
        """
        if self._event is None:
            self._event = self.xp.cuda.Event(block=False, disable_timing=True)
        self._event.record(self.xp.cuda.get_current_stream())
        return self._event

    def wait_event(self, event: Any) -> None:
        """Make the current stream wait for ``event`` (on the device: the host does not wait)."""
        self.xp.cuda.get_current_stream().wait_event(event)

    def synchronize(self) -> None:
        """Wait for all work on the device (graph replays may run on any stream)."""
        self.xp.cuda.Device(self.device_id).synchronize()

    # ------------------------------------------------------------------ operations
    def _probe(self, keys, out, fill_misses: bool, replay: bool = False, scratch: bool = False,
               touch: int = _TOUCH_NONE, source=None, slots=None, found=None, raw=None, launch=None,
               counts: tuple = _HOST_COUNTS):
        """Slots of ``keys``, and with ``touch`` the old scores of the hits it touched (else None).

        With ``scratch`` both live in a buffer that the next scratch probe reuses (one call's use only).
        With a ``source`` (see ``plan_lookup``) a missed key found there gets a slot below -1, and its
        row is copied from there in the same pass.  ``found``: a bool array that gets ``slot >= 0``.
        ``raw``: ``(raw keys, key bytes, index rows, converted, invalid word)``, the keys as the caller
        gave them, which the probe converts (Gather's rules) into ``converted`` (the ``keys`` argument)
        as it reads, counting the replaced ones into state word ``invalid word``; with no ``source`` the
        probe reads no source (the host path's ``lookup(index_rows=)`` over a host tier).
        ``launch``: another ``_probe_launch`` than the backend's (query's).  ``counts``: the state words
        that probe_gather_source counts the misses and the reserved keys into (probe_gather: always
        STATE_MISSES and STATE_RESERVED).
        """
        n = keys.shape[0]
        # probe_gather counts into the host path's words only: other words need probe_gather_source
        assert counts is _HOST_COUNTS or source is not None or raw is not None
        keep_old = touch == _TOUCH_IF_CLEAN
        words = 2 * n if keep_old else n
        if slots is not None:  # the caller's buffer (a stream-ordered lookup's scratch)
            old = None
        elif scratch:
            # kernels of the last lookup may still read it, in order on its stream only
            stream = self.xp.cuda.get_current_stream().ptr
            have = self._scratch.shape[0]
            if have < words or stream != self._scratch_stream:
                # a new buffer for another stream (the old one may still be read on its own), of the same
                # size when that suffices: doubling at every switch took 137 GB after 14 alternations
                self._scratch = self.xp.empty(max(words, 2 * have) if have < words else have, self.xp.int64)
                self._scratch_stream = stream
            buffer = self._scratch
            views = self._views
            # CuPy slicing costs microseconds: batches of one size reuse the views of the last one
            if views is None or views[0] is not buffer or views[1] != n or views[2] != keep_old:
                views = self._views = (buffer, n, keep_old, buffer[:n], buffer[n:2 * n] if keep_old else None)
            slots, old = views[3], views[4]
        else:
            buffer = self.xp.empty(words, self.xp.int64)
            slots, old = buffer[:n], (buffer[n:2 * n] if keep_old else None)
        if n:
            count = _i64(n)
            launch = launch or self._launch
            threads = -(-n // launch.keys_per_group) * launch.group
            split = launch.split and out is not None
            args = (self.table, self._digests_arg, self.values, self._num_sets_arg, keys, count,
                    _FLAG[out is not None and not split], self._dummy if out is None else out, slots, self.default,
                    _FLAG[fill_misses], _FLAG[replay], self.state, _TOUCH_FLAG[touch], _NULL if old is None else old,
                    _NULL if found is None else found)
            grid = (max(1, min(-(-threads // launch.block), self._blocks)),), (launch.block,)
            if source is None and raw is None:
                launch._k["probe_gather"](*grid, args)
            else:
                launch._k["probe_gather_source"](*grid, args + (_NO_SOURCE if source is None else source) +
                                                 (_NO_RAW if raw is None else raw) + counts)
            if split:
                words = n * self._chunks
                launch._k["gather_slots"]((-(-words // self._ublock),), self._utility, (
                    self.values, slots, count, out, self.default, _FLAG[fill_misses],
                    _NULL if source is None else source[2]))
        return slots, old

    def _tick_and_touch(self, slots, if_clean: bool) -> None:
        flag = _FLAG[if_clean]
        n = slots.shape[0]
        self._age(flag)
        if self._hits_change_scores and n:  # the touch kernel's last block ticks: one launch fewer
            grid = max(1, min(-(-n // _TOUCH_CHUNK), self._blocks))
            self._k["touch"]((grid,), (self._oblock,), (self.table, slots, _i64(n), self.state, flag))
        else:
            self._k["tick"](*_ONE_THREAD, (self.state, flag))

    def find(self, keys: Any) -> Any:
        """Slot of every key or -1: keys (n,) int64 -> (n,) int64 (device)."""
        return self._probe(keys, None, False)[0]

    def find_and_gather(self, keys: Any, out: Any, fill_misses: bool = False) -> tuple[Any, int, int]:
        """Slots of ``keys`` and their cached rows in ``out``; returns ``(slots, misses, reserved)``.

        Waits on the stream once, for the two counters.  With ``fill_misses`` the
        default row goes to the misses.
        """
        self._zero_counters()
        slots, _ = self._probe(keys, out, fill_misses)
        state = self._published() if keys.shape[0] else self._read_state()
        return slots, int(state[STATE_MISSES]), int(state[STATE_RESERVED])

    def query(self, keys: Any, out: Any) -> tuple[Any, int]:
        """``Backend.query``: the probe (misses get the default row) writes ``found`` too; one wait, for
        the counters."""
        found = self.xp.empty(keys.shape[0], self.xp.bool_)
        self._zero_counters()
        # the slots are not returned: scratch
        self._probe(keys, out, True, scratch=True, found=found, launch=self._query_launch)
        state = self._published() if keys.shape[0] else self._read_state()
        return found, int(state[STATE_RESERVED])

    def plan_or_hits(self, keys: Any, out: Any) -> _LookupPlan:
        """``plan_lookup(keys, out)``: a device plan is always the Cache's to commit (its commit launches)."""
        return self.plan_lookup(keys, out)

    def plan_lookup(self, keys: Any, out: Any, source: DeviceSource | None = None, index_rows: int = 0) -> _LookupPlan:
        """The host lookup's plan (``Backend.plan_lookup``): probes ``keys``, gathers the cached rows into
        ``out`` and lists the missed indices (in no particular order).  Waits on the stream once, for
        the counters.  ``index_rows`` > 0: the keys are row numbers, which the probe converts by
        Gather's rules as it reads them (``plan.keys``, and ``plan.invalid`` of them replaced), so the
        rules cost no pass and no wait of their own.

        When every key hit, the probe (LRU: it stores each hit's score into the record it has just
        read) or the touch kernel right after it has already ticked the device clock and applied the
        hit rule, without waiting for the host; the plan's ``commit`` then only brings the host's clock
        along.  Otherwise the device clock has not ticked; an LRU probe has stored the hits' scores
        and kept the old ones, which ``rollback`` puts back, and ``commit`` ticks the clock (other
        rules: ``commit`` applies the hit rule, ``rollback`` has nothing to put back).

        ``source``: a :class:`~embcache._source.DeviceSource`, rows that the GPU
        reads in place (an index layout of ``INDEX_LAYOUTS``, rows of this
        cache's dtype and dim; a ``ConfigError`` otherwise).  Then the probe also
        copies every missed row from there (the default row where the source
        lacks the key), so ``out`` is complete on return; ``found_in_source``
        says which missed keys it held.  The caller keeps the source valid (holds
        its owner's lock) until this call has returned.
        """
        source = None if source is None else _source_args(source, self.dim, self.dtype)
        n = keys.shape[0]
        raw = None
        if index_rows and n:
            converted = self.xp.empty(n, self.xp.int64)
            raw, keys = (keys, _KEY_BYTES[keys.dtype.itemsize], _i64(index_rows), converted, _HOST_INVALID), converted
        # STATE_INVALID too: the words from the misses to it are zeroed in one memset
        self._zero_counters(STATE_MISSES, STATE_INVALID - STATE_MISSES + 1)
        # the slots live until this lookup ends, under the Cache's lock: a reused buffer (not while
        # capturing, where the graph would keep a buffer that a later lookup may replace)
        fill = source is not None  # the source's absent keys get the default row here
        old = None
        if self._probe_touches and n:  # an empty batch has no probe to tick the clock: tick kernel
            slots, old = self._probe(keys, out, fill, scratch=True, touch=_TOUCH_IF_CLEAN, source=source, raw=raw)
        else:
            slots, _ = self._probe(keys, out, fill, scratch=True, source=source, raw=raw)
            self._tick_and_touch(slots, if_clean=True)
        plan = _LookupPlan(self, slots, old, keys)
        try:
            # the probe published its counters; a launch after it (the touch kernel) is waited for too
            state = self._published() if n else self._read_state()
            misses, reserved = int(state[STATE_MISSES]), int(state[STATE_RESERVED])
            plan.reserved = reserved
            if raw is not None:
                plan.invalid = int(state[STATE_INVALID])
            if not misses and not reserved:
                plan._applied = True
                return plan
            missed = self.xp.empty(misses, self.xp.int64)
            self._k["list_misses"]((launch_grid(n, self._ublock),), self._utility,
                                   (slots, _i64(n), missed, self.state))
            plan.missed = missed
        except BaseException:
            plan.rollback()  # a failed wait (a CUDA error, an interrupt): the stored scores go back
            raise
        return plan

    @staticmethod
    def found_in_source(slots: Any, at: Any) -> Any:
        """Whether the keys at indices ``at`` were found in ``plan_lookup``'s source (device bool array)."""
        return slots[at] != -1  # -1: in neither the cache nor the source; below -1: a source row

    def count_source_misses(self, keys: Any, slots: Any, misses: int) -> tuple[int, int]:
        """After ``plan_lookup`` with a source found ``misses`` misses: ``(distinct missed keys, how
        many of those the source lacked)``.

        One hash-set pass over the misses, no sort: for a lookup that admits
        nothing, these counts are all that is left to do.  Waits on the stream.
        """
        n = keys.shape[0]
        size = 1 << max(4, (2 * misses - 1).bit_length())  # a power of two, at least twice the misses
        scratch = self.xp.full(size, EMPTY_KEY, self.xp.int64)
        self._zero_counters(STATE_DISTINCT, 2)
        self._k["count_source_misses"]((launch_grid(n, self._ublock),), self._utility,
                                       (keys, slots, _i64(n), scratch, _i64(size - 1), self.state))
        state = self._read_state()
        return int(state[STATE_DISTINCT]), int(state[STATE_ABSENT])

    # ------------------------------------------------------------------ the stream-ordered lookup
    def _ordered_region(self, keys: int, slots: Any = None) -> dict:
        """The tables and lists of a stream-ordered lookup of up to ``keys`` keys, zeroed (every phase
        empties what it fills): the batch's own, with the probe's slots and the converted keys
        (``slots`` None), or a further block's of the small batch's kernel, beside the batch's ``slots``.
        The hash tables have twice the keys' cells, rounded up to a power of two."""
        names = ("ukeys", "ucell", "ucount", "uat", "unext", "gcells") + (("slots", "keys") if slots is None else ())
        cells = 1 << max(4, (2 * keys - 1).bit_length())
        hash_words = self.xp.zeros(5 * cells, self.xp.uint64)
        lists = self.xp.zeros(len(names) * keys, self.xp.int64)
        region = {"cells": cells, "hash": hash_words, "lists": lists, "uadmit": self.xp.zeros(keys, self.xp.bool_)}
        for i, name in enumerate(("hkeys", "hcount", "hlast", "gsets", "ghead")):
            region[name] = hash_words[i * cells:(i + 1) * cells]
        for i, name in enumerate(names):
            region[name] = lists[i * keys:(i + 1) * keys]
        if slots is not None:
            region["slots"] = slots
        return region

    def _ordered_words(self, o: dict) -> tuple[np.ndarray, dict]:
        """``(words, o)``: the ORDERED_WORDS addresses and figures of scratch ``o`` in ordered_of's order."""
        ptr = lambda a: a.data.ptr  # noqa: E731
        cells = o["cells"]
        words = np.array([
            ptr(o["slots"]), ptr(o["hkeys"]), ptr(o["hcount"]), ptr(o["hlast"]), cells - 1,
            ptr(o["ukeys"]), ptr(o["ucell"]), ptr(o["ucount"]), ptr(o["uat"]), ptr(o["uadmit"]),
            ptr(o["gsets"]), ptr(o["ghead"]), ptr(o["unext"]), ptr(o["gcells"]), self.num_sets], np.uint64)
        assert words.shape[0] == ORDERED_WORDS  # ordered_small's block b reads its words at b * ORDERED_WORDS
        return words, o

    def reserve(self, max_batch: int, deferred: bool = False) -> None:
        """Make the scratch of a stream-ordered lookup of up to ``max_batch`` keys, and compile its kernels.

        About ``170 * max_batch`` bytes of device memory (the tables of distinct misses
        and of sets are twice the batch, rounded up to a power of two), plus a row a
        key with ``deferred`` (the rows a deferred insertion keeps), plus about
        ``150 * min(max_batch, small batch)`` bytes for each further block of the small
        batch's launch (none with a sketch or ``deferred``).  Call outside a
        CUDA graph capture: ``lookup_ordered`` under capture never allocates.  A
        scratch that grows keeps what a deferred insertion still needs.
        """
        max_batch = max(1, int(max_batch))
        if self._ordered is not None and self._ordered["n"] >= max_batch and (
                not deferred or self._ordered["stash"] is not None):
            return
        self.flush_pending()  # a batch left to place reads the old scratch: place it first
        self._drop_graphs()  # they read the old scratch
        cupy = self.xp
        if self._ordered is not None:
            if self._ordered["captured"]:  # a captured graph reads it at its addresses: it stays, unused here
                self._kept.append(self._ordered)
            else:  # kernels queued on the old scratch finish before it is freed
                cupy.cuda.get_current_stream().synchronize()
        # zeroed once: every kernel that fills a cell empties it again by the batch's end
        ords = self._ordered_region(max_batch)
        ords["n"] = max_batch
        ords["views"], ords["scalars"], ords["rows"] = {}, {}, {}
        ords["captured"] = False  # set once a captured lookup reads this scratch
        ords["stash"] = cupy.empty(max_batch * self.row_bytes, cupy.uint8) if deferred else None
        # the scratch's addresses, in the order of ordered.cu's ordered_of: one kernel argument for all;
        # then, for each further block of the small batch's kernel, its own tables and lists (sized for
        # the small batch) beside the probe's slots: ordered_small's block b reads words b * ORDERED_WORDS
        # on.  None where the batch always takes one block (a sketch, a deferred insertion)
        words = [self._ordered_words(ords)]
        for _ in range(1, 1 if self.sketch is not None or deferred else self._small_blocks):
            words.append(self._ordered_words(self._ordered_region(min(max_batch, self._small), ords["slots"])))
        ords["regions"] = words[1:]  # their arrays, kept alive as long as the words point at them
        ords["words"] = cupy.asarray(np.concatenate([w[0] for w in words]))
        for names in (FAMILIES["ordered.cu"], FAMILIES["source.cu"], FAMILIES["probe.cu"]):
            for name in names:
                self._k[name]  # compiled now: a captured lookup compiles and loads nothing
        if self.sketch is not None:
            self._k["ordered_sketch_add"], self._k["ordered_sketch_admit"]
        if self._small_shared is None:  # a property of the kernel: set once
            self._small_shared = self._small_shared_bytes()
        self._ordered = ords

    def _small_shared_bytes(self) -> int:
        """Dynamic shared memory that ordered_small's blocks get for their tables (cuda/ordered.cu's
        SMALL_SHARED_BYTES), allowed for the kernel here; 0 where the device cannot give that much beside
        the kernel's static tables: its blocks then keep their tables in global memory (slower, the same
        results)."""
        want = SMALL_SHARED["SMALL_SHARED_BYTES"]
        driver = self.xp.cuda.driver
        function = self._k["ordered_small"].function  # this device's
        most = int(self.xp.cuda.runtime.getDeviceProperties(self.device_id).get("sharedMemPerBlockOptin", 0))
        with self.xp.cuda.Device(self.device_id):  # the function's context
            if driver.funcGetAttribute(driver.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, function) + want > most:
                return 0
            driver.funcSetAttribute(function, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, want)
        return want

    @property
    def max_batch(self) -> int:
        """Keys a stream-ordered lookup may take without growing its scratch (0 before the first)."""
        return 0 if self._ordered is None else self._ordered["n"]

    def lookup_ordered(self, keys: Any, out: Any, source: DeviceSource, admit_mode: int, hit_rate: float,
                       refuse_below_min: bool, sketch_threshold: int, index_rows: int = 0,
                       defer_at: float = -1.0) -> None:
        """The whole lookup of ``keys`` into ``out``, enqueued on the current stream; never waits for the host.

        Probe and gather (missed rows from ``source``), the clock tick and the hits'
        scores, the distinct missed keys, admission (``admit_mode``, one of
        ``_shared.ADMIT``, with ``hit_rate`` for ``ADMIT_BELOW_HIT_RATE``; the
        sketch's ``sketch_threshold`` when the cache has a sketch), insertion and
        eviction set by set in ascending key order, and the counters
        (:meth:`absorb_ordered` reads them).  Reserved keys get the default row, are
        never admitted, and count as misses and as ``invalid``.  The scratch must hold
        ``len(keys)`` (:meth:`reserve`).  ``keys``: a contiguous (n,) int64 or int32 device
        array; with ``index_rows`` > 0 they are row numbers of a table of that many
        rows (Gather's index rules: negative ones wrap, ones outside the table become
        the key ``index_rows`` and count as invalid), converted into the scratch by
        one kernel.  ``defer_at`` >= 0 (HitRateDeferred): a batch whose hit rate is at
        least that is not placed; its rows are kept, and :meth:`flush_pending` (which
        this call runs first, so that a replayed graph places the last replay's)
        places them.  Legal inside a CUDA graph capture: it
        allocates, synchronizes and compiles nothing, and no launch depends on a
        device value.  The caller keeps ``source`` valid until the kernels have run.
        """
        n = keys.shape[0]
        o = self._ordered
        if source is not self._source_seen[0]:  # a tier hands out the same object until it changes
            self._drop_graphs()  # they read the old source
            self._source_seen = (source, _source_args(source, self.dim, self.dtype))
        self._clear_unfinished()
        rule = (admit_mode, hit_rate, refuse_below_min, defer_at, sketch_threshold)
        capturing = self.capturing()
        if self.replay_graphs and n and not capturing and self._replayed(keys, out, source, rule, index_rows):
            return
        source = self._source_seen[1]
        if defer_at >= 0:
            self.flush_pending()
        o["captured"] |= capturing
        self._ordered_unfinished = True
        views = o["views"]
        if n not in views:  # CuPy slicing costs microseconds: each batch length's views are made once
            if len(views) > 64:
                views.clear()
            views[n] = (o["slots"][:n], o["keys"][:n], _i64(n))
        slots, converted, count = views[n]
        raw = None
        if n and (index_rows or keys.dtype != np.int64):
            # the probe reads the caller's keys, applies Gather's rules, writes the int64 keys that the
            # kernels after it read (no launch of its own: the plugin's enqueue costs what a lookup does)
            rows = o["rows"].get(index_rows)
            if rows is None:  # one scalar per table size: the probe's launch then repacks no cell for it
                if len(o["rows"]) > 64:
                    o["rows"].clear()
                rows = o["rows"][index_rows] = _i64(index_rows)
            raw, keys = (keys, _KEY_BYTES[keys.dtype.itemsize], rows, converted, _ORDERED_INVALID), converted
        # a block a share of the sets, but one where a sketch's estimates or a deferred batch's rows need the
        # whole batch in one place; one launch after the probe for a small batch (one block takes fewer keys)
        blocks = self._small_blocks if self.sketch is None and defer_at < 0 else 1
        small = 0 < n <= (self._small if blocks > 1 else self._small_one)
        tick = _TICK_NONE
        counts = _SMALL_COUNTS if small else _ORDERED_COUNTS
        if self._probe_touches and n:
            self._probe(keys, out, True, replay=True, touch=_TOUCH_ALWAYS, source=source, slots=slots, raw=raw,
                        counts=counts)
        else:
            self._probe(keys, out, True, replay=True, source=source, slots=slots, raw=raw, counts=counts)
            if small:  # the small batch's kernel scores the hits and ticks first: the aging pass before it
                self._age(_FLAG[False])
                # after an aging pass (a kernel between the probe and ordered_small, which starts before that
                # pass's writes are visible to it) the hits' scores must wait for them
                touched = _TICK_TOUCH_AGED if self._age_period else _TICK_TOUCH
                tick = touched if self._hits_change_scores else _TICK_ONLY
            else:
                self._tick_and_touch(slots, if_clean=False)
        stash = self._dummy if o["stash"] is None else o["stash"]
        scalars = o["scalars"].get(rule)
        if scalars is None:  # a cache's rule is the same every call: its kernel scalars are made once
            depth, width = (0, 0) if self.sketch is None else self.sketch.shape
            scalars = o["scalars"][rule] = (np.int32(admit_mode), np.float64(hit_rate), _FLAG[bool(refuse_below_min)],
                                            np.float64(defer_at), np.int32(depth), _i64(width),
                                            _i64(sketch_threshold))
        batch = (o["words"], keys, count) + scalars[:4]
        sketch = self.sketch
        if small:
            # blocks of a short batch keep their tables in shared memory (the kernel sees the bytes given)
            shared = (self._small_shared or 0) if blocks > 1 and n <= _SMALL_SHARED_KEYS else 0  # reserve() sets it
            self._k["ordered_small"]((blocks,), (self._oblock,), batch + (
                self.table, self._digests_arg, self.values, out, stash, _NULL if sketch is None else sketch,
                scalars[4], scalars[5], self._sketch_seed, scalars[6], tick, self.state), shared_mem=shared)
            self._ordered_unfinished = False
            if not capturing:  # a captured lookup ticks the device clock when replayed
                self.clock += 1
            return
        if n:
            grid = (max(1, min(launch_grid(n, self._ublock), self._blocks)),), self._utility
            state = self.state
            self._k["ordered_misses"](*grid, batch + (state,))
            self._k["ordered_distinct"](*grid, batch + (state, _FLAG[sketch is None]))
            if sketch is not None:
                depth, width = sketch.shape
                common = (sketch, np.int32(depth), _i64(width), self._sketch_seed, o["ukeys"])
                self._k["ordered_sketch_add"](*grid, common + (o["ucount"], state))
                self._k["ordered_sketch_admit"](*grid, common + (o["uadmit"], _i64(sketch_threshold), state))
            self._k["ordered_group"](*grid, batch + (state,))
            warps = (max(1, min(launch_grid(n * 32, self._ublock), self._blocks)),), self._utility
            self._k["ordered_insert"](*warps, batch + (self.table, self._digests_arg, self.values, out, stash,
                                                       _FLAG[False], state))
        self._k["ordered_finish"](*_ONE_WARP, (self.state, count))
        self._ordered_unfinished = False
        if not capturing:  # a captured lookup ticks the device clock when replayed
            self.clock += 1

    def _replayed(self, keys: Any, out: Any, source: DeviceSource, rule: tuple, index_rows: int) -> bool:
        """Run this stream-ordered lookup as a replay of a CUDA graph of itself, if it has one or can
        have one now; False: run it eagerly (the first time such a call is seen, or its capture failed).

        A graph is made per batch length, key dtype, ``out`` address, admission rule and
        ``index_rows``, on the second such call: it reads the keys from a buffer of its
        own, which one device copy fills, and writes the rows into ``out``.  The host then
        enqueues a copy and a graph launch instead of the lookup's kernels (about 7), and
        the results are those of the eager lookup, whose kernels the graph holds.  Graphs
        are dropped, after the device has finished with them, when the scratch, the source or
        the launch shape changes (their addresses and kernels are baked in).  At most
        ``_MAX_GRAPHS`` are kept: once that many are held, calls of any other shape run eagerly.
        """
        cupy = self.xp
        n = keys.shape[0]
        key = (n, keys.dtype.char, out.data.ptr, rule, index_rows)
        entry = self._graphs.get(key)
        if entry is None:
            seen = self._sightings
            if key not in seen:
                if len(seen) > 64:
                    seen.clear()
                seen[key] = True
                return False
            if seen[key] is None:
                return False
            if len(self._graphs) >= _MAX_GRAPHS:
                # full: this shape runs eagerly (making room would wait for the device, in a server's enqueue,
                # and a server whose batch lengths cycle through more shapes would capture again and again)
                return False
            entry = self._capture(key, keys, out, source, rule, index_rows)
            if entry is None:
                seen[key] = None
                return False
            del seen[key]
        static, graph = entry
        stream = cupy.cuda.get_current_stream()
        cupy.cuda.runtime.memcpyAsync(static.data.ptr, keys.data.ptr, n * keys.dtype.itemsize,
                                      cupy.cuda.runtime.memcpyDeviceToDevice, stream.ptr)
        graph.launch(stream)
        self.clock += 1  # the replay ticks the device clock: the host's follows, as an eager lookup's does
        return True

    def _capture(self, key: tuple, keys: Any, out: Any, source: DeviceSource, rule: tuple, index_rows: int):
        """``(static keys, graph)``: this lookup captured (on a stream of the backend's own, which runs
        nothing: the replay that follows does the work), or None if the capture failed."""
        cupy = self.xp
        if self._capture_stream is None:
            self._capture_stream = cupy.cuda.Stream(non_blocking=True)
        static = cupy.empty(keys.shape[0], keys.dtype)  # outside the capture, which allocates nothing
        capture, o = self._capture_stream, self._ordered
        before = o["captured"]
        admit_mode, hit_rate, refuse_below_min, defer_at, sketch_threshold = rule
        graph = None
        # no cyclic collection during the capture: one that freed a cycle holding pinned host memory (a tier's)
        # would call cudaFreeHost from this thread, which voids the capture (seen on 2026-12-04: a replay
        # test's capture failed once in the GPU suite, and the lookup ran eagerly)
        with no_collection(), capture:
            # thread-local: other threads' allocations and synchronizations stay legal meanwhile
            capture.begin_capture(cupy.cuda.runtime.streamCaptureModeThreadLocal)
            try:
                self.lookup_ordered(static, out, source, admit_mode, hit_rate, refuse_below_min, sketch_threshold,
                                    index_rows, defer_at)
                complete = not self._ordered_unfinished
            except Exception:  # the lookup runs eagerly instead; nothing captured is ever launched
                complete = False
            finally:
                try:
                    graph = capture.end_capture()
                except Exception:
                    graph = None
        o["captured"] = before  # its graphs are ours: reserve drops them rather than keeping the scratch
        if graph is None or not complete:
            self._ordered_unfinished = False  # nothing of the failed capture ran
            return None
        self._graphs[key] = entry = (static, graph)
        return entry

    def _drop_graphs(self) -> None:
        """Forget the replay graphs, once the device has run what they launched (their key buffers go back
        to the pool)."""
        if self._graphs:
            if self.capturing():  # no waiting inside a capture: they are kept, never launched again
                self._kept.append(self._graphs)
                self._graphs = {}
            else:
                self.xp.cuda.Device().synchronize()
                self._graphs.clear()
        self._sightings.clear()

    def _clear_unfinished(self) -> None:
        """Zero the batch words that a stream-ordered lookup interrupted after its probe left counts in."""
        if self._ordered_unfinished:
            self._zero_counters(ORDERED["ORD_BATCH"], ORD_FIELDS)
            self._ordered_unfinished = False

    def flush_pending(self) -> None:
        """Place what a deferred batch of ``lookup_ordered`` left (nothing, on the device, if none).

        Its counts go to the totals only.  Enqueued on the current stream; no host wait.
        """
        o = self._ordered
        if o is None or o["stash"] is None:
            return
        self._clear_unfinished()  # ordered_flushed adds the batch words to the totals
        warps = (max(1, min(launch_grid(o["n"] * 32, self._ublock), self._blocks)),), self._utility
        batch = (o["words"], self._dummy, _i64(0), np.int32(0), np.float64(0.0), _FLAG[False], np.float64(-1.0))
        self._k["ordered_insert"](*warps, batch + (self.table, self._digests_arg, self.values, self._dummy,
                                                   o["stash"], _FLAG[True], self.state))
        self._k["ordered_flushed"](*_ONE_THREAD, (self.state,))

    def absorb_ordered(self) -> tuple[dict, dict | None]:
        """The stream-ordered lookups' counters since last asked, and the last one's: ``(totals, last)``.

        Waits for the work enqueued on the current stream (the caller enters the
        stream the lookups ran on).  Each is a dict of ``_shared.FIELDS`` counter
        names (``lookups``, ``misses``, ``unique``, ``absent``, ``admitted``,
        ``outcomes`` (5,), ``invalid``, ``batches``); ``last`` is None when no
        stream-ordered lookup ran since the last call, and has ``inserted_by_then``: the
        keys placed (INSERTED outcomes) from the last call up to that batch's end.  Also brings the host's clock
        up to the device's (graph replays tick it there).
        """
        state = self._read_state().copy()
        self.clock = int(state[STATE_CLOCK])
        total = state[ORDERED["ORD_TOTAL"]:ORDERED["ORD_TOTAL"] + FIELDS["F_COUNTERS"]]
        seen, self._ordered_seen = self._ordered_seen, total.copy()
        delta = total - seen
        at = ORDERED["ORD_LAST"]
        last = state[at:at + FIELDS["F_COUNTERS"]]
        if not delta[FIELDS["F_BATCHES"]]:
            return _counters(delta), None
        last = _counters(last)
        # keys the stream-ordered paths had placed when that batch ended, counted from the last call
        inserted = FIELDS["F_OUTCOMES"] + OUTCOMES["INSERTED"]
        last["inserted_by_then"] = int(state[at + FIELDS["F_MARK"]] - seen[inserted])
        return _counters(delta), last

    def _restore_scores(self, slots: Any, old: Any) -> None:
        """Put back the scores ``old`` (n,) of the slots ``slots`` (n,) (a probe's touch; -1 slots skipped)."""
        n = slots.shape[0]
        self._k["restore_scores"]((launch_grid(n, self._ublock),), self._utility,
                                  (self.table, slots, old, _i64(n), self.state))

    def scatter(self, out: Any, where: Any, rows: Any, inverse: Any) -> None:
        """out[where[i]] = rows[inverse[i]]: missed rows into a lookup's output, in one launch."""
        n = where.shape[0]
        if n:
            # one warp a row
            self._k["scatter_rows"]((launch_grid(n * 32, self._ublock),), self._utility,
                                    (out, where, rows, inverse, _i64(n)))

    def insert_and_evict(self, keys: Any, counts: Any, rows: Any, admit: Any, refuse_below_min: bool,
                         compares_victim: int = 0, protect: Any = None, chance: Any = None) -> None:
        """As ``CPUBackend.insert_and_evict``, at the device clock (``protect``: None or ``(keys, ranks)``, two
        (p,) int64 device arrays, the keys ascending and distinct; ``chance``: None or the (64,) int64 device
        array of mode 3).  No host wait; ``tally`` waits."""
        cupy = self.xp
        n = keys.shape[0]
        self._zero_counters(STATE_OUTCOMES, _OUTCOME_CODES)
        self._inserted = bool(n)
        if not n:
            return
        sets = cupy.empty(n, self._set_dtype)
        grid = (launch_grid(n, self._ublock),), self._utility
        self._k["sets_of"](*grid, (keys, _i64(n), np.uint64(self.num_sets), sets))
        order = cupy.argsort(sets)  # stable, so each set's keys stay ascending
        # the plain kernel has the sketch comparison and the protection compiled out (insert.cu)
        general = bool(compares_victim) or protect is not None
        kernel = self._k["insert_and_evict_general"] if general else self._k["insert_and_evict"]
        kernel(
            *grid,
            (self.table, self._digests_arg, self.values, self._num_sets_arg, keys, counts, rows,
             admit, order, _i64(n), self.state, np.int32(bool(refuse_below_min)), *self._victim_args(compares_victim, chance),
             *((_NULL, _NULL, _i64(0)) if protect is None else (*protect, _i64(protect[0].shape[0])))))

    def _victim_args(self, compares_victim: int, chance: Any = None) -> tuple:
        """insert_and_evict's sketch arguments: the sketch TinyLFU compares keys with their victims by, or
        none, whether it picks the victim (``compares_victim >= 2``: TinyLFUEvict), and the tables' return
        chances (mode 3, TinyLFUTables; else none)."""
        if not compares_victim:
            return _NULL, np.int32(0), _i64(0), np.uint64(0), np.int32(0), _NULL
        depth, width = self.sketch.shape
        return (self.sketch, np.int32(depth), _i64(width), self._sketch_seed, np.int32(int(compares_victim) >= 2),
                _NULL if chance is None else chance)

    def tally(self) -> np.ndarray:
        """How many keys of the last ``insert_and_evict`` got each outcome code: (5,) host int64 (waits for it)."""
        state = self._published() if self._inserted else self._read_state()  # no kernel: nothing published
        return state[STATE_OUTCOMES:STATE_OUTCOMES + _OUTCOME_CODES].copy()

    def unique(self, keys: Any) -> tuple[Any, Any, Any, Any]:
        """As ``CPUBackend.unique``, on the device, with no boolean indexing (CuPy's nonzero scan)."""
        cupy = self.xp
        n = keys.shape[0]
        if not n:
            empty = cupy.empty(0, cupy.int64)
            return keys[:0], empty, empty, empty
        order = cupy.argsort(keys)  # stable
        ordered = keys[order]
        starts = cupy.empty(n, cupy.int64)
        grid = (launch_grid(n, self._ublock),), self._utility
        self._k["run_starts"](*grid, (ordered, _i64(n), starts))
        rank = cupy.cumsum(starts)
        u = int(rank[-1])
        ukeys, bounds, inverse = cupy.empty(u, cupy.int64), cupy.empty(u + 1, cupy.int64), cupy.empty(n, cupy.int64)
        self._k["run_scatter"](*grid, (ordered, order, starts, rank, _i64(n), _i64(u), ukeys, bounds, inverse))
        return ukeys, inverse, bounds[1:] - bounds[:-1], order[bounds[1:] - 1]

    def _count_found(self, kernel, args) -> int:
        self._zero_counters()
        n = int(args[-2])
        if n:
            self._k[kernel]((launch_grid(n, self._ublock),), self._utility, args)
        return int(self._read_state()[STATE_MISSES])

    def update(self, keys: Any, rows: Any) -> int:
        """Overwrite cached rows of unique ``keys``; returns how many were cached."""
        return self._count_found("update_rows", (self.table, self.values, self._num_sets_arg, keys, rows,
                                                 _i64(keys.shape[0]), self.state))

    def erase(self, keys: Any) -> int:
        """Remove unique ``keys``; returns how many were cached."""
        return self._count_found("erase_keys", (self.table, self._digests_arg, self._num_sets_arg, keys,
                                                _i64(keys.shape[0]), self.state))

    def clear(self) -> None:
        """Empty every slot and zero every score (digests, if on, recomputed); the clock and the sketch stay."""
        self.keys.fill(EMPTY_KEY)
        self.scores.fill(0)
        if self.hands is not None:
            self.hands[...] = new_set_state(self._policy.victim, self.num_sets, self.ways, self.xp)
        self._make_digests()

    def sketch_add(self, keys: Any, counts: Any) -> Any:
        """Count missed ``keys`` ``counts`` times, then read their estimates (device (n,) int64)."""
        n = keys.shape[0]
        est = self.xp.empty(n, self.xp.int64)
        if n:
            depth, width = self.sketch.shape
            common = (self.sketch, np.int32(depth), _i64(width), self._sketch_seed, keys)
            grid = (launch_grid(n, self._ublock),), self._utility
            self._k["sketch_add"](*grid, common + (counts, _i64(n)))
            self._k["sketch_estimate"](*grid, common + (_i64(n), est))
        return est

    def set_occupancy(self) -> np.ndarray:
        """Filled ways per set: (num_sets,) host int64."""
        return (self.keys.reshape(-1, self.ways) != EMPTY_KEY).sum(axis=1).get()

    def host_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys, scores, rows) copied to host, rows in the row dtype (for save and export)."""
        return self.keys.get(), self.scores.get(), self.values.get().view(self.dtype)

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All cached (keys, rows, scores), ascending by key, as host arrays."""
        keys, scores, values = self.host_arrays()
        slots = np.flatnonzero(keys != EMPTY_KEY)
        slots = slots[np.argsort(keys[slots], kind="stable")]
        return keys[slots], values[slots], scores[slots]

    def load(self, keys: np.ndarray, scores: np.ndarray, values: np.ndarray) -> None:
        """Replace the arrays from host arrays (``Cache.load``)."""
        self.keys[...] = self.xp.asarray(np.ascontiguousarray(keys))
        self.scores[...] = self.xp.asarray(np.ascontiguousarray(scores))
        self.values.set(raw(np.ascontiguousarray(values)))
        self._make_digests()

    def release(self) -> None:
        """Drop the arrays (``Cache.close``); the backend is unusable afterwards."""
        self._drop_graphs()
        self.table = self.keys = self.scores = self.values = self.sketch = self.digests = self._scratch = None
        self.hands = None
        self._ordered, self._kept = None, []
