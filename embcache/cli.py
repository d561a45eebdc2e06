"""The ``embcache`` command."""
from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args) -> int:
    from .demo import format_table, load_trace, run_demo

    trace, source = load_trace(args.data)
    print(f"trace: {source}: {trace.shape[0]:,} lookups, batches of {args.batch}", flush=True)
    rows, backend = run_demo(trace, dim=args.dim, batch=args.batch, backend=args.backend, seed=args.seed,
                             progress=not args.no_progress, store_path=args.store)
    why = "" if backend == "gpu" else " (no GPU backend available)" if args.backend == "auto" else ""
    table = "host memory" if args.store == "memory" else f"RocksDB at {args.store or 'a temporary folder'}"
    print(f"backend: {backend}{why}; rows: dim {args.dim} float32, table in {table}; set-associative, 32 ways")
    print(format_table(rows))
    return 0


def _autotune(args) -> int:
    from .autotune import DEFAULT_TABLE, autotune

    autotune(args.table_gib, args.batch, args.repeat, write=None if args.dry_run else (args.table or DEFAULT_TABLE),
             progress=not args.no_progress)
    return 0


def _import(args) -> int:
    from . import imports
    from .tiers import open_store

    store = open_store(args.to, args.dim, args.dtype, password=args.password, namespace=args.namespace,
                       create=True)
    report = (lambda done: print(f"committed {done}", flush=True)) if args.report_chunks else None
    common = dict(chunk_rows=args.chunk_rows, progress=not args.no_progress, on_chunk=report)
    try:
        if args.format == "hugectr":
            n = imports.import_hugectr(args.source[0], store, **common)
        elif args.format == "npy":
            if len(args.source) != 2:
                raise SystemExit("embcache import npy needs two files: KEYS.npy ROWS.npy")
            n = imports.import_npy(args.source[0], args.source[1], store, **common)
        else:
            if not args.initializer:
                raise SystemExit("embcache import onnx needs --initializer NAME")
            n = imports.import_onnx(args.source[0], args.initializer, store, key_offset=args.key_offset, **common)
    finally:
        store.close()
    print(f"imported {n:,} rows into {args.to}")
    return 0


def _serve_updates(args) -> int:
    from .tiers import open_store
    from .updates import UpdateConsumer

    store = open_store(args.store, args.dim, args.dtype, password=args.store_password, namespace=args.namespace)
    try:
        consumer = UpdateConsumer(args.redis, args.stream, args.group, args.consumer, store=store,
                                  password=args.password)
        consumer.run(max_messages=args.max_messages, idle_polls=args.idle_polls, progress=not args.no_progress)
        print(f"applied {consumer.applied} update batches, rejected {consumer.rejected} (see {args.stream}:dead)")
    finally:
        store.close()
    return 0


def _list(text: str, kind=str) -> list:
    return [kind(x) for x in text.split(",") if x]


def _number(text: str):
    value = float(text)
    return value if value <= 1.0 and "." in text else int(value)


def _study(args) -> int:
    from .study import load_trace_source, plot_results, run_study, write_results

    chunks, source = load_trace_source(args.trace, args.data)
    print(f"trace: {source}", flush=True)
    rows = run_study(chunks, _list(args.policies), _list(args.admissions), _list(args.capacities, _number),
                     _list(args.ways, int), args.batch, args.backend, belady=not args.no_belady,
                     static_warmup=args.static_warmup, progress=not args.no_progress)
    csv_path, _ = write_results(rows, args.out, args.name)
    pictures = plot_results(rows, args.out, args.name, title=source)
    print(f"{'policy':<14}{'admission':<16}{'ways':>6}{'capacity':>10}{'hit rate':>10}{'lookups/s':>14}")
    for r in rows:
        print(f"{r['policy']:<14}{str(r['admission'])[:15]:<16}{r['ways']:>6}{r['capacity']:>10,}{r['hit_rate']:>10.3f}"
              f"{r['lookups_per_s']:>14,.0f}")
    print(f"wrote {csv_path} (+ .json) and {', '.join(map(str, pictures))}")
    return 0


def _trace(args) -> int:
    import json

    import numpy as np

    from . import traces
    from .study import load_trace_source

    if args.action == "describe":
        chunks, source = load_trace_source(args.source, args.data)
        print(f"trace: {source}")
        print(json.dumps(traces.describe(np.concatenate(list(chunks))), indent=1))
        return 0
    if args.action == "fit":
        model = traces.fit_trace(np.concatenate(list(load_trace_source(args.source, args.data)[0])))
        print(model.to_json() if args.json else "\n".join(
            f"C{c.column + 1:<3} share {c.share:.3f}  keys {c.cardinality:>7,}  zipf s {c.exponent:.3f}  KS {c.ks:.3f}"
            for c in model.columns) + f"\nlookup-weighted KS distance: {model.ks:.3f}")
        return 0
    chunks, source = load_trace_source(args.source, args.data)
    n = traces.write_trace(chunks, args.out, source=source, progress=not args.no_progress)
    print(f"wrote {n:,} lookups to {args.out}")
    return 0


def _store_args(parser, flag: str) -> None:
    parser.add_argument(flag, required=True,
                        help="store: rocksdb:PATH (or a path), redis://host:port/db, redis-cluster://host:port,...")
    parser.add_argument("--dim", type=int, required=True, help="values per row")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--namespace", default="embcache", help="Redis key prefix (default embcache)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="embcache", description="GPU/CPU embedding caches with pluggable policies.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="replay the Criteo sample through LRU/LFU/FIFO caches of 1%%, 5%%, 20%%")
    demo.add_argument("--data", default=None, help="data folder holding criteo/ (default: $EMBCACHE_DATA or ../shared/data)")
    demo.add_argument("--dim", type=int, default=32, help="values per row (default 32)")
    demo.add_argument("--batch", type=int, default=1024, help="keys per lookup batch (default 1024)")
    demo.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    demo.add_argument("--seed", type=int, default=0, help="seed of the random rows")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--store", default=None,
                      help="RocksDB folder for the table (default: a temporary one); 'memory' for a HostStore")
    demo.set_defaults(func=_demo)
    tune = sub.add_parser("autotune", help="time the GPU hit path's launch shapes here and write this GPU's tuning entry")
    tune.add_argument("--table", default=None, help="tuning table to update (default: the one shipped in the package)")
    tune.add_argument("--table-gib", type=float, default=2.0, help="row array size to gather from, GiB (default 2)")
    tune.add_argument("--batch", type=int, default=1 << 20, help="keys a timed lookup (default 1048576)")
    tune.add_argument("--repeat", type=int, default=10, help="timed runs per shape (default 10)")
    tune.add_argument("--dry-run", action="store_true", help="print the timings, write nothing")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.set_defaults(func=_autotune)
    imp = sub.add_parser("import", help="import a table into a store (chunked, with a progress bar)")
    imp.add_argument("format", choices=["hugectr", "npy", "onnx"])
    imp.add_argument("source", nargs="+", help="hugectr: FOLDER; npy: KEYS.npy ROWS.npy; onnx: MODEL.onnx")
    _store_args(imp, "--to")
    imp.add_argument("--password", default=None, help="Redis AUTH password")
    imp.add_argument("--initializer", default=None, help="onnx: the initializer holding the table")
    imp.add_argument("--key-offset", type=int, default=0, help="onnx: key of row 0 (default 0)")
    imp.add_argument("--chunk-rows", type=int, default=1 << 16, help="rows per atomic write (default 65536)")
    imp.add_argument("--report-chunks", action="store_true", help="print 'committed N' after each durable chunk")
    imp.set_defaults(func=_import)
    upd = sub.add_parser("serve-updates", help="apply update batches from a Redis Stream to a store")
    upd.add_argument("--redis", required=True, help="redis://host:port/db holding the stream")
    upd.add_argument("--password", default=None, help="AUTH password of the stream's server")
    upd.add_argument("--stream", required=True)
    upd.add_argument("--group", default=None,
                     help="consumer group; default one of this server's own, embcache:HOST:HASH-OF-STORE, so that "
                          "every server sees every update (servers sharing a group split the updates)")
    upd.add_argument("--consumer", default=None, help="this consumer's stable name (default the host name)")
    _store_args(upd, "--store")
    upd.add_argument("--store-password", default=None, help="AUTH password of a Redis store")
    upd.add_argument("--max-messages", type=int, default=None, help="stop after this many (default: run forever)")
    upd.add_argument("--idle-polls", type=int, default=None, help="stop after this many empty 1 s polls in a row")
    upd.set_defaults(func=_serve_updates)
    study = sub.add_parser("study", help="compare policies on a trace: hit rates beside Belady, CSV/JSON and plots")
    study.add_argument("--trace", default="criteo",
                       help="criteo (the sample), a trace folder, or synthetic:LOOKUPS[:SEED] (default criteo)")
    study.add_argument("--data", default=None, help="data folder holding criteo/ (default $EMBCACHE_DATA)")
    study.add_argument("--policies", default="lru,lfu,fifo", help="comma-separated (default lru,lfu,fifo)")
    study.add_argument("--admissions", default="always,min_frequency", help="comma-separated")
    study.add_argument("--capacities", default="0.005,0.01,0.02,0.05,0.1,0.2",
                       help="fractions of the distinct keys (0.05) or row counts (4096), comma-separated")
    study.add_argument("--ways", default="32", help="comma-separated set sizes (default 32)")
    study.add_argument("--batch", type=int, default=1024, help="keys per lookup (default 1024)")
    study.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    study.add_argument("--static-warmup", type=float, default=0.1,
                       help="static policy: preload each set's most frequent keys of this leading fraction "
                            "of the trace (default 0.1)")
    study.add_argument("--no-belady", action="store_true", help="skip Belady's MIN (it needs the trace in memory)")
    study.add_argument("--out", default="study-results", help="folder for CSV, JSON, PNG and SVG")
    study.add_argument("--name", default="study", help="file name stem (default study)")
    study.add_argument("--no-progress", action="store_true", help="no progress bar")
    study.set_defaults(func=_study)
    trace = sub.add_parser("trace", help="convert, fit or describe a trace")
    trace.add_argument("action", choices=["convert", "describe", "fit"])
    trace.add_argument("source", help="criteo, a trace folder, or synthetic:LOOKUPS[:SEED]")
    trace.add_argument("--out", help="convert: the trace folder to write (.npy chunks + meta.json)")
    trace.add_argument("--data", default=None, help="data folder holding criteo/")
    trace.add_argument("--json", action="store_true", help="fit: print the model as JSON")
    trace.add_argument("--no-progress", action="store_true", help="no progress bar")
    trace.set_defaults(func=_trace)
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "convert" and not args.out:
        parser.error("embcache trace convert needs --out FOLDER")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
