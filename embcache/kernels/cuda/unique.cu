// embcache GPU kernels: unique keys and the sets the insertion sorts by.
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "common.cuh"

// ---------------------------------------------------------------- unique (sorted keys in, runs out)
// Both kernels take keys already sorted by a stable argsort (order[]), so results are deterministic.
// starts[i] = 1 where a run of equal keys begins.
extern "C" __global__ void run_starts(const i64* __restrict__ sorted, i64 n, i64* __restrict__ starts) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        starts[i] = i == 0 || sorted[i] != sorted[i - 1];
}

// rank[i] = inclusive prefix sum of starts.  Writes the u unique keys, the sorted position where each
// run begins (bounds[u] = n) and, for every original position, the index of its unique key.
extern "C" __global__ void run_scatter(const i64* __restrict__ sorted, const i64* __restrict__ order,
                                       const i64* __restrict__ starts, const i64* __restrict__ rank, i64 n, i64 u,
                                       i64* __restrict__ ukeys, i64* __restrict__ bounds, i64* __restrict__ inverse) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = rank[i] - 1;
        if (starts[i]) { ukeys[r] = sorted[i]; bounds[r] = i; }
        inverse[order[i]] = r;
        if (i == 0) bounds[u] = n;
    }
}

// Set of every key, as the type the sort uses (32-bit when num_sets allows: half the radix passes).
extern "C" __global__ void sets_of(const i64* __restrict__ keys, i64 n, u64 num_sets, set_t* __restrict__ out) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = (set_t)set_of(keys[i], num_sets);
}
