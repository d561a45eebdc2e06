"""ONNX graph surgery: replace embedding lookups with ``EmbCacheLookup`` nodes backed by embcache.

An embedding lookup is a ``Gather`` on axis 0 whose data is a 2-D float initializer (the table)
and whose indices are computed (int32 or int64; an exporter's ``Add`` of row offsets may come
before it and stays).  Each table is written once into its store (row number = key), each lookup
becomes one node, the initializers are dropped, and the result passes ``onnx.checker`` and strict
shape inference.

>>> report = surgery("model.onnx", "surgered.onnx", "embcache.json")   # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embcache.errors import ConfigError, DataFormatError

from .config import Config, TableConfig, load_config
from .fields import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .tables import open_table_store, write_table

__all__ = ["Lookup", "SurgeryReport", "find_lookups", "surgery", "CHECK_DOMAIN"]

# onnx.checker refuses unknown ops in the default domain, where TensorRT's parser looks for
# plugins; the check runs on a copy with the plugin nodes moved here.
CHECK_DOMAIN = "embcache"
_FLOATS = (np.float32, np.float16)


@dataclass
class Lookup:
    """One Gather that reads an embedding table."""

    node: str
    table: str  # the initializer's name
    rows: int
    dim: int
    dtype: str
    indices_dtype: str


@dataclass
class SurgeryReport:
    lookups: list[Lookup] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows exported
    bytes_before: int = 0
    bytes_after: int = 0
    config: str = ""


def _gs():
    try:
        import onnx_graphsurgeon as gs
    except ImportError:  # pragma: no cover - the trt extra installs it
        from embcache.errors import MissingDependencyError

        raise MissingDependencyError("graph surgery needs onnx-graphsurgeon: pip install 'embcache[trt]'") from None
    return gs


def _candidates(graph, min_rows: int):
    gs = _gs()
    for node in graph.nodes:
        if node.op != "Gather" or len(node.inputs) != 2 or int(node.attrs.get("axis", 0)) != 0:
            continue
        data, indices = node.inputs
        if not isinstance(data, gs.Constant) or isinstance(indices, gs.Constant):
            continue
        values = data.values
        if values.ndim != 2 or values.dtype not in _FLOATS or values.shape[0] < min_rows:
            continue
        if indices.dtype is not None and np.dtype(indices.dtype) not in (np.int32, np.int64):
            continue
        yield node, data, indices


def find_lookups(model, names: list[str] | None = None, min_rows: int = 1) -> list[Lookup]:
    """The embedding lookups of ``model`` (an onnx.ModelProto or a path); ``names`` keeps only the
    Gathers or initializers so named.  Tables with fewer than ``min_rows`` rows are left alone."""
    import onnx

    gs = _gs()
    graph = gs.import_onnx(onnx.load(str(model)) if isinstance(model, (str, os.PathLike)) else model)
    return [_describe(n, d, i) for n, d, i in _select(graph, names, min_rows)]


def _describe(node, data, indices) -> Lookup:
    return Lookup(node.name, data.name, int(data.values.shape[0]), int(data.values.shape[1]),
                  np.dtype(data.values.dtype).name, np.dtype(indices.dtype).name if indices.dtype is not None else "?")


def _select(graph, names, min_rows):
    found = list(_candidates(graph, min_rows))
    if names is None:
        return found
    chosen = [(n, d, i) for n, d, i in found if n.name in names or d.name in names]
    missing = set(names) - {n.name for n, _, _ in chosen} - {d.name for _, d, _ in chosen}
    if missing:
        raise ConfigError(f"no embedding lookup is named {sorted(missing)}; the graph's lookups are "
                          f"{sorted({f'{n.name} (table {d.name})' for n, d, _ in found})}")
    return chosen


def _table_name(initializer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", initializer) or "table"


def surgery(model_path: str | os.PathLike, out_path: str | os.PathLike, config_path: str | os.PathLike,
            model_name: str | None = None, names: list[str] | None = None, min_rows: int = 1,
            capacity: float | int = 0.2, policy: str = "lfu", store_dir: str | None = None,
            progress: bool = True) -> SurgeryReport:
    """Replace ``model_path``'s embedding lookups with EmbCacheLookup nodes; write ``out_path``.

    Parameters
    ----------
    config_path : path
        The embcache-trt config (native or HPS).  If it exists, tables it names keep its settings
        (store, capacity, policy, ...); tables it lacks are added with ``capacity`` and ``policy``,
        stored in RocksDB under ``store_dir`` (default ``<config stem>-tables/`` beside it).  The
        complete config is written back in the native spelling.
    model_name : str
        The model's name in the config (default: the file's stem).
    names, min_rows
        Which Gathers count as lookups (see :func:`find_lookups`).

    Returns
    -------
    SurgeryReport: the lookups replaced, rows exported per table, file sizes (bytes).

    Raises
    ------
    ConfigError if nothing is found to replace, or a table's dim disagrees with the config.
    """
    import onnx

    gs = _gs()
    model_path, out_path, config_path = Path(model_path), Path(out_path), Path(config_path)
    model_name = model_name or model_path.stem
    config = load_config(config_path) if config_path.exists() else Config((), config_path.resolve().parent)
    store_dir = store_dir or f"{config_path.stem}-tables"
    try:
        proto = onnx.load(str(model_path))
    except Exception as e:
        raise DataFormatError(f"{model_path} is not a readable ONNX model: {e}") from None
    # inferred shapes let the replaced outputs (and graph outputs declared without one) keep a shape
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(proto))
    found = _select(graph, names, min_rows)
    if not found:
        raise ConfigError(f"{model_path}: no embedding lookup found (a Gather on axis 0 of a 2-D float "
                          f"initializer with at least {min_rows} rows, with computed int32/int64 indices)")
    report = SurgeryReport(bytes_before=model_path.stat().st_size, config=str(config_path.resolve()))
    exported: dict[str, TableConfig] = {}
    for node, data, indices in found:
        report.lookups.append(_describe(node, data, indices))
        name = _table_name(data.name)
        values = data.values
        if name not in exported:
            table = _table_config(config, model_name, name, values, capacity, policy, store_dir)
            config = config.with_table(model_name, table)
            store = open_table_store(config, table, create=True)
            try:
                report.tables[name] = write_table(store, values, progress=progress, name=name)
            finally:
                store.close()
            exported[name] = table
        table = exported[name]
        out = node.outputs[0]
        out.dtype = values.dtype
        if indices.shape is not None:
            out.shape = list(indices.shape) + [table.dim]
        node.outputs.clear()
        graph.nodes.append(gs.Node(OP_TYPE, name=f"{node.name or name}_embcache", inputs=[indices], outputs=[out],
                                   attrs={"config": str(config_path.resolve()), "model": model_name,
                                          "table": name, "dim": table.dim,
                                          "default_value": float(table.default_value),
                                          "plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}))
    graph.cleanup().toposort()
    surgered = gs.export_onnx(graph)
    surgered.ir_version = proto.ir_version
    check(surgered)
    onnx.save(surgered, str(out_path))
    config.save(config_path)
    report.bytes_after = out_path.stat().st_size
    return report


def _table_config(config: Config, model: str, name: str, values: np.ndarray, capacity, policy, store_dir):
    rows, dim = (int(v) for v in values.shape)
    dtype = np.dtype(values.dtype).name
    known = [t for m in config.models if m.name == model for t in m.tables if t.name == name]
    if known:
        t = known[0]
        if t.dim != dim or t.dtype != dtype:
            raise ConfigError(f"table {name!r}: the config says dim={t.dim} {t.dtype}, the model's initializer "
                              f"is {rows}x{dim} {dtype}")
        if t.rows not in (None, rows):
            raise ConfigError(f"table {name!r}: the config says rows={t.rows}, the initializer has {rows}")
        from dataclasses import replace

        return replace(t, rows=rows, keys_are_rows=True)
    return TableConfig(name=name, dim=dim, rows=rows, dtype=dtype, store=(f"rocksdb:{store_dir}/{model}.{name}",),
                       capacity=capacity, policy=policy, keys_are_rows=True)


def check(model) -> None:
    """onnx.checker (on a copy with the plugin nodes in ``CHECK_DOMAIN``) and strict shape inference."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if node.op_type == OP_TYPE and node.domain == "":
            node.domain = CHECK_DOMAIN
    if not any(o.domain == CHECK_DOMAIN for o in copy.opset_import):
        copy.opset_import.append(onnx.helper.make_opsetid(CHECK_DOMAIN, 1))
    onnx.checker.check_model(copy, full_check=False)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
