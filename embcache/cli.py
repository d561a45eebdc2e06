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

    store = open_store(args.to, args.dim, args.dtype, password=args.password, namespace=args.namespace)
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
    upd.add_argument("--group", default="embcache")
    upd.add_argument("--consumer", default="consumer-1", help="this consumer's stable name")
    _store_args(upd, "--store")
    upd.add_argument("--store-password", default=None, help="AUTH password of a Redis store")
    upd.add_argument("--max-messages", type=int, default=None, help="stop after this many (default: run forever)")
    upd.add_argument("--idle-polls", type=int, default=None, help="stop after this many empty 1 s polls in a row")
    upd.set_defaults(func=_serve_updates)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
