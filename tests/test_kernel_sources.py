"""The GPU kernels' sources, checked on any machine: the files, the names Python launches, the
launch shapes, the constants written once, and (with nvcc on PATH) a real compile of every file.

No CuPy is needed for the CPU checks; the GPU checks at the end need a CUDA GPU.
"""
import ast
import pathlib
import re
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embcache import layout
from embcache._cuda import SHARED_INCLUDE, gpu_available
from embcache._source import INDEX_SPLITMIX64_LINEAR, INDEX_SPLITMIX64_LINEAR_ROWS, DeviceSource
from embcache.errors import ConfigError
from embcache.kernels import _shared, gpu, tuning

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "embcache"
CUDA_FILES = [*sorted(gpu.CUDA_DIR.glob("*.cu")), *sorted(gpu.CUDA_DIR.glob("*.cuh")),
              *sorted(SHARED_INCLUDE.glob("*.cuh"))]
# the Python files that launch kernels of embcache/kernels/cuda or of benchmarks/*.cu
LAUNCHERS = [PACKAGE / "kernels" / "gpu.py", ROOT / "benchmarks" / "gpu_table.py",
             ROOT / "benchmarks" / "probe_bound.py"]
GLOBAL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(')


def _globals(path: pathlib.Path) -> set:
    return set(GLOBAL.findall(path.read_text()))


def _launched_names(path: pathlib.Path) -> set:
    """Kernel names a Python file takes from a backend's kernels: ``..._k["name"]`` and the names given
    to ``_count_found``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "_k"
                and isinstance(node.slice, ast.Constant)):
            names.add(node.slice.value)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_count_found":
            names.add(node.args[0].value)
    return names


# ---------------------------------------------------------------- files and names
def test_cache_cu_is_split_into_families_of_at_most_400_lines():
    assert not (gpu.CUDA_DIR / "cache.cu").exists()
    assert set(gpu.FAMILIES) == {p.name for p in gpu.CUDA_DIR.glob("*.cu")}
    for path in CUDA_FILES:
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.name} has {lines} lines"


def test_every_kernel_python_launches_is_a_global_of_its_familys_file():
    launched = set().union(*(_launched_names(p) for p in LAUNCHERS))
    kernels = {name: family for family, names in gpu.FAMILIES.items() for name in names}
    assert launched - set(kernels) == set(), "launched but in no family"
    assert set(kernels) - _launched_names(PACKAGE / "kernels" / "gpu.py") == set(), "a family kernel nobody launches"
    for family, names in gpu.FAMILIES.items():
        defined = _globals(gpu.CUDA_DIR / family)
        assert set(names) <= defined, f"{family} lacks {set(names) - defined}"
        for other in set(gpu.FAMILIES) - {family}:  # each kernel lives in one file only
            assert not set(names) & _globals(gpu.CUDA_DIR / other)


def test_one_memoized_factory_per_kernel_that_compiles_its_family_only():
    kernels = [name for names in gpu.FAMILIES.values() for name in names]
    assert len(kernels) == len(set(kernels)) == 29
    for family, names in gpu.FAMILIES.items():
        for name in names:
            factory = getattr(gpu, f"_get_{name}_kernel")
            assert factory is gpu._FACTORIES[name]
            assert factory.__name__ == f"_get_{name}_kernel" and hasattr(factory, "cache_info")  # memoized
            assert f"cuda/{family}" in factory.__doc__
            assert factory.__wrapped__.__closure__ is not None
            cells = {c.cell_contents for c in factory.__wrapped__.__closure__ if isinstance(c.cell_contents, str)}
            assert cells == {family, name}


def test_nothing_compiles_at_import_time():
    import subprocess
    import sys

    code = ("import embcache, embcache.kernels.gpu as g, embcache._cuda as c; "
            "assert all(f.cache_info().currsize == 0 for f in g._FACTORIES.values()); "
            "assert c._module.cache_info().currsize == 0")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


def test_kernels_name_no_store():
    for path in [*PACKAGE.joinpath("kernels").rglob("*.py"), *PACKAGE.joinpath("kernels").rglob("*.cu*")]:
        text = path.read_text()
        assert "HostStore" not in text and "device_rows" not in text, path.name
        assert not re.search(r"from \.\.tiers|import embcache\.tiers|from embcache\.tiers", text), path.name


# ---------------------------------------------------------------- launch shapes
def _literal_ints(node) -> list:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and type(n.value) is int]


@pytest.mark.parametrize("path", LAUNCHERS, ids=lambda p: p.name)
def test_no_launch_site_has_a_literal_block_size(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        if getattr(node.func, "id", getattr(node.func, "attr", None)) == "launch_grid":
            assert not isinstance(node.args[1], ast.Constant), f"{path.name}:{node.lineno} launch_grid(.., literal)"
        # a kernel launch: kernel(grid, block, args), the block a tuple
        if len(node.args) == 3 and isinstance(node.args[1], ast.Tuple):
            assert _literal_ints(node.args[1]) == [], f"{path.name}:{node.lineno} has a literal block"
    if path.name == "gpu.py":
        assert "256" not in path.read_text()


def test_every_architecture_has_a_utility_block():
    table = tuning.load_table()
    for cc, entry in table["entries"].items():
        assert entry["utility_block"] % 32 == 0 and 32 <= entry["utility_block"] <= 1024
        assert tuning.utility_block(cc) == entry["utility_block"]
    assert tuning.utility_block("12.0") == table["entries"]["9.0"]["utility_block"]  # nearest lower entry
    bad = {"entries": {"9.0": {"utility_block": 100, "shapes": []}}}
    with pytest.raises(ValueError, match="multiple of 32"):
        tuning.utility_block("9.0", bad)


def test_no_cuda_file_has_a_literal_launch_bound():
    for path in CUDA_FILES:
        assert not re.search(r"__launch_bounds__\(\s*\d", path.read_text()), path.name


# ---------------------------------------------------------------- constants written once
def test_no_cuda_file_retypes_a_constant_python_has():
    generated = set(gpu.defines())  # every name Python writes a #define for
    numbers = {str(int(v)) for v in (layout.MIX_M1, layout.MIX_M2, _shared.GOLDEN)}
    numbers |= {hex(int(v)).lower() for v in (layout.MIX_M1, layout.MIX_M2, _shared.GOLDEN)}
    for path in CUDA_FILES:
        text = path.read_text()
        defined = set(re.findall(r"^\s*#\s*define\s+(\w+)", text, re.M))
        assert defined & generated == set(), f"{path.name} retypes {defined & generated}"
        # the names _shared.py owns, whatever this checkout's defines() generates
        owned = [n for n in defined if n.startswith("STATE_") or n in ("TOUCH_NONE", "TOUCH_IF_CLEAN", "TOUCH_ALWAYS")]
        assert not owned, f"{path.name} numbers {owned} itself"
        lowered = text.lower()
        for number in numbers:
            assert number not in lowered, f"{path.name} retypes {number}"


def test_shared_constants_generate_the_defines_and_the_python_names():
    d = gpu.defines()
    for name, value in {**_shared.STATE, **_shared.TOUCH, **_shared.OUTCOMES}.items():
        assert d[name] == value
    assert d["OUTCOME_CODES"] == len(_shared.OUTCOMES)
    assert d["GOLDEN"] == f"{int(_shared.GOLDEN)}ULL"
    assert max(_shared.STATE.values()) < _shared.STATE_WORDS == gpu._STATE_WORDS
    for name in ("STATE_CLOCK", "STATE_MISSES", "STATE_RESERVED", "STATE_LISTED", "STATE_OUTCOMES", "STATE_HOST"):
        assert getattr(gpu, name) == _shared.STATE[name]
    # the published words end before the words the host reads apart (count_source_misses)
    assert _shared.STATE["STATE_OUTCOMES"] + len(_shared.OUTCOMES) == _shared.STATE["STATE_PUBLISHED"]


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=50))
def test_mix64_is_one_function_for_numpy_and_numba(keys):
    keys = np.array(keys, np.int64)
    bits = layout.mix64_array(keys)
    assert bits.dtype == np.uint64
    assert [int(b) for b in bits] == [int(layout.mix64(k)) for k in keys]
    if keys.size:
        assert (layout.sets_of(keys, 7) == (bits % np.uint64(7)).astype(np.int64)).all()


def test_multi_gpu_uses_layouts_public_hash():
    from embcache.multi_gpu import shard_of

    tree = ast.parse((PACKAGE / "multi_gpu.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "layout":
            assert all(not a.name.startswith("_") for a in node.names)
    keys = np.arange(-50, 50, dtype=np.int64) * 7919
    assert (shard_of(keys, 5) == ((layout.mix64_array(keys) >> np.uint64(32)) % np.uint64(5)).astype(np.int64)).all()


# ---------------------------------------------------------------- a DeviceSource, checked in Python
def test_a_device_source_becomes_the_kernel_arguments():
    index, mask, rows, words = gpu._source_args(DeviceSource(1 << 40, 1023, 1 << 41, 8, np.float16), 8, np.float16)
    assert (index, mask, rows, words) == (1 << 40, 1023, 1 << 41, 1)
    assert (index.dtype, mask.dtype, rows.dtype) == (np.uint64, np.int64, np.uint64)  # 8-byte kernel arguments
    assert words.dtype == np.int32
    dense = DeviceSource(1 << 40, 1023, 1 << 41, 8, np.float16, layout=INDEX_SPLITMIX64_LINEAR_ROWS)
    assert gpu._source_args(dense, 8, np.float16)[3] == 2  # (key, row) pairs: two words a slot
    array = np.zeros(16, np.int64)  # a device array is passed as it is
    assert gpu._source_args(DeviceSource(array, 15, 1 << 41, 8, np.float32), 8, np.float32)[0] is array


@pytest.mark.parametrize("source, match", [
    ((1, 15, 2), "DeviceSource as source, not tuple"),
    (DeviceSource(1, 15, 2, 8, np.float32, layout="cuckoo"),
     "index layouts 'splitmix64-linear', 'splitmix64-linear-rows' only, not 'cuckoo'"),
    (DeviceSource(1, 15, 2, 8, np.float16), "rows of 8 float16 .16 bytes., the cache rows of 8 float32 .32 bytes."),
    (DeviceSource(1, 15, 2, 16, np.float32), "rows of 16 float32"),
])
def test_a_device_source_the_kernels_cannot_read_is_a_config_error(source, match):
    assert INDEX_SPLITMIX64_LINEAR == "splitmix64-linear"
    with pytest.raises(ConfigError, match=match):
        gpu._source_args(source, 8, np.float32)


# ---------------------------------------------------------------- a real compile
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc on PATH")
# a guard against a hung compiler, not a speed bar: 99 s alone on 2 cores, past 120 s beside the other tests
@pytest.mark.timeout(600)
def test_every_cuda_file_compiles_with_the_defines_the_backend_generates():
    """A covering subset (every policy, dim 8/32/128, float32/float16, digests on and off, the
    tuning table's shapes of sm_70 (compiled for compute_75), sm_80 and sm_90), as PTX; the
    whole grid is ``python -m benchmarks.check_kernels``."""
    from benchmarks import check_kernels

    assert check_kernels.check(full=False) == []


# ---------------------------------------------------------------- on the GPU
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_gpu_kernels_compile_per_family_on_first_use_and_once():
    import embcache

    cache = embcache.Cache(64, 8, "lfu", backend="gpu")
    b = cache._backend
    assert set(gpu.FAMILIES["probe.cu"]) <= set(b._k)  # the hit path, compiled with the launch shape
    assert not set(b._k) & {"insert_and_evict", "sets_of", "sketch_add", "probe_gather_source"}  # the rest on use
    cache.insert(np.arange(10, dtype=np.int64), np.ones((10, 8), np.float32))
    assert {"insert_and_evict", "sets_of"} <= set(b._k) and "sketch_add" not in b._k
    other = embcache.Cache(64, 8, "lfu", backend="gpu")
    # the compiled kernel is memoized per device and configuration; each backend launches it with its own launcher
    assert other._backend._k["probe_gather"].kernel is b._k["probe_gather"].kernel
    assert other._backend._k["probe_gather"] is not b._k["probe_gather"]
    other.close()
    cache.close()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_gpu_plan_lookup_refuses_what_is_not_a_readable_device_source():
    import cupy

    import embcache

    cache = embcache.Cache(64, 8, "lru", backend="gpu")
    b = cache._backend
    keys = cupy.arange(4, dtype=cupy.int64)
    with pytest.raises(ConfigError, match="DeviceSource"):
        b.plan_lookup(keys, b.new_rows(4), (0, 15, 0))
    with pytest.raises(ConfigError, match="float16"):
        b.plan_lookup(keys, b.new_rows(4), DeviceSource(0, 15, 0, 8, np.float16))
    cache.close()
