"""A small workload over every GPU kernel family, for compute-sanitizer (not a benchmark, not a test).

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m benchmarks.sanitize [--policies lru,sieve]
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize [--admissions always]

Every registered policy and admission, stream-ordered lookups (a pinned HostStore: misses, duplicates,
absent keys, a CUDA graph replayed; the TinyLFU admissions, which have no device rule, uncaptured on the
host path), host-path lookups (an ordinary store), insert, update, erase,
query and preload, on small caches whose sets overfill; then int32 row-number keys with ONNX Gather's
rules (``lookup(index_rows=)``, negative and out-of-range keys), which the probe converts as it reads.
``--miss-path a-kernel-a-phase``: the stream-ordered lookups take the large batch's kernels (a kernel a
phase) instead of the one launch their 48-key batches take by the tuning table.
It checks its rows against the CPU backend, so a kernel that reads or writes out of bounds and changes
a result fails here too.  ``--policies`` / ``--admissions``: a subset (comma-separated names).
"""
from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    import argparse

    import cupy

    import embcache
    from embcache import policies
    from embcache.tiers import HostStore

    rng = np.random.default_rng(0)
    stored = np.arange(0, 400, dtype=np.int64)
    rows = rng.standard_normal((stored.shape[0], 8)).astype(np.float32)
    admissions = {"always": policies.Always(), "min_frequency": policies.MinFrequency(n=2, width=64, depth=2),
                  "refuse_below_min": policies.RefuseBelowMin(), "hit_rate_threshold": policies.HitRateThreshold(0.5),
                  # decided on the device and placed by the next operation (the stash, ordered_flushed)
                  "hit_rate_deferred": policies.HitRateDeferred(0.5),
                  # decided on the host (no device rule): their lookups take the host path, uncaptured, and
                  # place keys through insert_and_evict_general (victim modes 1, 2 and 3)
                  "tinylfu": policies.TinyLFU(width=64, depth=2, sample=1),
                  "tinylfu_evict": policies.TinyLFUEvict(depth=2, sample=1),
                  "tinylfu_tables": policies.TinyLFUTables(depth=2, sample=1)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default=",".join(policies.policy_names()))
    parser.add_argument("--admissions", default=",".join(admissions))
    parser.add_argument("--miss-path", choices=("one-launch", "a-kernel-a-phase"), default="one-launch",
                        help="the stream-ordered miss path: one launch for these small batches (as the tuning "
                             "table has it), or the large batch's kernel a phase (ordered_misses ... ordered_finish)")
    args = parser.parse_args(argv)
    bad = 0
    for policy in args.policies.split(","):
        for name in args.admissions.split(","):
            admission = admissions[name]
            caches = []
            for backend, pinned in (("cpu", False), ("gpu", True), ("gpu", False)):
                store = HostStore(8, "float32", pinned=pinned, initial_rows=1024)
                store.put_many(stored, rows)
                caches.append(embcache.Cache(96, 8, policy, admission, backend=backend, tier=store, ways=4,
                                             max_batch=64 if backend == "gpu" else None))
            if args.miss_path == "a-kernel-a-phase":
                from . import _internals

                _internals.phase_kernels(caches[1])
            if policy == "static":
                for c in caches:
                    c.preload(stored[:40])
            captured = admission.device_rule() is not None  # else the lookup cannot be captured
            keys = cupy.zeros(48, cupy.int64)
            out = cupy.empty((48, 8), cupy.float32)
            stream = cupy.cuda.Stream(non_blocking=True)
            cupy.cuda.Device().synchronize()  # the buffers' zeros (legacy stream) before the graph's copies
            if captured:
                with stream:
                    stream.begin_capture()
                    caches[1].lookup(keys, out=out)
                    graph = stream.end_capture()
            for step in range(12):
                batch = np.minimum(rng.zipf(1.2, 48), 450).astype(np.int64)
                expected = caches[0].lookup(batch)
                if captured:
                    keys.set(batch, stream=stream)
                    graph.launch(stream)
                    stream.synchronize()
                    first = out.get()
                else:
                    first = caches[1].lookup(cupy.asarray(batch)).get()
                got = [first, caches[2].lookup(cupy.asarray(batch)).get()]
                if step % 4 == 3 and policy != "static":  # Static refuses new keys on insert
                    for c in caches:
                        c.insert(batch[:5], np.full((5, 8), step, np.float32))
                        c.update(batch[5:9], np.full((4, 8), -step, np.float32))
                        c.erase(batch[9:12])
                        c.query(batch)
                bad += sum(g.tobytes() != expected.tobytes() for g in got)
            for c in caches:
                c.close()
            print(f"{policy} x {name} ({args.miss_path}): {'ok' if not bad else f'{bad} mismatches so far'}",
                  flush=True)
    bad += _index_rows(cupy, rng, stored, rows)
    print("mismatches:", bad)
    return 1 if bad else 0


def _index_rows(cupy, rng, stored, rows) -> int:
    """int32 and int64 row numbers with Gather's rules, stream-ordered and captured, against the CPU."""
    import embcache
    from embcache.tiers import HostStore

    bad = 0
    caches = []
    for backend, pinned in (("cpu", False), ("gpu", True)):
        store = HostStore(8, "float32", pinned=pinned, initial_rows=1024)
        store.put_many(stored, rows)
        caches.append(embcache.Cache(96, 8, "lru", "always", backend=backend, tier=store, ways=4,
                                     max_batch=64 if backend == "gpu" else None))
    for step in range(8):
        batch = rng.integers(-450, 450, 48)  # row numbers of a 400-row table: negatives wrap, some outside
        expected = caches[0].lookup(batch, index_rows=400)
        dtype = cupy.int32 if step % 2 else cupy.int64
        got = caches[1].lookup(cupy.asarray(batch, dtype=dtype), index_rows=400).get()
        bad += got.tobytes() != expected.tobytes()
    bad += caches[0].stats.invalid != caches[1].stats.invalid
    for c in caches:
        c.close()
    print(f"index rows (int32 and int64, Gather's rules): {'ok' if not bad else f'{bad} mismatches'}", flush=True)
    return bad


if __name__ == "__main__":
    sys.exit(main())
