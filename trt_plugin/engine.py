"""Build a TensorRT engine from a surgered ONNX file with the EmbCacheLookup plugin registered, and run one.

NOT YET RUN against a TensorRT install (see ``trt_plugin.plugin``); written from the TensorRT 10
Python API documentation.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fields import model_file
from .plugin import _trt, register

__all__ = ["build_engine", "run_engine"]


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, fp16: bool = False,
                 max_batch: int = 8192, workspace_mib: int = 1024) -> Path:
    """Parse ``onnx_path`` (plugin registered), build with fp32 or fp16 dense layers, write ``engine_path``.

    Every input's first dimension is the batch: the optimization profile spans 1..``max_batch``.
    """
    trt = _trt()
    register()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        rest = tuple(t.shape)[1:]
        profile.set_shape(t.name, (1,) + rest, (max_batch,) + rest, (max_batch,) + rest)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}")
    engine_path = Path(engine_path)
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def run_engine(engine_path: str | os.PathLike, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an engine on host arrays; returns its outputs on the host."""
    import cupy as cp

    trt = _trt()
    register()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with model_file(engine_path):  # plugins whose config moved with the engine find it beside it
        engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    context = engine.create_execution_context()
    stream = cp.cuda.Stream(non_blocking=True)
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            buffers[name] = cp.asarray(feeds[name])
            context.set_input_shape(name, buffers[name].shape)
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = cp.empty(shape, trt.nptype(engine.get_tensor_dtype(name)))
    for name, array in buffers.items():
        context.set_tensor_address(name, array.data.ptr)
    if not context.execute_async_v3(stream.ptr):
        raise RuntimeError("TensorRT could not run the engine")
    stream.synchronize()
    return {name: a.get() for name, a in buffers.items() if name not in feeds}
