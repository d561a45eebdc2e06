"""Serve a surgered graph where TensorRT is absent: the dense layers in PyTorch, each EmbCacheLookup an
embcache lookup on the same stream, the whole forward captured once per batch size in a CUDA graph.

PyTorch can capture cuBLAS in a CUDA graph (CuPy cannot), so this is the runner that serves; the
CuPy runner (:mod:`trt_plugin.cupy_runner`) stays as the eager reference.  It covers the operators of
dense recommender towers (MatMul, Gemm, Add, Mul, Relu, Sigmoid, Concat, Reshape, Transpose,
Unsqueeze, Squeeze, Split, Gather, Cast, Flatten); any other is a ``ConfigError`` naming it.

A lookup writes its rows straight into a preallocated torch tensor through zero-copy CuPy views
(``__cuda_array_interface__``) on the stream torch is using, so it is captured with the dense
layers.  On the CPU the same graph runs eagerly (NumPy views, the CPU backend), for tests.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from embcache._cuda import no_collection
from embcache._extras import require_module
from embcache.errors import ConfigError

from .fields import OP_TYPE, LookupFields, locate_config

__all__ = ["SUPPORTED_OPS", "CaptureFallbackWarning", "TorchGraphRunner"]

#: the ONNX operators the runner evaluates (besides EmbCacheLookup)
SUPPORTED_OPS = ("MatMul", "Gemm", "Add", "Mul", "Relu", "Sigmoid", "Concat", "Reshape", "Transpose",
                 "Unsqueeze", "Squeeze", "Split", "Gather", "Cast", "Flatten")


class CaptureFallbackWarning(UserWarning):
    """A forward could not be captured in a CUDA graph and runs eagerly instead (the message says why)."""


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _raw_streams(torch) -> Callable[[int], int]:
    """A function of a device index giving torch's current stream there as a raw ``cudaStream_t``.

    The C binding TorchInductor's generated code calls (``torch._C._cuda_getCurrentRawStream``) where
    this torch has it; ``torch.cuda.current_stream(device).cuda_stream`` otherwise, which makes a
    Stream object each time: 4.0-4.1 us of the batch-32 replay's 19.7 us on the H200's host
    (benchmarks/results/profiles/h200-2026-12-02-serve/README.md).
    """
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if raw is not None:
        return raw
    return lambda device: torch.cuda.current_stream(device).cuda_stream


_GRAPH_LAUNCH: list = []  # [CuPy's cudaGraphLaunch, or None], looked up once


def _graph_launch():
    if not _GRAPH_LAUNCH:
        try:
            import cupy
        except ImportError:
            _GRAPH_LAUNCH.append(None)
        else:
            _GRAPH_LAUNCH.append(getattr(cupy.cuda.runtime, "graphLaunch", None))
    return _GRAPH_LAUNCH[0]


def _executable(graph) -> int:
    """``graph``'s instantiated ``cudaGraphExec_t`` where torch exposes it (``raw_cuda_graph_exec``,
    torch 2.7 and later) and CuPy can launch it, else 0: then the graph replays through torch."""
    if graph is None or _graph_launch() is None:
        return 0
    raw = getattr(graph, "raw_cuda_graph_exec", None)
    try:
        return int(raw()) if raw is not None else 0
    except (RuntimeError, TypeError):  # not instantiated (keep_graph) or an older binding
        return 0


class _Pitched(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("pitch", ctypes.c_size_t), ("xsize", ctypes.c_size_t),
                ("ysize", ctypes.c_size_t)]


class _Triple(ctypes.Structure):  # cudaPos and cudaExtent
    _fields_ = [("x", ctypes.c_size_t), ("y", ctypes.c_size_t), ("z", ctypes.c_size_t)]


class _Memcpy3DParms(ctypes.Structure):  # cudaMemcpy3DParms
    _fields_ = [("srcArray", ctypes.c_void_p), ("srcPos", _Triple), ("srcPtr", _Pitched), ("dstArray", ctypes.c_void_p),
                ("dstPos", _Triple), ("dstPtr", _Pitched), ("extent", _Triple), ("kind", ctypes.c_int)]


_MEMCPY_NODE = 1  # cudaGraphNodeTypeMemcpy
_DEVICE_TO_DEVICE = 3  # cudaMemcpyDeviceToDevice
_CUDART: list = []  # [the CUDA runtime torch loaded, bound for memcpy-node updates, or None], looked up once


def _cudart(torch):
    """A CUDA runtime loaded in this process (a ``libcudart`` in its maps, of torch's CUDA major version
    first), bound for the calls that find a graph's memcpy nodes and point one at a new source in an
    executable graph; None where none is found (not Linux, a static runtime): replays then copy their
    feeds before the launch.  Graphs and their nodes are the driver's objects, so any runtime can update
    torch's."""
    if not _CUDART:
        _CUDART.append(_bind_cudart(str(getattr(torch.version, "cuda", None) or "").split(".")[0]))
    return _CUDART[0]


def _bind_cudart(major: str):
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libcudart.so" in line})
    except OSError:
        return None
    paths.sort(key=lambda p: not (major and p.endswith(f"libcudart.so.{major}") or f"libcudart.so.{major}." in p))
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            update, nodes = lib.cudaGraphExecMemcpyNodeSetParams1D, lib.cudaGraphGetNodes
            kind, params, clear = lib.cudaGraphNodeGetType, lib.cudaGraphMemcpyNodeGetParams, lib.cudaGetLastError
        except (OSError, AttributeError):
            continue
        vp = ctypes.c_void_p
        update.argtypes = [vp, vp, vp, vp, ctypes.c_size_t, ctypes.c_int]
        nodes.argtypes = [vp, vp, ctypes.POINTER(ctypes.c_size_t)]
        kind.argtypes = [vp, ctypes.POINTER(ctypes.c_int)]
        params.argtypes = [vp, ctypes.POINTER(_Memcpy3DParms)]
        for f in (update, nodes, kind, params, clear):
            f.restype = ctypes.c_int
        return lib
    return None


def _memcpy_nodes(graph, lib) -> dict[tuple[int, int], int]:
    """(destination, source) addresses -> node, for the memcpy nodes of ``graph`` (a torch CUDAGraph kept
    after capture); empty where the runtime refuses to list them."""
    g = ctypes.c_void_p(int(graph.raw_cuda_graph()))
    count, found = ctypes.c_size_t(0), {}
    if lib.cudaGraphGetNodes(g, None, ctypes.byref(count)):
        lib.cudaGetLastError()  # this call's refusal: no error for torch's next launch check to find
        return found
    nodes = (ctypes.c_void_p * count.value)()
    if count.value and lib.cudaGraphGetNodes(g, nodes, ctypes.byref(count)):
        lib.cudaGetLastError()
        return found
    for node in nodes[:count.value]:
        kind, p = ctypes.c_int(-1), _Memcpy3DParms()
        if not node:
            continue
        if lib.cudaGraphNodeGetType(node, ctypes.byref(kind)):
            lib.cudaGetLastError()
            continue
        if kind.value != _MEMCPY_NODE:
            continue
        if lib.cudaGraphMemcpyNodeGetParams(node, ctypes.byref(p)):
            lib.cudaGetLastError()
        elif p.dstPtr.ptr and p.srcPtr.ptr:
            found[(int(p.dstPtr.ptr), int(p.srcPtr.ptr))] = int(node)
    return found


def _keeps_graphs(torch) -> bool:
    """Whether this torch keeps a captured graph (``CUDAGraph(keep_graph=True)``, torch 2.7 and later)."""
    try:
        torch.cuda.CUDAGraph(keep_graph=True)
    except TypeError:
        return False
    return True


def _value_dtypes(proto) -> dict[str, int]:
    """ONNX element type of every value the graph declares (inputs, outputs, value_info)."""
    g = proto.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.output) + list(g.value_info)
            if v.type.HasField("tensor_type")}


class _Captured:
    """One captured forward (or its stages): static inputs, every value it computes, its CUDA graphs."""

    def __init__(self, inputs: dict, values: dict, graphs: list, outputs: list, device: int):
        self.inputs, self.values, self.graphs, self.outputs = inputs, values, graphs, outputs
        self._plan = None  # per static input: what a feed copied by one cudaMemcpyAsync must match
        self._execs: list | None = None  # per graph: its cudaGraphExec_t, or 0 (torch replays it)
        self.device = device  # the capture's device index (its stream's): every static input is on it
        # the lookups' own key and row buffers (node id -> ...), made by the warm-up outside the graph's
        # pool: the graph copies into them and reads them at each replay, so they live as long as it does
        self.buffers: dict = {}
        # a replay capture's copies into its contiguous CUDA inputs, at the head of its graph (input name ->
        # [memcpy node, shadow, whether the node reads the shadow now]): a replay points the node at its feed,
        # a host-side update of the executable (2.1 us against 4.9 for a cudaMemcpyAsync on the H200's host,
        # and one GPU operation fewer: benchmarks/results/profiles/h200-2026-12-02-eve/input_node.txt).  A
        # feed that cannot be read in place (host memory, a non-contiguous view, an update refused) is copied
        # into the shadow, which the node then reads; node 0: not found after capture, always the shadow.
        # The updates run with the capture's device current (the runtime's context is the current device's).
        self.heads: dict = {}
        self.head_exec = 0

    def copy_inputs(self, feeds: dict, torch, raw: int, record: Any = None) -> None:
        """Copy ``feeds`` into the static inputs on the stream ``raw`` (a ``cudaStream_t``, torch's
        current stream on the inputs' device).

        ``record`` (a torch Stream, the one ``raw`` is): also tell torch's allocator that each CUDA
        feed is read on it (``Tensor.record_stream``), so that its memory stays the caller's until
        then; the pipeline copies on a stream of its own, so it records.
        :meth:`TorchGraphRunner.replay` copies on the caller's current stream, where by PyTorch's own
        rule a tensor made on another stream is the caller's to record; recording there cost about 8
        us a feed from Python on the H200's host
        (benchmarks/results/profiles/h200-2026-12-02-plugin/graph_overhead.txt).
        """
        plan = self._plan
        if plan is None:  # memcpy None: that input is copied by torch
            memcpy = _memcpy_async()
            plan = self._plan = []
            for name, static in self.inputs.items():
                head = self.heads.get(name)
                target = static if head is None else head[1]  # what a feed not read in place is copied into
                plan.append((name, target, static.data_ptr(), target.data_ptr(), static.numel() * static.element_size(),
                             static.dtype, static.shape, static.get_device(),
                             memcpy if static.is_cuda and static.is_contiguous() else None, head))
        tensor = torch.Tensor
        for name, target, ptr, into, nbytes, dtype, shape, device, memcpy, head in plan:
            value = feeds[name]
            # a feed that is already what the static input holds (a contiguous CUDA tensor of its dtype and
            # shape on its device) is one cudaMemcpyAsync: torch's copy_ dispatch costs several us more
            if memcpy is not None and type(value) is tensor and value.dtype is dtype and value.shape == shape \
                    and value.get_device() == device and value.is_contiguous():
                if record is not None:
                    value.record_stream(record)
                if head is not None and head[0]:
                    lib = _CUDART[0]
                    if not lib.cudaGraphExecMemcpyNodeSetParams1D(self.head_exec, head[0], ptr, value.data_ptr(),
                                                                   nbytes, _DEVICE_TO_DEVICE):
                        head[2] = False  # the next launch copies this feed into the static input
                        continue
                    lib.cudaGetLastError()  # this call's refusal: no error for torch's next launch check to find
                    self._read_shadow(head, ptr, nbytes)
                memcpy(into, value.data_ptr(), nbytes, 3, raw)
                continue
            if head is not None and head[0]:
                self._read_shadow(head, ptr, nbytes)
            if isinstance(value, torch.Tensor):
                if value.is_cuda and record is not None:
                    value.record_stream(record)
            else:
                value = torch.from_numpy(np.ascontiguousarray(value))
            target.copy_(value, non_blocking=True)

    def _read_shadow(self, head: list, ptr: int, nbytes: int) -> None:
        """Point ``head``'s node back at its shadow (its source at capture), if a feed moved it."""
        if head[2]:
            return
        lib = _CUDART[0]
        error = lib.cudaGraphExecMemcpyNodeSetParams1D(self.head_exec, head[0], ptr, head[1].data_ptr(), nbytes,
                                                       _DEVICE_TO_DEVICE)
        if error:
            lib.cudaGetLastError()
            raise RuntimeError(f"TorchGraphRunner: the CUDA runtime refused (cudaError {error}) to point an input's "
                               "copy back at the source it was captured with (an earlier launch's error, or "
                               "the graph's executable is gone)")
        head[2] = True

    def launch(self, i: int, torch, raw: int) -> None:
        """Replay graph ``i`` on the stream ``raw`` (torch's current stream on the capture's device).

        One ``cudaGraphLaunch`` where the executable is at hand and the current device is the
        capture's; ``CUDAGraph.replay()`` otherwise, which also sets the device and advances torch's
        random-number offsets for the graph: the runner's operators draw no random numbers, so
        skipping that changes nothing here (a ``lookup`` that draws torch random numbers inside
        the graph would get the same ones at every replay).
        """
        graph = self.graphs[i]
        if graph is None:
            return
        if self._execs is None:
            self._execs = [_executable(g) for g in self.graphs]
        executable = self._execs[i]
        if executable and torch._C._cuda_getDevice() == self.device:
            _graph_launch()(executable, raw)
        else:
            graph.replay()


_MEMCPY: list = []  # [CuPy's cudaMemcpyAsync, or None without CuPy], looked up once


def _memcpy_async():
    if not _MEMCPY:
        try:
            import cupy
        except ImportError:
            _MEMCPY.append(None)
        else:
            _MEMCPY.append(cupy.cuda.runtime.memcpyAsync)
    return _MEMCPY[0]


class _PipeSet:
    """One of the two buffer sets of a pipeline: a capture split in a lookup stage and a dense stage."""

    def __init__(self, captured: _Captured, torch):
        self.captured = captured
        self.looked_up = torch.cuda.Event()  # the lookup stage of this set's batch has run
        self.done = torch.cuda.Event()  # its dense stage has run and its outputs are copied out


class TorchGraphRunner:
    """A surgered model evaluated with PyTorch, its lookups by embcache on torch's stream.

    Parameters
    ----------
    model : path or onnx.ModelProto
        A surgered graph (EmbCacheLookup nodes) or any graph of the supported operators.
    lookup : callable(fields, keys, out, stream) -> None, optional
        How an EmbCacheLookup node gets its rows: ``fields`` (:class:`~trt_plugin.fields.LookupFields`),
        ``keys`` (n,) int64 and ``out`` (n, dim) float32 (float16 where the graph declares the
        lookup's output so) as CuPy arrays on the GPU, NumPy arrays on the CPU, viewing torch's
        memory; ``stream`` the raw ``cudaStream_t`` to enqueue on (None on the CPU).  It writes
        every row into ``out``, e.g. ``cache.lookup(keys, out=out, stream=stream)``.  Default: the
        config's cache, through the plugin's enqueue (:func:`~trt_plugin.tables.lookup_into`) on the
        GPU and :func:`~trt_plugin.tables.lookup_rows` on the CPU.
    device : str or torch.device, optional
        Default ``"cuda"`` where torch sees a GPU, else ``"cpu"`` (eager only: no CUDA graphs).
    tf32 : bool
        Let float32 matrix products use TF32 (the default, as TensorRT's FP32 builds do); False is
        fp32-strict.  The setting holds while this runner runs or captures and is restored after.
    capture_error_mode : "global", "thread_local" or "relaxed"
        The capture mode (``cudaStreamCaptureMode``).  "global" (default) makes any synchronizing or
        allocating CUDA call made during capture an error, so a lookup that waits for the host
        falls back to eager with a :class:`CaptureFallbackWarning` instead of being captured wrong.
    """

    def __init__(self, model: Any, lookup: Callable | None = None, device: Any = None, tf32: bool = True,
                 capture_error_mode: str = "global"):
        torch = require_module("torch", "TorchGraphRunner runs the dense layers with it", extra="serve")
        import onnx
        from onnx import numpy_helper

        self._torch = torch
        self.device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        if self.device.type == "cuda" and self.device.index is None:
            # the device current now, for good: the capture stream is made on it here, the pipeline's streams
            # later, and a replay's copy and launch must be on one device whatever is current then
            self.device = torch.device("cuda", torch.cuda.current_device())
        self._cuda = self.device.type == "cuda"
        self.tf32 = bool(tf32)
        if capture_error_mode not in ("global", "thread_local", "relaxed"):
            raise ConfigError(f"capture_error_mode must be 'global', 'thread_local' or 'relaxed', got "
                              f"{capture_error_mode!r}")
        self._capture_mode = capture_error_mode
        proto = onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model
        self._nodes = list(proto.graph.node)
        for node in self._nodes:
            if node.op_type != OP_TYPE and node.op_type not in SUPPORTED_OPS:
                raise ConfigError(f"TorchGraphRunner cannot run ONNX operator {node.op_type} (node {node.name!r}); "
                                  f"it runs {', '.join(SUPPORTED_OPS)} and {OP_TYPE}")
        self._host_consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        self._consts = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in self._host_consts.items()}
        inits = set(self._host_consts)
        self.input_names = [i.name for i in proto.graph.input if i.name not in inits]
        self.output_names = [o.name for o in proto.graph.output]
        model_file = model if isinstance(model, (str, os.PathLike)) else None
        types = _value_dtypes(proto)
        self._fields, self._out_dtype = {}, {}
        for n in self._nodes:
            if n.op_type == OP_TYPE:
                f = LookupFields.from_attrs(_attrs(n))
                self._fields[id(n)] = f if lookup else replace(f, config=locate_config(f.config, model_file, n.name))
                fp16 = types.get(n.output[0]) == onnx.TensorProto.FLOAT16
                self._out_dtype[id(n)] = torch.float16 if fp16 else torch.float32
        self._gather_index: dict = {}  # (node id, axis length) -> constant indices, negative ones wrapped
        self._lookup = lookup or self._config_lookup
        self._stages = self._split_stages()
        self._fused = self._plan_fusions(proto)
        self._graphs: dict = {}  # input signature -> _Captured, or None where capture failed (eager)
        self._signatures: dict = {}  # the feeds' (shape, dtype) per input -> their input signature
        self._pipes: dict = {}  # input signature -> [_PipeSet, _PipeSet]
        self._side = torch.cuda.Stream(self.device) if self._cuda else None
        self._raw_stream = _raw_streams(torch) if self._cuda else None
        # the lookups (and what feeds them) run here, beside the dense layers that do not need their rows
        self._fork = torch.cuda.Stream(self.device) if self._cuda else None
        self._streams = None  # the pipeline's (lookup stream, dense stream), made on first use

    # ------------------------------------------------------------------ running
    def run(self, feeds: dict) -> list:
        """Outputs (torch tensors on :attr:`device`) for ``feeds`` (NumPy arrays or tensors), eagerly,
        queued on torch's current stream."""
        with self._precision():
            values = self._values(feeds)
            self._evaluate(values, self._nodes, None)
        return [values[name] for name in self.output_names]

    def capture(self, feeds: dict) -> list:
        """Run ``feeds`` once (the warm-up) and capture the whole forward for their shapes in a CUDA graph.

        Returns this batch's outputs, as :meth:`run` would: the warm-up is the batch's one real
        lookup (the capture itself runs nothing).  Where capture fails (a lookup that cannot be
        captured, no CUDA device) a :class:`CaptureFallbackWarning` says why and later
        :meth:`replay` calls of these shapes run eagerly; so do empty batches, without a warning.
        """
        captured, outputs = self._capture(feeds, (self._nodes,), heads=True)
        self._graphs[self._signature(feeds)] = captured
        return outputs

    def replay(self, feeds: dict) -> list:
        """Outputs for ``feeds``: copied into the static inputs of their shapes' graph, which is replayed
        on torch's current stream (captured first, by :meth:`capture`, for shapes not seen yet).

        The tensors returned are the graph's static outputs: the next replay of these shapes
        overwrites them (clone what you keep).
        """
        key = self._signature(feeds)
        if key not in self._graphs:
            return self.capture(feeds)
        captured = self._graphs[key]
        if captured is None:
            return self.run(feeds)
        raw = self._raw_stream(captured.device)
        torch = self._torch
        if captured.heads and torch._C._cuda_getDevice() != captured.device:
            with torch.cuda.device(captured.device):  # the runtime updates nodes in the current device's context
                captured.copy_inputs(feeds, torch, raw)
        else:
            captured.copy_inputs(feeds, torch, raw)
        captured.launch(0, torch, raw)
        return captured.outputs

    def pipelined(self, batches: Iterable[dict]) -> list[list]:
        """Outputs of every batch, as if run one after another, with the lookups of batch i+1 running on
        one stream while the dense layers of batch i run on another.

        Two buffer sets per batch shape, each a capture in two stages (the lookups and what feeds
        them; the rest); events order them: a lookup stage waits for the dense stage two batches
        back (same buffers), a dense stage for its own lookups.  The lookups run in batch order on
        one stream, so the cache sees the same sequence as sequential runs.  The first two batches
        of a shape are its warm-ups (run in order, then captured).  The returned tensors are the
        caller's, ready on its current stream.
        """
        torch = self._torch
        if not self._cuda:
            return [[t.clone() for t in self.run(feeds)] for feeds in batches]
        if self._streams is None:
            self._streams = (torch.cuda.Stream(self.device), torch.cuda.Stream(self.device))
        lookups, dense = self._streams
        caller = torch.cuda.current_stream(self.device)
        lookups.wait_stream(caller)
        dense.wait_stream(caller)
        results, turn = [], {}
        for feeds in batches:
            key = self._signature(feeds)
            sets = self._pipes.setdefault(key, [])
            if self._graphs.get(key, 0) is None:  # this shape could not be captured: in order, eagerly
                results.append(self._in_order(lambda feeds=feeds: [t.clone() for t in self.run(feeds)]))
                continue
            if len(sets) < 2:
                captured, outputs = self._in_order(lambda feeds=feeds: self._capture(feeds, self._stages))
                if captured is None:
                    self._graphs[key] = None
                else:
                    sets.append(_PipeSet(captured, torch))
                results.append(outputs)
                continue
            p = sets[turn.get(key, 0)]
            turn[key] = 1 - turn.get(key, 0)
            with torch.cuda.stream(lookups):
                lookups.wait_event(p.done)  # batch i-2's dense stage has read these buffers
                # the caller's feeds, read on this stream
                p.captured.copy_inputs(feeds, torch, lookups.cuda_stream, record=lookups)
                p.captured.launch(0, torch, lookups.cuda_stream)
                p.looked_up.record(lookups)
            with torch.cuda.stream(dense):
                dense.wait_event(p.looked_up)
                p.captured.launch(1, torch, dense.cuda_stream)
                results.append([t.clone() for t in p.captured.outputs])
                p.done.record(dense)
        caller.wait_stream(lookups)
        caller.wait_stream(dense)
        for outs in results:
            for t in outs:
                t.record_stream(caller)  # made on a pipeline stream, used and freed on the caller's
        return results

    def reset(self) -> None:
        """Forget every captured graph (their memory is freed once the device is done with it)."""
        if self._cuda:
            self._torch.cuda.synchronize(self.device)
        self._graphs.clear()
        self._pipes.clear()

    @property
    def captured_signatures(self) -> list:
        """The input signatures (name, shape, dtype per input) captured whole; eager-only ones excluded."""
        return [k for k, v in self._graphs.items() if v is not None]

    # ------------------------------------------------------------------ capture
    def _in_order(self, fn):
        """``fn()`` after everything queued on the pipeline's streams, before anything queued later."""
        torch = self._torch
        lookups, dense = self._streams
        caller = torch.cuda.current_stream(self.device)
        caller.wait_stream(lookups)
        caller.wait_stream(dense)
        out = fn()
        lookups.wait_stream(caller)
        dense.wait_stream(caller)
        return out

    def _capture(self, feeds: dict, stages: tuple, heads: bool = False) -> tuple:
        """(_Captured or None, this batch's outputs): a warm-up on the side stream, then one CUDA graph
        per stage (``stages``: node lists in order) captured on it.  ``heads`` (one stage): the graph
        begins with a copy into each contiguous CUDA input, whose source a replay sets to its feed
        (:class:`_Captured`), where this torch keeps its graphs and its CUDA runtime is at hand."""
        torch = self._torch
        if not self._cuda:
            self._fallback(f"CUDA graphs need a CUDA device; this runner's is {self.device}")
            return None, [t.clone() for t in self.run(feeds)]
        if any(0 in tuple(feeds[name].shape) for name in self.input_names):
            # an empty batch launches no dense kernel, and PyTorch cannot replay an empty graph; it costs
            # nothing eagerly (its lookup still runs, and ticks the clock)
            return None, [t.clone() for t in self.run(feeds)]
        side, caller = self._side, torch.cuda.current_stream(self.device)
        side.wait_stream(caller)
        with self._precision(), torch.cuda.stream(side):
            inputs = {name: t.clone() for name, t in self._values(feeds, consts=False).items()}
            captured = _Captured(inputs, {}, [], [], side.device.index)
            # the warm-up (PyTorch's rule before a capture): cuBLAS, CuPy's kernels and pools are set
            # up by this eager pass on the capture stream; it is this batch's one real lookup
            warm = dict(self._consts)
            warm.update(inputs)
            buffers = captured.buffers
            self._evaluate(warm, self._nodes, buffers)
            outputs = [warm[name].clone() for name in self.output_names]
            del warm
            torch.cuda.synchronize(self.device)
            captured.values = dict(self._consts)
            captured.values.update(inputs)
            shadows = None
            if heads and len(stages) == 1 and _memcpy_async() is not None and _cudart(torch) is not None and \
                    _keeps_graphs(torch):
                # each copy's source at capture: the feed's own memory is another at every replay
                shadows = {name: (t, t.clone()) for name, t in inputs.items()
                           if t.is_cuda and t.is_contiguous() and t.numel()}
            try:
                for nodes in stages:
                    if not nodes:  # nothing to capture (a model without lookups has no lookup stage)
                        captured.graphs.append(None)
                        continue
                    captured.graphs.append(self._capture_stage(captured.values, nodes, buffers, shadows))
                    if shadows:
                        # every shadow stays a head, as its copy is in the graph whether its node is found
                        # or not (node 0: not found, or no executable to update; the shadow then, always)
                        found, graph = {}, captured.graphs[-1]
                        try:
                            captured.head_exec = int(graph.raw_cuda_graph_exec())
                            found = _memcpy_nodes(graph, _cudart(torch))
                        except (AttributeError, RuntimeError, TypeError, ValueError):  # no raw handles here
                            captured.head_exec = 0
                        captured.heads = {name: [found.get((t.data_ptr(), shadow.data_ptr()), 0) if
                                                 captured.head_exec else 0, shadow, True]
                                          for name, (t, shadow) in shadows.items()}
            except Exception as e:  # noqa: BLE001 - any failure to capture means eager, said once
                self._fallback(f"capturing the forward raised {type(e).__name__}: {' '.join(str(e).split())}")
                captured = None
            else:
                captured.outputs = [captured.values[name] for name in self.output_names]
        caller.wait_stream(side)
        for t in outputs:
            t.record_stream(caller)  # made on the side stream, used and freed on the caller's
        return captured, outputs

    def _capture_stage(self, values: dict, nodes: list, buffers: dict, shadows: dict | None = None):
        """One CUDA graph of ``nodes`` on the current (side) stream, with ``shadows`` (input name ->
        (static input, its shadow)) first a copy of each shadow into its input, the graph kept and
        instantiated (its memcpy nodes are then found and updated).  Raises the first failure: a
        capture that went wrong raises again when it ends, which would hide why."""
        torch = self._torch
        graph = torch.cuda.CUDAGraph(keep_graph=True) if shadows else torch.cuda.CUDAGraph()
        failure = None
        # no cyclic collection meanwhile: one freeing a tier's pinned memory (cudaFreeHost) in any thread
        # voids a global-mode capture (torch.cuda.graph collects first; capture_begin alone does not)
        with no_collection():
            graph.capture_begin(capture_error_mode=self._capture_mode)
            try:
                if shadows:
                    memcpy, stream = _memcpy_async(), torch.cuda.current_stream().cuda_stream
                    for static, shadow in shadows.values():
                        memcpy(static.data_ptr(), shadow.data_ptr(), static.numel() * static.element_size(),
                               _DEVICE_TO_DEVICE, stream)
                self._evaluate(values, nodes, buffers)
            except Exception as e:  # noqa: BLE001 - kept, raised after the capture is ended
                failure = e
            try:
                graph.capture_end()
                if shadows and failure is None:
                    graph.instantiate()  # a kept graph is not instantiated by capture_end
            except Exception as e:  # noqa: BLE001 - the first failure is the one to report
                failure = failure or e
        if failure is not None:
            raise failure
        return graph

    def _fallback(self, why: str) -> None:
        warnings.warn(f"TorchGraphRunner runs this batch shape eagerly: {why}", CaptureFallbackWarning,
                      stacklevel=4)

    def _split_stages(self) -> tuple:
        """(the lookups and the nodes their keys come from, every other node), each in graph order."""
        producer = {o: n for n in self._nodes for o in n.output}
        feeding, todo = set(), [n for n in self._nodes if n.op_type == OP_TYPE]
        while todo:
            n = todo.pop()
            if id(n) not in feeding:
                feeding.add(id(n))
                todo.extend(producer[i] for i in n.input if i in producer)
        first = [n for n in self._nodes if id(n) in feeding]
        return first, [n for n in self._nodes if id(n) not in feeding]

    # ------------------------------------------------------------------ evaluation
    @contextlib.contextmanager
    def _precision(self) -> Iterator[None]:
        """TF32 for float32 matrix products (and cuDNN convolutions) on or off while inside, restored after.

        PyTorch >= 2.9 has ``fp32_precision`` and refuses to read the older ``allow_tf32`` flags once
        the newer ones are set; so the newer ones where they exist, the older ones elsewhere.
        """
        backends = self._torch.backends
        if not self._cuda:
            yield
            return
        if hasattr(backends.cuda.matmul, "fp32_precision"):
            conv = getattr(backends.cudnn, "conv", None)
            places = [(backends.cuda.matmul, "fp32_precision")]
            places += [(conv, "fp32_precision")] if hasattr(conv, "fp32_precision") else []
            want = "tf32" if self.tf32 else "ieee"
        else:
            places = [(backends.cuda.matmul, "allow_tf32"), (backends.cudnn, "allow_tf32")]
            want = self.tf32
        before = [getattr(obj, name) for obj, name in places]
        try:
            for obj, name in places:
                setattr(obj, name, want)
            yield
        finally:
            for (obj, name), value in zip(places, before):
                setattr(obj, name, value)

    def _signature(self, feeds: dict) -> tuple:
        try:  # the feeds' own shapes and dtypes, as they are: hashing them is cheaper than spelling them
            quick = tuple([(feeds[name].shape, feeds[name].dtype) for name in self.input_names])
        except KeyError:
            self._check_feeds(feeds)
            raise
        signature = self._signatures.get(quick)
        if signature is None:
            # NumPy's "int64" and torch's "torch.int64" are one signature: the static inputs take either
            signature = tuple((name, tuple(shape), str(dtype).removeprefix("torch."))
                              for name, (shape, dtype) in zip(self.input_names, quick))
            if len(self._signatures) >= 1024:  # batch shapes are few; a stream of new ones stays bounded
                self._signatures.clear()
            self._signatures[quick] = signature
        return signature

    def _check_feeds(self, feeds: dict) -> None:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ConfigError(f"missing model inputs {missing}; the model takes {self.input_names}")

    def _values(self, feeds: dict, consts: bool = True) -> dict:
        torch = self._torch
        self._check_feeds(feeds)
        values = dict(self._consts) if consts else {}
        for name in self.input_names:
            v = feeds[name]
            if not isinstance(v, torch.Tensor):
                v = torch.from_numpy(np.ascontiguousarray(v))
            values[name] = v.to(self.device)
        return values

    def _evaluate(self, values: dict, nodes: list, buffers: dict | None) -> None:
        """Evaluate ``nodes`` into ``values``.  ``buffers`` (node id -> the lookup's key and row tensors and
        their views), when given, keeps each lookup's memory across calls (capture).

        On the GPU, when ``nodes`` hold both the lookups and dense layers that do not need their rows
        (DLRM's bottom MLP), the lookups and what feeds them run on a forked stream, joined before the
        first node that reads what they made: in a captured graph these are parallel branches.
        """
        first, rest = self._stages
        if not (self._cuda and first and rest and nodes is self._nodes):
            self._run_nodes(values, nodes, buffers)
            return
        torch = self._torch
        main, fork = torch.cuda.current_stream(self.device), self._fork
        fork.wait_stream(main)
        with torch.cuda.stream(fork):
            self._run_nodes(values, first, buffers)
        made = {o for n in first for o in n.output}
        if not torch.cuda.is_current_stream_capturing():  # a capture's values live as long as its graph
            for name in made:
                if isinstance(values.get(name), torch.Tensor):
                    values[name].record_stream(main)  # made on the fork, read and freed on the main stream
        joined = False
        for node in rest:
            if not joined and any(i in made for i in node.input):
                main.wait_stream(fork)
                joined = True
            self._run_nodes(values, (node,), buffers)
        if not joined:
            main.wait_stream(fork)

    def _run_nodes(self, values: dict, nodes, buffers: dict | None) -> None:
        """Evaluate ``nodes`` in order into ``values``, on the current stream."""
        stream = self._torch.cuda.current_stream(self.device).cuda_stream if self._cuda else None
        for node in nodes:
            if id(node) in self._fused:  # an Add or Relu that its MatMul or Gemm applied: the same tensor
                values[node.output[0]] = values[self._fused[id(node)]]
                continue
            args = [values[i] if i else None for i in node.input]
            if node.op_type == OP_TYPE:
                outs = [self._lookup_node(node, args[0], buffers, stream)]
            else:
                outs = getattr(self, f"_op_{node.op_type}")(node, args)
            values.update(zip(node.output, outs))

    def _plan_fusions(self, proto) -> dict:
        """Nodes that another node's one call already computes, as TensorRT fuses them: {node id: the value
        it equals}.  A Gemm (``x @ w + bias``) or a MatMul by a constant matrix followed by an Add of a
        constant bias becomes one ``addmm`` (the bias in cuBLAS's epilogue), and a Relu after it joins
        the epilogue too; each fused value has no other reader and is no graph output."""
        readers: dict = {}
        for n in self._nodes:
            for i in n.input:
                readers.setdefault(i, []).append(n)
        outputs = {o.name for o in proto.graph.output}
        # torch's addmm with a bias-and-ReLU epilogue (cuBLASLt), private in torch but there since 1.13
        self._addmm_relu = getattr(self._torch, "_addmm_activation", None)
        self._linear: dict = {}  # MatMul/Gemm node id -> (bias value name, whether it applies the Relu)
        alias: dict = {}

        def only_reader(value):
            after = readers.get(value, [])
            return after[0] if len(after) == 1 and value not in outputs else None

        for n in self._nodes:
            bias, last = None, n
            if n.op_type == "Gemm" and self._plain_gemm(n):
                bias = n.input[2]
            elif n.op_type == "MatMul" and self._host_consts.get(n.input[1], np.empty(0)).ndim == 2:
                add = only_reader(n.output[0])
                if add is not None and add.op_type == "Add":
                    other = add.input[1] if add.input[0] == n.output[0] else add.input[0]
                    b = self._host_consts.get(other)
                    if b is not None and b.ndim == 1 and b.shape[0] == self._host_consts[n.input[1]].shape[1]:
                        bias, last = other, add
                        alias[id(add)] = n.output[0]
            if bias is None:
                continue
            relu = only_reader(last.output[0])
            fuse_relu = relu is not None and relu.op_type == "Relu" and self._addmm_relu is not None
            if fuse_relu:
                alias[id(relu)] = last.output[0]
            self._linear[id(n)] = (bias, fuse_relu)
        return alias

    def _linear_op(self, node, x, w):
        """``x @ w + bias`` (then ReLU where fused) for a node of :attr:`_linear`, in one call for 2-D ``x``."""
        bias_name, relu = self._linear[id(node)]
        bias = self._consts[bias_name]
        if x.dim() == 2:
            return self._addmm_relu(bias, x, w, use_gelu=False) if relu else self._torch.addmm(bias, x, w)
        y = self._torch.matmul(x, w) + bias
        return self._torch.relu(y) if relu else y

    def _plain_gemm(self, node) -> bool:
        """A Gemm that is ``x @ w + bias``: no transA, alpha = beta = 1, a constant 1-D bias."""
        at = _attrs(node)
        bias = node.input[2] if len(node.input) > 2 else ""
        return (not at.get("transA") and at.get("alpha", 1.0) == 1.0 and at.get("beta", 1.0) == 1.0
                and bias in self._host_consts and self._host_consts[bias].ndim == 1)

    def _view(self, tensor) -> Any:
        """A zero-copy array of ``tensor``'s memory: CuPy on the GPU, NumPy on the CPU."""
        if self._cuda:
            import cupy

            if tensor.numel() == 0:  # no memory to view (its pointer may be null); an empty batch still looks up
                return cupy.empty(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
            return cupy.asarray(tensor)  # __cuda_array_interface__ (version 2: no stream, nothing waits)
        return tensor.numpy()

    def _lookup_node(self, node, keys, buffers: dict | None, stream: int | None):
        torch = self._torch
        fields = self._fields[id(node)]
        n = keys.numel()
        shape = tuple(keys.shape) + (fields.dim,)
        if buffers is None:
            flat = keys.reshape(-1).to(torch.int64).contiguous()
            out = torch.empty((n, fields.dim), dtype=self._out_dtype[id(node)], device=self.device)
            views = (self._view(flat), self._view(out))
        else:
            # int64 keys in one piece are read where they are, with no copy (a graph node of its own, ~1 us
            # of a 20 us lookup): a capture's values live as long as its graph, so the address stays the keys'
            in_place = keys.dtype == torch.int64 and keys.is_contiguous()
            if id(node) not in buffers:  # the warm-up: memory of its own, kept with the capture (its buffers)
                out = torch.empty((n, fields.dim), dtype=self._out_dtype[id(node)], device=self.device)
                flat = None if in_place else torch.empty(n, dtype=torch.int64, device=self.device)
                buffers[id(node)] = (flat, out, (None if flat is None else self._view(flat), self._view(out)))
            flat, out, views = buffers[id(node)]
            if in_place:
                views = (self._view(keys.reshape(-1)), views[1])
            else:
                if flat is None:  # in place at the warm-up, not now: a buffer of the capture's own after all
                    flat = torch.empty(n, dtype=torch.int64, device=self.device)
                    buffers[id(node)] = (flat, out, (self._view(flat), views[1]))
                    views = buffers[id(node)][2]
                flat.copy_(keys.reshape(-1))  # int32 keys become int64 on the device
        self._lookup(fields, views[0], views[1], stream)
        return out.view(shape)

    def _config_lookup(self, fields: LookupFields, keys: Any, out: Any, stream: int | None) -> None:
        """The default lookup: the config's cache (the plugin's enqueue on the GPU)."""
        from .tables import lookup_into, lookup_rows

        if self._cuda:
            import cupy

            with cupy.cuda.ExternalStream(stream):  # any CuPy work around the lookup is on its stream too
                lookup_into(fields, keys, out, stream=stream)
        else:
            out[...] = lookup_rows(fields.config, fields.table, keys, model=fields.model or None, backend="cpu")

    def _shape_arg(self, node, i) -> tuple:
        return tuple(int(v) for v in self._host_consts[node.input[i]].reshape(-1))

    # one method per ONNX operator, named after it
    def _op_MatMul(self, node, a):
        if id(node) in self._linear:
            return [self._linear_op(node, a[0], a[1])]
        return [self._torch.matmul(a[0], a[1])]

    def _op_Gemm(self, node, a):
        at = _attrs(node)
        if id(node) in self._linear:  # one call: the bias (and a fused Relu) in the product's epilogue
            return [self._linear_op(node, a[0], a[1].T if at.get("transB") else a[1])]
        x = a[0].T if at.get("transA") else a[0]
        w = a[1].T if at.get("transB") else a[1]
        y = x @ w
        if at.get("alpha", 1.0) != 1.0:
            y = y * at["alpha"]
        if len(a) > 2 and a[2] is not None:
            y = y + (a[2] if at.get("beta", 1.0) == 1.0 else at["beta"] * a[2])
        return [y]

    def _op_Add(self, node, a):
        return [a[0] + a[1]]

    def _op_Mul(self, node, a):
        return [a[0] * a[1]]

    def _op_Relu(self, node, a):
        return [self._torch.relu(a[0])]

    def _op_Sigmoid(self, node, a):
        return [self._torch.sigmoid(a[0])]

    def _op_Concat(self, node, a):
        return [self._torch.cat(a, dim=_attrs(node)["axis"])]

    def _op_Reshape(self, node, a):
        shape = [a[0].shape[i] if d == 0 else d for i, d in enumerate(self._shape_arg(node, 1))]
        return [a[0].reshape(shape)]

    def _op_Flatten(self, node, a):
        axis = _attrs(node).get("axis", 1) % max(a[0].dim(), 1)
        return [a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)]

    def _op_Transpose(self, node, a):
        perm = _attrs(node).get("perm") or list(range(a[0].dim()))[::-1]
        return [a[0].permute(*perm)]

    def _axes(self, node) -> tuple:
        """Unsqueeze's and Squeeze's axes: the second input (opset >= 13) or the attribute (older)."""
        if len(node.input) > 1 and node.input[1]:
            return self._shape_arg(node, 1)
        return tuple(_attrs(node).get("axes", ()))

    def _op_Unsqueeze(self, node, a):
        x, axes = a[0], self._axes(node)
        rank = x.dim() + len(axes)
        for axis in sorted(ax % rank for ax in axes):
            x = x.unsqueeze(axis)
        return [x]

    def _op_Squeeze(self, node, a):
        x, axes = a[0], self._axes(node)
        if not axes:
            return [x.squeeze()]
        for axis in sorted((ax % x.dim() for ax in axes), reverse=True):
            x = x.squeeze(axis)
        return [x]

    def _op_Split(self, node, a):
        x, at = a[0], _attrs(node)
        axis = at.get("axis", 0) % x.dim()
        if len(node.input) > 1 and node.input[1]:
            sizes = list(self._shape_arg(node, 1))
        elif "split" in at:
            sizes = list(at["split"])
        else:
            sizes = math.ceil(x.shape[axis] / len(node.output))
        return list(self._torch.split(x, sizes, dim=axis))

    def _op_Gather(self, node, a):
        torch = self._torch
        x, idx = a[0], a[1]
        axis = _attrs(node).get("axis", 0) % x.dim()
        length = x.shape[axis]
        if node.input[1] in self._host_consts:  # wrapped once (the warm-up), not in every replay
            idx = self._gather_index.get((id(node), length))
            if idx is None:
                host = self._host_consts[node.input[1]].astype(np.int64)
                idx = torch.from_numpy(np.where(host < 0, host + length, host)).to(self.device)
                self._gather_index[(id(node), length)] = idx
        else:
            idx = torch.where(idx < 0, idx + length, idx)
        picked = torch.index_select(x, axis, idx.reshape(-1).to(torch.int64))
        return [picked.reshape(tuple(x.shape[:axis]) + tuple(idx.shape) + tuple(x.shape[axis + 1:]))]

    def _op_Cast(self, node, a):
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(_attrs(node)["to"])
        return [a[0].to(self._torch.from_numpy(np.empty(0, dtype)).dtype)]
