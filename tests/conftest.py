import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, stateful_step_count=40, derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", max_examples=60, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough", max_examples=1000, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(  # a few examples, for runs under compute-sanitizer (100x slower launches)
    "sanitize", max_examples=4, stateful_step_count=10, derandomize=True, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def data_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("EMBCACHE_DATA", pathlib.Path(__file__).parents[1] / ".." / "shared" / "data"))


@pytest.fixture
def criteo_dir():
    path = data_dir() / "criteo"
    if not (path / "train_head10k.txt").exists():
        pytest.skip(f"Criteo sample not found under {path}; set EMBCACHE_DATA")
    return path


@pytest.fixture
def vectors_dir():
    path = data_dir().parent / "vectors"
    if not (path / "mix64.json").exists():
        pytest.skip(f"test vectors not found under {path}")
    return path


# one Redis server (and one 3-master cluster) per test module that asks for them, on loopback ports of their own
@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    from .redis_servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory):
    from .redis_servers import RedisCluster

    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def pytest_runtest_logreport(report):
    """With EMBCACHE_FAILURE_LOG set, each failure's report is appended to that file as it happens, so a
    run cut short (a lent GPU machine's time limit) still says what failed and why."""
    path = os.environ.get("EMBCACHE_FAILURE_LOG")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # under pytest -n the controller gets every report too: it writes
        return
    if path and (report.failed or (report.when == "call" and report.outcome == "failed")):
        with open(path, "a") as f:
            f.write(f"=== {report.nodeid} [{report.when}] {report.duration:.1f}s\n{report.longreprtext[-6000:]}\n")
