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
                             progress=not args.no_progress)
    why = "" if backend == "gpu" else " (no GPU backend available)" if args.backend == "auto" else ""
    print(f"backend: {backend}{why}; rows: dim {args.dim} float32; set-associative, 32 ways")
    print(format_table(rows))
    return 0


def _autotune(args) -> int:
    from .autotune import DEFAULT_TABLE, autotune

    autotune(args.table_gib, args.batch, args.repeat, write=None if args.dry_run else (args.table or DEFAULT_TABLE),
             progress=not args.no_progress)
    return 0


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
    demo.set_defaults(func=_demo)
    tune = sub.add_parser("autotune", help="time the GPU hit path's launch shapes here and write this GPU's tuning entry")
    tune.add_argument("--table", default=None, help="tuning table to update (default: the one shipped in the package)")
    tune.add_argument("--table-gib", type=float, default=2.0, help="row array size to gather from, GiB (default 2)")
    tune.add_argument("--batch", type=int, default=1 << 20, help="keys a timed lookup (default 1048576)")
    tune.add_argument("--repeat", type=int, default=10, help="timed runs per shape (default 10)")
    tune.add_argument("--dry-run", action="store_true", help="print the timings, write nothing")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.set_defaults(func=_autotune)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
