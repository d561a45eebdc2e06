// embcache GPU kernels: insertion and eviction.
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "insert_one.cuh"

// The arguments of both kernels below: the plain one ignores the last nine (no sketch, nothing protected).
#define INSERT_AND_EVICT_ARGS                                                                                   \
    slot_t* __restrict__ table, unsigned char* __restrict__ digests, char* __restrict__ values, u64 num_sets,     \
        const i64* __restrict__ keys, const i64* __restrict__ counts, const char* __restrict__ rows,              \
        const bool* __restrict__ admit, const i64* __restrict__ order, i64 n, i64* __restrict__ state,            \
        int refuse_below_min, const i64* __restrict__ sketch, int depth, i64 width, u64 seed, int by_frequency,  \
        const i64* __restrict__ chance,                                                                          \
        const i64* __restrict__ protect_keys, const i64* __restrict__ protect_ranks, i64 protect_n

// Keys are unique; order[] lists them sorted by (set, key).  A warp takes 32 sorted positions at a
// time, and every run of equal sets that starts among them (to its end, past the 32 if need be),
// applying its keys in order as insert_and_evict_cpu does.  The memory waits overlap: each lane
// reads its position's key (whose set it computes), admit flag and count at once,
// the next run's set is read while one is applied, and the rows are copied at the end, one word
// per lane, after every decision of the 32.  A later key that takes the slot of an earlier one
// (evicting a key inserted by this batch) cancels the earlier copy, so the last row wins.
// Only the tally of outcome codes leaves the kernel (state[STATE_OUTCOMES], published to the host):
// per-key outcomes would be two scattered writes a key that no caller reads.
// GENERAL false compiles the victim comparison and lookahead's protection out (constant arguments of
// insert_one): with them in, ptxas keeps 64 registers and spills (40 bytes of stack, nvcc 13, sm_90) and
// the plain insertion of 2^20 keys ran 6-28% slower on the H200 than before they existed.
template <bool GENERAL>
__device__ __forceinline__ void insert_and_evict_body(INSERT_AND_EVICT_ARGS) {
    // TinyLFU's comparison with the victim when sketch is given (null: none); by_frequency: TinyLFUEvict's;
    // chance: TinyLFUTables' per-table return chances (null: none)
    const victim_sketch_t victim = GENERAL ? victim_sketch_t{sketch, depth, width, seed, by_frequency, chance}
                                           : victim_sketch_t{nullptr, 0, 0, 0, 0, nullptr};
    // lookahead's protected keys, ascending, and their first occurrences in the window (n 0: none)
    const protect_t protect = GENERAL ? protect_t{protect_keys, protect_ranks, protect_n} : protect_t{nullptr, nullptr, 0};
    const int lane = threadIdx.x & 31;
    const i64 warps = (i64)gridDim.x * (blockDim.x / 32);
    const i64 clock = state[STATE_CLOCK];
    // outcomes are warp-uniform, so each warp tallies in registers and adds once at the end
    unsigned long long tally[OUTCOME_CODES] = {};
    for (i64 c = ((i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * 32; c < n; c += warps * 32) {
        const i64 q = c + lane;
        const bool in = q < n;
        const i64 my_i = in ? order[q] : 0;
        const i64 my_key = in ? keys[my_i] : 0;
        const u64 my_set = in ? set_of(my_key, num_sets) : 0;
        u64 before = __shfl_up_sync(FULL_MASK, my_set, 1);
        if (lane == 0 && c > 0) before = set_of(keys[order[c - 1]], num_sets);
        const bool start = in && ((lane == 0 && c == 0) || before != my_set);
        const bool my_admit = in && admit[my_i];
        const i64 my_count = in ? counts[my_i] : 0;
        i64 dst = -1;  // the slot this lane's position copies its row to at the end
        unsigned todo = __ballot_sync(FULL_MASK, start);
        i64 kw[WARP_WPL], sw[WARP_WPL];
        if (todo) load_set(table, (i64)__shfl_sync(FULL_MASK, my_set, __ffs(todo) - 1) * WAYS, kw, sw);
        while (todo) {
            const int r = __ffs(todo) - 1;
            todo &= todo - 1;
            const int end = todo ? __ffs(todo) - 1 : 32;  // the next run's start, or the chunk's end
            const u64 set = __shfl_sync(FULL_MASK, my_set, r);
            const i64 base = (i64)set * WAYS;
            i64 next_kw[WARP_WPL], next_sw[WARP_WPL];
            if (todo) load_set(table, (i64)__shfl_sync(FULL_MASK, my_set, end) * WAYS, next_kw, next_sw);
            for (int p = r; p < end && c + p < n; ++p) {
                const int way = insert_one(table, digests, base, kw, sw, __shfl_sync(FULL_MASK, my_key, p),
                                           __shfl_sync(FULL_MASK, my_admit, p), __shfl_sync(FULL_MASK, my_count, p),
                                           clock, refuse_below_min, tally, set_hand(state, base), victim, protect);
                if (way >= 0) {
                    if (dst == base + way) dst = -1;
                    if (lane == p) dst = base + way;
                }
            }
            if (!todo) {  // the chunk's last run may go on past it: its owner applies all of it
                for (i64 q2 = c + 32; q2 < n; ++q2) {
                    const i64 i = order[q2];
                    if (set_of(keys[i], num_sets) != set) break;
                    const int way = insert_one(table, digests, base, kw, sw, keys[i], admit[i], counts[i], clock,
                                               refuse_below_min, tally, set_hand(state, base), victim, protect);
                    if (way >= 0) {
                        if (dst == base + way) dst = -1;
                        copy_row(values + (base + way) * ROW_BYTES, rows + i * ROW_BYTES, lane, 32);
                    }
                }
            }
#pragma unroll
            for (int j = 0; j < WARP_WPL; ++j) { kw[j] = next_kw[j]; sw[j] = next_sw[j]; }
        }
        for (int t = lane; t < 32 * CHUNKS; t += 32) {
            const int p = t / CHUNKS;
            const i64 d = __shfl_sync(FULL_MASK, dst, p);
            const i64 i = __shfl_sync(FULL_MASK, my_i, p);
            if (d >= 0)
                reinterpret_cast<vec_t*>(values + d * ROW_BYTES)[t - p * CHUNKS] =
                    reinterpret_cast<const vec_t*>(rows + i * ROW_BYTES)[t - p * CHUNKS];
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int c = 0; c < OUTCOME_CODES; ++c)
            if (tally[c]) atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_OUTCOMES + c), tally[c]);
    }
    if (last_block(state)) publish(state);
}

// no victim comparison and nothing protected: the insertion of every policy with a plain admission
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) insert_and_evict(INSERT_AND_EVICT_ARGS) {
    insert_and_evict_body<false>(table, digests, values, num_sets, keys, counts, rows, admit, order, n, state,
                                 refuse_below_min, sketch, depth, width, seed, by_frequency, chance, protect_keys,
                                 protect_ranks, protect_n);
}

// TinyLFU's victim comparison (by_frequency: TinyLFUEvict's victim; chance: TinyLFUTables') and lookahead's
// protected keys
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) insert_and_evict_general(INSERT_AND_EVICT_ARGS) {
    insert_and_evict_body<true>(table, digests, values, num_sets, keys, counts, rows, admit, order, n, state,
                                refuse_below_min, sketch, depth, width, seed, by_frequency, chance, protect_keys,
                                protect_ranks, protect_n);
}
