"""Run a surgered graph without TensorRT: ONNX Runtime with an embcache-backed custom op, or ONNX's
reference evaluator.  This is how the surgery is verified end to end where TensorRT is absent.

>>> session = SurgeredSession("surgered.onnx")                  # doctest: +SKIP
>>> probability, = session.run({"dense": x, "categorical": c})  # doctest: +SKIP

With the GPU backend the custom op's rows come from the GPU cache and are copied to the host,
because ONNX Runtime's Python custom ops work on host arrays.

Errors: an exception raised inside an onnxruntime-extensions Python op does not come back through
``InferenceSession.run``; the C++ side aborts the process (``terminate called after throwing an
instance of 'pybind11::error_already_set'``).  So the op catches every exception, stashes it for
the session and thread that called ``run``, returns a dummy output, and :meth:`SurgeredSession.run`
raises it once ONNX Runtime returns.  Before that, the session checks what every lookup needs (its
config file, its table, the table's store) when it is made, so a moved folder is an
:class:`embcache.errors.EmbCacheError` at once, not at the first batch.

Config files: each node records its config's absolute path.  When that file is gone and the model
was given as a path, the config of the same name beside the model file is used (models, configs
and table folders move together; tables are found relative to their config).
"""
from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from embcache.errors import ConfigError, MissingDependencyError

from .fields import OP_TYPE, LookupFields, locate_config
from .tables import lookup_rows, table_cache

__all__ = ["SurgeredSession", "ENGINES"]

ENGINES = ("onnxruntime", "reference")
_CONTRIB = "ai.onnx.contrib"  # the domain onnxruntime-extensions gives Python ops
_registered = threading.Lock()
_done: set[str] = set()
_errors: dict[tuple[str, int], BaseException] = {}  # (session token, thread) -> the op's first exception
_errors_lock = threading.Lock()
_tokens = itertools.count(1)


def _host(rows) -> np.ndarray:
    return rows.get() if hasattr(rows, "get") else np.asarray(rows)


def _lookup(keys: np.ndarray, attrs: dict, out_dtype) -> np.ndarray:
    f = LookupFields.from_attrs(attrs)
    backend = attrs.get("backend") or None  # the session's choice, carried as an attribute of its copy
    rows = _host(lookup_rows(f.config, f.table, keys, model=f.model or None, backend=backend))
    return rows.astype(out_dtype, copy=False)


def _guarded_lookup(keys: np.ndarray, attrs: dict, out_dtype) -> np.ndarray:
    """``_lookup``, with any exception stashed for ``SurgeredSession.run`` to raise (an exception that
    crossed into ONNX Runtime would abort the process) and zeros of the expected shape returned."""
    try:
        return _lookup(keys, attrs, out_dtype)
    except BaseException as e:  # noqa: BLE001 - every exception, KeyboardInterrupt included, must not cross
        key = (str(attrs.get("session", "")), threading.get_ident())
        with _errors_lock:
            _errors.setdefault(key, e)
        try:
            dim = max(1, int(_plain_int(attrs.get("dim", 1))))
        except Exception:  # noqa: BLE001
            dim = 1
        return np.zeros(tuple(np.shape(keys)) + (dim,), out_dtype)


def _plain_int(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


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
                 "plugin_namespace": PyCustomOpDef.dt_string, "backend": PyCustomOpDef.dt_string,
                 "session": PyCustomOpDef.dt_string}
        for key_type, key_name in ((PyCustomOpDef.dt_int64, "I64"), (PyCustomOpDef.dt_int32, "I32")):
            def op(keys, **kw):
                return _guarded_lookup(keys, kw, np.float32)
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

    Raises
    ------
    EmbCacheError (ConfigError, StoreNotFoundError, ...) when a lookup's config, table or store is
    missing, here rather than at the first batch; :meth:`run` raises whatever a lookup raised.
    """

    def __init__(self, model: Any, engine: str = "onnxruntime", backend: str | None = None):
        import onnx

        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
        if isinstance(model, (str, os.PathLike)):
            if not Path(model).is_file():
                raise ConfigError(f"model file {model} does not exist")
            try:
                proto = onnx.load(str(model))
            except Exception as e:  # noqa: BLE001 - onnx raises several kinds for a bad file
                raise ConfigError(f"{model} is not a readable ONNX model: {e}") from None
        else:
            proto = onnx.ModelProto()
            proto.CopyFrom(model)
        self.engine = engine
        self._backend = backend
        self._token = f"s{next(_tokens)}"
        self._callers: set[int] = set()  # threads inside run(): an error from any other thread is a worker's
        self.output_names = [o.name for o in proto.graph.output]
        self._find_configs(proto, model if isinstance(model, (str, os.PathLike)) else None)
        if engine == "reference":
            self._session = self._reference(proto)
        else:
            self._session = self._onnxruntime(proto)

    def _find_configs(self, proto, model_file) -> None:
        """Point every lookup at a config that exists (the recorded path, else the same name beside the
        model) and open its table's cache, so what the op needs is known to be there."""
        import onnx

        for node in proto.graph.node:
            if node.op_type != OP_TYPE:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            f = LookupFields.from_attrs(attrs)
            path = locate_config(f.config, model_file, node.name)
            if path != f.config:
                for a in node.attribute:
                    if a.name == "config":
                        a.s = path.encode()
            table_cache(path, f.table, f.model or None, self._backend)  # raises if the table's store is gone

    def _onnxruntime(self, proto):
        import onnx

        try:
            import onnxruntime as ort
            from onnxruntime_extensions import get_library_path
        except ImportError:
            raise MissingDependencyError("the ONNX Runtime runner needs onnxruntime and onnxruntime-extensions: "
                                         "pip install '.[trt]' (in the embcache clone)") from None
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
                node.attribute.append(onnx.helper.make_attribute("session", self._token))
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
        """The model's outputs, in order, for ``feeds`` (input name -> host array).

        Raises
        ------
        The exception a lookup raised (an EmbCacheError such as StoreNotFoundError or TierError, or
        any other), after ONNX Runtime returns; the outputs of that run are discarded.
        """
        if self.engine == "reference":
            return list(self._session.run(None, feeds))
        me = threading.get_ident()
        key = (self._token, me)
        with _errors_lock:
            _errors.pop(key, None)
            self._callers.add(me)
        try:
            outputs = self._session.run(None, feeds)
        finally:
            with _errors_lock:
                self._callers.discard(me)
                error = _errors.pop(key, None)
                if error is None:  # an op that ran on one of ONNX Runtime's own threads
                    other = next((k for k in _errors if k[0] == self._token and k[1] not in self._callers), None)
                    error = _errors.pop(other) if other is not None else None
        if error is not None:
            raise error
        return outputs
