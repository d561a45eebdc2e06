"""SharedHostStore: one table in /dev/shm, one writer and readers in other processes (real ones).

Readers check every snapshot against a dict model of the writer's program at the generation they
read (tests/shared_host_workers.py), so a torn row, a half-applied batch or a generation that goes
back fails the test.  Waits are bounded by events and timeouts; nothing sleeps.
"""
from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import embcache
from embcache._dtypes import row_dtype
from embcache.errors import ClosedError, ConfigError, StoreNotFoundError, TierError
from embcache.kernels.gpu import gpu_available
from embcache.tiers import HostStore, SharedHostStore

from . import shared_host_workers as work
from .strategies import rows_for

ROOT = "/dev/shm" if os.path.isdir("/dev/shm") else None
pytestmark = pytest.mark.skipif(ROOT is None, reason="needs /dev/shm (Linux)")
SPAWN = multiprocessing.get_context("spawn")
WAIT = 120  # seconds: the most any one wait may take on a loaded machine


@pytest.fixture
def name():
    name = f"test-{os.getpid()}-{secrets.token_hex(4)}"
    yield name
    SharedHostStore.unlink(name, root=ROOT, missing_ok=True)


def rows(keys, value):
    out = np.full((len(keys), work.DIM), value, np.float32)
    out[:, 0] = keys
    return out


# ---------------------------------------------------------------------- one process
def test_a_reader_of_a_table_that_does_not_exist_is_store_not_found(name):
    with pytest.raises(StoreNotFoundError, match="no shared table"):
        SharedHostStore(name, 4, root=ROOT)
    with pytest.raises(StoreNotFoundError):
        SharedHostStore(name, 4, writer=True, root=ROOT)
    assert not os.path.exists(os.path.join(ROOT, f"embcache-{name}"))  # opening made nothing


def test_create_opens_the_writer_and_readers_see_its_commits(name):
    with SharedHostStore.create(name, 4, "float32", capacity=50, root=ROOT) as writer:
        reader = SharedHostStore(name, 4, "float32", root=ROOT)
        assert (len(reader), reader.generation) == (0, 0)
        writer.put_many(np.array([1, 2, 1]), rows([1, 2, 1], 5.0) + np.arange(3)[:, None] * [0, 0, 0, 1])
        got, found = reader.get_many(np.array([1, 2, 3]))
        assert found.tolist() == [True, True, False] and got[0, 3] == 7.0  # the last row of key 1 won
        assert reader.generation == 1 and sorted(reader.keys().tolist()) == [1, 2]
        writer.delete_many(np.array([2, 99]))
        assert reader.get_many(np.array([2]))[1].tolist() == [False] and len(reader) == 1
        reader.close()


def test_a_reader_is_read_only(name):
    SharedHostStore.create(name, 4, capacity=10, root=ROOT).close()
    with SharedHostStore(name, 4, root=ROOT) as reader:
        with pytest.raises(ConfigError, match="read-only"):
            reader.put_many(np.array([1]), rows([1], 1.0))
        with pytest.raises(ConfigError, match="read-only"):
            reader.delete_many(np.array([1]))


def test_a_second_writer_is_refused_while_the_first_lives(name):
    first = SharedHostStore.create(name, 4, capacity=10, root=ROOT)
    with pytest.raises(TierError, match="writer"):
        SharedHostStore(name, 4, writer=True, root=ROOT)
    with pytest.raises(TierError, match="writer"):
        SharedHostStore.create(name, 4, capacity=10, root=ROOT)
    first.put_many(np.array([3]), rows([3], 1.0))
    first.close()
    with SharedHostStore(name, 4, writer=True, root=ROOT) as second:  # the lock went with the first
        second.put_many(np.array([4]), rows([4], 2.0))
        assert sorted(second.keys().tolist()) == [3, 4]


def test_a_writer_dropped_unclosed_lets_its_lock_go(name):
    SharedHostStore.create(name, 4, capacity=10, root=ROOT).put_many(np.array([1]), rows([1], 1.0))
    import gc

    gc.collect()
    with SharedHostStore(name, 4, writer=True, root=ROOT) as writer:
        assert writer.keys().tolist() == [1]


def test_opening_checks_the_rows_and_capacity_the_table_holds(name):
    SharedHostStore.create(name, 4, "float16", capacity=10, root=ROOT).close()
    with pytest.raises(ConfigError, match="dim=4 float16"):
        SharedHostStore(name, 8, "float16", root=ROOT)
    with pytest.raises(ConfigError, match="dim=4 float16"):
        SharedHostStore(name, 4, "float32", root=ROOT)
    with pytest.raises(ConfigError, match="capacity is 10"):
        SharedHostStore(name, 4, "float16", capacity=20, root=ROOT)
    with pytest.raises(ConfigError, match="needs a capacity"):
        SharedHostStore(name + "x", 4, create=True, root=ROOT)
    with pytest.raises(ConfigError, match="name"):
        SharedHostStore("../etc", 4, root=ROOT)


def test_a_put_that_does_not_fit_writes_nothing(name):
    with SharedHostStore.create(name, 4, capacity=5, root=ROOT) as writer:
        writer.put_many(np.arange(4), rows(range(4), 1.0))
        with pytest.raises(TierError, match="do not fit"):
            writer.put_many(np.arange(2, 8), rows(range(2, 8), 2.0))
        assert writer.generation == 1 and len(writer) == 4
        writer.put_many(np.arange(0, 5), rows(range(0, 5), 3.0))  # keys already stored take no room
        assert len(writer) == 5


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rows_of_every_dtype_come_back_bit_for_bit(name, dtype):
    keys = np.arange(0, 300, 3, dtype=np.int64)
    want = rows_for(keys, 12, row_dtype(dtype), seed=1)
    with SharedHostStore.create(name, 12, dtype, capacity=200, root=ROOT) as writer:
        writer.put_many(keys, want)
        with SharedHostStore(name, 12, dtype, root=ROOT) as reader:
            got, found = reader.get_many(keys)
            assert found.all() and got.dtype == want.dtype and got.tobytes() == want.tobytes()


def test_a_closed_store_raises_closed_error(name):
    writer = SharedHostStore.create(name, 4, capacity=5, root=ROOT)
    reader = SharedHostStore(name, 4, root=ROOT)
    reader.close()
    writer.close()
    with pytest.raises(ClosedError):
        reader.get_many(np.array([1]))
    with pytest.raises(ClosedError):
        writer.put_many(np.array([1]), rows([1], 1.0))
    reader.close()  # twice is fine


def test_threads_of_one_process_read_whole_generations_while_one_writes(name):
    """The Tier lock within a process: reader objects of their own and one shared by two threads,
    each snapshot checked against the model, while a writer thread commits."""
    final = 120
    writer = SharedHostStore.create(name, work.DIM, capacity=work.KEYS, root=ROOT)
    shared = SharedHostStore(name, work.DIM, root=ROOT)
    stores = [SharedHostStore(name, work.DIM, root=ROOT) for _ in range(2)] + [shared, shared]
    errors, seen = [], [set() for _ in stores]
    started = threading.Barrier(len(stores) + 1, timeout=WAIT)

    def read(i):
        try:
            model = work.Model()
            started.wait()
            while True:
                g = work.check_snapshot(stores[i], model)
                seen[i].add(g)
                if g >= final:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    started.wait()
    for g in range(1, final + 1):
        work.apply(writer, g)
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert all(max(s) == final for s in seen)
    for store in {id(s): s for s in stores + [writer]}.values():
        store.close()


class SharedTableMachine(RuleBasedStateMachine):
    """The writer and a reader against a dict, through puts, deletions, a full table and a new writer."""

    def __init__(self):
        super().__init__()
        self.name = f"machine-{os.getpid()}-{secrets.token_hex(4)}"
        self.writer = SharedHostStore.create(self.name, 3, capacity=24, root=ROOT)
        self.reader = SharedHostStore(self.name, 3, root=ROOT)
        self.model: dict[int, np.ndarray] = {}
        self.generation = 0

    keys = st.lists(st.integers(0, 40), max_size=12)

    @rule(keys=keys, value=st.integers(0, 1000))
    def put(self, keys, value):
        keys = np.array(keys, np.int64)
        values = (np.full((keys.shape[0], 3), value) + np.arange(keys.shape[0])[:, None]).astype(np.float32)
        new = {int(k) for k in keys} - set(self.model)
        if len(self.model) + len(new) > 24:
            with pytest.raises(TierError):
                self.writer.put_many(keys, values)
            return
        self.writer.put_many(keys, values)
        for k, v in zip(keys.tolist(), values):
            self.model[k] = v
        self.generation += keys.shape[0] > 0

    @rule(keys=keys)
    def delete(self, keys):
        self.writer.delete_many(np.array(keys, np.int64))
        for k in keys:
            self.model.pop(k, None)
        self.generation += len(keys) > 0

    @precondition(lambda self: self.generation > 0)
    @rule()
    def new_writer(self):
        self.writer.close()
        self.writer = SharedHostStore(self.name, 3, writer=True, root=ROOT)

    @invariant()
    def reader_matches_the_model(self):
        keys = np.arange(41, dtype=np.int64)
        for store in (self.reader, self.writer):
            got, found = store.get_many(keys)
            assert found.tolist() == [k in self.model for k in range(41)]
            assert all(got[k].tobytes() == self.model[k].tobytes() for k in self.model)
            assert len(store) == len(self.model) and store.generation == self.generation

    def teardown(self):
        self.reader.close()
        self.writer.close()
        SharedHostStore.unlink(self.name, root=ROOT)


test_shared_table_machine = SharedTableMachine.TestCase


# ---------------------------------------------------------------------- several processes
def test_reader_processes_see_whole_committed_generations_while_the_writer_commits(name):
    """Three reader processes check snapshots against the model until they see the last commit."""
    final, readers = 200, 3
    writer = SharedHostStore.create(name, work.DIM, capacity=work.KEYS, root=ROOT)
    results = SPAWN.Queue()
    ready = [SPAWN.Event() for _ in range(readers)]
    procs = [SPAWN.Process(target=work.reader, args=(name, ROOT, final, ready[i], results)) for i in range(readers)]
    for p in procs:
        p.start()
    try:
        assert all(e.wait(WAIT) for e in ready), "a reader process did not start"
        for g in range(1, final + 1):
            work.apply(writer, g)
        outcomes = [results.get(timeout=WAIT) for _ in procs]
    finally:
        for p in procs:
            p.join(WAIT)
            if p.is_alive():
                p.kill()
    assert all(o[0] == "ok" for o in outcomes), "\n".join(str(o[1]) for o in outcomes if o[0] != "ok")
    assert all(o[1][-1] == final for o in outcomes)
    writer.close()


def test_a_writer_killed_mid_commit_leaves_readers_the_last_committed_rows(name):
    """SIGKILL during a big put: readers serve exactly generation ``first``; a new writer repairs the
    half-written copy and continues, and readers follow it."""
    first, big = 30, 1_000_000
    SharedHostStore.create(name, work.DIM, capacity=big + work.KEYS, root=ROOT).close()
    reader = SharedHostStore(name, work.DIM, root=ROOT)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=work.killed_writer, args=(name, ROOT, first, big, ready))
    child.start()
    try:
        assert ready.wait(WAIT), "the writer process did not get to its big put"
        copy_gen = 7 + ((first + 1) & 1)  # header word: the generation of the copy the big commit writes
        deadline = time.monotonic() + WAIT
        while reader._header[copy_gen] != -1 and time.monotonic() < deadline and child.is_alive():
            os.sched_yield()  # bounded: until the commit marks its copy dirty
        os.kill(child.pid, signal.SIGKILL)
        child.join(WAIT)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    # killed inside the big commit: its copy half-written (dirty), the generation word not moved
    assert int(reader._header[copy_gen]) == -1 and int(reader._header[6]) == first
    model = work.Model()
    assert work.check_snapshot(reader, model) == first  # exactly the last committed rows
    assert not reader.get_many(np.array([10_000, 10_000 + big - 1]))[1].any()

    with SharedHostStore(name, work.DIM, writer=True, root=ROOT) as writer:  # the dead writer's lock is gone
        for g in range(first + 1, first + 4):  # both copies written again after the repair
            work.apply(writer, g)
            assert work.check_snapshot(reader, model) == g
    reader.close()


# ---------------------------------------------------------------------- a cache over it
@pytest.mark.parametrize("policy", ["lru", "lfu"])
def test_a_cpu_cache_over_a_shared_table_behaves_as_over_a_host_store(name, policy):
    keys = np.arange(0, 3000, 2, dtype=np.int64)
    values = rows_for(keys, 8, "float32", seed=3)
    writer = SharedHostStore.create(name, 8, capacity=4000, root=ROOT)
    writer.put_many(keys, values)
    host = HostStore(8)
    host.put_many(keys, values)
    reader = SharedHostStore(name, 8, root=ROOT)
    caches = [embcache.Cache(256, 8, policy, "always", "float32", "cpu", tier, default=-1.0, ways=8)
              for tier in (host, reader)]
    rng = np.random.default_rng(0)
    for step in range(12):
        batch = rng.integers(0, 3200, 500)
        if step > 5:
            batch = np.concatenate([batch, rng.integers(5000, 5100, 50)])
        a, b = (c.lookup(batch) for c in caches)
        assert a.tobytes() == b.tobytes()
        if step == 5:  # new rows in both tables (a reader's cache cannot write through)
            new = np.arange(5001, 5101, 2, dtype=np.int64)
            for tier in (host, writer):
                tier.put_many(new, rows_for(new, 8, "float32", seed=4))
        assert caches[0].stats.as_dict() == caches[1].stats.as_dict()
    for c in caches:
        c.close()
    for s in (host, reader, writer):
        s.close()


def test_a_cache_cannot_write_through_a_reader(name):
    SharedHostStore.create(name, 4, capacity=10, root=ROOT).close()
    with SharedHostStore(name, 4, root=ROOT) as reader:
        cache = embcache.Cache(64, 4, "lru", "always", "float32", "cpu", reader, ways=4)
        with pytest.raises(ConfigError, match="read-only"):
            cache.insert(np.array([1]), rows([1], 1.0))


# ---------------------------------------------------------------------- the GPU reading it in place
GPU = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")]


@pytest.mark.parametrize("dtype, policy", [("float32", "lru"), ("float16", "lfu"), ("bfloat16", "static")])
@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_gpu_cache_reads_a_shared_table_in_place_with_the_cpu_caches_rows_and_stats(name, dtype, policy):
    from .strategies import host as to_host

    keys = np.arange(0, 5000, 3, dtype=np.int64)
    writer = SharedHostStore.create(name, 32, dtype, capacity=6000, root=ROOT)
    writer.put_many(keys, rows_for(keys, 32, row_dtype(dtype), seed=0))
    readers = [SharedHostStore(name, 32, dtype, root=ROOT) for _ in range(2)]
    cpu, gpu = (embcache.Cache(256, 32, policy, "always", dtype, backend, tier, default=-1.5, ways=32)
                for backend, tier in zip(("cpu", "gpu"), readers))
    assert gpu._zero_copy and not cpu._zero_copy
    rng = np.random.default_rng(1)
    for step in range(16):
        if step == 8:  # a commit between lookups: the next lookup reads the new generation
            new = np.arange(6001, 6400, 2, dtype=np.int64)
            writer.put_many(new, rows_for(new, 32, row_dtype(dtype), seed=9))
        batch = rng.integers(0, 6400, 700)
        assert to_host(cpu.lookup(batch)).tobytes() == to_host(gpu.lookup(batch)).tobytes()
        assert cpu.stats.as_dict() == gpu.stats.as_dict()
    for c in (cpu, gpu):
        c.clear()
        c.preload(np.arange(1, 100, 3))  # the miss path's gather, through the same device source
    assert cpu.stats.as_dict() == gpu.stats.as_dict()
    for c in (cpu, gpu):
        c.close()
    for s in readers + [writer]:
        s.close()


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_a_shared_tables_device_source_is_the_committed_generation(name):
    import cupy

    from .strategies import host as to_host

    writer = SharedHostStore.create(name, 8, capacity=100, root=ROOT)
    reader = SharedHostStore(name, 8, root=ROOT)
    default = cupy.zeros(8, cupy.uint32)
    for g in range(1, 6):
        keys = np.arange(g * 10, g * 10 + 10, dtype=np.int64)
        writer.put_many(keys, rows_for(keys, 8, "float32", seed=g))
        probe = np.arange(0, 70, dtype=np.int64)
        want, found = reader.get_many(probe)
        got, got_found = reader.gather_to_device(cupy.asarray(probe), default)
        assert to_host(got_found).tolist() == found.tolist()
        assert to_host(got).tobytes() == want.view(np.uint32).tobytes()
        with reader.lock:
            source = reader.device_source()
            assert source.owner is reader and int(source.mask) + 1 >= 200 and source.dim == 8
    writer.close()
    reader.close()
