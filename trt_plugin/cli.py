"""``embcache-trt``: surgery, build, run, import and demo.

A failure is one line on stderr (``embcache-trt <command>: <what went wrong>``) and exit code 2
(1 for ``demo``'s mismatch; 130 for Ctrl-C); ``--debug`` prints the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from embcache import __version__
from embcache.errors import ConfigError, EmbCacheError, MissingDependencyError

__all__ = ["main", "demo"]

# what each command imports, checked before it starts work (onnxruntime for the default runner)
_NEEDS = {"surgery": ("onnx", "onnx_graphsurgeon"), "demo": ("onnx", "onnx_graphsurgeon", "onnxruntime",
                                                             "onnxruntime_extensions"),
          "run": ("onnx", "onnxruntime", "onnxruntime_extensions"), "import": (), "build": ()}
_PIP_NAMES = {"onnx_graphsurgeon": "onnx-graphsurgeon", "onnxruntime_extensions": "onnxruntime-extensions"}


def _check_extras(args) -> None:
    """Every package the command needs is importable, or one error naming them all and the pip line
    that works from a clone (embcache is not on PyPI)."""
    needs = _NEEDS[args.command]
    if args.command == "run" and (not args.model.endswith(".onnx") or args.runner in ("reference", "torch")):
        needs = ("onnx", "torch") if args.runner == "torch" else ("onnx",)
        needs = needs if args.model.endswith(".onnx") else ()
    missing = []
    for name in needs:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(_PIP_NAMES.get(name, name))
    if missing:
        from embcache._extras import install_hint

        extra = "serve" if missing == ["torch"] else "trt"
        raise MissingDependencyError(f"needs {', '.join(missing)}, not installed: {install_hint(extra)}")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line too (the usage itself is what --help is for)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"embcache-trt: warning: {category.__name__}: {' '.join(str(message).split())}\n"


def _surgery(args) -> int:
    from .surgery import surgery

    names = [n for n in args.names.split(",") if n] if args.names else None
    capacity = float(args.capacity) if "." in args.capacity else int(args.capacity)
    report = surgery(args.model, args.output, args.config, model_name=args.model_name, names=names,
                     min_rows=args.min_rows, capacity=capacity, policy=args.policy, progress=not args.no_progress,
                     strict=args.strict)
    for lk in report.lookups:
        print(f"replaced {lk.node or '(unnamed Gather)'}: table {lk.table} {lk.rows}x{lk.dim} {lk.dtype}, "
              f"{lk.indices_dtype} keys")
    print(f"{len(report.lookups)} lookups, {len(report.tables)} tables exported "
          f"({sum(report.tables.values()):,} rows); {args.model}: {report.bytes_before:,} bytes -> "
          f"{args.output}: {report.bytes_after:,} bytes; config {report.config}")
    for skipped in report.skipped:
        print(f"embcache-trt surgery: warning: {skipped}", file=sys.stderr)
    failing = [sk for sk in report.skipped if not sk.chosen]
    if failing:
        print(f"embcache-trt surgery: warning: {len(failing)} Gather(s) of large float initializers were not "
              "replaced (--strict makes this an error)", file=sys.stderr)
    return 0


def _load_feeds(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise ConfigError(f"inputs file {path} does not exist")
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as e:
        raise ConfigError(f"{path} is not a readable .npz file of inputs: {e}") from None


def _run(args) -> int:
    feeds = _load_feeds(args.inputs)
    if args.model.endswith(".onnx") and args.runner == "torch":
        from .torch_runner import TorchGraphRunner

        runner = TorchGraphRunner(args.model, device={"cpu": "cpu", "gpu": "cuda"}.get(args.backend))
        outputs = {name: value.cpu().numpy() for name, value in zip(runner.output_names, runner.run(feeds))}
    elif args.model.endswith(".onnx"):
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
            store = open_table_store(config, t, create=True, model=m.name)
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

    from .dlrm import build_dlrm
    from .ort import SurgeredSession
    from .plugin import tensorrt_available
    from .surgery import surgery
    from .tables import close_all, table_cache

    with tempfile.TemporaryDirectory(prefix="embcache-trt-") as tmp:
        folder = Path(workdir or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        feeds, table_rows, source = _demo_inputs(data, rows)
        print(f"{source}: {feeds['dense'].shape[0]:,} rows, 26 tables of {sum(table_rows):,} rows in all, dim {dim}")
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


def _demo_inputs(data: str | None, rows: int | None) -> tuple[dict, list[int], str]:
    """The Criteo sample's inputs, or synthetic ones (said so) when no data folder was named and the
    sample is not in the default one.  A named folder must hold the sample."""
    from embcache.traces import criteo_files, data_dir

    from .dlrm import criteo_inputs, synthetic_inputs

    if data is not None and not Path(data).is_dir():
        raise ConfigError(f"--data {data}: no such folder (it should hold criteo/)")
    if data is None and not criteo_files():
        print(f"the Criteo sample is not under {Path(data_dir()) / 'criteo'}: using synthetic Criteo-shaped inputs "
              "(seeded; set EMBCACHE_DATA or pass --data DIR for the folder holding criteo/)", file=sys.stderr)
        feeds, table_rows = synthetic_inputs(rows)
        return feeds, table_rows, "synthetic inputs"
    if not criteo_files(data):
        raise ConfigError(f"--data {data}: no Criteo sample under {Path(data) / 'criteo'}")
    feeds, table_rows = criteo_inputs(data, rows)
    return feeds, table_rows, "Criteo sample"


def _demo(args) -> int:
    diff = demo(args.rows, args.dim, args.backend, args.workdir, args.data, not args.no_progress, args.batch)
    return 0 if diff <= 1e-6 else 1


def main(argv: list[str] | None = None) -> int:
    """Run ``embcache-trt`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = _Parser(prog="embcache-trt", description="embcache lookups inside TensorRT engines")
    parser.add_argument("--version", action="version", version=f"embcache-trt {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure")
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("surgery", help="replace a model's embedding Gathers with EmbCacheLookup nodes")
    s.add_argument("model", help="the ONNX model")
    s.add_argument("-o", "--output", required=True, help="the surgered ONNX file to write")
    s.add_argument("--config", required=True, help="embcache-trt config (native or HPS ps.json); an existing "
                                                   "one is read, never written: the complete native config "
                                                   "goes to <output stem>.embcache.json beside the output")
    s.add_argument("--model-name", help="the model's name in the config (default: the file's stem)")
    s.add_argument("--names", help="comma-separated Gather or initializer names to replace (default: all)")
    s.add_argument("--min-rows", type=int, default=1, help="leave tables with fewer rows alone (default 1)")
    s.add_argument("--capacity", default="0.2", help="cache size for new tables: a fraction of rows "
                                                     "(with a point) or rows (default 0.2)")
    s.add_argument("--policy", default="lfu", help="eviction policy for new tables (default lfu)")
    s.add_argument("--strict", action="store_true", help="fail, writing nothing, if a Gather of a float "
                                                         "initializer of --min-rows rows or more would stay "
                                                         "(e.g. inside a Loop body)")
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
    r.add_argument("--runner", default="onnxruntime", choices=["onnxruntime", "reference", "torch"],
                   help="torch: the dense layers in PyTorch (the serve extra), on the GPU where PyTorch sees "
                        "one, unless --backend cpu")
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

    for p in sub.choices.values():  # --debug after the command too
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of a failure")
    args = parser.parse_args(argv)
    command = {"surgery": _surgery, "build": _build, "run": _run, "import": _import, "demo": _demo}[args.command]
    formatwarning = warnings.formatwarning
    if not args.debug:
        warnings.formatwarning = _one_line_warning  # a warning is one line too
    try:
        _check_extras(args)
        return command(args)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"embcache-trt {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure is one line unless --debug
        if args.debug:
            traceback.print_exc()
        else:
            print(f"embcache-trt {args.command}: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatwarning


def _one_line(e: BaseException) -> str:
    """The error as one line: EmbCacheErrors (and missing files) by their message, anything else by
    its type too, with the hint to rerun with --debug."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, (EmbCacheError, FileNotFoundError)):
        return text
    return f"{type(e).__name__}: {text} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
