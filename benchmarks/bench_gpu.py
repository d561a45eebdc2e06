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


_HITS = "lookup all hits, 1,048,576 keys, dim "
_TRACKS = {  # asv name: (the table row's case, exactly, or its start; the figure; unit)
    "hits_dim32_ratio_to_gather": (_HITS + "32 float32", "ratio", "ratio"),
    "hits_dim64_ratio_to_gather": (_HITS + "64 float32", "ratio", "ratio"),
    "hits_dim128_ratio_to_gather": (_HITS + "128 float32", "ratio", "ratio"),
    "hits_dim128_fp16_ratio_to_gather": (_HITS + "128 float16", "ratio", "ratio"),
    "hits_dim32_8ways_ratio_to_gather": (_HITS + "32 float32, 8 ways", "ratio", "ratio"),
    "hits_dim64_8ways_ratio_to_gather": (_HITS + "64 float32, 8 ways", "ratio", "ratio"),
    "hits_dim128_8ways_ratio_to_gather": (_HITS + "128 float32, 8 ways", "ratio", "ratio"),
    "hits_dim32_g_keys_per_s": (_HITS + "32 float32", "g_keys_s", "G keys/s"),
    "misses_90pct_ratio_to_zero_copy": ("lookup 90% hits", "ratio", "ratio"),
    "insert_dim32_g_keys_per_s": ("insert_and_evict", "g_keys_s", "G keys/s"),
    "latency_1024_gpu_us": ("lookup 1024 keys", "gpu_us", "us"),
    "latency_1024_gpu_queued_us": ("lookup 1024 keys", "gpu_queued_us", "us"),
    "latency_1024_wall_us": ("lookup 1024 keys", "wall_us", "us"),
}


def _row(result, case):
    rows = result["rows"]
    return next((r for r in rows if r["case"] == case), None) or next(r for r in rows if r["case"].startswith(case))


def _track(name, case, key, unit):
    def track(result):
        return _row(result, case)[key]

    # asv names a benchmark by its function's name, so each needs its own
    track.__name__ = track.__qualname__ = f"track_{name}"
    track.unit = unit
    return track


globals().update({f"track_{name}": _track(name, *spec) for name, spec in _TRACKS.items()})
