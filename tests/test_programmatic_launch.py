"""Programmatic dependent launch (embcache._cuda.Launcher(programmatic=True)): the launch configuration
has cuda.h's layout, and a kernel launched so starts before its predecessor ends (it reads the global
timer before its wait) and, waiting for it in the kernel, reads what that one wrote: eagerly and in a
replayed CUDA graph."""
import ctypes
import os

import numpy as np
import pytest

from embcache._cuda import gpu_available


def test_the_launch_structures_have_cuda_h_layout():
    """CUlaunchAttribute: a 4-byte id, 4 bytes of padding, a 64-byte union; CUlaunchConfig: six
    dimensions and the shared bytes (28 bytes), the stream at 32, the attributes at 40, their count at 48."""
    from embcache._cuda import _LaunchAttribute, _LaunchConfig, _programmatic_attribute

    assert ctypes.sizeof(_LaunchAttribute) == 72 and _LaunchAttribute.value.offset == 8
    assert ctypes.sizeof(_LaunchConfig) == 56
    attribute = _programmatic_attribute()
    # id 6 (PROGRAMMATIC_STREAM_SERIALIZATION), then the value's first int: 1.  (2026-12-04's first
    # version wrote the 1 through a c_char field, which reads back as a bytes object: the flag stayed 0
    # and the write landed in the interpreter's empty bytes, so later compiles saw a stray token)
    assert bytes(attribute)[:12] == (6).to_bytes(4, "little") + bytes(4) + (1).to_bytes(4, "little")
    assert bytes(attribute)[12:] == bytes(60)
    assert (_LaunchConfig.shared_mem.offset, _LaunchConfig.stream.offset, _LaunchConfig.attrs.offset,
            _LaunchConfig.num_attrs.offset) == (24, 32, 40, 48)


_SOURCE = r"""
// the producer lets its dependent start at once, then spins before it writes: a dependent that read
// before its wait would find the old values
// when[0]: the global timer as the producer's first block finished spinning; when[1]: as the consumer's
// first block started (before its wait)
__device__ long long now() {
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

extern "C" __global__ void produce(long long* x, long long n, long long value, long long spin_ns, long long* when) {
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    const long long t0 = now();
    long long t;
    do { t = now(); } while (t - t0 < spin_ns);
    if (blockIdx.x == 0 && threadIdx.x == 0) when[0] = t;
    for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) x[i] = value + i;
}

// holds the stream until the host has enqueued both launches (*open set by a copy on another stream), so
// that the consumer's start does not depend on how fast a busy host launches it; gives up after 2 s
extern "C" __global__ void gate(const volatile int* open) {
    const long long t0 = now();
    while (!*open && now() - t0 < 2000000000LL) {}
}

extern "C" __global__ void consume(const long long* x, long long* y, long long n, long long* when) {
    const long long started = now();
    asm volatile("griddepcontrol.wait;" ::: "memory");
    if (blockIdx.x == 0 && threadIdx.x == 0) when[1] = started;
    for (long long i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) y[i] = 2 * x[i];
}
"""

def gpu(test):
    """A GPU test: marked, and skipped where there is no CUDA GPU."""
    return pytest.mark.gpu(pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")(test))


def _sm90():
    import cupy

    if int(cupy.cuda.Device().compute_capability) < 90:
        pytest.skip("programmatic launches need sm_90")


@pytest.mark.parametrize("captured", [False, True])
@gpu
def test_a_programmatic_launch_waits_for_its_predecessor_in_the_kernel(captured):
    _sm90()
    import cupy

    from embcache._cuda import Launcher

    module = cupy.RawModule(code=_SOURCE)
    gate = module.get_function("gate")
    produce = Launcher(module.get_function("produce"))
    consume = Launcher(module.get_function("consume"), programmatic=True)
    assert consume.programmatic and not produce.programmatic
    n = 4096
    x, y, when = cupy.zeros(n, cupy.int64), cupy.full(n, -1, cupy.int64), cupy.zeros(2, cupy.int64)
    shut, one = cupy.zeros(1, cupy.int32), cupy.ones(1, cupy.int32)
    stream, opener = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
    cupy.cuda.Device().synchronize()  # those fills ran on the legacy stream, which neither stream waits for
    value = np.int64(1000)
    serialized = os.environ.get("CUDA_LAUNCH_BLOCKING") == "1"

    def both():
        produce((8,), (256,), (x, np.int64(n), value, np.int64(200_000), when))  # 200 us before the writes
        consume((8,), (256,), (x, y, np.int64(n), when))

    with stream:
        if captured:
            stream.begin_capture()
            both()
            graph = stream.end_capture()
        for rep in range(3):
            x.fill(0)
            y.fill(-1)
            if captured:
                graph.launch(stream)
            elif serialized:
                both()
            else:  # both queued behind the gate before the producer starts (a host busy with other work
                # launched the consumer 277 us late on 2026-12-04, after the producer had finished)
                shut.fill(0)
                opener.wait_event(stream.record())  # the copy that opens the gate comes after this fill
                gate((1,), (1,), (shut,))
                both()
                cupy.cuda.runtime.memcpyAsync(shut.data.ptr, one.data.ptr, 4, cupy.cuda.runtime.memcpyDeviceToDevice,
                                              opener.ptr)
            stream.synchronize()
            assert (y.get() == 2 * (1000 + np.arange(n))).all(), rep
            produced, started = when.get()
            if not serialized:  # launches made blocking (a debugging setting) never overlap
                assert started < produced, f"the consumer started {started - produced} ns after the producer's writes"


@gpu
def test_the_small_batch_miss_path_is_launched_programmatically_on_sm90():
    import cupy

    import embcache

    cache = embcache.Cache(capacity=4096, dim=8, backend="gpu", ways=32)
    kernels = cache._backend._k
    sm90 = int(cupy.cuda.Device().compute_capability) >= 90
    assert kernels["ordered_small"].programmatic == sm90
    assert not kernels["ordered_misses"].programmatic  # only the small batch's one launch
    cache.close()

