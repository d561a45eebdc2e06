"""Issue 19, the ``embcache`` command as a new user meets it (items 19-23).

Commands run as real subprocesses (``python -m embcache``) with bad input, with the data folder
pointing at an empty folder and the working directory elsewhere, and with an optional module made
really missing (a folder on PYTHONPATH whose ``matplotlib``/``redis`` package raises ImportError).
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import embcache
from embcache import study, traces
from embcache.cli import main
from embcache.errors import ConfigError, DataFormatError

CLONE = pathlib.Path(embcache.__file__).resolve().parents[1]


def run(args, tmp_path, env=None, timeout=240) -> subprocess.CompletedProcess:
    """``python -m embcache ARGS`` in ``tmp_path/cwd``, EMBCACHE_DATA an empty folder unless ``env`` says."""
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    (tmp_path / "empty-data").mkdir(exist_ok=True)
    full = {k: v for k, v in os.environ.items() if k not in ("EMBCACHE_DEBUG", "EMBCACHE_DATA")}
    full["EMBCACHE_DATA"] = str(tmp_path / "empty-data")
    full["PYTHONPATH"] = str(CLONE)
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        elif k == "PYTHONPATH":
            full[k] = f"{v}{os.pathsep}{CLONE}"
        else:
            full[k] = v
    return subprocess.run([sys.executable, "-m", "embcache", *map(str, args)], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith("embcache: error: "), lines
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def blocked(tmp_path, module: str) -> pathlib.Path:
    """A folder that, first on PYTHONPATH, makes ``import module`` fail as a missing install does."""
    folder = tmp_path / f"without-{module}"
    (folder / module).mkdir(parents=True, exist_ok=True)
    (folder / module / "__init__.py").write_text(f"raise ModuleNotFoundError({f'No module named {module!r}'!r}, "
                                                 f"name={module!r})\n")
    return folder


def make_store(path, dim=4):
    from embcache.tiers import RocksStore

    store = RocksStore(str(path), dim, create=True)
    store.put_many(np.arange(3), np.ones((3, dim), np.float32))
    store.close()


# ---------------------------------------------------------------- item 19: one line, a status, no traceback


@pytest.mark.parametrize("args, status", [
    ([], 2),
    (["study", "--batch", "x"], 2),
    (["trace", "convert", "synthetic:10"], 2),
    (["study", "--trace", "synthetic:abc", "--no-progress"], 2),
    (["trace", "describe", "synthetic:0"], 2),
    (["trace", "describe", "synthetic:10:1:2:3"], 2),
    (["trace", "describe", "no-such-trace"], 2),
    (["study", "--capacities", "0.5,abc", "--no-progress"], 2),
    (["study", "--capacities", "0", "--no-progress"], 2),
    (["demo", "--data", "/no/such/folder", "--no-progress"], 2),
    (["serve-updates", "--redis", "redis://127.0.0.1:1", "--stream", "s", "--store", "{tmp}/missing.rocksdb",
      "--dim", "4", "--no-progress"], 2),
])
def test_bad_input_is_one_line_and_status_2(args, status, tmp_path):
    line = assert_one_line_error(run([a.replace("{tmp}", str(tmp_path)) for a in args], tmp_path), status)
    assert "ValueError" not in line and "internal error" not in line


def test_serve_updates_without_a_server_is_one_line_and_status_1(tmp_path):
    make_store(tmp_path / "t.rocksdb")
    proc = run(["serve-updates", "--redis", f"redis://127.0.0.1:{free_port()}", "--stream", "s", "--store",
                tmp_path / "t.rocksdb", "--dim", "4", "--no-progress", "--idle-polls", "1"], tmp_path)
    line = assert_one_line_error(proc, 1)
    assert "connect" in line.lower()


def test_a_wrong_import_command_line_creates_no_store(tmp_path):
    np.save(tmp_path / "k.npy", np.arange(3))
    proc = run(["import", "npy", tmp_path / "k.npy", "--to", tmp_path / "new.rocksdb", "--dim", "4",
                "--no-progress"], tmp_path)
    assert "KEYS.npy ROWS.npy" in assert_one_line_error(proc, 2)
    assert not (tmp_path / "new.rocksdb").exists()


@pytest.mark.parametrize("how", ["--debug", "EMBCACHE_DEBUG"])
def test_debug_shows_the_traceback(how, tmp_path):
    args = ["trace", "describe", "synthetic:abc"] + (["--debug"] if how == "--debug" else [])
    proc = run(args, tmp_path, env={"EMBCACHE_DEBUG": "1"} if how != "--debug" else None)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_study_without_matplotlib_stops_before_work_and_names_the_extra(tmp_path):
    proc = run(["study", "--trace", "synthetic:300000", "--out", tmp_path / "out", "--no-progress"], tmp_path,
               env={"PYTHONPATH": str(blocked(tmp_path, "matplotlib"))})
    line = assert_one_line_error(proc, 2)
    assert "matplotlib" in line and "pip install '.[study]'" in line and "embcache[" not in line
    assert str(CLONE) in line and "--no-plot" in line
    assert not (tmp_path / "out").exists() and proc.stdout == ""  # nothing was computed
    # and --no-plot does the work without it
    done = run(["study", "--trace", "synthetic:20000", "--policies", "lru", "--admissions", "always",
                "--capacities", "0.05", "--no-belady", "--no-plot", "--out", tmp_path / "out", "--no-progress"],
               tmp_path, env={"PYTHONPATH": str(blocked(tmp_path, "matplotlib"))})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "study.csv").exists() and not (tmp_path / "out" / "study.png").exists()


def test_serve_updates_without_redis_names_the_extra(tmp_path):
    make_store(tmp_path / "t.rocksdb")
    proc = run(["serve-updates", "--redis", "redis://127.0.0.1:1", "--stream", "s", "--store", tmp_path / "t.rocksdb",
                "--dim", "4", "--no-progress"], tmp_path, env={"PYTHONPATH": str(blocked(tmp_path, "redis"))})
    line = assert_one_line_error(proc, 2)
    assert "redis is not installed" in line and "pip install '.[tiers]'" in line and "embcache[" not in line


@pytest.mark.parametrize("args", [["autotune", "--dry-run", "--no-progress"],
                                  ["study", "--backend", "gpu", "--no-progress"]])
def test_gpu_commands_without_cupy_name_the_extra(args, tmp_path):
    line = assert_one_line_error(run(args, tmp_path, env={"PYTHONPATH": str(blocked(tmp_path, "cupy"))}), 2)
    assert "cupy is not installed" in line and "pip install '.[cuda]'" in line and "internal error" not in line


def test_install_hint_works_from_a_clone():
    from embcache._extras import install_hint

    hint = install_hint("trt")
    assert hint.startswith("pip install '.[trt]' in the clone") and str(CLONE) in hint and "not on PyPI" in hint


# ---------------------------------------------------------------- item 20: a clone without the Criteo sample


def test_describe_a_synthetic_trace_without_the_sample(tmp_path):
    proc = run(["trace", "describe", "synthetic:20000"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Criteo sample is not under" in proc.stderr and "SYNTHETIC: 20,000 lookups" in proc.stdout


def test_study_defaults_to_a_synthetic_stand_in_and_says_so(tmp_path):
    proc = run(["study", "--policies", "lru", "--admissions", "always", "--capacities", "0.01", "--no-belady",
                "--out", tmp_path / "out", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "embcache: note:" in proc.stderr and "synthetic:460760" in proc.stderr
    assert "SYNTHETIC: 460,760 lookups" in proc.stdout and (tmp_path / "out" / "study.png").exists()


def test_an_explicit_source_that_is_not_there_is_an_error(tmp_path):
    line = assert_one_line_error(run(["trace", "describe", "criteo"], tmp_path), 2)
    assert "train_head10k.txt" in line and "EMBCACHE_DATA" in line
    (tmp_path / "some-folder").mkdir()
    line = assert_one_line_error(run(["study", "--data", tmp_path / "some-folder", "--no-progress"], tmp_path), 2)
    assert "Criteo sample is not under" in line


def test_the_data_folder_is_found_from_the_clone_not_the_working_directory(tmp_path):
    code = "from embcache import traces; print(traces.data_dir())"
    env = {k: v for k, v in os.environ.items() if k != "EMBCACHE_DATA"}
    env["PYTHONPATH"] = str(CLONE)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert pathlib.Path(out) == (CLONE / ".." / "shared" / "data").resolve()
    env["EMBCACHE_DATA"] = str(tmp_path)
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == str(tmp_path)


def test_a_copy_installed_from_the_clone_finds_the_clone(tmp_path):
    """``pip install .`` (the README's quick start) puts the package elsewhere; it still finds the clone."""
    import shutil

    clone, target = tmp_path / "work" / "clone", tmp_path / "site"  # a copy: the build writes into the source
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        clone.mkdir(parents=True, exist_ok=True)
        shutil.copy(CLONE / name, clone / name)
    for name in ("embcache", "trt_plugin"):
        shutil.copytree(CLONE / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                           str(clone)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if proc.returncode != 0 and any(w in proc.stdout + proc.stderr for w in
                                    ("No matching distribution", "Could not find a version", "NewConnectionError")):
        pytest.skip(f"pip cannot fetch the build requirements here: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr
    assert (target / "embcache" / "py.typed").exists()
    assert (next(target.glob("embcache-*.dist-info")) / "licenses" / "LICENSE").read_text() == \
        (CLONE / "LICENSE").read_text()
    env = {k: v for k, v in os.environ.items() if k != "EMBCACHE_DATA"}
    env["PYTHONPATH"] = str(target)
    code = ("import embcache, pathlib; from embcache import traces, _extras; "
            "print(pathlib.Path(embcache.__file__).parent, traces.data_dir(), _extras.install_hint('study'), sep='|')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.strip().split("|")
    assert out[0] == str(target / "embcache")  # the installed copy ran, not the clone
    assert pathlib.Path(out[1]) == (tmp_path / "work" / "shared" / "data").resolve() and str(clone) in out[2]


def test_the_recorded_fit_is_the_fit_of_the_sample(criteo_dir):
    fitted, now = traces.criteo_model(criteo_dir.parent)
    recorded, later = traces.criteo_model(criteo_dir / "no-such-folder")
    assert now and not later
    for a, b in zip(fitted.columns, recorded.columns, strict=True):
        assert (a.column, a.cardinality) == (b.column, b.cardinality)
        # a numerical fit: NumPy 2.4.6 lands 1.4e-8 (relative) from the recorded exponent and KS distance, so
        # the recorded fit is held to the sample's to 1e-6, not to the last bits of one NumPy's arithmetic
        assert (a.share, a.exponent, a.ks) == pytest.approx((b.share, b.exponent, b.ks), rel=1e-6)


# ---------------------------------------------------------------- item 21: trace convert takes a user's keys


def converted(source, tmp_path, *options) -> np.ndarray:
    out = tmp_path / "trace"
    assert main(["trace", "convert", str(source), "--out", str(out), "--no-progress", *options]) == 0
    parts = list(traces.iter_trace(out))
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


keys_strategy = st.lists(st.integers(-(2**63) + 2, 2**63 - 1), max_size=300)


@settings(max_examples=40, deadline=None)
@given(keys=keys_strategy, dtype=st.sampled_from(["<i8", ">i8"]))
def test_convert_a_npy_of_keys(keys, dtype):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        np.save(tmp / "k.npy", np.array(keys, dtype=dtype))
        assert converted(tmp / "k.npy", tmp).tolist() == keys


@settings(max_examples=40, deadline=None)
@given(keys=keys_strategy, blank=st.booleans())
def test_convert_a_text_file_of_keys_one_a_line(keys, blank):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        text = "".join(f"{k}\n" + ("\n" if blank else "") for k in keys)
        (tmp / "k.txt").write_text(text)
        assert converted(tmp / "k.txt", tmp).tolist() == keys


def test_convert_categorical_columns_as_criteos(tmp_path):
    rng = np.random.default_rng(4)
    rows = []
    for r in range(50):
        cats = [f"{v:08x}" if rng.random() > 0.1 else "" for v in rng.integers(0, 2**32, 26)]
        rows.append("\t".join([str(r % 2)] + [str(v) for v in rng.integers(0, 9, 13)] + cats))
    (tmp_path / "train.txt").write_text("\n".join(rows) + "\n")
    assert converted(tmp_path / "train.txt", tmp_path, "--columns", "15-40").tolist() == \
        traces.read_criteo([tmp_path / "train.txt"]).tolist()
    # a CSV of the user's own: header, decimal values, two chosen columns
    (tmp_path / "mine.csv").write_text("user,item,score\n7,100,0.5\n8,,0.1\n7,101,0.9\n")
    assert converted(tmp_path / "mine.csv", tmp_path, "--columns", "1,2", "--values", "int", "--header").tolist() \
        == [7, (1 << 32) | 100, 8, 7, (1 << 32) | 101]
    # any text: hashed, stably
    (tmp_path / "names.tsv").write_text("alice\tx\nbob\ty\nalice\tz\n")
    hashed = converted(tmp_path / "names.tsv", tmp_path, "--columns", "1", "--values", "hash")
    assert hashed[0] == hashed[2] != hashed[1] and (hashed >> 32 == 0).all()


@pytest.mark.parametrize("text, options, words", [
    ("1\n2\nthree\n", [], ":3:"),
    ("1\n-9223372036854775808\n", [], "reserved"),
    ("1\n99999999999999999999\n", [], "outside int64"),
    ("a\tb\n", ["--columns", "3"], "2 fields"),
    ("zz\n", ["--columns", "1"], "hex"),
    ("1ffffffff\n", ["--columns", "1"], "32 bits"),
])
def test_a_bad_key_file_is_one_line_naming_the_place(text, options, words, tmp_path):
    (tmp_path / "k.txt").write_text(text)
    proc = run(["trace", "convert", tmp_path / "k.txt", "--out", tmp_path / "t", "--no-progress", *options], tmp_path)
    assert words in assert_one_line_error(proc, 2)
    with pytest.raises(DataFormatError):  # a half-written folder is not a trace
        traces.trace_meta(tmp_path / "t")


def test_a_npy_that_is_not_keys_is_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.ones(3))
    assert "1-D array of integer keys" in assert_one_line_error(
        run(["trace", "describe", tmp_path / "f.npy"], tmp_path), 2)


def test_a_trace_written_over_a_longer_one_reads_back_alone(tmp_path):
    traces.write_trace([np.arange(3), np.arange(3) + 10, np.arange(2) + 20], tmp_path / "t", progress=False)
    traces.write_trace([np.array([7, 8])], tmp_path / "t", progress=False)
    assert [c.tolist() for c in traces.iter_trace(tmp_path / "t")] == [[7, 8]]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(ConfigError, match="not a trace folder"):
        traces.write_trace([np.arange(3)], tmp_path / "mine", progress=False)


# ---------------------------------------------------------------- item 22: kernels compiled once per machine

_KERNELS = """
import json, sys
import numpy as np
import embcache
from embcache.kernels import cpu
from embcache.policies import Policy

class Aged(Policy):  # a user's own rule: compiled from its text, cached like the shipped ones
    name = "aged-issue19"
    new_score = "clock + 64 * count"
    hit_score = "sat_add(score, 64 * count)"

store = embcache.tiers.HostStore(4)
store.put_many(np.arange(1000), np.ones((1000, 4), np.float32))
stats = {}
for policy in ("lru", "lfu", Aged()):
    cache = embcache.Cache(64, 4, policy, backend="cpu", tier=store)
    cache.lookup(np.arange(200))
    cache.lookup(np.arange(20))
    rules = (policy.new_score, policy.hit_score) if not isinstance(policy, str) else \\
        {"lru": ("clock", "clock"), "lfu": ("count", "sat_add(score, count)")}[policy]
    for kernel in cpu.policy_kernels(*rules):
        s = kernel.stats
        stats[f"{rules}:{kernel.__name__}"] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
for kernel in (cpu._policy_module("clock", "clock", "score", "lowest").probe_touch_cpu,):  # lru's lookup probe
    s = kernel.stats
    stats[kernel.__name__] = [sum(s.cache_hits.values()), sum(s.cache_misses.values())]
print(json.dumps(stats))
"""


def test_a_second_process_compiles_no_kernel(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "EMBCACHE_KERNEL_CACHE"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"), PYTHONPATH=str(CLONE))

    def stats():
        proc = subprocess.run([sys.executable, "-c", _KERNELS], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    first, second = stats(), stats()
    assert len(second) == 7 and set(first) == set(second)  # touch + insert of 3 rule pairs, and a shared kernel
    assert all(misses >= 1 for hits, misses in first.values()), first  # compiled, then saved
    assert all(hits >= 1 and misses == 0 for hits, misses in second.values()), second  # loaded, none compiled
    generated = list((tmp_path / "numba" / "embcache-kernels").glob("_embcache_policy_*.py"))
    assert len(generated) == 3


def test_generated_kernels_take_checked_rules_only():
    from embcache.kernels.cpu import policy_kernels

    with pytest.raises(ConfigError):
        policy_kernels("__import__('os').system('true')", "score")
    with pytest.raises(ConfigError):
        policy_kernels("clock\nimport os", "score")


def test_the_kernel_cache_folder_defaults_to_the_users_cache(tmp_path, monkeypatch):
    from embcache.kernels.cpu import kernel_cache_dir

    for name in ("EMBCACHE_KERNEL_CACHE", "NUMBA_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kernel_cache_dir() == tmp_path / "xdg" / "embcache" / "kernels"
    (tmp_path / "file").write_text("")  # a cache "folder" that cannot be made: the next candidate is used
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    fallback = kernel_cache_dir()
    assert fallback is not None and fallback.is_dir() and os.access(fallback, os.W_OK)
    assert not str(fallback).startswith(str(tmp_path / "file"))


# ---------------------------------------------------------------- item 23: version, licence, plots, labels, capacity


def test_version(tmp_path):
    proc = run(["--version"], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"embcache {embcache.__version__}"


def test_licence_and_py_typed_are_shipped():
    from setuptools.config.setupcfg import read_configuration

    config = read_configuration(CLONE / "setup.cfg")
    assert config["metadata"]["license"] == "Apache-2.0"
    assert "LICENSE" in config["metadata"]["license_files"]
    text = (CLONE / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "END OF TERMS AND CONDITIONS" in text
    assert "py.typed" in config["options"]["package_data"]["embcache"] and (CLONE / "embcache" / "py.typed").exists()


def _rows(policies, admissions, ways=(32,)):
    return study.run_study(traces.zipf_trace(8000, 1500, seed=1), policies=policies, admissions=admissions,
                           capacities=[0.02, 0.1], ways=ways, batch=256, backend="cpu", progress=False)


@pytest.mark.parametrize("policies, admissions, ways", [
    (["lru", "lfu", "fifo"], ["always", "min_frequency"], (16, 32)),
    (["lru", "lfu", "fifo", "static"], ["always", "min_frequency", "refuse_below_min"], (8, 16, 32)),
])
def test_every_plotted_series_has_its_own_colour_and_the_legend_is_outside(policies, admissions, ways):
    import matplotlib
    from matplotlib.colors import to_hex

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(policies, admissions, ways)
    fig = study._figure(rows, "t", study.skipped_notes(policies, admissions))
    ax = fig.axes[0]
    lines = ax.get_lines()
    labels = {study._label(r, True) for r in rows}
    assert len(lines) == len(labels) > 12
    assert len({to_hex(line.get_color(), keep_alpha=True) for line in lines}) == len(lines)
    assert len({(line.get_marker(), line.get_linestyle()) for line in lines}) > 1
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1  # beside the data, not over it
    plt.close(fig)


def test_the_plot_and_the_output_say_which_combination_was_skipped(tmp_path, capsys):
    rows = _rows(["static", "lru"], ["always", "min_frequency"])
    notes = study.skipped_notes(["static", "lru"], ["always", "min_frequency"])
    assert notes == ["static + min_frequency skipped: a static cache never admits, so it equals static + always"]
    _, svg = study.plot_results(rows, tmp_path, "s", "t", notes=notes)
    assert "static + min_frequency skipped" in svg.read_text()
    traces.write_trace([traces.zipf_trace(5000, 800, seed=2)], tmp_path / "t", progress=False)
    assert main(["study", "--trace", str(tmp_path / "t"), "--policies", "static,lru", "--admissions",
                 "always,min_frequency", "--capacities", "400", "--out", str(tmp_path / "out"), "--no-progress",
                 "--no-belady"]) == 0
    out = capsys.readouterr().out
    assert "static + min_frequency skipped" in out


def test_the_rounded_up_capacity_is_reported(tmp_path, capsys):
    rows = study.run_study(traces.zipf_trace(5000, 800, seed=2), policies=["lru"], capacities=[400], ways=[32],
                           backend="cpu", progress=False)
    assert {(r["capacity_asked"], r["capacity"]) for r in rows} == {(400, 416)}  # 13 sets of 32
    traces.write_trace([traces.zipf_trace(5000, 800, seed=2)], tmp_path / "t", progress=False)
    assert main(["study", "--trace", str(tmp_path / "t"), "--policies", "lru", "--admissions", "always",
                 "--capacities", "400", "--out", str(tmp_path / "out"), "--no-progress", "--no-plot"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("lru"))
    assert line.split()[3:5] == ["400", "416"]
    from embcache.demo import format_table, run_demo

    trace = traces.zipf_trace(20_000, 3000, seed=0)
    demo_rows, _ = run_demo(trace, policies=("lru",), fractions=(0.01,), dim=4, batch=512, backend="cpu",
                            progress=False, store_path="memory")
    asked = int(0.01 * np.unique(trace).shape[0])
    assert (demo_rows[0].asked, demo_rows[0].capacity) == (asked, 32) and asked < 32
    header, line = format_table(demo_rows).splitlines()
    assert header.split()[1:3] == ["asked", "slots"] and line.replace(" ", "").startswith(f"lru{asked}(1%)32")


def test_describe_labels_its_histogram_bins(tmp_path):
    np.save(tmp_path / "k.npy", np.array([1, 2, 1, 1, 3, 2, 5, 6, 7, 8, 1], np.int64))
    proc = run(["trace", "describe", tmp_path / "k.npy"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = {line.split()[0]: int(line.split()[1]) for line in proc.stdout.splitlines()
             if line.startswith(" ") and line.split()[0][0].isdigit()}
    assert table == {"0": 1, "1": 1, "2-3": 1, "4-7": 1}  # distances 1, 0, 2, 6
    assert traces.describe(np.array([1, 2, 1]))["reuse_bins"] == ["0", "1"]


def test_study_writes_into_a_temporary_folder_unless_told(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    traces.write_trace([traces.zipf_trace(3000, 500, seed=2)], tmp_path / "t", progress=False)
    before = sorted(p.name for p in CLONE.iterdir())
    proc = run(["study", "--trace", tmp_path / "t", "--policies", "lru", "--admissions", "always", "--capacities",
                "0.1", "--no-belady", "--no-progress"], tmp_path, env={"TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stderr
    wrote = pathlib.Path(proc.stdout.strip().splitlines()[-1].split()[1])
    assert wrote.parent.parent == temp and wrote.exists()
    assert sorted(p.name for p in CLONE.iterdir()) == before and not any((tmp_path / "cwd").iterdir())


def test_import_output_never_prints_the_password(tmp_path):
    from tests.redis_servers import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("needs redis-server")
    server = RedisServer(tmp_path / "redis", password="s3cret-pw")
    try:
        np.save(tmp_path / "k.npy", np.arange(5))
        np.save(tmp_path / "r.npy", np.ones((5, 4), np.float32))
        url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
        proc = run(["import", "npy", tmp_path / "k.npy", tmp_path / "r.npy", "--to", url, "--dim", "4",
                    "--no-progress"], tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret-pw" not in proc.stdout + proc.stderr and "imported 5 rows into redis://:***@" in proc.stdout
    finally:
        server.stop()
