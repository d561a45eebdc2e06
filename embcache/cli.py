"""The ``embcache`` command.

Failures are one line on stderr, ``embcache: error: <what was wrong and what to do>``, and exit status
2 when the command line or its input is wrong (a bad argument, a missing file, a missing optional
dependency) or 1 when an operation failed while running (a store or Redis server failed).  ``--debug``
(or ``EMBCACHE_DEBUG=1``) shows the traceback instead.  Optional dependencies a command needs are
checked before it starts work.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def _note(text: str) -> None:
    print(f"embcache: note: {text}", file=sys.stderr, flush=True)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _is_redis_error(exc: BaseException) -> bool:
    return any(t.__module__.split(".")[0] == "redis" for t in type(exc).__mro__)


def _exit_status(exc: BaseException) -> tuple[int, str]:
    """(status, message) for an exception that ends a command."""
    from .errors import EmbCacheError, TierError

    if isinstance(exc, TierError):
        return 1, _one_line(exc)
    if isinstance(exc, EmbCacheError):
        return 2, _one_line(exc)
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return 2, _one_line(exc)
    if _is_redis_error(exc):  # a client error the store or consumer did not wrap: the server is unreachable
        return 1, f"Redis: {type(exc).__name__}: {_one_line(exc)}"
    if isinstance(exc, OSError):
        return 1, _one_line(exc)
    return 1, (f"internal error, {type(exc).__name__}: {_one_line(exc)} (run again with --debug for the "
               "traceback, and please report it)")


def _redacted(spec: str) -> str:
    """A store spec fit to print: its password (``redis://user:secret@host``) becomes ``***``."""
    from .tiers.redis_store import redact

    return redact(spec)


def _store_module(spec: str) -> str:
    return "redis" if spec.split(":", 1)[0].lower().startswith("redis") else "rocksdict"


def _check_extras(args) -> None:
    """Import every optional module the command will need, before it does any work."""
    from ._extras import require_module

    needs: list[tuple[str, str]] = []
    if args.command == "demo" and args.store != "memory":
        needs.append(("rocksdict", "embcache demo keeps its table in RocksDB with it (--store memory does without)"))
    elif args.command == "import":
        needs.append((_store_module(args.to), f"the store {_redacted(args.to)!r} is opened with it"))
        if args.format == "onnx":
            needs.append(("onnx", "embcache import onnx reads the model with it"))
    elif args.command == "serve-updates":
        needs.append(("redis", "embcache serve-updates reads its Redis Stream with it"))
        needs.append((_store_module(args.store), f"the store {_redacted(args.store)!r} is opened with it"))
    elif args.command == "study" and not args.no_plot:
        needs.append(("matplotlib", "embcache study draws its plots with it (--no-plot skips them)"))
    if args.command == "autotune":
        needs.append(("cupy", "embcache autotune times the GPU kernels with it"))
    elif getattr(args, "backend", None) == "gpu":
        needs.append(("cupy", f"embcache {args.command} --backend gpu runs its caches with it (--backend cpu "
                              "does without)"))
    for module, why in dict(needs).items():
        require_module(module, why)


def _demo(args) -> int:
    from .demo import format_table, load_trace, run_demo

    trace, source = load_trace(args.data, notify=_note)
    count = f"{trace.shape[0]:,} lookups"
    # a synthetic trace's description already gives its length
    print(f"trace: {source}{'' if count in source else ': ' + count}, batches of {args.batch}", flush=True)
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
    from .errors import ConfigError
    from .tiers import open_store

    # arguments first: a wrong command line must not leave a new, empty store behind
    if args.format == "npy" and len(args.source) != 2:
        raise ConfigError("embcache import npy needs two files: KEYS.npy ROWS.npy")
    if args.format == "onnx" and not args.initializer:
        raise ConfigError("embcache import onnx needs --initializer NAME")
    if args.format != "npy" and len(args.source) != 1:
        raise ConfigError(f"embcache import {args.format} takes one source, got {len(args.source)}")

    store = open_store(args.to, args.dim, args.dtype, password=args.password, namespace=args.namespace,
                       create=True)
    report = (lambda done: print(f"committed {done}", flush=True)) if args.report_chunks else None
    common = dict(chunk_rows=args.chunk_rows, progress=not args.no_progress, on_chunk=report)
    try:
        if args.format == "hugectr":
            n = imports.import_hugectr(args.source[0], store, **common)
        elif args.format == "npy":
            n = imports.import_npy(args.source[0], args.source[1], store, **common)
        else:
            n = imports.import_onnx(args.source[0], args.initializer, store, key_offset=args.key_offset, **common)
    finally:
        store.close()
    print(f"imported {n:,} rows into {_redacted(args.to)}")
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


def _list(text: str, kind=str, what: str = "values") -> list:
    from .errors import ConfigError

    try:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"{text!r}: expected a comma-separated list of {what}") from None
    if not items:
        raise ConfigError(f"{text!r}: expected a comma-separated list of {what}, got none")
    return items


def _number(text: str):
    """A capacity: a fraction in (0, 1] written with a point (0.05), or a row count (4096)."""
    from .errors import ConfigError

    value = float(text)
    if "." in text and 0.0 < value <= 1.0:
        return value
    if value != int(value) or value < 1:
        raise ConfigError(f"capacity {text!r}: a fraction in (0, 1] written with a point (0.05) or a whole "
                          "number of rows >= 1 (4096)")
    return int(value)


def _out_folder(out: str | None, prefix: str):
    """``--out``, or a new temporary folder (kept: it holds the results) when none was named."""
    import pathlib
    import tempfile

    if out is not None:
        return pathlib.Path(out)
    return pathlib.Path(tempfile.mkdtemp(prefix=prefix))


def _study(args) -> int:
    from .study import lookahead_gains, load_trace_source, plot_results, run_study, skipped_notes, write_results

    policies, admissions = _list(args.policies, what="policy names"), _list(args.admissions, what="admission names")
    capacities, ways = _list(args.capacities, _number, "capacities"), _list(args.ways, int, "way counts")
    windows = _list(args.lookahead, int, "lookahead windows (batches)")
    chunks, source = load_trace_source(args.trace, args.data, notify=_note)
    out = _out_folder(args.out, "embcache-study-")
    print(f"trace: {source}", flush=True)
    rows = run_study(chunks, policies, admissions, capacities, ways, args.batch, args.backend,
                     belady=not args.no_belady, static_warmup=args.static_warmup, progress=not args.no_progress,
                     lookahead=windows)
    notes = skipped_notes(policies, admissions, windows)
    csv_path, _ = write_results(rows, out, args.name)
    pictures = [] if args.no_plot else plot_results(rows, out, args.name, title=source, notes=notes)
    ahead = any(w > 0 for w in windows)  # the column only when a window was asked for
    print(f"{'policy':<14}{'admission':<16}{'ways':>6}{'asked':>10}{'capacity':>10}{'hit rate':>10}{'lookups/s':>14}"
          f"{'hit writes':>12}" + (f"{'lookahead':>11}" if ahead else ""))
    for r in rows:
        print(f"{r['policy']:<14}{str(r['admission'])[:15]:<16}{r['ways']:>6}{r['capacity_asked']:>10,}"
              f"{r['capacity']:>10,}{r['hit_rate']:>10.3f}{r['lookups_per_s']:>14,.0f}{r['hit_writes']:>12.3f}"
              + (f"{r['lookahead']:>11}" if ahead else ""))
    for g in lookahead_gains(rows):
        print(f"lookahead {g['lookahead']:>3} batches of {g['batch']}: {g['policy']} + {g['admission']}, "
              f"{g['ways']} ways, capacity {g['capacity']:,}: {g['base']:.4f} -> {g['hit_rate']:.4f} "
              f"({g['gain']:+.4f})")
    print("capacity: the cache's slots, num_sets * ways (the rows asked for, rounded up to whole sets)")
    print("hit writes: the share of hits that stored a score (a hit that leaves its score as it was stores "
          "nothing; counted on the CPU backend, nan elsewhere)")
    for note in notes:
        print(note)
    print(f"wrote {csv_path} (+ .json){''.join(', ' + str(p) for p in pictures)}")
    return 0


def _key_file_options(args) -> dict:
    from .errors import ConfigError

    options = {}
    if args.columns:
        columns: list[int] = []
        for part in args.columns.split(","):
            try:
                lo, _, hi = part.partition("-")
                columns += range(int(lo), int(hi or lo) + 1)
            except ValueError:
                raise ConfigError(f"--columns {args.columns!r}: field numbers from 1, e.g. 15-40 or 2,5,7") from None
        options["columns"] = columns
    if args.sep is not None:
        options["sep"] = "\t" if args.sep in ("\\t", "tab") else args.sep
    if args.values is not None:
        options["values"] = args.values
    if args.header:
        options["header"] = True
    return options


def _trace(args) -> int:
    import json
    import pathlib

    import numpy as np

    from . import traces
    from .errors import ConfigError
    from .study import load_trace_source

    options = _key_file_options(args)
    if options and args.action != "convert" and args.source and not pathlib.Path(args.source).is_file():
        raise ConfigError("--columns/--sep/--values/--header describe a text file of keys")
    chunks, source = load_trace_source(args.source, args.data, notify=_note, **options)
    if args.action == "describe":
        parts = [np.asarray(c) for c in chunks]
        d = traces.describe(np.concatenate(parts) if parts else np.empty(0, np.int64))
        print(f"trace: {source}")
        if args.json:
            print(json.dumps(d, indent=1))
            return 0
        print(f"lookups {d['lookups']:,}, distinct keys {d['distinct']:,}, first lookups (cold) {d['cold']:,}")
        print(f"top 1% of keys take {d['top1_share']:.1%} of lookups, top 10% take {d['top10_share']:.1%}")
        print("reuse distance (distinct keys since the key's last lookup): reuses")
        reuses = max(1, d["lookups"] - d["cold"])
        for label, count in zip(d["reuse_bins"], d["reuse_histogram"]):
            print(f"  {label:>15}  {count:>12,}  {count / reuses:6.1%}")
        return 0
    if args.action == "fit":
        parts = [np.asarray(c) for c in chunks]
        model = traces.fit_trace(np.concatenate(parts) if parts else np.empty(0, np.int64))
        print(model.to_json() if args.json else "\n".join(
            f"C{c.column + 1:<3} share {c.share:.3f}  keys {c.cardinality:>7,}  zipf s {c.exponent:.3f}  KS {c.ks:.3f}"
            for c in model.columns) + f"\nlookup-weighted KS distance: {model.ks:.3f}")
        return 0
    if pathlib.Path(args.source).resolve() == pathlib.Path(args.out).resolve():
        raise ConfigError(f"--out {args.out} is the trace being converted; write to another folder")
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


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong command line reported in one line (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"embcache: error: {message} (see {self.prog} --help)\n")


_DATA_HELP = "data folder holding criteo/ (default: $EMBCACHE_DATA, else shared/data beside the clone)"


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .policies import admission_names, policy_names

    debug = _Parser(add_help=False)
    # SUPPRESS: a subcommand's --debug sets the flag, its absence leaves the top level's alone
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of a failure (also EMBCACHE_DEBUG=1)")
    parser = _Parser(prog="embcache", description="GPU/CPU embedding caches with pluggable policies.")
    parser.add_argument("--version", action="version", version=f"embcache {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure (also EMBCACHE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[debug], **kwargs)

    demo = add_parser("demo", help="replay the Criteo sample (or a synthetic stand-in) through LRU/LFU/FIFO "
                                       "caches of 1%%, 5%%, 20%%")
    demo.add_argument("--data", default=None, help=_DATA_HELP)
    demo.add_argument("--dim", type=int, default=32, help="values per row (default 32)")
    demo.add_argument("--batch", type=int, default=1024, help="keys per lookup batch (default 1024)")
    demo.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    demo.add_argument("--seed", type=int, default=0, help="seed of the random rows")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--store", default=None,
                      help="RocksDB folder for the table (default: a temporary one); 'memory' for a HostStore")
    demo.set_defaults(func=_demo)
    tune = add_parser("autotune", help="time the GPU hit path's launch shapes here and write this GPU's tuning entry")
    tune.add_argument("--table", default=None, help="tuning table to update (default: the one shipped in the package)")
    tune.add_argument("--table-gib", type=float, default=2.0, help="row array size to gather from, GiB (default 2)")
    tune.add_argument("--batch", type=int, default=1 << 20, help="keys a timed lookup (default 1048576)")
    tune.add_argument("--repeat", type=int, default=10, help="timed runs per shape (default 10)")
    tune.add_argument("--dry-run", action="store_true", help="print the timings, write nothing")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.set_defaults(func=_autotune)
    imp = add_parser("import", help="import a table into a store (chunked, with a progress bar)")
    imp.add_argument("format", choices=["hugectr", "npy", "onnx"])
    imp.add_argument("source", nargs="+", help="hugectr: FOLDER; npy: KEYS.npy ROWS.npy; onnx: MODEL.onnx")
    _store_args(imp, "--to")
    imp.add_argument("--password", default=None, help="Redis AUTH password")
    imp.add_argument("--initializer", default=None, help="onnx: the initializer holding the table")
    imp.add_argument("--key-offset", type=int, default=0, help="onnx: key of row 0 (default 0)")
    imp.add_argument("--chunk-rows", type=int, default=1 << 16, help="rows per atomic write (default 65536)")
    imp.add_argument("--report-chunks", action="store_true", help="print 'committed N' after each durable chunk")
    imp.set_defaults(func=_import)
    upd = add_parser("serve-updates", help="apply update batches from a Redis Stream to a store")
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
    study = add_parser("study", help="compare policies on a trace: hit rates beside Belady, CSV/JSON and plots")
    study.add_argument("--trace", default=None,
                       help="criteo (the sample), synthetic:LOOKUPS[:SEED[:SCALE]], "
                            "drift:LOOKUPS[:KEYS[:INTERVAL[:FRACTION[:EXPONENT[:SEED]]]]] (Zipf, its ranking partly "
                            "reshuffled every INTERVAL lookups), a trace folder, or a key file (.npy, text); "
                            "default: the sample, else synthetic:460760 (with a note)")
    study.add_argument("--data", default=None, help=_DATA_HELP)
    study.add_argument("--policies", default="lru,lfu,fifo",
                       help=f"comma-separated: {', '.join(policy_names())}, or a user policy's import path "
                            "module:Class (default lru,lfu,fifo)")
    study.add_argument("--admissions", default="always,min_frequency",
                       help=f"comma-separated: {', '.join(admission_names())}, or module:Class "
                            "(default always,min_frequency)")
    study.add_argument("--capacities", default="0.005,0.01,0.02,0.05,0.1,0.2",
                       help="fractions of the distinct keys (0.05) or row counts (4096), comma-separated")
    study.add_argument("--ways", default="32", help="comma-separated set sizes (default 32)")
    study.add_argument("--batch", type=int, default=1024, help="keys per lookup (default 1024)")
    study.add_argument("--lookahead", default="0",
                       help="comma-separated lookahead windows in batches: each lookup is given the keys of the next "
                            "W batches as upcoming= (eviction spares them); 0 = none (default 0)")
    study.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu"])
    study.add_argument("--static-warmup", type=float, default=0.1,
                       help="static policy: preload each set's most frequent keys of this leading fraction "
                            "of the trace (default 0.1)")
    study.add_argument("--no-belady", action="store_true", help="skip Belady's MIN (it needs the trace in memory)")
    study.add_argument("--out", default=None,
                       help="folder for CSV, JSON, PNG and SVG (default: a new temporary folder, printed)")
    study.add_argument("--no-plot", action="store_true", help="CSV and JSON only (no matplotlib needed)")
    study.add_argument("--name", default="study", help="file name stem (default study)")
    study.add_argument("--no-progress", action="store_true", help="no progress bar")
    study.set_defaults(func=_study)
    trace = add_parser("trace", help="convert, fit or describe a trace")
    trace.add_argument("action", choices=["convert", "describe", "fit"])
    trace.add_argument("source", help="criteo, synthetic:LOOKUPS[:SEED[:SCALE]], a trace folder, a .npy of integer "
                                      "keys, or a text/CSV file of keys (one a line, or --columns)")
    trace.add_argument("--out", help="convert: the trace folder to write (.npy chunks + meta.json)")
    trace.add_argument("--data", default=None, help=_DATA_HELP)
    trace.add_argument("--json", action="store_true", help="describe, fit: print JSON")
    trace.add_argument("--columns", default=None,
                       help="text file: categorical fields to read, numbered from 1 (15-40: Criteo's C1..C26 in a "
                            "training row); the j-th chosen field's value v is the key (j << 32) | v")
    trace.add_argument("--sep", default=None, help="text file with --columns: field separator (default tab; "
                                                   "comma for .csv)")
    trace.add_argument("--values", default=None, choices=["hex", "int", "hash"],
                       help="text file with --columns: fields are hex (Criteo's, default), decimal, or any text "
                            "(hashed to 32 bits)")
    trace.add_argument("--header", action="store_true", help="text file: skip the first line")
    trace.add_argument("--no-progress", action="store_true", help="no progress bar")
    trace.set_defaults(func=_trace)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``embcache`` command line; returns the exit status (0, 1 or 2; see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "action", None) == "convert" and not args.out:
        parser.error("embcache trace convert needs --out FOLDER")
    debug = args.debug or os.environ.get("EMBCACHE_DEBUG", "") not in ("", "0")
    try:
        _check_extras(args)
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("embcache: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        if debug:
            raise
        status, message = _exit_status(exc)
        print(f"embcache: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
