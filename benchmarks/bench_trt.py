"""trt_plugin on the GPU (benchmarks/trt_table.py): DLRM latency per batch against HPS's A100 figures, and
the plugin path's lookups per second as a ratio to direct ``Cache.lookup`` in the same run."""
from . import trt_table


def setup_cache():
    from embcache.kernels.gpu import gpu_available

    if not gpu_available():
        raise NotImplementedError("no CUDA GPU")
    return trt_table.measure(progress=False)


setup_cache.timeout = 1200

_TRACKS = {  # asv name: (the row's case start, the figure, unit)
    "plugin_path_ratio_to_direct": ("plugin path", "ratio_to_direct", "ratio"),
    "ort_op_ratio_to_direct": ("ONNX Runtime op", "ratio_to_direct", "ratio"),
    "dlrm_batch32_us": ("DLRM batch 32", "median_us", "us"),
    "dlrm_batch1024_us": ("DLRM batch 1024", "median_us", "us"),
    "dlrm_batch8192_us": ("DLRM batch 8192", "median_us", "us"),
    "dlrm_batch131072_us": ("DLRM batch 131072", "median_us", "us"),
    "dlrm_batch131072_ratio_to_hps": ("DLRM batch 131072", "ratio_to_hps", "ratio"),
}


def _track(name, case, key, unit):
    def track(result):
        return next(r for r in result["rows"] if r["case"].startswith(case))[key]

    track.__name__ = track.__qualname__ = f"track_{name}"  # asv names a benchmark by its function
    track.unit = unit
    return track


globals().update({f"track_{name}": _track(name, *spec) for name, spec in _TRACKS.items()})
