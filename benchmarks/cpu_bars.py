"""Issue 22's CPU bars in one run, from the asv benchmarks of bench_cpu.py (one core, dim 32).

    python -m benchmarks.cpu_bars [--json results.json]

Prints each figure beside its bar: ``lookup`` of 1 key that hits (<= 10 us) and that misses, read from
a HostStore and admitted (<= 20 us), of 64 hits (<= 15 us); at 65,536 keys a batch >= 0.5 of a NumPy
gather of the same rows; >= 40x ``cachetools.LRUCache`` on the same trace at 1,024 and 65,536 keys a
batch.  Per-call times are the best of 7 runs of 5,000 calls with the garbage collector off (as timeit
and bench_cpu's ``_best``); the ratios are bench_cpu.Ratios' asv tracks.  On a shared machine the
figures move with its load: the load average is printed with them, and the times behind the two
cachetools ratios (``us_per_lookup_<batch>``: each side's best time for the trace, per lookup).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess

from . import bench_cpu
from .bench_cpu import _best as best_of  # benchmarks' own timer (GC off while timing)

BARS = {"hit1_us": ("<=", 10.0), "hits64_us": ("<=", 15.0), "miss1_us": ("<=", 20.0),
        "fraction_of_gather": (">=", 0.5), "x_cachetools_65536": (">=", 40.0), "x_cachetools_1024": (">=", 40.0)}


def measure() -> dict:
    """The figures, by the names of ``BARS``."""
    def per_call_us(fn, n=5000):
        return best_of(lambda: [fn() for _ in range(n)], repeat=7) / n * 1e6

    small = bench_cpu.SmallBatches()
    small.setup()
    for _ in range(500):  # compiled and warm
        small.time_lookup_1_hit(), small.time_lookup_64_hits(), small.time_lookup_1_miss()
    out = {"hit1_us": per_call_us(small.time_lookup_1_hit), "hits64_us": per_call_us(small.time_lookup_64_hits),
           "miss1_us": per_call_us(small.time_lookup_1_miss)}
    ratios = bench_cpu.Ratios()
    ratios.setup()
    out.update(fraction_of_gather=ratios.track_fraction_of_numpy_gather(),
               x_cachetools_65536=ratios.track_speedup_vs_cachetools_lru(),
               x_cachetools_1024=ratios.track_speedup_vs_cachetools_lru_1024())
    # the times behind the two ratios, per lookup (us): a ratio moves with either side's
    for batch, (theirs, ours) in ratios.seconds.items():
        calls = bench_cpu.BATCH // batch
        out[f"us_per_lookup_{batch}"] = {"cachetools": theirs / calls * 1e6, "embcache": ours / calls * 1e6}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures, device, date and commit here")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    figures = measure()
    for name, value in figures.items():
        if name not in BARS:
            print(f"{name:<20}cachetools {value['cachetools']:.1f} us, embcache {value['embcache']:.2f} us a lookup")
            continue
        op, bar = BARS[name]
        met = value <= bar if op == "<=" else value >= bar
        print(f"{name:<20}{value:10.3f}   bar {op} {bar:<6} {'met' if met else 'NOT met'}")
    commit = os.environ.get("EMBCACHE_COMMIT") or subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    after = os.getloadavg()[0]
    print(f"load average {load:.2f} -> {after:.2f}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; commit {commit}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "load_average": load, "load_average_after": after,
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       "commit": commit, "figures": figures, "bars": BARS}, f, indent=1)


if __name__ == "__main__":
    main()
