"""Run a surgered graph without TensorRT: ONNX Runtime with an embcache-backed custom op, or ONNX's
reference evaluator.  This is how the surgery is verified end to end where TensorRT is absent.

>>> session = SurgeredSession("surgered.onnx")                  # doctest: +SKIP
>>> probability, = session.run({"dense": x, "categorical": c})  # doctest: +SKIP

With the GPU backend the custom op's rows come from the GPU cache and are copied to the host,
because ONNX Runtime's Python custom ops work on host arrays.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from embcache.errors import MissingDependencyError

from .fields import OP_TYPE, LookupFields
from .tables import lookup_rows

__all__ = ["SurgeredSession", "ENGINES"]

ENGINES = ("onnxruntime", "reference")
_CONTRIB = "ai.onnx.contrib"  # the domain onnxruntime-extensions gives Python ops
_registered = threading.Lock()
_done: set[str] = set()


def _host(rows) -> np.ndarray:
    return rows.get() if hasattr(rows, "get") else np.asarray(rows)


def _lookup(keys: np.ndarray, attrs: dict, out_dtype) -> np.ndarray:
    f = LookupFields.from_attrs(attrs)
    backend = attrs.get("backend") or None  # the session's choice, carried as an attribute of its copy
    rows = _host(lookup_rows(f.config, f.table, keys, model=f.model or None, backend=backend))
    return rows.astype(out_dtype, copy=False)


def _register_ort_ops() -> None:
    """Register the Python custom ops once per process (int32 and int64 keys, float32 rows: Python ops
    cannot return float16, so fp16 tables are cast after the op)."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    with _registered:
        if "ort" in _done:
            return
        attrs = {"config": PyCustomOpDef.dt_string, "table": PyCustomOpDef.dt_string,
                 "model": PyCustomOpDef.dt_string, "dim": PyCustomOpDef.dt_int64,
                 "default_value": PyCustomOpDef.dt_float, "plugin_version": PyCustomOpDef.dt_string,
                 "plugin_namespace": PyCustomOpDef.dt_string, "backend": PyCustomOpDef.dt_string}
        for key_type, key_name in ((PyCustomOpDef.dt_int64, "I64"), (PyCustomOpDef.dt_int32, "I32")):
            def op(keys, **kw):
                return _lookup(keys, kw, np.float32)
            onnx_op(op_type=f"{OP_TYPE}{key_name}", domain=_CONTRIB, inputs=[key_type],
                    outputs=[PyCustomOpDef.dt_float], attrs=attrs)(op)
        _done.add("ort")


def _value_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


class SurgeredSession:
    """A surgered model ready to run.

    Parameters
    ----------
    model : path or onnx.ModelProto
    engine : "onnxruntime" (a Python custom op through onnxruntime-extensions) or "reference"
        (``onnx.reference.ReferenceEvaluator``, slower, no extra package).
    backend : "auto", "cpu" or "gpu", optional
        Overrides the config's backend for the caches behind the op.
    """

    def __init__(self, model, engine: str = "onnxruntime", backend: str | None = None):
        import onnx

        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        proto = onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model
        self.engine = engine
        self._backend = backend
        self.output_names = [o.name for o in proto.graph.output]
        if engine == "reference":
            self._session = self._reference(proto)
        else:
            self._session = self._onnxruntime(proto)

    def _onnxruntime(self, proto):
        import onnx

        try:
            import onnxruntime as ort
            from onnxruntime_extensions import get_library_path
        except ImportError:
            raise MissingDependencyError("the ONNX Runtime runner needs onnxruntime and onnxruntime-extensions: "
                                         "pip install 'embcache[trt]'") from None
        _register_ort_ops()
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)
        types = _value_types(copy)
        casts = []
        for node in copy.graph.node:
            if node.op_type == OP_TYPE:
                i32 = types.get(node.input[0]) == onnx.TensorProto.INT32
                node.op_type = f"{OP_TYPE}{'I32' if i32 else 'I64'}"
                node.domain = _CONTRIB
                node.attribute.append(onnx.helper.make_attribute("backend", self._backend or ""))
                if types.get(node.output[0]) == onnx.TensorProto.FLOAT16:
                    wanted = node.output[0]
                    node.output[0] = f"{wanted}.float32"
                    casts.append(onnx.helper.make_node("Cast", [node.output[0]], [wanted],
                                                       to=onnx.TensorProto.FLOAT16))
        copy.graph.node.extend(casts)  # ONNX Runtime sorts the graph itself
        if not any(o.domain == _CONTRIB for o in copy.opset_import):
            copy.opset_import.append(onnx.helper.make_opsetid(_CONTRIB, 1))
        options = ort.SessionOptions()
        options.register_custom_ops_library(get_library_path())
        return ort.InferenceSession(copy.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def _reference(self, proto):
        from onnx.reference import ReferenceEvaluator
        from onnx.reference.op_run import OpRun

        backend = self._backend

        class EmbCacheLookup(OpRun):
            op_domain = ""

            def _run(self, keys, **attrs):
                f = LookupFields.from_attrs({k: getattr(self, k) for k in LookupFields.__dataclass_fields__
                                             if getattr(self, k, None) is not None})
                return (_host(lookup_rows(f.config, f.table, keys, model=f.model or None, backend=backend)),)

        return ReferenceEvaluator(proto, new_ops=[EmbCacheLookup])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs, in order, for ``feeds`` (input name -> host array)."""
        if self.engine == "reference":
            return list(self._session.run(None, feeds))
        return self._session.run(None, feeds)
