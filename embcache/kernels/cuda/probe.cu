// embcache GPU kernels: the hit path (probe, gather, the list of misses, clock and touch).
//
// gpu.py prepends generated #defines (see common.cuh); every kernel copies rows as raw bits
// (VEC-byte words), so results equal the CPU backend's.  Slot s = set * WAYS + way; table[s] holds
// its key and score (slot_t).  64-bit indices throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "probe_body.cuh"
#include "touch.cuh"

// two kernels, so that the all-hit path keeps the registers of a probe without the source walk
extern "C" __global__ void __launch_bounds__(BLOCK) probe_gather(PROBE_GATHER_ARGS) {
    probe_gather_body<false>(PROBE_GATHER_PASS,
                             source_t{nullptr, 0, nullptr, 1, nullptr, 8, 0, nullptr, 0, STATE_MISSES, STATE_RESERVED, -1});
}

// The gather of a split lookup (launch shape "split"): probe_gather finds the slots only, then this
// copies rows with one thread per VEC-byte word of the output, as the gather ceiling does, so that
// no word's load waits for a probe and the most loads are in flight.
extern "C" __global__ void gather_slots(const vec_t* __restrict__ values, const i64* __restrict__ slots, i64 n,
                                        vec_t* __restrict__ out, const vec_t* __restrict__ default_row,
                                        int fill_misses, const vec_t* __restrict__ source_rows) {
    const i64 total = n * CHUNKS;
    for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
        const i64 i = t / CHUNKS;
        const int c = (int)(t - i * CHUNKS);
        const i64 s = slots[i];
        if (s >= 0) out[t] = values[s * CHUNKS + c];
        else if (s <= -2) out[t] = source_rows[SOURCE_SLOT(s) * CHUNKS + c];  // probe_gather_source's
        else if (fill_misses) out[t] = default_row[c];
    }
}

// missed[0 .. count) = the indices i with slots[i] < 0, in no particular order (the host sorts the
// missed keys anyway); state[STATE_LISTED] counts them.  Kept out of probe_gather, whose registers
// the all-hit path needs more.
extern "C" __global__ void list_misses(const i64* __restrict__ slots, i64 n, i64* __restrict__ missed,
                                       i64* __restrict__ state) {
    const int warp_lane = threadIdx.x & 31;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    // whole warps iterate together so that the ballot is full-mask
    for (i64 base = (i64)blockIdx.x * blockDim.x + threadIdx.x - warp_lane; base < n; base += stride) {
        const i64 i = base + warp_lane;
        const bool miss = i < n && slots[i] < 0;
        const unsigned who = __ballot_sync(FULL_MASK, miss);
        if (!who) continue;
        const int first_lane = __ffs(who) - 1;
        unsigned long long at = 0;
        if (warp_lane == first_lane)
            at = atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_LISTED), (unsigned long long)__popc(who));
        at = __shfl_sync(FULL_MASK, at, first_lane);
        if (miss) missed[at + __popc(who & ((1u << warp_lane) - 1u))] = i;
    }
}

// if_clean: act only when the probe just before found neither a miss nor a reserved key.  Then an
// all-hit lookup finishes on the device without waiting for the host, and any other lookup (which
// may still fail on a reserved key or in the tier) has changed nothing when the host looks.
__device__ __forceinline__ bool skip(const i64* state, int if_clean) {
    return if_clean && (state[STATE_MISSES] | state[STATE_RESERVED]);
}

// One step of the batch clock, on the device so that a captured graph advances it on every replay.
extern "C" __global__ void tick(i64* state, int if_clean) {
    if (!skip(state, if_clean)) state[STATE_CLOCK] += 1;
}

// The aging pass of a policy with an age_period (policies/_base.py): when this operation's tick takes
// the clock to a multiple of period, age_score on every occupied slot's score, before the hits' rule
// and the insertion (the touch or tick kernel after it on the stream ticks the clock).  It reads the
// device clock, so a lookup captured in a CUDA graph ages on the replays that reach a multiple.
extern "C" __global__ void age_scores(slot_t* __restrict__ table, i64 slots, i64 period, const i64* __restrict__ state,
                                      int if_clean) {
    if (skip(state, if_clean)) return;
    const i64 clock = state[STATE_CLOCK] + 1;
    if (clock % period != 0) return;
    for (i64 s = (i64)blockIdx.x * blockDim.x + threadIdx.x; s < slots; s += (i64)gridDim.x * blockDim.x) {
        if (table[s].key != EMPTY_KEY) table[s].score = age_score(table[s].score, clock);
    }
}

// Apply the hit rule for every occurrence of every slot (touch.cuh), then tick: blocks of ORDERED_BLOCK.
extern "C" __global__ void __launch_bounds__(ORDERED_BLOCK) touch(slot_t* __restrict__ table, const i64* __restrict__ slots,
                                                      i64 n, i64* __restrict__ state, int if_clean) {
    __shared__ touch_shared_t sh;
    if (skip(state, if_clean)) return;
    const i64 old_clock = state[STATE_CLOCK];
    touch_chunks(table, slots, n, old_clock + 1, blockIdx.x, gridDim.x, sh);
    if (last_block(state)) tick_if(state, old_clock, 0);
}
