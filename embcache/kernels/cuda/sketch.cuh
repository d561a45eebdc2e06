// The count-min sketch's column hash, and the stream-ordered lookup's sketch phases: shared by
// sketch.cu (its kernels) and ordered.cu (the fused small-batch kernel), so both count alike.
#pragma once

#include "common.cuh"

// ---------------------------------------------------------------- count-min sketch
__device__ __forceinline__ i64 sketch_column(i64 key, int row, u64 seed, i64 width) {
    return (i64)(mix64((u64)key + (u64)(row + 1) * GOLDEN + seed) & (u64)(width - 1));
}

// the count-min estimate of key: the minimum of its counters over the depth rows of width counters
__device__ __forceinline__ i64 sketch_estimate_of(const i64* __restrict__ sketch, int depth, i64 width, u64 seed, i64 key) {
    i64 best = MAX_SCORE;
    for (int r = 0; r < depth; ++r) {
        const i64 v = sketch[r * width + sketch_column(key, r, seed, width)];
        best = v < best ? v : best;
    }
    return best;
}

// A sketch that insert_one compares a key with its victim by (TinyLFU): counts == nullptr compares nothing;
// by_frequency (TinyLFUEvict) makes the sketch pick the victim too; chance (TinyLFUTables, else nullptr):
// the 64 tables' return chances, which rank the keys seen once (cpu.frequency_victim).
struct victim_sketch_t {
    const i64* counts;
    int depth;
    i64 width;
    u64 seed;
    int by_frequency;
    const i64* chance;
};

// TinyLFUTables' second rank: the return chance of key's table if its estimate is 1, else 0 (cpu._singleton_chance)
__device__ __forceinline__ i64 singleton_chance(const victim_sketch_t& v, i64 key, i64 estimate) {
    return v.chance != nullptr && estimate == 1 ? v.chance[(key >> 32) & 63] : 0;  // 63: _table_chance.TABLES - 1
}

// As sketch_add and sketch_estimate for the distinct missed keys of a stream-ordered lookup
// (ordered.cu), whose count u only the device knows: every distinct missed key is counted, and only
// when the batch admits (ordered_distinct's decision), as Cache's host path does it.  Thread tid of
// stride threads.
__device__ __forceinline__ void sketch_add_phase(i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                                 const i64* __restrict__ ukeys, const i64* __restrict__ ucount,
                                                 const i64* __restrict__ state, i64 tid, i64 stride) {
    if (!state[ORD_BATCH + F_ADMITS]) return;
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    for (i64 j = tid; j < u; j += stride) {
        const i64 c = ucount[j];
        for (int r = 0; r < depth; ++r)
            atomic_apply(sketch + r * width + sketch_column(ukeys[j], r, seed, width),
                         [c](i64 v) { return sat_add(v, c); });
    }
}

// A distinct missed key stays admitted only if its estimate (after the whole batch was counted)
// reaches threshold; counts the admitted keys (every thread of whole warps calls it).
__device__ __forceinline__ void sketch_admit_phase(const i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                                   const i64* __restrict__ ukeys, bool* __restrict__ uadmit,
                                                   i64 threshold, i64* __restrict__ state, i64 tid, i64 stride) {
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    unsigned admitted = 0;
    for (i64 j = tid; j < u; j += stride) {
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
