"""A DLRM-style model as ONNX, and its inputs from the Criteo sample.

26 categorical tables (one per Criteo column C1..C26, sized from the sample), 13 dense features,
a bottom MLP, DLRM's pairwise dot-product interaction and a top MLP with a sigmoid; weights are
drawn from a seed.  The graph's embedding lookups are plain ``Gather`` nodes on initializers, as
exporters emit them, ready for :func:`trt_plugin.surgery.surgery`.  Its interaction step also has
a ``Gather`` that is not an embedding lookup (axis 1 of a computed tensor), which surgery must
leave alone.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from embcache.traces import CRITEO_COLUMNS, criteo_files

__all__ = ["DENSE_FEATURES", "build_dlrm", "read_criteo_rows", "criteo_vocabularies", "criteo_inputs",
           "synthetic_inputs"]

DENSE_FEATURES = 13


def read_criteo_rows(paths: Sequence[str | os.PathLike], limit: int | None = None
                     ) -> tuple[np.ndarray, list[list[str]]]:
    """Dense features (n, 13) float32 (missing = 0) and the 26 categorical fields of each row
    ('' = missing), from Criteo TSV files of either format (train rows carry a label first)."""
    dense, cats = [], []
    for path in paths:
        with open(path) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                ints = fields[-CRITEO_COLUMNS - DENSE_FEATURES:-CRITEO_COLUMNS]
                dense.append([float(v) if v else 0.0 for v in ints])
                cats.append(fields[-CRITEO_COLUMNS:])
                if limit is not None and len(cats) >= limit:
                    return np.asarray(dense, np.float32), cats
    return np.asarray(dense, np.float32), cats


def criteo_vocabularies(cats: list[list[str]]) -> list[dict[str, int]]:
    """Per column, each value seen -> a row number from 1 (row 0 is for missing or unseen values)."""
    vocab: list[dict[str, int]] = [{} for _ in range(CRITEO_COLUMNS)]
    for row in cats:
        for c, v in enumerate(row):
            if v and v not in vocab[c]:
                vocab[c][v] = len(vocab[c]) + 1
    return vocab


def criteo_inputs(data_root: str | os.PathLike | None = None, limit: int | None = None
                  ) -> tuple[dict[str, np.ndarray], list[int]]:
    """The model's inputs for the Criteo sample's rows and the 26 table sizes (rows) they imply.

    ``dense`` is log(1 + max(x, 0)), as DLRM preprocesses it; ``categorical`` holds row numbers.
    """
    files = criteo_files(data_root)
    if not files:
        raise FileNotFoundError("the Criteo sample is not there: set EMBCACHE_DATA to the folder holding criteo/")
    dense, cats = read_criteo_rows(files, limit)
    vocab = criteo_vocabularies(cats)
    ids = np.array([[vocab[c].get(v, 0) for c, v in enumerate(row)] for row in cats], np.int64)
    feeds = {"dense": np.log1p(np.maximum(dense, 0)).astype(np.float32), "categorical": ids}
    return feeds, [len(v) + 1 for v in vocab]


def synthetic_inputs(rows: int | None = None, seed: int = 0) -> tuple[dict[str, np.ndarray], list[int]]:
    """Criteo-shaped inputs drawn from ``seed``, for when the sample is absent: ``rows`` samples
    (default 20,000, the sample's size), 26 tables of 4 to 10,000 rows, row numbers from a Zipf law
    (a few hot rows, a long tail, as Criteo's columns), dense features log(1 + lognormal)."""
    rows = 20_000 if rows is None else int(rows)
    rng = np.random.default_rng(seed)
    table_rows = [int(n) for n in np.geomspace(4, 10_000, CRITEO_COLUMNS)]
    ids = np.stack([(rng.zipf(1.2, rows) - 1) % n for n in table_rows], axis=1).astype(np.int64)
    dense = np.log1p(rng.lognormal(1.0, 1.5, (rows, DENSE_FEATURES))).astype(np.float32)
    return {"dense": dense, "categorical": ids}, table_rows


def build_dlrm(table_rows: Sequence[int], dim: int = 16, bottom: Sequence[int] = (64, 32),
               top: Sequence[int] = (64, 32), seed: int = 0, offsets: bool = False,
               lookup: tuple[str, str] | None = None) -> Any:
    """The ONNX model: inputs ``dense`` (B, 13) float32 and ``categorical`` (B, 26) int64 row numbers;
    output ``probability`` (B, 1).

    With ``offsets``, the 26 tables are one concatenated table read through ``Add(categorical,
    offsets)`` and a single Gather, as HugeCTR's DLRM and many exporters lay it out.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .fields import new_model

    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    tables = len(table_rows)

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def mlp(x, fan_in, widths, prefix, last_relu=True):
        for i, width in enumerate(widths):
            w = const(f"{prefix}{i}.w", (rng.standard_normal((fan_in, width)) / np.sqrt(fan_in)).astype(np.float32))
            b = const(f"{prefix}{i}.b", (rng.standard_normal(width) * 0.01).astype(np.float32))
            nodes.append(helper.make_node("MatMul", [x, w], [f"{prefix}{i}.mm"]))
            nodes.append(helper.make_node("Add", [f"{prefix}{i}.mm", b], [f"{prefix}{i}.lin"]))
            x = f"{prefix}{i}.lin"
            if last_relu or i < len(widths) - 1:
                nodes.append(helper.make_node("Relu", [x], [f"{prefix}{i}.out"]))
                x = f"{prefix}{i}.out"
            fan_in = width
        return x

    bottom_out = mlp("dense", DENSE_FEATURES, list(bottom) + [dim], "bottom.")
    nodes.append(helper.make_node("Unsqueeze", [bottom_out, const("axis1", np.array([1], np.int64))], ["bottom.u"]))
    scale = 0.05
    if lookup is not None and not offsets:
        raise ValueError("lookup= needs offsets=True (one concatenated table)")
    if offsets:
        starts = np.concatenate([[0], np.cumsum(table_rows)[:-1]]).astype(np.int64)
        nodes.append(helper.make_node("Add", ["categorical", const("offsets", starts)], ["categorical.global"]))
        if lookup is None:
            big = (rng.uniform(-scale, scale, (int(sum(table_rows)), dim))).astype(np.float32)
            nodes.append(helper.make_node("Gather", [const("embeddings", big), "categorical.global"], ["emb.all"],
                                          name="embedding_lookup", axis=0))
        else:
            from .fields import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

            nodes.append(helper.make_node(OP_TYPE, ["categorical.global"], ["emb.all"], name="embedding_lookup",
                                          config=lookup[0], table=lookup[1], model="dlrm", dim=dim,
                                          default_value=0.0, plugin_version=PLUGIN_VERSION,
                                          plugin_namespace=PLUGIN_NAMESPACE))
        emb = ["emb.all"]
    else:
        split = const("split", np.ones(tables, np.int64))
        cols = [f"categorical.{i}" for i in range(tables)]
        nodes.append(helper.make_node("Split", ["categorical", split], cols, axis=1))
        emb = []
        for i, rows in enumerate(table_rows):
            table = const(f"emb_{i}", rng.uniform(-scale, scale, (int(rows), dim)).astype(np.float32))
            nodes.append(helper.make_node("Gather", [table, cols[i]], [f"emb.{i}"], name=f"lookup_{i}", axis=0))
            emb.append(f"emb.{i}")
    nodes.append(helper.make_node("Concat", ["bottom.u"] + emb, ["features"], axis=1))  # (B, 27, dim)
    nodes.append(helper.make_node("Transpose", ["features"], ["features.t"], perm=[0, 2, 1]))
    nodes.append(helper.make_node("MatMul", ["features", "features.t"], ["dots"]))  # (B, 27, 27)
    f = tables + 1
    nodes.append(helper.make_node("Reshape", ["dots", const("flat", np.array([-1, f * f], np.int64))], ["dots.flat"]))
    lower = np.array([i * f + j for i in range(f) for j in range(i)], np.int64)
    nodes.append(helper.make_node("Gather", ["dots.flat", const("pairs", lower)], ["interactions"], axis=1))
    nodes.append(helper.make_node("Concat", [bottom_out, "interactions"], ["top.in"], axis=1))
    logit = mlp("top.in", dim + lower.shape[0], list(top) + [1], "top.", last_relu=False)
    nodes.append(helper.make_node("Sigmoid", [logit], ["probability"]))
    graph = helper.make_graph(
        nodes, "dlrm",
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", DENSE_FEATURES]),
         helper.make_tensor_value_info("categorical", TensorProto.INT64, ["batch", tables])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1])], inits)
    model = new_model(graph)
    if lookup is None:
        onnx.checker.check_model(model)
    else:
        from .surgery import check

        check(model)
    return model
