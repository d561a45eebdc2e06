"""A/B for the lookup graph's input copy (a diagnostic, run on a GPU): the feed copied by cudaMemcpyAsync before
the graph is launched (what TorchGraphRunner.replay does today) against a memcpy node captured at the head of the
graph whose source is set to the feed at each replay (cudaGraphExecMemcpyNodeSetParams1D, a host-side update of
the executable; nothing is enqueued for it).  trt_table's batch 32 lookup alone (832 int64 keys, dim 128, LFU
over a small pinned store), both graphs built here the same way; walls from Python (launch + device synchronize),
medians of 1,500 in alternating rounds; then the host cost of each part alone.

    python benchmarks/results/profiles/h200-2026-12-02-eve/input_node.py
"""
import ctypes
import time

import cupy as cp
import numpy as np
import torch

import embcache
from embcache.tiers import HostStore


def cudart():
    """torch's libcudart, as loaded in this process (the one that made the graphs)."""
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "libcudart.so" in line})
    print("libcudart loaded:", paths, flush=True)
    for p in paths:
        lib = ctypes.CDLL(p)
        if hasattr(lib, "cudaGraphExecMemcpyNodeSetParams1D"):
            return lib
    raise RuntimeError("no libcudart with cudaGraphExecMemcpyNodeSetParams1D")


class Pitched(ctypes.Structure):
    _fields_ = [("ptr", ctypes.c_void_p), ("pitch", ctypes.c_size_t), ("xsize", ctypes.c_size_t),
                ("ysize", ctypes.c_size_t)]


class Pos(ctypes.Structure):
    _fields_ = [("x", ctypes.c_size_t), ("y", ctypes.c_size_t), ("z", ctypes.c_size_t)]


class Memcpy3DParms(ctypes.Structure):
    _fields_ = [("srcArray", ctypes.c_void_p), ("srcPos", Pos), ("srcPtr", Pitched), ("dstArray", ctypes.c_void_p),
                ("dstPos", Pos), ("dstPtr", Pitched), ("extent", Pos), ("kind", ctypes.c_int)]


rt = cudart()
rt.cudaGraphExecMemcpyNodeSetParams1D.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                  ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
set1d = rt.cudaGraphExecMemcpyNodeSetParams1D

n, dim = 832, 128
store = HostStore(dim, "float32", pinned=True, initial_rows=1 << 16)
store.put_many(np.arange(1 << 16), np.zeros((1 << 16, dim), np.float32))
cache = embcache.Cache(1 << 14, dim, "lfu", backend="gpu", tier=store, max_batch=n)
feeds = [torch.randint(0, 1 << 16, (n,), device="cuda") for _ in range(8)]
side = torch.cuda.Stream()


def build(with_node: bool):
    static = feeds[0].clone()
    shadow = feeds[0].clone()
    out = torch.empty((n, dim), device="cuda")
    with torch.cuda.stream(side):
        cache.lookup(cp.asarray(static), out=cp.asarray(out), stream=side.cuda_stream)  # the warm-up
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph(keep_graph=True)
        g.capture_begin()
        if with_node:  # a memcpy node, as copy_inputs' cudaMemcpyAsync would be if captured
            cp.cuda.runtime.memcpyAsync(static.data_ptr(), shadow.data_ptr(), n * 8, 3, side.cuda_stream)
        cache.lookup(cp.asarray(static), out=cp.asarray(out), stream=side.cuda_stream)
        g.capture_end()
    g.instantiate()
    node = None
    if with_node:
        graph = ctypes.c_void_p(g.raw_cuda_graph())
        count = ctypes.c_size_t(0)
        assert rt.cudaGraphGetNodes(graph, None, ctypes.byref(count)) == 0
        nodes = (ctypes.c_void_p * count.value)()
        assert rt.cudaGraphGetNodes(graph, nodes, ctypes.byref(count)) == 0
        for nd in nodes:
            kind = ctypes.c_int(-1)
            assert rt.cudaGraphNodeGetType(ctypes.c_void_p(nd), ctypes.byref(kind)) == 0
            if kind.value == 1:  # cudaGraphNodeTypeMemcpy
                p = Memcpy3DParms()
                assert rt.cudaGraphMemcpyNodeGetParams(ctypes.c_void_p(nd), ctypes.byref(p)) == 0
                print(f"memcpy node: src {p.srcPtr.ptr:#x} (shadow {shadow.data_ptr():#x}) dst {p.dstPtr.ptr:#x} "
                      f"(static {static.data_ptr():#x}) extent {p.extent.x}x{p.extent.y}x{p.extent.z}", flush=True)
                if p.dstPtr.ptr == static.data_ptr():
                    node = nd
        print(f"{count.value} nodes; the input's memcpy node found: {node is not None}", flush=True)
    return g, static, out, node, shadow


memcpy = cp.cuda.runtime.memcpyAsync
launch = cp.cuda.runtime.graphLaunch
raw_stream = torch._C._cuda_getCurrentRawStream
A = build(False)
B = build(True)
ga, sa, oa, _, _ = A
gb, sb, ob, node, _ = B
ea, eb = ga.raw_cuda_graph_exec(), gb.raw_cuda_graph_exec()
nbytes = n * 8


def replay_a(f):
    s = raw_stream(0)
    memcpy(sa.data_ptr(), f.data_ptr(), nbytes, 3, s)
    launch(ea, s)


def replay_b(f):
    s = raw_stream(0)
    if set1d(eb, node, sb.data_ptr(), f.data_ptr(), nbytes, 3):
        raise RuntimeError("cudaGraphExecMemcpyNodeSetParams1D failed")
    launch(eb, s)


# same rows either way, and the node's source really is the feed
for f in feeds[1:4]:
    replay_a(f)
    replay_b(f)
    torch.cuda.synchronize()
    assert torch.equal(sa, f) and torch.equal(sb, f), "a static input does not hold its feed"
    assert torch.equal(oa, ob), "the two graphs' rows differ"
print("checked: both graphs' static keys equal the feed, their rows equal", flush=True)
for _ in range(3):
    replay_a(feeds[0]), replay_b(feeds[0])
torch.cuda.synchronize()


def wall(fn):
    ts = []
    for i in range(1500):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn(feeds[i % 8])
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e6, np.percentile(ts, 99) * 1e6


def host(fn):
    ts = []
    for i in range(1500):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn(feeds[i % 8])
        ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e6


parts = {"memcpyAsync alone": lambda f: memcpy(sa.data_ptr(), f.data_ptr(), nbytes, 3, raw_stream(0)),
         "SetParams1D alone": lambda f: set1d(eb, node, sb.data_ptr(), f.data_ptr(), nbytes, 3),
         "graphLaunch alone (A)": lambda f: launch(ea, raw_stream(0)),
         "A: memcpyAsync + launch": replay_a, "B: SetParams1D + launch": replay_b}
for rnd in range(3):
    (am, ap), (bm, bp) = wall(replay_a), wall(replay_b)
    print(f"round {rnd}: wall A (memcpyAsync, then launch) {am:6.2f} us (p99 {ap:6.2f}); "
          f"B (memcpy node set, launch) {bm:6.2f} us (p99 {bp:6.2f}); B - A {bm - am:+.2f}", flush=True)
for name, fn in parts.items():
    print(f"host {name:<26} {host(fn):6.2f} us", flush=True)
cache.close()
store.close()
