"""ONNX graph surgery: replace embedding lookups with ``EmbCacheLookup`` nodes backed by embcache.

An embedding lookup is a ``Gather`` on axis 0 whose data is a 2-D float initializer (the table)
and whose indices are computed (int32 or int64; an exporter's ``Add`` of row offsets may come
before it and stays).  Each table is written once into its store (row number = key), each lookup
becomes one node, the initializers are dropped, and the result passes ``onnx.checker`` and strict
shape inference.

Gathers that read a large float initializer but are not replaced (one inside a ``Loop`` body, as a
TorchScript-exported ``nn.EmbeddingBag`` has it; one with constant indices; one left out by
``names``) are listed in :attr:`SurgeryReport.skipped` and printed by ``embcache-trt surgery`` as a
warning; ``embcache-trt surgery --strict`` exits non-zero when any is there.

Where things go: tables keep their initializer's name in the config and the nodes; a new table's
RocksDB folder is ``<store_dir>/<model>.<table>`` escaped by :func:`trt_plugin.config.store_name`
(distinct names, distinct folders).  An existing config file is an input and is never written:
the complete native config goes to ``<output stem>.embcache.json`` beside the output model.  A
config path that does not exist yet is where the native config is written.

>>> report = surgery("model.onnx", "surgered.onnx", "embcache.json")   # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embcache.errors import ConfigError, DataFormatError

from .config import Config, TableConfig, load_config, store_name
from .fields import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION
from .tables import open_table_store, write_table

__all__ = ["Lookup", "Skipped", "SurgeryReport", "find_lookups", "surgery", "check", "CHECK_DOMAIN",
           "native_config_path"]

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
class Skipped:
    """A Gather that reads a float initializer (``rows`` x ...) and was not replaced, and why."""

    node: str
    initializer: str
    shape: tuple[int, ...]
    dtype: str
    where: str  # "main graph", or the subgraph's path ("Loop 'bag' body")
    reason: str
    chosen: bool = False  # left out on purpose (by ``names``): not a failure under --strict

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shape))
        return (f"initializer {self.initializer!r} ({shape} {self.dtype}) read by Gather "
                f"{self.node or '(unnamed)'!r} in the {self.where} stays inline: {self.reason}")


@dataclass
class SurgeryReport:
    """What surgery did: lookups replaced, rows exported per table, Gathers of large float
    initializers left alone (``skipped``), file sizes (bytes), and the native config written."""

    lookups: list[Lookup] = field(default_factory=list)
    tables: dict[str, int] = field(default_factory=dict)  # table -> rows exported
    bytes_before: int = 0
    bytes_after: int = 0
    config: str = ""
    skipped: list[Skipped] = field(default_factory=list)


def _gs():
    try:
        import onnx_graphsurgeon as gs
    except ImportError:  # pragma: no cover - the trt extra installs it
        from embcache.errors import MissingDependencyError

        raise MissingDependencyError("graph surgery needs onnx-graphsurgeon: pip install '.[trt]' (in the embcache clone)") from None
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


def find_lookups(model: Any, names: list[str] | None = None, min_rows: int = 1) -> list[Lookup]:
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


_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _skipped_gathers(proto, replaced: set[str], candidates: dict[str, str], names, min_rows: int) -> list[Skipped]:
    """Every Gather, in the main graph and every subgraph (Loop/If/Scan bodies, nested), that reads a
    float initializer of at least 2 dimensions and ``min_rows`` rows and is not replaced.
    ``replaced``: output names of the Gathers replaced; ``candidates``: output name -> initializer of
    main-graph Gathers that are lookups but were not chosen by ``names``."""
    import onnx

    out: list[Skipped] = []

    def walk(graph, scope: dict, where: str):
        scope = dict(scope)
        for init in graph.initializer:
            scope[init.name] = (tuple(init.dims), init.data_type)
        for node in graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value" and a.t is not None:
                        scope[node.output[0]] = (tuple(a.t.dims), a.t.data_type)
        for local in list(graph.input) + [n_out for n in graph.node if n.op_type != "Constant" for n_out in n.output]:
            name = local.name if hasattr(local, "name") else local
            if name in scope and name not in {i.name for i in graph.initializer}:
                scope.pop(name)  # a subgraph's own value shadows the outer initializer
        for node in graph.node:
            if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in scope:
                dims, kind = scope[node.input[0]]
                if kind in _FLOAT_TYPES and len(dims) >= 2 and dims[0] >= min_rows \
                        and node.output[0] not in replaced:
                    axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
                    chosen = node.output[0] in candidates
                    if where != "main graph":
                        reason = ("inside a subgraph (the TorchScript nn.EmbeddingBag pattern); surgery replaces "
                                  "main-graph Gathers only: export with torch.onnx.export(dynamo=True), whose "
                                  "bags are main-graph Gathers")
                    elif chosen:
                        reason = f"not among --names {sorted(names)}"
                    elif axis != 0:
                        reason = f"Gather on axis {axis}, not 0"
                    elif node.input[1] in scope:
                        reason = "its indices are constant"
                    elif len(dims) != 2:
                        reason = f"the table is {len(dims)}-D, not 2-D"
                    else:
                        reason = "its indices are not int32/int64"
                    out.append(Skipped(node.name, node.input[0], dims, _FLOAT_TYPES[kind], where, reason, chosen))
            for a in node.attribute:
                subgraphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else (
                    list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else [])
                for g in subgraphs:
                    walk(g, scope, f"{node.op_type} {node.name or '(unnamed)'!r} {a.name}"
                         + ("" if where == "main graph" else f" in the {where}"))

    walk(proto.graph, {}, "main graph")
    return out


def native_config_path(out_path: str | os.PathLike) -> Path:
    """Where surgery writes the native config when the one it was given exists:
    ``<output stem>.embcache.json`` beside the output model."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.embcache.json")


def surgery(model_path: str | os.PathLike, out_path: str | os.PathLike, config_path: str | os.PathLike,
            model_name: str | None = None, names: list[str] | None = None, min_rows: int = 1,
            capacity: float | int = 0.2, policy: str = "lfu", store_dir: str | None = None,
            progress: bool = True, strict: bool = False) -> SurgeryReport:
    """Replace ``model_path``'s embedding lookups with EmbCacheLookup nodes; write ``out_path``.

    Parameters
    ----------
    config_path : path
        The embcache-trt config (native or HPS).  If it exists, it is read and never written: tables
        it names keep its settings (store, capacity, policy, ...), and the complete config goes, in
        the native spelling, to ``<output stem>.embcache.json`` beside ``out_path``
        (:func:`native_config_path`; relative paths rewritten for its folder).  If it does not
        exist, the native config is written there.  Tables the config lacks are added with
        ``capacity`` and ``policy``, stored in RocksDB under ``store_dir`` (default
        ``<config stem>-tables/`` beside ``config_path``).
    model_name : str
        The model's name in the config (default: the file's stem).
    names, min_rows
        Which Gathers count as lookups (see :func:`find_lookups`).
    strict : bool
        Refuse (ConfigError, before anything is written) a model where a Gather reads a float
        initializer of ``min_rows`` rows or more and is not replaced, other than those left out by
        ``names`` on purpose: e.g. an ``nn.EmbeddingBag`` exported by TorchScript (its Gather is
        inside a Loop body).  Without it they are listed in the report's ``skipped``.

    Returns
    -------
    SurgeryReport: the lookups replaced, rows exported per table, Gathers of large float
    initializers left inline (``skipped``), file sizes (bytes), the native config's path.

    Raises
    ------
    ConfigError if nothing is found to replace (the message names the Gathers skipped), a table's
    dim disagrees with the config, or the native config would overwrite the input config.
    """
    import onnx

    gs = _gs()
    model_path, out_path, config_path = Path(model_path), Path(out_path), Path(config_path)
    model_name = model_name or model_path.stem
    given = config_path.exists()
    config = load_config(config_path) if given else Config((), config_path.resolve().parent)
    written = native_config_path(out_path) if given else config_path
    if given and written.resolve() == config_path.resolve():
        raise ConfigError(f"surgery would write its native config over the input config {config_path}; "
                          f"name another output model than {out_path} or pass another config")
    store_dir = store_dir or f"{config_path.stem}-tables"
    try:
        proto = onnx.load(str(model_path))
    except Exception as e:
        raise DataFormatError(f"{model_path} is not a readable ONNX model: {e}") from None
    # inferred shapes let the replaced outputs (and graph outputs declared without one) keep a shape
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = gs.import_onnx(inferred)
    found = _select(graph, names, min_rows)
    every = {n.outputs[0].name: d.name for n, d, _ in _candidates(graph, min_rows)}
    replaced = {n.outputs[0].name for n, _, _ in found}
    skipped = _skipped_gathers(inferred, replaced, {k: v for k, v in every.items() if k not in replaced},
                               names, min_rows)
    if not found:
        listed = "; ".join(map(str, skipped))
        raise ConfigError(f"{model_path}: no embedding lookup found (a Gather on axis 0 of a 2-D float "
                          f"initializer with at least {min_rows} rows, with computed int32/int64 indices)"
                          + (f"; left alone: {listed}" if listed else ""))
    failing = [sk for sk in skipped if not sk.chosen]
    if strict and failing:
        raise ConfigError(f"{model_path}: --strict: {len(failing)} Gather(s) of large float initializers would "
                          f"stay inline: {'; '.join(map(str, failing))}")
    report = SurgeryReport(bytes_before=model_path.stat().st_size, config=str(written.resolve()), skipped=skipped)
    exported: dict[str, TableConfig] = {}
    taken = {n.name for n in graph.nodes if n.name}
    for node, data, indices in found:
        report.lookups.append(_describe(node, data, indices))
        name = data.name  # the initializer's own name: distinct initializers, distinct tables
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
        node_name = base = f"{node.name or name}_embcache"
        suffix = 1
        while node_name in taken:  # node names stay unique (TensorRT names layers by them)
            suffix += 1
            node_name = f"{base}_{suffix}"
        taken.add(node_name)
        graph.nodes.append(gs.Node(OP_TYPE, name=node_name, inputs=[indices], outputs=[out],
                                   attrs={"config": str(written.resolve()), "model": model_name,
                                          "table": name, "dim": table.dim,
                                          "default_value": float(table.default_value),
                                          "plugin_version": PLUGIN_VERSION, "plugin_namespace": PLUGIN_NAMESPACE}))
    graph.cleanup().toposort()
    surgered = gs.export_onnx(graph)
    surgered.ir_version = proto.ir_version
    check(surgered)
    onnx.save(surgered, str(out_path))
    config.save(written)
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
    return TableConfig(name=name, dim=dim, rows=rows, dtype=dtype,
                       store=(f"rocksdb:{os.path.join(store_dir, store_name(model, name))}",),
                       capacity=capacity, policy=policy, keys_are_rows=True)


def check(model: Any) -> None:
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
