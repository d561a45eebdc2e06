// embcache GPU kernels: the hits' score updates of a batch (the touch), shared by probe.cu's touch
// kernel and ordered.cu's fused small batch.
//
// The hit rule composes (count a then b equals a + b), so a block counts each slot's occurrences in a
// chunk of TOUCH_CHUNK in a shared hash table, then applies the rule once per distinct slot with that
// count.  Skewed batches touch a few hot slots thousands of times; without this those atomics
// serialize on one address.  Blocks of ORDERED_BLOCK threads (one occurrence a thread a chunk): with
// fewer, the apply loop's dependent load-and-CAS rounds set the kernel's length.
#pragma once

#include "common.cuh"

#define TOUCH_TABLE (2 * TOUCH_CHUNK)  // load factor <= 1/2: a probe chain always ends

struct touch_shared_t {
    unsigned long long slot[TOUCH_TABLE];
    unsigned count[TOUCH_TABLE];
};

// Chunks first, first + step, ... of slots[0, n) (misses, slot < 0, skipped), every hit scored with
// hit_score(score, clock, count).  The whole block calls it (it has barriers).  parts > 1: only the
// slots of the sets s with s % parts == part (a block of the small batch's kernel owns those sets).
__device__ __forceinline__ void touch_chunks(slot_t* __restrict__ table, const i64* __restrict__ slots, i64 n,
                                             i64 clock, i64 first, i64 step, touch_shared_t& sh, int part = 0,
                                             int parts = 1) {
    const unsigned long long empty = ~0ull;  // no slot is -1 once negative slots (misses) are skipped
    for (i64 base = first * TOUCH_CHUNK; base < n; base += step * TOUCH_CHUNK) {
        for (int t = threadIdx.x; t < TOUCH_TABLE; t += blockDim.x) {
            sh.slot[t] = empty;
            sh.count[t] = 0;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < TOUCH_CHUNK && base + j < n; j += blockDim.x) {
            const i64 s = __ldcg(slots + base + j);  // L2's: ordered_small reads them as the probe ends
            if (s < 0 || (parts > 1 && (s / WAYS) % parts != part)) continue;
            unsigned h = (unsigned)mix64((u64)s) & (TOUCH_TABLE - 1);
            while (true) {
                const unsigned long long seen = atomicCAS(&sh.slot[h], empty, (unsigned long long)s);
                if (seen == empty || seen == (unsigned long long)s) break;
                h = (h + 1) & (TOUCH_TABLE - 1);
            }
            atomicAdd(&sh.count[h], 1u);
        }
        __syncthreads();
        for (int t = threadIdx.x; t < TOUCH_TABLE; t += blockDim.x) {
            if (sh.slot[t] != empty) {
                const i64 count = sh.count[t];
                atomic_apply(&table[sh.slot[t]].score, [clock, count](i64 score) {
                    return hit_score(score, clock, count);
                });
            }
        }
        __syncthreads();
    }
}
