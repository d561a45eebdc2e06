// Shared by every embcache kernel file (one per operation family: probe.cu, source.cu, insert.cu,
// unique.cu, writes.cu, sketch.cu).  gpu.py prepends #defines for:
//   EMPTY_KEY, LOCKED_KEY, MAX_SCORE, MIX_M1, MIX_M2            (layout.py, through _cuda.layout_defines)
//   GOLDEN, NOT_ADMITTED .. REFUSED, STATE_*, TOUCH_*          (kernels/_shared.py, cuda_defines)
//   NEW_SCORE_EXPR, HIT_SCORE_EXPR, AGE_SCORE_EXPR              (the policy's expressions)
//   WAYS, ROW_BYTES, VEC, SET_BITS, GROUP, KEYS_PER_GROUP, BLOCK, DIGESTS, TOUCH_CHUNK, UTILITY_BLOCK
//                                                               (layout and launch shapes, tuning.json)
// No file here defines a number that Python also has.
#pragma once

#include "layout.cuh"  // i64, u64, mix64 (embcache/cuda_shared, on the include path of every module)

#include "vec.cuh"  // vec_t, the word a row is copied in

// One slot of the table: its key and its score side by side, so that the score a hit writes lands in
// the 32-byte sector the probe has just read (the keys and scores views of gpu.py are strided views).
struct __align__(16) slot_t {
    i64 key;
    i64 score;
};

#if SET_BITS == 32
typedef unsigned int set_t;
#else
typedef unsigned long long set_t;
#endif

// the set a key lives in (layout.sets_of)
__device__ __forceinline__ u64 set_of(i64 key, u64 num_sets) { return mix64((u64)key) % num_sets; }

// A slot's 1-byte digest (HierarchicalKV's idea): the top byte of the mix, which the set index
// (the mix modulo num_sets) leaves nearly independent.  Probing reads a set's WAYS digest bytes (one
// 32-byte sector for 32 ways) and then only the keys whose digest matches, instead of 8 bytes a way.
__device__ __forceinline__ unsigned char digest_of(i64 key) { return (unsigned char)(mix64((u64)key) >> 56); }

// the score functions a policy expression may call (policies/_base.py)
// a + b stopping at MAX_SCORE, for any int64 a and b (below it the sum wraps, as policies/_base.py's
// evaluator says): the test is on b > 0 so that MAX_SCORE - b cannot overflow for a negative a
__device__ __forceinline__ i64 sat_add(i64 a, i64 b) { return (b > 0 && a > MAX_SCORE - b) ? MAX_SCORE : (i64)((u64)a + (u64)b); }
__device__ __forceinline__ i64 score_min(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 score_max(i64 a, i64 b) { return a > b ? a : b; }

__device__ __forceinline__ i64 new_score(i64 score, i64 clock, i64 count) { return (i64)(NEW_SCORE_EXPR); }
__device__ __forceinline__ i64 hit_score(i64 score, i64 clock, i64 count) { return (i64)(HIT_SCORE_EXPR); }
// a policy's aging pass (Policy.age_score over score and clock; count reads 0), see probe.cu's age_scores
__device__ __forceinline__ i64 age_score(i64 score, i64 clock) {
    const i64 count = 0;
    (void)count;
    return (i64)(AGE_SCORE_EXPR);
}

#define FULL_MASK 0xffffffffu
#define CHUNKS (ROW_BYTES / VEC)
// ways each lane of a probing group reads, and ways each lane of an inserting warp holds
#define PROBE_WPL (WAYS / GROUP)
#define WARP_WPL ((WAYS + 31) / 32)

__device__ __forceinline__ void copy_row(char* __restrict__ dst, const char* __restrict__ src, int lane, int lanes) {
    const vec_t* s = reinterpret_cast<const vec_t*>(src);
    vec_t* d = reinterpret_cast<vec_t*>(dst);
#pragma unroll 4
    for (int c = lane; c < CHUNKS; c += lanes) d[c] = s[c];
}

// A row held in a warp's registers between its load and its store (ROW_REGS words a lane); a row of more
// than ROW_REGS_MAX words a lane is not held, and store_row copies it from src instead.
#define ROW_REGS_MAX 4
#define ROW_REGS ((CHUNKS + 31) / 32)
struct row_regs_t {
    vec_t w[ROW_REGS <= ROW_REGS_MAX ? ROW_REGS : 1];
};

// copy_row with the source read from L2 (ld.cg), never through the non-coherent path: for rows that
// another grid wrote while this kernel ran (ordered_small reads the probe's rows of out so)
__device__ __forceinline__ void copy_row_cg(char* __restrict__ dst, const char* src, int lane, int lanes) {
    const vec_t* s = reinterpret_cast<const vec_t*>(src);
    vec_t* d = reinterpret_cast<vec_t*>(dst);
#pragma unroll 4
    for (int c = lane; c < CHUNKS; c += lanes) d[c] = __ldcg(s + c);
}

// (the source read as copy_row_cg reads it)
__device__ __forceinline__ void load_row(row_regs_t& r, const char* src, int lane) {
#if ROW_REGS <= ROW_REGS_MAX
    const vec_t* s = reinterpret_cast<const vec_t*>(src);
#pragma unroll
    for (int q = 0; q < ROW_REGS; ++q)
        if (lane + 32 * q < CHUNKS) r.w[q] = __ldcg(s + lane + 32 * q);
#endif
}

__device__ __forceinline__ void store_row(char* __restrict__ dst, const row_regs_t& r, const char* src,
                                          int lane) {
#if ROW_REGS <= ROW_REGS_MAX
    vec_t* d = reinterpret_cast<vec_t*>(dst);
#pragma unroll
    for (int q = 0; q < ROW_REGS; ++q)
        if (lane + 32 * q < CHUNKS) d[lane + 32 * q] = r.w[q];
#else
    copy_row_cg(dst, src, lane, 32);
#endif
}

__device__ __forceinline__ bool reserved(i64 key) { return key <= LOCKED_KEY; }

// Atomically apply score' = f(score) where f composes (see policies/_base.py).
template <typename F>
__device__ __forceinline__ void atomic_apply(i64* p, F f) {
    unsigned long long* q = reinterpret_cast<unsigned long long*>(p);
    unsigned long long old = *q;
    while (true) {
        unsigned long long next = (unsigned long long)f((i64)old);
        if (next == old) return;
        unsigned long long seen = atomicCAS(q, old, next);
        if (seen == old) return;
        old = seen;
    }
}

__device__ __forceinline__ unsigned warp_sum(unsigned v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}

// ---------------------------------------------------------------- reporting to the host
// Every thread calls this at the end of a kernel that reports to the host: true in thread 0 of the
// block that finishes last, once every block's counter atomics are visible to it (to the block's other
// threads after a barrier that follows, as ordered_small's).  It resets the arrival
// count for the next launch (graph replays included).
__device__ __forceinline__ bool last_block(i64* state) {
    __threadfence();  // this thread's counter atomics before the block's arrival below
    __syncthreads();
    bool last = false;
    if (threadIdx.x == 0) {
        unsigned long long* done = reinterpret_cast<unsigned long long*>(state + STATE_DONE);
        if (atomicAdd(done, 1ull) == gridDim.x - 1) {
            __threadfence();
            *done = 0;
            last = true;
        }
    }
    return last;
}

// The last block copies the state words into the host's pinned copy (its address is in
// state[STATE_HOST]), so that the host reads them after a stream synchronize: no copy to enqueue.
__device__ __forceinline__ void publish(const i64* state) {
    const volatile i64* words = state;  // other blocks' atomics: past this block's L1
    volatile i64* host = reinterpret_cast<volatile i64*>(words[STATE_HOST]);
#pragma unroll
    for (int w = 0; w < STATE_PUBLISHED; ++w) host[w] = words[w];
    __threadfence_system();
}

// The kernels that touch hits tick the clock too: every block scores with clock + 1 (the clock it
// read, ticked), and the last block to finish stores clock + 1 once every other block has read the
// old value.  With if_clean it ticks only if no block found a miss or a reserved key (counted in
// the state words miss_word and bad_word).
__device__ __forceinline__ void tick_if(i64* state, i64 clock, int if_clean, int miss_word = STATE_MISSES,
                                        int bad_word = STATE_RESERVED) {
    const volatile i64* counters = state;
    if (!if_clean || !(counters[miss_word] | counters[bad_word])) state[STATE_CLOCK] = clock + 1;
}

// Programmatic dependent launch (sm_90 on): a kernel launched with programmatic stream serialization
// (gpu.py's PROGRAMMATIC kernels) may start while the kernel before it on the stream is still running, once
// every block of that one has called let_dependents_start (or exited), so its launch and the work that
// reads nothing of its predecessor overlap the predecessor's end.  wait_for_prior_grid then blocks until
// the predecessor has finished and its writes are visible: nothing of the predecessor's may be read before
// it.  Both are no-ops where the launch had no such attribute, and below sm_90.
__device__ __forceinline__ void let_dependents_start() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_prior_grid() {
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// A flag one kernel sets for another that runs beside it (a programmatic launch): the setter's earlier
// writes (and, through last_block's fences, its grid's) are visible to a reader that has seen it set.
__device__ __forceinline__ void release_flag(i64* flag) {
    __threadfence();
    atomicExch(reinterpret_cast<unsigned long long*>(flag), 1ull);
}

// Wait until release_flag has set *flag; an acquire load, so the loads after it see what came before the set.
__device__ __forceinline__ void acquire_flag(const i64* flag) {
    unsigned long long v;
    do {
        asm volatile("ld.acquire.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(flag) : "memory");
    } while (v == 0);
}

// a slot below -1 is a missed key's row in a DeviceSource (source.cu), -1 a miss everywhere
#define SOURCE_SLOT(h) (-2 - (h))  // its own inverse
