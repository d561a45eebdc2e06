"""A small workload over every GPU kernel family, for compute-sanitizer (not a benchmark, not a test).

    compute-sanitizer --tool memcheck --error-exitcode 1 python3 -m benchmarks.sanitize
    compute-sanitizer --tool racecheck --error-exitcode 1 python3 -m benchmarks.sanitize

Every registered policy and admission, stream-ordered lookups (a pinned HostStore: misses, duplicates,
absent keys, a CUDA graph replayed), host-path lookups (an ordinary store), insert, update, erase,
query and preload, on small caches whose sets overfill.  It checks its rows against the CPU backend,
so a kernel that reads or writes out of bounds and changes a result fails here too.
"""
from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    import cupy

    import embcache
    from embcache import policies
    from embcache.tiers import HostStore

    rng = np.random.default_rng(0)
    stored = np.arange(0, 400, dtype=np.int64)
    rows = rng.standard_normal((stored.shape[0], 8)).astype(np.float32)
    admissions = {"always": policies.Always(), "min_frequency": policies.MinFrequency(n=2, width=64, depth=2),
                  "refuse_below_min": policies.RefuseBelowMin(), "hit_rate_threshold": policies.HitRateThreshold(0.5)}
    bad = 0
    for policy in policies.policy_names():
        for name, admission in admissions.items():
            caches = []
            for backend, pinned in (("cpu", False), ("gpu", True), ("gpu", False)):
                store = HostStore(8, "float32", pinned=pinned, initial_rows=1024)
                store.put_many(stored, rows)
                caches.append(embcache.Cache(96, 8, policy, admission, backend=backend, tier=store, ways=4,
                                             max_batch=64 if backend == "gpu" else None))
            if policy == "static":
                for c in caches:
                    c.preload(stored[:40])
            keys = cupy.zeros(48, cupy.int64)
            out = cupy.empty((48, 8), cupy.float32)
            stream = cupy.cuda.Stream(non_blocking=True)
            cupy.cuda.Device().synchronize()  # the buffers' zeros (legacy stream) before the graph's copies
            with stream:
                stream.begin_capture()
                caches[1].lookup(keys, out=out)
                graph = stream.end_capture()
            for step in range(12):
                batch = np.minimum(rng.zipf(1.2, 48), 450).astype(np.int64)
                expected = caches[0].lookup(batch)
                keys.set(batch, stream=stream)
                graph.launch(stream)
                stream.synchronize()
                got = [out.get(), caches[2].lookup(cupy.asarray(batch)).get()]
                if step % 4 == 3 and policy != "static":  # Static refuses new keys on insert
                    for c in caches:
                        c.insert(batch[:5], np.full((5, 8), step, np.float32))
                        c.update(batch[5:9], np.full((4, 8), -step, np.float32))
                        c.erase(batch[9:12])
                        c.query(batch)
                bad += sum(g.tobytes() != expected.tobytes() for g in got)
            for c in caches:
                c.close()
            print(f"{policy} x {name}: {'ok' if not bad else f'{bad} mismatches so far'}", flush=True)
    print("mismatches:", bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
