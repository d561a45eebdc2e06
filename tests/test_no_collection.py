"""``embcache._cuda.no_collection``: the cyclic collector held off during CUDA-graph captures (a collection
freeing pinned host memory voids a capture), re-entrant, shared between threads, and left as it was found.
Runs without a GPU: it is plain Python."""
import gc
import threading

import pytest

from embcache._cuda import no_collection


@pytest.fixture(autouse=True)
def collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_inside_and_back_on_after_even_on_failure():
    gc.enable()
    with no_collection():
        assert not gc.isenabled()
        with no_collection():  # nested: the inner exit leaves the outer one covered
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(KeyError):
        with no_collection():
            raise KeyError("boom")
    assert gc.isenabled()


def test_a_collector_the_caller_had_disabled_stays_disabled():
    gc.disable()
    with no_collection():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_two_threads_capturing_at_once_stay_covered_until_both_are_done():
    """Thread A enters, then B; A leaves first: B is still covered. Only B's exit enables the collector."""
    gc.enable()
    a_in, b_in, a_out, b_may_leave = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with no_collection():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with no_collection():
            b_in.set()
            a_out.wait(10)
            seen["after a left"] = gc.isenabled()
            b_may_leave.wait(10)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    a_out.wait(10)
    b_may_leave.set()
    for t in threads:
        t.join(10)
    assert seen == {"after a left": False}
    assert gc.isenabled()
