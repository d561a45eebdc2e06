"""The EmbCacheLookup layer's fields, shapes and types, as plain functions (no TensorRT needed).

The TensorRT plugin (``trt_plugin.plugin``) is a thin shell over these, so that what it decides is
tested where TensorRT is absent.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embcache.errors import ConfigError

__all__ = ["OP_TYPE", "PLUGIN_VERSION", "PLUGIN_NAMESPACE", "LookupFields", "output_shape",
           "supports_types", "KEY_DTYPES", "ROW_DTYPES", "IR_VERSION", "OPSET", "new_model", "locate_config", "model_file", "current_model_file"]

OP_TYPE = "EmbCacheLookup"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = ""
# Every ONNX model the project builds carries these.  setup.cfg allows onnxruntime>=1.17, which
# loads IR versions up to 9 (onnxruntime's compatibility table: 1.17 = ONNX 1.15, IR 9, opset 20;
# onnx>=1.15 likewise); opset 17 needs IR 8, the lowest that carries it, so IR 8 loads everywhere
# setup.cfg allows.  onnx.helper.make_model stamps the installed onnx's newest IR (12 and up),
# which older runtimes refuse ("Unsupported model IR version").
IR_VERSION = 8
OPSET = 17
KEY_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


@dataclass(frozen=True)
class LookupFields:
    """What one EmbCacheLookup node carries: where its table is and how wide a row is."""

    config: str
    table: str
    dim: int
    model: str = ""
    default_value: float = 0.0

    def __post_init__(self):
        if not self.config or not self.table:
            raise ConfigError("EmbCacheLookup needs 'config' and 'table' fields")
        if isinstance(self.dim, bool) or not isinstance(self.dim, (int, np.integer)) or self.dim <= 0:
            raise ConfigError(f"EmbCacheLookup dim must be a positive integer, got {self.dim!r}")

    @classmethod
    def from_attrs(cls, attrs: dict) -> LookupFields:
        """From node attributes or TensorRT plugin fields (strings as bytes or int8 arrays, numbers as
        1-element arrays); attributes that are not fields (plugin_version, ...) are ignored."""
        values = {}
        for name, kind in _FIELD_KINDS.items():
            if name in attrs:
                values[name] = kind(_plain(attrs[name], kind is str))
        return cls(**values)

    def serialize(self) -> bytes:
        """Bytes for an engine file; ``deserialize`` gives the same fields back."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def deserialize(cls, data: bytes) -> LookupFields:
        """The fields ``serialize`` wrote; unreadable bytes are a ``ConfigError``."""
        try:
            values = json.loads(bytes(data).decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"EmbCacheLookup: unreadable serialized fields: {e}") from None
        return cls(**values)


_FIELD_KINDS = {"config": str, "table": str, "model": str, "dim": int, "default_value": float}


def _plain(value, text: bool):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode().rstrip("\0")
    if isinstance(value, np.ndarray):
        if text and value.dtype in (np.int8, np.uint8):
            return bytes(value.astype(np.uint8)).decode().rstrip("\0")
        return value.reshape(-1)[0].item()
    return value


_LOADING = threading.local()  # the model or engine file this thread is loading (model_file)


@contextlib.contextmanager
def model_file(path: str | os.PathLike) -> Iterator[None]:
    """While this block runs, plugins this thread creates take ``path`` as the file they came from, so a
    node whose config path is gone finds the config beside it (TensorRT's plugin creator is not told
    which engine it deserializes; ``run_engine`` wraps deserialization in this)."""
    before = getattr(_LOADING, "path", None)
    _LOADING.path = os.fspath(path)
    try:
        yield
    finally:
        _LOADING.path = before


def current_model_file() -> str | None:
    """The file :func:`model_file` names for this thread, or None outside one."""
    return getattr(_LOADING, "path", None)


def locate_config(config: str, model_file: str | os.PathLike | None, node: str = "") -> str:
    """The config file a node's ``config`` field names: that path if it exists, else the file of the
    same name beside ``model_file`` (a model moved with its config and table folders); ``None`` takes
    the file of an enclosing :func:`model_file` block, if any.

    Raises
    ------
    ConfigError if neither exists, naming both places.
    """
    if os.path.isfile(config):
        return config
    if model_file is None:
        model_file = current_model_file()
    beside = Path(model_file).resolve().parent / Path(config).name if model_file is not None else None
    if beside is not None and beside.is_file():
        return str(beside)
    raise ConfigError(f"EmbCacheLookup node {node!r}: its config {config} does not exist"
                      + (f", nor does {beside}" if beside is not None else "")
                      + "; put the config (and its table folders) beside the model, or run embcache-trt surgery again")


def new_model(graph: Any, **kwargs: Any) -> Any:
    """``onnx.helper.make_model(graph)`` with the project's opset (:data:`OPSET`) and IR version
    (:data:`IR_VERSION`), so that every runtime setup.cfg allows loads it."""
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name=kwargs.pop("producer_name", "embcache-trt"), **kwargs)
    model.ir_version = IR_VERSION
    return model


def output_shape(key_shape: Sequence[Any], dim: Any) -> tuple:
    """The output's shape: the keys' shape with ``dim`` appended ((batch, keys) -> (batch, keys, dim)).

    The sizes are ints, or TensorRT's dimension expressions (the plugin's ``get_output_shapes``
    passes the keys' and ``expr_builder.constant(dim)``), kept as they are.
    """
    return tuple(key_shape) + (int(dim) if isinstance(dim, (int, np.integer)) else dim,)


def supports_types(position: int, key_dtype: Any, out_dtype: Any) -> bool:
    """TensorRT's supports_format_combination, for linear tensors: position 0 the keys (int32 or
    int64), position 1 the rows (float32 or float16)."""
    if position == 0:
        return np.dtype(key_dtype) in KEY_DTYPES
    if position == 1:
        return np.dtype(out_dtype) in ROW_DTYPES
    return False
