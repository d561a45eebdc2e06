// The insertion of one key into a set that a warp holds in registers, and the load of that set:
// shared by insert.cu (insert_and_evict) and ordered.cu (ordered_insert), so that both paths place
// keys by the same code.
#pragma once

#include "common.cuh"
#include "sketch.cuh"  // the victim comparison of TinyLFU

// ---------------------------------------------------------------- insertion
// One key's insertion into a set whose keys and scores a warp holds in registers (way = j * 32 +
// lane), exactly as insert_and_evict_cpu does it: the way it wrote (the row still to be copied
// there) or -1 (not admitted, refused).  Writes the slot record and digest; counts the outcome.
// With victim.counts (TinyLFU), a key enters a full set only if its sketch estimate is greater than
// the victim's (a tie refuses), as insert_and_evict_cpu's victim_sketch.
__device__ __forceinline__ int insert_one(slot_t* __restrict__ table, unsigned char* __restrict__ digests, i64 base,
                                          i64 (&kw)[WARP_WPL], i64 (&sw)[WARP_WPL], i64 k, bool admitted, i64 count,
                                          i64 clock, int refuse_below_min, unsigned long long (&tally)[OUTCOME_CODES],
                                          const victim_sketch_t victim = victim_sketch_t{nullptr, 0, 0, 0}) {
    const int lane = threadIdx.x & 31;
    if (!admitted) {
        ++tally[NOT_ADMITTED];
        return -1;
    }
    int found = -1, empty = -1;
#pragma unroll
    for (int j = 0; j < WARP_WPL; ++j) {
        const unsigned m = __ballot_sync(FULL_MASK, kw[j] == k);
        if (found < 0 && m) found = j * 32 + __ffs(m) - 1;
        const unsigned e = __ballot_sync(FULL_MASK, kw[j] == EMPTY_KEY);
        if (empty < 0 && e) empty = j * 32 + __ffs(e) - 1;
    }
    int way;
    signed char code;
    i64 score;
    if (found >= 0) {
        way = found;
        code = REFRESHED;
        score = 0;
#pragma unroll
        for (int j = 0; j < WARP_WPL; ++j)
            if (way == j * 32 + lane) score = hit_score(sw[j], clock, count);
    } else {
        score = new_score(0, clock, count);
        if (empty >= 0) {
            way = empty;
            code = INSERTED;
        } else {
            // lowest (score, way) of the full set, ties to the lowest way
            i64 low = MAX_SCORE;
            int low_way = 1 << 30;
#pragma unroll
            for (int j = 0; j < WARP_WPL; ++j) {
                const int w = j * 32 + lane;
                if (w < WAYS && (sw[j] < low || (sw[j] == low && w < low_way))) { low = sw[j]; low_way = w; }
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) {
                const i64 other = __shfl_xor_sync(FULL_MASK, low, o);
                const int other_way = __shfl_xor_sync(FULL_MASK, low_way, o);
                if (other < low || (other == low && other_way < low_way)) { low = other; low_way = other_way; }
            }
            if (refuse_below_min && score < low) {
                ++tally[REFUSED];
                return -1;
            }
            if (victim.counts != nullptr) {  // warp-uniform: every lane holds low_way and reads the same counters
                i64 victim_key = 0;
#pragma unroll
                for (int j = 0; j < WARP_WPL; ++j)
                    if (low_way == j * 32 + lane) victim_key = kw[j];
                victim_key = __shfl_sync(FULL_MASK, victim_key, low_way & 31);
                if (!(sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, k) >
                      sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, victim_key))) {
                    ++tally[REFUSED];
                    return -1;
                }
            }
            way = low_way;
            code = EVICTED;
        }
    }
#pragma unroll
    for (int c = 0; c < OUTCOME_CODES; ++c) tally[c] += c == code;
#pragma unroll
    for (int j = 0; j < WARP_WPL; ++j) {
        if (way == j * 32 + lane) {
            kw[j] = k;
            sw[j] = score;
            table[base + way].key = k;
            table[base + way].score = score;
#if DIGESTS
            digests[base + way] = digest_of(k);
#endif
        }
    }
    return way;
}

__device__ __forceinline__ void load_set(const slot_t* __restrict__ table, i64 base, i64 (&kw)[WARP_WPL],
                                         i64 (&sw)[WARP_WPL]) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < WARP_WPL; ++j) {
        const int way = j * 32 + lane;
        kw[j] = way < WAYS ? table[base + way].key : LOCKED_KEY;  // LOCKED_KEY: never matches, never empty
        sw[j] = way < WAYS ? table[base + way].score : 0;
    }
}

