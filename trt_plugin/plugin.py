"""The TensorRT 10 plugin: ``EmbCacheLookup`` as an IPluginV3 (core, build and runtime capabilities)
with an IPluginCreatorV3One creator.

Written from the TensorRT 10 Python plugin documentation and samples; NOT YET RUN against a
TensorRT install (TensorRT's libraries are not on the package registries our machines reach).
The decisions (fields, output shape, supported types) are the plain functions of
``trt_plugin.fields``, which are tested; this module only adapts them to TensorRT's interfaces.

>>> from trt_plugin.plugin import register
>>> register()          # before parsing a surgered ONNX file or deserializing an engine  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses

import numpy as np

from embcache.errors import MissingDependencyError

from .fields import (OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION, LookupFields, locate_config, output_shape,
                     supports_types)
from .tables import lookup_into

__all__ = ["register", "tensorrt_available"]


def _trt():
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependencyError("TensorRT is not installed: the plugin and engine commands need the "
                                     "'tensorrt' package (10.x) from NVIDIA") from None
    return trt


def tensorrt_available() -> bool:
    """Whether the ``tensorrt`` package (10.x) imports here."""
    try:
        _trt()
    except MissingDependencyError:
        return False
    return True


def _fields_collection(trt, fields: LookupFields | None):
    def text(v: str):
        return np.frombuffer(v.encode() + b"\0", np.int8)

    f = fields or LookupFields("-", "-", 1)
    return trt.PluginFieldCollection([
        trt.PluginField("config", text(f.config), trt.PluginFieldType.CHAR),
        trt.PluginField("table", text(f.table), trt.PluginFieldType.CHAR),
        trt.PluginField("model", text(f.model), trt.PluginFieldType.CHAR),
        trt.PluginField("dim", np.array([f.dim], np.int32), trt.PluginFieldType.INT32),
        trt.PluginField("default_value", np.array([f.default_value], np.float32), trt.PluginFieldType.FLOAT32),
    ])


def _classes():
    trt = _trt()

    class EmbCacheLookupPlugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, fields: LookupFields, phase=None):
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.fields = fields
            self.phase = phase
            self.num_outputs = 1
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_name = OP_TYPE
            self.plugin_version = PLUGIN_VERSION
            self.timing_cache_id = ""

        def get_capability_interface(self, type):
            return self

        def get_output_data_types(self, input_types):
            return [trt.DataType.FLOAT]  # the builder may pick HALF through supports_format_combination

        def get_output_shapes(self, inputs, shape_inputs, expr_builder):
            shape = output_shape([inputs[0][i] for i in range(len(inputs[0]))],
                                 expr_builder.constant(self.fields.dim))
            dims = trt.DimsExprs(len(shape))
            for i, size in enumerate(shape):
                dims[i] = size
            return [dims]

        def supports_format_combination(self, pos, in_out, num_inputs):
            desc = in_out[pos].desc
            if desc.format != trt.TensorFormat.LINEAR:
                return False
            key = trt.nptype(in_out[0].desc.type)
            out = trt.nptype(desc.type) if pos == 1 else np.float32
            return supports_types(pos, key if pos == 0 else np.int64, out)

        def configure_plugin(self, inp, out):
            pass

        def on_shape_change(self, inp, out):
            pass

        def get_fields_to_serialize(self):
            return _fields_collection(trt, self.fields)

        def enqueue(self, input_desc, output_desc, inputs, outputs, workspace, stream):
            import cupy as cp

            key_dtype = np.dtype(trt.nptype(input_desc[0].type))
            out_dtype = np.dtype(trt.nptype(output_desc[0].type))
            key_shape = tuple(input_desc[0].dims)
            shape = output_shape(key_shape, self.fields.dim)
            n = int(np.prod(key_shape))
            # TensorRT's buffers as CuPy arrays on the current device (the context's): lookup_into writes
            # the rows straight into the output, no copy, when TensorRT chose the table's dtype for it
            keys = cp.ndarray(key_shape, key_dtype, cp.cuda.MemoryPointer(
                cp.cuda.UnownedMemory(inputs[0], n * key_dtype.itemsize, self), 0))
            out = cp.ndarray(shape, out_dtype, cp.cuda.MemoryPointer(
                cp.cuda.UnownedMemory(outputs[0], n * self.fields.dim * out_dtype.itemsize, self), 0))
            external = cp.cuda.ExternalStream(stream)
            with external:
                lookup_into(self.fields, keys, out, stream=external)
            return 0

        def attach_to_context(self, context):
            return self.clone()

        def clone(self):
            return EmbCacheLookupPlugin(self.fields, self.phase)

        def get_valid_tactics(self):
            return []

        def set_tactic(self, tactic):
            pass

    class EmbCacheLookupCreator(trt.IPluginCreatorV3One):
        def __init__(self):
            trt.IPluginCreatorV3One.__init__(self)
            self.name = OP_TYPE
            self.plugin_namespace = PLUGIN_NAMESPACE
            self.plugin_version = PLUGIN_VERSION
            self.field_names = _fields_collection(trt, None)

        def create_plugin(self, name, fc, phase):
            fields = LookupFields.from_attrs({f.name: f.data for f in fc})
            if phase == trt.TensorRTPhase.RUNTIME:  # an engine moved with its config: look beside it
                fields = dataclasses.replace(fields, config=locate_config(fields.config, None, name))
            return EmbCacheLookupPlugin(fields, phase)

    return EmbCacheLookupPlugin, EmbCacheLookupCreator


_creator = None


def register() -> None:
    """Register the EmbCacheLookup creator with TensorRT's plugin registry (once per process)."""
    global _creator
    trt = _trt()
    if _creator is None:
        _creator = _classes()[1]()
        trt.get_plugin_registry().register_creator(_creator, PLUGIN_NAMESPACE)
