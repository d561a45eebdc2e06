// embcache GPU kernels: the count-min sketch of MinFrequency.
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "sketch.cuh"

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
// (the phases are in sketch.cuh; ordered.cu's fused kernel runs them too)
extern "C" __global__ void ordered_sketch_add(i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                              const i64* __restrict__ ukeys, const i64* __restrict__ ucount,
                                              const i64* __restrict__ state) {
    sketch_add_phase(sketch, depth, width, seed, ukeys, ucount, state, (i64)blockIdx.x * blockDim.x + threadIdx.x,
                     (i64)gridDim.x * blockDim.x);
}

extern "C" __global__ void ordered_sketch_admit(const i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                                const i64* __restrict__ ukeys, bool* __restrict__ uadmit,
                                                i64 threshold, i64* __restrict__ state) {
    sketch_admit_phase(sketch, depth, width, seed, ukeys, uadmit, threshold, state,
                       (i64)blockIdx.x * blockDim.x + threadIdx.x, (i64)gridDim.x * blockDim.x);
}
