// What an all-hit LRU lookup must cost beyond the gather ceiling (benchmarks/probe_bound.py).
//
// Stripped-down probes over the arrays of a full embcache GPU table, one group of GROUP lanes a key:
// no counters, no misses, no launch-shape table, so each variant's time is its memory traffic.
//   probe_apart:  the slot record (key, score) apart from the row, as embcache keeps it;
//   probe_beside: the record in the 16 bytes before its row, read with the row in one access.
// known_slots (non-null): each key's slot is given, so the probe reads no digests (what no index
// can beat: the key must still be read to be checked).  touch: store the LRU score into the
// record and save the old one, as embcache's probe does.
// Compiled with gpu.py's defines (WAYS, ROW_BYTES, mix64 constants) and common.cuh.
#include "common.cuh"

#define FULL_MASK 0xffffffffu
#define LANES 4
#define LANE_WAYS (WAYS / LANES)
#define ROW_CHUNKS (ROW_BYTES / 16)
#define SLAB_BYTES (ROW_BYTES + 16)
#define SLAB_CHUNKS (SLAB_BYTES / 16)
#define PASSES ((SLAB_CHUNKS + LANES - 1) / LANES)
static_assert(WAYS == 32 && ROW_BYTES % 16 == 0, "the bound is measured for 32 ways and rows of 16-byte words");

// this lane's ways of the set whose digest matches the key's
__device__ __forceinline__ unsigned candidates(const unsigned char* digests, i64 base, int lane, i64 key) {
    const uint2 d = *reinterpret_cast<const uint2*>(digests + base + lane * LANE_WAYS);
    const unsigned want = digest_of(key);
    unsigned c = 0;
#pragma unroll
    for (int w = 0; w < LANE_WAYS; ++w) c |= (unsigned)((((w < 4 ? d.x : d.y) >> (8 * (w % 4))) & 0xffu) == want) << w;
    return c;
}

// the group's lowest lane with a way that passes `found`, and that way's slot (or -1)
__device__ __forceinline__ i64 group_slot(bool found, int way, i64 base, int lane0) {
    const unsigned hits = (__ballot_sync(FULL_MASK, found) >> lane0) & ((1u << LANES) - 1u);
    const int first = hits ? __ffs(hits) - 1 : 0;
    return hits ? base + first * LANE_WAYS + __shfl_sync(FULL_MASK, way, lane0 + first) : -1;
}

extern "C" __global__ void probe_apart(slot_t* __restrict__ table, const unsigned char* __restrict__ digests,
                                       const uint4* __restrict__ values, u64 num_sets, const i64* __restrict__ keys,
                                       i64 n, uint4* __restrict__ out, i64* __restrict__ slots,
                                       i64* __restrict__ old_scores, i64 score, const i64* __restrict__ known_slots,
                                       int touch) {
    const int lane = threadIdx.x % LANES, lane0 = (threadIdx.x & 31) - lane;
    const i64 stride = (i64)gridDim.x * (blockDim.x / LANES);
    // whole warps iterate together (lane 0 has the lowest index), so the warp-wide ballots are safe
    for (i64 i = (i64)blockIdx.x * (blockDim.x / LANES) + threadIdx.x / LANES; __shfl_sync(FULL_MASK, i, 0) < n;
         i += stride) {
        const bool valid = i < n;
        const i64 key = valid ? keys[i] : EMPTY_KEY;
        i64 slot;
        slot_t record;
        record.key = EMPTY_KEY;
        if (known_slots) {
            slot = valid ? known_slots[i] : -1;
            if (slot >= 0 && lane == 0) record = table[slot];
            slot = __shfl_sync(FULL_MASK, record.key == key, lane0) ? slot : -1;
        } else {
            const i64 base = (i64)set_of(key, num_sets) * WAYS;
            const unsigned c = valid ? candidates(digests, base, lane, key) : 0;
            int way = -1;
            for (unsigned rest = c; rest; rest &= rest - 1) {  // nearly always one candidate or none
                const slot_t r = table[base + lane * LANE_WAYS + __ffs(rest) - 1];
                if (r.key == key) { way = __ffs(rest) - 1; record = r; break; }
            }
            slot = group_slot(way >= 0, way, base, lane0);
        }
        if (!valid) continue;
        if (lane == 0) slots[i] = slot;
        if (touch && record.key == key) {  // the one lane that read the key's record
            old_scores[i] = record.score;
            table[slot].score = score;
        }
        if (slot >= 0)
#pragma unroll
            for (int c = lane; c < ROW_CHUNKS; c += LANES) out[i * ROW_CHUNKS + c] = values[slot * ROW_CHUNKS + c];
    }
}

extern "C" __global__ void probe_beside(char* __restrict__ slab, const unsigned char* __restrict__ digests,
                                        u64 num_sets, const i64* __restrict__ keys, i64 n, uint4* __restrict__ out,
                                        i64* __restrict__ slots, i64* __restrict__ old_scores, i64 score,
                                        const i64* __restrict__ known_slots, int touch) {
    const int lane = threadIdx.x % LANES, lane0 = (threadIdx.x & 31) - lane;
    const i64 stride = (i64)gridDim.x * (blockDim.x / LANES);
    for (i64 i = (i64)blockIdx.x * (blockDim.x / LANES) + threadIdx.x / LANES; __shfl_sync(FULL_MASK, i, 0) < n;
         i += stride) {
        const bool valid = i < n;
        const i64 key = valid ? keys[i] : EMPTY_KEY;
        i64 slot, base = 0;
        unsigned c = 0;
        if (known_slots) {
            slot = valid ? known_slots[i] : -1;
        } else {  // read the lowest candidate's record and row at once, before the key is checked
            base = (i64)set_of(key, num_sets) * WAYS;
            c = valid ? candidates(digests, base, lane, key) : 0;
            slot = group_slot(c != 0, c ? __ffs(c) - 1 : 0, base, lane0);
        }
        uint4 v[PASSES];
        if (slot >= 0)
#pragma unroll
            for (int p = 0; p < PASSES; ++p)
                if (lane + p * LANES < SLAB_CHUNKS) v[p] = reinterpret_cast<const uint4*>(slab + slot * SLAB_BYTES)[lane + p * LANES];
        const i64 first_key = __shfl_sync(FULL_MASK, ((i64)v[0].y << 32) | v[0].x, lane0);
        if (slot >= 0 && first_key != key) {  // a chance digest match came first: the rare second try
            int way = -1;
            for (unsigned rest = c; rest; rest &= rest - 1)
                if (*reinterpret_cast<const i64*>(slab + (base + lane * LANE_WAYS + __ffs(rest) - 1) * SLAB_BYTES) == key) {
                    way = __ffs(rest) - 1;
                    break;
                }
            const unsigned group = __activemask();  // the whole group took this branch
            const unsigned hits = (__ballot_sync(group, way >= 0) >> lane0) & ((1u << LANES) - 1u);
            const int first = hits ? __ffs(hits) - 1 : 0;
            slot = hits ? base + first * LANE_WAYS + __shfl_sync(group, way, lane0 + first) : -1;
            if (slot >= 0)
#pragma unroll
                for (int p = 0; p < PASSES; ++p)
                    if (lane + p * LANES < SLAB_CHUNKS) v[p] = reinterpret_cast<const uint4*>(slab + slot * SLAB_BYTES)[lane + p * LANES];
        }
        if (!valid) continue;
        if (lane == 0) {
            slots[i] = slot;
            if (touch && slot >= 0) {
                old_scores[i] = ((i64)v[0].w << 32) | v[0].z;
                reinterpret_cast<slot_t*>(slab + slot * SLAB_BYTES)->score = score;
            }
        }
        if (slot >= 0)
#pragma unroll
            for (int p = 0; p < PASSES; ++p) {
                const int c = lane + p * LANES;
                if (c >= 1 && c < SLAB_CHUNKS) out[i * ROW_CHUNKS + c - 1] = v[p];
            }
    }
}

// the slab of probe_beside from embcache's arrays: each slot's record, then its row
extern "C" __global__ void make_slab(const slot_t* __restrict__ table, const uint4* __restrict__ values,
                                     uint4* __restrict__ slab, i64 slots) {
    for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < slots * SLAB_CHUNKS; t += (i64)gridDim.x * blockDim.x) {
        const i64 s = t / SLAB_CHUNKS;
        const int c = (int)(t - s * SLAB_CHUNKS);
        slab[t] = c == 0 ? *reinterpret_cast<const uint4*>(table + s) : values[s * ROW_CHUNKS + c - 1];
    }
}
