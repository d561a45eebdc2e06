"""trt_plugin on the GPU (benchmarks/trt_table.py, its --quick sizes: 1 GiB of tables, batches up to 8,192):
DLRM end-to-end latency (the torch runner's CUDA-graph replay where PyTorch is installed, else the CuPy
runner; the row says which) and the lookup alone, against HPS's A100 figures, and the plugin path's lookups
per second as a ratio to direct ``Cache.lookup`` in the same run."""
from . import trt_table


def setup_cache():
    from embcache.kernels.gpu import gpu_available

    if not gpu_available():
        raise NotImplementedError("no CUDA GPU")
    return trt_table.measure(progress=False, quick=True)


setup_cache.timeout = 600

_TRACKS = {  # asv name: (the row's case start, the figure, unit)
    "plugin_path_ratio_to_direct": ("plugin path", "ratio_to_direct", "ratio"),
    "ort_op_ratio_to_direct": ("ONNX Runtime op", "ratio_to_direct", "ratio"),
    "dlrm_batch32_us": ("DLRM batch 32", "median_us", "us"),
    "dlrm_batch1024_us": ("DLRM batch 1024", "median_us", "us"),
    "dlrm_batch1024_lookup_us": ("DLRM batch 1024", "lookup_only_median_us", "us"),
    "dlrm_batch1024_fp32_us": ("DLRM batch 1024", "fp32_median_us", "us"),
    "dlrm_batch1024_qps": ("DLRM batch 1024", "qps_pipelined", "queries/s"),
    "dlrm_batch8192_us": ("DLRM batch 8192", "median_us", "us"),
    "dlrm_batch1024_ratio_to_hps": ("DLRM batch 1024", "ratio_to_hps", "ratio"),
}


def _track(name, case, key, unit):
    def track(result):
        value = next(r for r in result["rows"] if r["case"].startswith(case))[key]
        return float("nan") if value is None else value  # QPS without PyTorch: not measured

    track.__name__ = track.__qualname__ = f"track_{name}"  # asv names a benchmark by its function
    track.unit = unit
    return track


globals().update({f"track_{name}": _track(name, *spec) for name, spec in _TRACKS.items()})
