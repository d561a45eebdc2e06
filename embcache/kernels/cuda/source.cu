// embcache GPU kernels: a lookup whose misses a DeviceSource serves (an index and rows the GPU reads in place).
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "probe_body.cuh"

// probe_gather with the source walk (probe_body.cuh)
extern "C" __global__ void __launch_bounds__(BLOCK) probe_gather_source(
    PROBE_GATHER_ARGS, const i64* __restrict__ source_keys, i64 source_mask, const char* __restrict__ source_rows,
    int source_words, const void* __restrict__ raw_keys, int key_bytes, i64 index_rows, i64* __restrict__ converted,
    int invalid_word, int miss_word, int bad_word, int probed_word) {
    probe_gather_body<true>(PROBE_GATHER_PASS, source_t{source_keys, source_mask, source_rows, source_words, raw_keys,
                                                        key_bytes, index_rows, converted, invalid_word, miss_word,
                                                        bad_word, probed_word});
}

// A lookup whose misses probe_gather_source has already served, and which admits nothing, needs
// only two counts: the distinct missed keys, and how many of them the source lacked (slot -1).  Each
// missed key goes into a scratch hash set (open addressing, linear probing, set[] filled with
// EMPTY_KEY, mask + 1 >= twice the misses); the thread whose CAS adds it counts it.  No sort.
extern "C" __global__ void count_source_misses(const i64* __restrict__ keys, const i64* __restrict__ slots, i64 n,
                                               i64* __restrict__ set, i64 mask, i64* __restrict__ state) {
    unsigned distinct = 0, absent = 0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 s = slots[i];
        if (s >= 0) continue;
        const unsigned long long key = (unsigned long long)keys[i];
        unsigned long long* cell = reinterpret_cast<unsigned long long*>(set);
        for (i64 h = (i64)(mix64(key) & (u64)mask);; h = (h + 1) & mask) {
            const unsigned long long seen = atomicCAS(cell + h, (unsigned long long)EMPTY_KEY, key);
            if (seen == (unsigned long long)EMPTY_KEY) {
                ++distinct;
                absent += s == -1;
                break;
            }
            if (seen == key) break;
        }
    }
    distinct = warp_sum(distinct);  // every lane of a block's warps gets here (blocks of whole warps)
    absent = warp_sum(absent);
    if ((threadIdx.x & 31) == 0 && distinct) {
        atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_DISTINCT), (unsigned long long)distinct);
        if (absent) atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_ABSENT), (unsigned long long)absent);
    }
}
