// embcache GPU kernels: writes (update, erase, the miss path's scatter, putting scores back, digests).
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "common.cuh"

// ---------------------------------------------------------------- writes (one thread per key)
__device__ __forceinline__ i64 find_slot(const slot_t* table, u64 num_sets, i64 key) {
    const i64 base = (i64)set_of(key, num_sets) * WAYS;
    for (int w = 0; w < WAYS; ++w)
        if (table[base + w].key == key) return base + w;
    return -1;
}

// Overwrite the cached rows of unique keys; state[STATE_MISSES] counts the keys that were cached.
extern "C" __global__ void update_rows(const slot_t* __restrict__ table, char* __restrict__ values, u64 num_sets,
                                       const i64* __restrict__ keys, const char* __restrict__ rows, i64 n,
                                       i64* __restrict__ state) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 s = find_slot(table, num_sets, keys[i]);
        if (s >= 0) {
            copy_row(values + s * ROW_BYTES, rows + i * ROW_BYTES, 0, 1);
            atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_MISSES), 1ull);
        }
    }
}

// Free the slots of unique keys; state[STATE_MISSES] counts the keys that were cached.
extern "C" __global__ void erase_keys(slot_t* __restrict__ table, unsigned char* __restrict__ digests, u64 num_sets,
                                      const i64* __restrict__ keys, i64 n, i64* __restrict__ state) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 s = find_slot(table, num_sets, keys[i]);
        if (s >= 0) {
            table[s].key = EMPTY_KEY;
            table[s].score = 0;
#if DIGESTS
            digests[s] = digest_of(EMPTY_KEY);
#endif
            atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_MISSES), 1ull);
        }
    }
}

// Scatter rows (u, dim) to out positions: out[where[i]] = rows[inverse[i]]; the one scatter of the miss path.
extern "C" __global__ void scatter_rows(char* __restrict__ out, const i64* __restrict__ where,
                                        const char* __restrict__ rows, const i64* __restrict__ inverse, i64 n) {
    const int lanes = CHUNKS < 32 ? CHUNKS : 32;
    const i64 per_block = blockDim.x / 32;
    for (i64 i = (i64)blockIdx.x * per_block + threadIdx.x / 32; i < n; i += (i64)gridDim.x * per_block)
        if ((threadIdx.x & 31) < lanes)
            copy_row(out + where[i] * ROW_BYTES, rows + inverse[i] * ROW_BYTES, threadIdx.x & 31, lanes);
}

// Undo probe_gather's touch after a lookup failed before its end (reserved key, tier error): each hit
// occurrence read either the slot's score before the batch, s, or h(s) (a duplicate key's store
// landed first), and h(h(s)) = h(s) (the rule is idempotent).  Writing back every read r with
// h(r) != r restores every slot whatever the order: such a read is s itself (h(s) is a fixed point),
// and a slot whose s is a fixed point was never stored.  The clock was not ticked (not clean).
extern "C" __global__ void restore_scores(slot_t* __restrict__ table, const i64* __restrict__ slots,
                                          const i64* __restrict__ old_scores, i64 n, const i64* __restrict__ state) {
    const i64 clock = state[STATE_CLOCK] + 1;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 s = slots[i];
        if (s >= 0 && old_scores[i] != hit_score(old_scores[i], clock, 1)) table[s].score = old_scores[i];
    }
}

// Every slot's digest from its key (after clear, load, or turning digests on).
extern "C" __global__ void make_digests(const slot_t* __restrict__ table, i64 n, unsigned char* __restrict__ digests) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        digests[i] = digest_of(table[i].key);
}
