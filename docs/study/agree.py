"""Replay a trace's prefix through the same study on the CPU and GPU backends and compare.

    python docs/study/agree.py TRACE_FOLDER LOOKUPS OUT.txt [study options as in the 10^8 study]

Writes one line per run (policy, admission, capacity, hit rate and evictions on each backend)
under a first line that says whether every figure is identical.
"""
import sys


from embcache.study import _head, run_study
from embcache.traces import iter_trace


def main(folder: str, lookups: int, out: str) -> bool:
    prefix = _head(list(iter_trace(folder)), lookups)
    kwargs = dict(policies=["lru", "lfu", "fifo", "static"], admissions=["always", "min_frequency"],
                  capacities=[0.005, 0.01, 0.02, 0.05, 0.1], batch=65536, belady=False, progress=False)
    cpu = run_study(prefix, backend="cpu", **kwargs)
    gpu = run_study(prefix, backend="gpu", **kwargs)
    fields = ("policy", "admission", "capacity", "hit_rate", "evictions", "insertions")
    same = [all(c[f] == g[f] for f in fields) for c, g in zip(cpu, gpu)]
    lines = [f"{lookups:,}-lookup prefix, {len(cpu)} runs: CPU and GPU identical hit rates, evictions, "
             f"insertions: {all(same) and len(cpu) == len(gpu)}",
             "policy admission capacity hit_rate_cpu hit_rate_gpu evictions_cpu evictions_gpu"]
    lines += [f"{c['policy']} {c['admission']} {c['capacity']} {c['hit_rate']:.6f} {g['hit_rate']:.6f} "
              f"{c['evictions']} {g['evictions']}" for c, g in zip(cpu, gpu)]
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(lines[0])
    return all(same)


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1], int(sys.argv[2]), sys.argv[3]) else 1)
