"""``embcache-trt``: surgery, build, run, import and demo."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embcache.errors import EmbCacheError


def _surgery(args) -> int:
    from .surgery import surgery

    names = [n for n in args.names.split(",") if n] if args.names else None
    capacity = float(args.capacity) if "." in args.capacity else int(args.capacity)
    report = surgery(args.model, args.output, args.config, model_name=args.model_name, names=names,
                     min_rows=args.min_rows, capacity=capacity, policy=args.policy, progress=not args.no_progress)
    for lk in report.lookups:
        print(f"replaced {lk.node or '(unnamed Gather)'}: table {lk.table} {lk.rows}x{lk.dim} {lk.dtype}, "
              f"{lk.indices_dtype} keys")
    print(f"{len(report.lookups)} lookups, {len(report.tables)} tables exported "
          f"({sum(report.tables.values()):,} rows); {args.model}: {report.bytes_before:,} bytes -> "
          f"{args.output}: {report.bytes_after:,} bytes; config {report.config}")
    return 0


def _load_feeds(path: str) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _run(args) -> int:
    feeds = _load_feeds(args.inputs)
    if args.model.endswith(".onnx"):
        from .ort import SurgeredSession

        session = SurgeredSession(args.model, engine=args.runner, backend=args.backend)
        outputs = dict(zip(session.output_names, session.run(feeds)))
    else:
        from .engine import run_engine

        outputs = run_engine(args.model, feeds)
    for name, value in outputs.items():
        print(f"{name}: shape {value.shape} {value.dtype}, first {np.ravel(value)[:4]}")
    if args.out:
        np.savez(args.out, **outputs)
        print(f"wrote {args.out}")
    return 0


def _build(args) -> int:
    from .engine import build_engine

    path = build_engine(args.model, args.output, fp16=args.fp16, max_batch=args.max_batch)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


def _import(args) -> int:
    from embcache.imports import import_hugectr

    from .config import load_config
    from .tables import open_table_store

    config = load_config(args.config)
    done = 0
    for m in config.models:
        for t in m.tables:
            if t.source is None:
                continue
            store = open_table_store(config, t, create=True)
            try:
                rows = import_hugectr(config.resolve(t.source), store, progress=not args.no_progress)
            finally:
                store.close()
            print(f"{m.name}/{t.name}: {rows:,} rows from {t.source}")
            done += 1
    if not done:
        print("no table names a source (HPS sparse_files) to import")
    return 0


def demo(rows: int | None = None, dim: int = 16, backend: str = "auto", workdir: str | None = None,
         data: str | None = None, progress: bool = True, batch: int = 1024) -> float:
    """The whole chain on the Criteo sample: DLRM as ONNX, surgery, the surgered graph run through
    ONNX Runtime with embcache behind the lookups, compared with the original; returns the max abs diff."""
    import onnx
    import onnxruntime as ort

    from .dlrm import build_dlrm, criteo_inputs
    from .ort import SurgeredSession
    from .plugin import tensorrt_available
    from .surgery import surgery
    from .tables import close_all, table_cache

    with tempfile.TemporaryDirectory(prefix="embcache-trt-") as tmp:
        folder = Path(workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        feeds, table_rows = criteo_inputs(data, rows)
        print(f"Criteo sample: {feeds['dense'].shape[0]:,} rows, 26 tables of {sum(table_rows):,} rows in all, dim {dim}")
        model = build_dlrm(table_rows, dim=dim)
        original = folder / "dlrm.onnx"
        onnx.save(model, str(original))
        report = surgery(original, folder / "dlrm-surgered.onnx", folder / "embcache.json", model_name="dlrm",
                         progress=progress)
        print(f"surgery: {len(report.lookups)} Gathers -> EmbCacheLookup; {report.bytes_before:,} -> "
              f"{report.bytes_after:,} bytes; tables in RocksDB under {folder / 'embcache-tables'}")
        n = feeds["dense"].shape[0]
        batches = [{k: v[i:i + batch] for k, v in feeds.items()} for i in range(0, n, batch)]
        plain = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
        start = time.perf_counter()
        expected = np.concatenate([plain.run(None, f)[0] for f in batches])
        t_orig = time.perf_counter() - start
        session = SurgeredSession(folder / "dlrm-surgered.onnx", backend=backend)
        session.run(batches[0])  # compiles the cache's kernels; the timed pass starts from these caches
        caches = [table_cache(report.config, f"emb_{i}", "dlrm", backend)[0] for i in range(len(table_rows))]
        before = [(c.stats.hits, c.stats.lookups) for c in caches]
        start = time.perf_counter()
        got = np.concatenate([session.run(f)[0] for f in batches])
        t_surg = time.perf_counter() - start
        diff = float(np.abs(got.astype(np.float64) - expected).max())
        hits = sum(c.stats.hits - h for c, (h, _) in zip(caches, before))
        lookups = sum(c.stats.lookups - n for c, (_, n) in zip(caches, before))
        print(f"{len(batches)} batches of {batch} rows. ONNX Runtime, original: {t_orig * 1e3:.1f} ms; surgered, "
              f"embcache behind the lookups ({caches[0].backend} backend, caches of 20% of each table): "
              f"{t_surg * 1e3:.1f} ms; hit rate {hits / lookups:.3f}")
        print(f"max abs difference, surgered vs original: {diff:.3g}")
        if tensorrt_available():
            from .engine import build_engine

            build_engine(folder / "dlrm-surgered.onnx", folder / "dlrm.engine")
            print(f"TensorRT engine: {folder / 'dlrm.engine'}")
        else:
            print("TensorRT is not installed: engine build skipped (embcache-trt build needs it)")
        close_all()
    return diff


def _demo(args) -> int:
    diff = demo(args.rows, args.dim, args.backend, args.workdir, args.data, not args.no_progress, args.batch)
    return 0 if diff <= 1e-6 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embcache-trt", description="embcache lookups inside TensorRT engines")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("surgery", help="replace a model's embedding Gathers with EmbCacheLookup nodes")
    s.add_argument("model", help="the ONNX model")
    s.add_argument("-o", "--output", required=True, help="the surgered ONNX file to write")
    s.add_argument("--config", required=True, help="embcache-trt config (native or HPS ps.json); "
                                                   "written back complete")
    s.add_argument("--model-name", help="the model's name in the config (default: the file's stem)")
    s.add_argument("--names", help="comma-separated Gather or initializer names to replace (default: all)")
    s.add_argument("--min-rows", type=int, default=1, help="leave tables with fewer rows alone (default 1)")
    s.add_argument("--capacity", default="0.2", help="cache size for new tables: a fraction of rows "
                                                     "(with a point) or rows (default 0.2)")
    s.add_argument("--policy", default="lfu", help="eviction policy for new tables (default lfu)")
    s.add_argument("--no-progress", action="store_true")

    b = sub.add_parser("build", help="build a TensorRT engine from a surgered model (needs TensorRT)")
    b.add_argument("model")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--fp16", action="store_true", help="fp16 dense layers")
    b.add_argument("--max-batch", type=int, default=8192)

    r = sub.add_parser("run", help="run a surgered .onnx (ONNX Runtime) or an engine (TensorRT) on a batch")
    r.add_argument("model")
    r.add_argument("--inputs", required=True, help=".npz file: one array per model input")
    r.add_argument("--out", help=".npz file for the outputs")
    r.add_argument("--runner", default="onnxruntime", choices=["onnxruntime", "reference"])
    r.add_argument("--backend", choices=["auto", "cpu", "gpu"], help="override the config's backend")

    i = sub.add_parser("import", help="import the HugeCTR sparse files an HPS config names into its stores")
    i.add_argument("--config", required=True)
    i.add_argument("--no-progress", action="store_true")

    d = sub.add_parser("demo", help="DLRM on the Criteo sample: surgery, run, compare with the original")
    d.add_argument("--rows", type=int, help="Criteo rows to use (default all)")
    d.add_argument("--dim", type=int, default=16)
    d.add_argument("--batch", type=int, default=1024, help="rows per inference (default 1024)")
    d.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    d.add_argument("--workdir", help="keep the files here (default: a temporary folder)")
    d.add_argument("--data", help="data folder holding criteo/ (default $EMBCACHE_DATA)")
    d.add_argument("--no-progress", action="store_true")

    args = parser.parse_args(argv)
    try:
        return {"surgery": _surgery, "build": _build, "run": _run, "import": _import, "demo": _demo}[args.command](args)
    except (EmbCacheError, FileNotFoundError) as e:
        print(f"embcache-trt {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
