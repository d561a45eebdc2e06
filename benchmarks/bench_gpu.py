"""GPU backend (issue 4's table): throughput as a ratio to ceilings measured in the same run.

asv calls ``setup_cache`` once: it runs the whole table (benchmarks/gpu_table.py,
4 GiB tables, about a minute on an H100) and every ``track_`` reads one figure
from it.  Without a GPU the suite is skipped.
"""
from . import gpu_table


def setup_cache():
    from embcache.kernels.gpu import gpu_available

    if not gpu_available():
        raise NotImplementedError("no CUDA GPU")
    return gpu_table.measure()


setup_cache.timeout = 1200  # the whole table, seconds


def _row(result, start):
    return next(r for r in result["rows"] if r["case"].startswith(start))


def _tracks(start, key, unit):
    def track(result):
        return _row(result, start)[key]

    track.unit = unit
    return track


track_hits_dim32_ratio_to_gather = _tracks("lookup all hits, 1,048,576 keys, dim 32 float32", "ratio", "ratio")
track_hits_dim64_ratio_to_gather = _tracks("lookup all hits, 1,048,576 keys, dim 64 float32", "ratio", "ratio")
track_hits_dim128_ratio_to_gather = _tracks("lookup all hits, 1,048,576 keys, dim 128 float32", "ratio", "ratio")
track_hits_dim128_fp16_ratio_to_gather = _tracks("lookup all hits, 1,048,576 keys, dim 128 float16", "ratio", "ratio")
track_hits_dim32_g_keys_per_s = _tracks("lookup all hits, 1,048,576 keys, dim 32 float32", "g_keys_s", "G keys/s")
track_misses_90pct_ratio_to_zero_copy = _tracks("lookup 90% hits", "ratio", "ratio")
track_insert_dim32_g_keys_per_s = _tracks("insert_and_evict", "g_keys_s", "G keys/s")
track_latency_1024_gpu_us = _tracks("lookup 1024 keys", "gpu_us", "us")
track_latency_1024_wall_us = _tracks("lookup 1024 keys", "wall_us", "us")
