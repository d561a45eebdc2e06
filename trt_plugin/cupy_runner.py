"""Run a surgered graph on the GPU with CuPy: the dense layers as CuPy/cuBLAS operations, each
EmbCacheLookup as an embcache GPU lookup on the same stream.  This stands in for a TensorRT engine
where TensorRT is absent (benchmarks say which of the two ran).

It covers the operators of dense recommender towers (MatMul, Gemm, Add, Mul, Relu, Sigmoid, Concat,
Reshape, Transpose, Unsqueeze, Squeeze, Split, Gather, Cast, Flatten); anything else is a clear error.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .fields import OP_TYPE, LookupFields, locate_config
from .tables import lookup_rows

__all__ = ["CupyGraphRunner"]


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class CupyGraphRunner:
    """A surgered model evaluated node by node on the current CUDA device.

    Parameters
    ----------
    model : path or onnx.ModelProto
    lookup : callable(fields, keys) -> rows, optional
        How an EmbCacheLookup node gets its rows (default: the config's GPU cache, ``lookup_rows``).
    """

    def __init__(self, model: Any, lookup: Callable | None = None):
        import cupy as cp
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model
        self._cp = cp
        self._nodes = list(proto.graph.node)
        self._consts = {i.name: cp.asarray(numpy_helper.to_array(i)) for i in proto.graph.initializer}
        self._host_consts = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        self.output_names = [o.name for o in proto.graph.output]
        model_file = model if isinstance(model, (str, os.PathLike)) else None
        # each lookup's fields, its config found (beside the model if the recorded one moved) up front
        self._fields = {}
        for n in self._nodes:
            if n.op_type == OP_TYPE:
                f = LookupFields.from_attrs(_attrs(n))
                self._fields[id(n)] = f if lookup else replace(f, config=locate_config(f.config, model_file, n.name))
        self._lookup = lookup or (lambda f, keys: lookup_rows(f.config, f.table, keys, model=f.model or None,
                                                              backend="gpu"))
        for node in self._nodes:
            if node.op_type != OP_TYPE and not hasattr(self, f"_op_{node.op_type}"):
                raise NotImplementedError(f"CupyGraphRunner has no {node.op_type} (node {node.name!r})")

    def run(self, feeds: dict) -> list:
        """Outputs (CuPy arrays) for ``feeds`` (host or device arrays), queued on the current stream."""
        cp = self._cp
        values = dict(self._consts)
        values.update({k: cp.asarray(v) for k, v in feeds.items()})
        for node in self._nodes:
            args = [values[i] if i else None for i in node.input]
            if node.op_type == OP_TYPE:
                fields = self._fields[id(node)]
                outs = [self._lookup(fields, args[0])]
            else:
                outs = getattr(self, f"_op_{node.op_type}")(node, args)
            values.update(zip(node.output, outs))
        return [values[name] for name in self.output_names]

    def _shape_arg(self, node, i) -> tuple:
        return tuple(int(v) for v in self._host_consts[node.input[i]].reshape(-1))

    # one method per ONNX operator, named after it
    def _op_MatMul(self, node, a):
        return [a[0] @ a[1]]

    def _op_Gemm(self, node, a):
        at = _attrs(node)
        x = a[0].T if at.get("transA") else a[0]
        w = a[1].T if at.get("transB") else a[1]
        y = at.get("alpha", 1.0) * (x @ w)
        return [y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y]

    def _op_Add(self, node, a):
        return [a[0] + a[1]]

    def _op_Mul(self, node, a):
        return [a[0] * a[1]]

    def _op_Relu(self, node, a):
        return [self._cp.maximum(a[0], 0)]

    def _op_Sigmoid(self, node, a):
        x = a[0]
        return [1 / (1 + self._cp.exp(-x))]

    def _op_Concat(self, node, a):
        return [self._cp.concatenate(a, axis=_attrs(node)["axis"])]

    def _op_Reshape(self, node, a):
        shape = [a[0].shape[i] if d == 0 else d for i, d in enumerate(self._shape_arg(node, 1))]
        return [a[0].reshape(shape)]

    def _op_Flatten(self, node, a):
        axis = _attrs(node).get("axis", 1)
        return [a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)]

    def _op_Transpose(self, node, a):
        return [a[0].transpose(_attrs(node).get("perm"))]

    def _op_Unsqueeze(self, node, a):
        x = a[0]
        for axis in sorted(self._shape_arg(node, 1)):
            x = self._cp.expand_dims(x, axis)
        return [x]

    def _op_Squeeze(self, node, a):
        return [self._cp.squeeze(a[0], axis=self._shape_arg(node, 1) if len(node.input) > 1 else None)]

    def _op_Split(self, node, a):
        axis = _attrs(node).get("axis", 0)
        sizes = np.cumsum(self._shape_arg(node, 1))[:-1] if len(node.input) > 1 else len(node.output)
        return self._cp.split(a[0], sizes, axis=axis)

    def _op_Gather(self, node, a):
        return [self._cp.take(a[0], a[1], axis=_attrs(node).get("axis", 0))]

    def _op_Cast(self, node, a):
        from onnx import helper

        return [a[0].astype(helper.tensor_dtype_to_np_dtype(_attrs(node)["to"]))]
