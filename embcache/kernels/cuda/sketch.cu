// embcache GPU kernels: the count-min sketch of MinFrequency.
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "common.cuh"

// ---------------------------------------------------------------- count-min sketch
__device__ __forceinline__ i64 sketch_column(i64 key, int row, u64 seed, i64 width) {
    return (i64)(mix64((u64)key + (u64)(row + 1) * GOLDEN + seed) & (u64)(width - 1));
}

// Batch-synchronous like sketch_cpu: this kernel adds every key's count, sketch_estimate reads after.
extern "C" __global__ void sketch_add(i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                      const i64* __restrict__ keys, const i64* __restrict__ counts, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 c = counts[i];
        for (int r = 0; r < depth; ++r)
            atomic_apply(sketch + r * width + sketch_column(keys[i], r, seed, width),
                         [c](i64 v) { return sat_add(v, c); });
    }
}

extern "C" __global__ void sketch_estimate(const i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                           const i64* __restrict__ keys, i64 n, i64* __restrict__ estimate) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 best = MAX_SCORE;
        for (int r = 0; r < depth; ++r) {
            const i64 v = sketch[r * width + sketch_column(keys[i], r, seed, width)];
            best = v < best ? v : best;
        }
        estimate[i] = best;
    }
}

// ---------------------------------------------------------------- the stream-ordered lookup's sketch
// As sketch_add and sketch_estimate for the distinct missed keys of a stream-ordered lookup
// (ordered.cu), whose count u only the device knows: every distinct missed key is counted, and only
// when the batch admits (ordered_distinct's decision), as Cache's host path does it.
extern "C" __global__ void ordered_sketch_add(i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                              const i64* __restrict__ ukeys, const i64* __restrict__ ucount,
                                              const i64* __restrict__ state) {
    if (!state[ORD_BATCH + F_ADMITS]) return;
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < u; j += (i64)gridDim.x * blockDim.x) {
        const i64 c = ucount[j];
        for (int r = 0; r < depth; ++r)
            atomic_apply(sketch + r * width + sketch_column(ukeys[j], r, seed, width),
                         [c](i64 v) { return sat_add(v, c); });
    }
}

// A distinct missed key stays admitted only if its estimate (after the whole batch was counted)
// reaches threshold; counts the admitted keys.
extern "C" __global__ void ordered_sketch_admit(const i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                                const i64* __restrict__ ukeys, bool* __restrict__ uadmit,
                                                i64 threshold, i64* __restrict__ state) {
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    unsigned admitted = 0;
    for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < u; j += (i64)gridDim.x * blockDim.x) {
        if (!uadmit[j]) continue;
        i64 best = MAX_SCORE;
        for (int r = 0; r < depth; ++r) {
            const i64 v = sketch[r * width + sketch_column(ukeys[j], r, seed, width)];
            best = v < best ? v : best;
        }
        const bool ok = best >= threshold;
        uadmit[j] = ok;
        admitted += ok;
    }
    admitted = warp_sum(admitted);
    if ((threadIdx.x & 31) == 0 && admitted)
        atomicAdd(reinterpret_cast<unsigned long long*>(state + ORD_BATCH + F_ADMITTED), (unsigned long long)admitted);
}
