"""A/B of insert_and_evict between two trees (a diagnostic, run on a GPU machine; kept beside its results: it reads
the backend as ``cache._backend`` because the old trees it compares have no ``benchmarks._internals``).

    python benchmarks/results/gpu-table/ab_insert.py ROOT TAG

imports ROOT's ``benchmarks.gpu_table.filled_cache`` (ROOT: this clone, or an old commit unpacked with
``git archive REV | tar -x -C .old``), fills a 4.25 GiB dim-32 cache and times only the backend's
``insert_and_evict`` of 2^20 fresh sorted keys with CUDA events (32 calls after 4 warm-up ones).
Alternate the trees in one device call: one pair does not separate a change from run-to-run noise.
"""
import sys
root, tag = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import numpy as np, cupy
import benchmarks.gpu_table as g
from embcache.autotune import distinct_keys
assert g.__file__.startswith(root), g.__file__
batch, dim = 1 << 20, 32
cache = g.filled_cache(dim, "float32", 4 * 2**30 + 2**28)
b = cache._backend
rows = cupy.random.random((batch, dim), dtype=cupy.float32).view(cupy.uint32)
ones, admit = cupy.ones(batch, cupy.int64), cupy.ones(batch, cupy.bool_)
batches = [cupy.sort(distinct_keys(10**16 + i * batch, batch, cupy))[:batch] for i in range(36)]
times = []
for i, keys in enumerate(batches):
    n = keys.shape[0]
    s, e = cupy.cuda.Event(), cupy.cuda.Event()
    s.record(); b.insert_and_evict(keys, ones[:n], rows[:n], admit[:n], False); e.record(); e.synchronize()
    if i >= 4: times.append(cupy.cuda.get_elapsed_time(s, e))
t = np.array(times)
print(f"AB {tag}: insert_and_evict 1M keys dim 32: median {np.median(t):.3f} ms ({batch/np.median(t)/1e6:.2f} G keys/s) "
      f"min {t.min():.3f} max {t.max():.3f} n={t.size}", flush=True)
