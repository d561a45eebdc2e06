// embcache GPU kernels: the miss path of a stream-ordered lookup, which never waits for the host.
//
// gpu.py prepends generated #defines (see common.cuh).  After probe_gather_source has written every
// slot and count and the clock has ticked (a small batch: its rows from the DeviceSource may still be
// on their way; the insert phase, which reads them, waits for the probe's grid), these phases finish
// the batch on the device, in the contract's order (DESIGN.md section 3):
//
//   misses    every missed occurrence into a hash table of distinct missed keys (count, last index)
//   distinct  per distinct key: its count, where its row is (its last occurrence in out), whether the
//             source held it, and the batch's admission decision (mode below)
//   sketch    [sketch.cuh: MinFrequency's count-min sketch, counted, then read]
//   group     the admitted keys linked into one list per set (a hash table of sets)
//   insert    one warp per set: its keys in ascending key order, each as insert_and_evict places it
//   finish    the batch's counters added to the totals and kept as the last batch's, then zeroed
//
// A large batch runs each phase as its own kernel (grid-stride, a grid the host sizes from the batch
// length n alone; counts only the device knows, distinct misses u and sets m, are read from the state
// words).  A small one runs them all in ordered_small, one launch of blocks that each own a share of the
// sets (their tables in shared memory when the batch is short), a barrier between phases.  The global
// scratch tables are zero between batches (each phase that fills a cell empties it): no memset node.
//
// Counter words: state[ORD_BATCH + F_*] this batch, state[ORD_TOTAL + F_*] since the cache was made,
// state[ORD_LAST + F_*] the last batch's.  The probe counts the batch's misses into BATCH(F_MISSES)
// and its reserved keys (which a device batch cannot refuse without waiting) into BATCH(F_INVALID),
// which are zero when it starts: finish empties the batch words, so no memset comes before the probe.

#include "insert_one.cuh"  // insert.cu's per-key step: both paths place keys by the same code
#include "ordered_batch.cuh"  // ordered_t: the batch and the addresses of its scratch
#include "sketch.cuh"
#include "touch.cuh"  // the hits' scores, fused into a small batch

#define BATCH(f) state[ORD_BATCH + (f)]

__device__ __forceinline__ unsigned long long* word(i64* state, int w) {
    return reinterpret_cast<unsigned long long*>(state + w);
}

// A distinct missed key is stored as its bits xor EMPTY_KEY, so that an empty cell is 0 (a reserved
// key never gets here).
__device__ __forceinline__ u64 encode(i64 key) { return (u64)key ^ (u64)EMPTY_KEY; }

// ---------------------------------------------------------------- phases (thread tid of stride)
// Every missed occurrence (slot < 0) of a key that is not reserved into the table of distinct missed
// keys, counting occurrences and keeping the last index; the thread that adds a key lists it at the
// cursor ucursor (the batch's count of distinct misses, or a block's own), with whether the source
// holds it (every occurrence's slot says the same while the tier's lock keeps the source as it is,
// which it does for the whole batch), so that the distinct phase need not read a slot.  parts > 1:
// only the keys of the sets s with s % parts == part.
__device__ __forceinline__ void misses_phase(const ordered_t& a, i64 tid, i64 stride, unsigned long long* ucursor,
                                             int part = 0, int parts = 1) {
    for (i64 i = tid; i < a.n; i += stride) {
        // L2's copies (ld.cg), both at once: ordered_small reads them while the probe's grid still runs
        const i64 slot = __ldcg(a.slots + i), key = __ldcg(a.keys + i);
        if (slot >= 0) continue;
        if (reserved(key)) continue;
        if (parts > 1 && set_of(key, a.num_sets) % (u64)parts != (u64)part) continue;
        const u64 enc = encode(key);
        // the mix's high half first: its low bits are the set's modulo num_sets, which a block's share
        // of the sets fixes (set % parts), so they would start every key of a block in 1 cell of parts
        const u64 mixed = mix64((u64)key);
        i64 h = (i64)(((mixed >> 32) | (mixed << 32)) & (u64)a.mask);
        while (true) {
            const u64 seen = atomicCAS(reinterpret_cast<unsigned long long*>(a.hkeys + h), 0ull, (unsigned long long)enc);
            if (seen == 0) {
                const i64 j = (i64)atomicAdd(ucursor, 1ull);
                a.ukeys[j] = key;
                a.ucell[j] = slot != -1 ? h : ~h;
                break;
            }
            if (seen == enc) break;
            h = (h + 1) & a.mask;
        }
        atomicAdd(a.hcount + h, 1ull);
        atomicMax(a.hlast + h, (unsigned long long)(i + 1));
    }
}

// The admission mode of a batch: never (a policy that does not insert on lookup), always, or only
// while the batch's hit rate is below t (HitRateThreshold: hits < t * lookups, in double precision as
// Python computes it).
__device__ __forceinline__ bool batch_admits(const i64* state, i64 n, int mode, double t) {
    if (mode == ADMIT_NEVER) return false;
    if (mode == ADMIT_ALWAYS) return true;
    const i64 hits = n - BATCH(F_MISSES);
    return n > 0 && (double)hits < t * (double)n;
}

// Per distinct missed key: its count, its row's place in out, whether the source held it, and whether
// it is admitted (the source held it and the batch admits); its cell goes back to empty.  Counts the
// absent keys and, with count_admitted (no sketch to decide), the admitted ones.  Whole warps call it.
__device__ __forceinline__ void distinct_phase(const ordered_t& a, i64* state, i64 tid, i64 stride,
                                               bool count_admitted, const unsigned long long* ucursor) {
    const i64 u = (i64)*ucursor;
    const bool admits = batch_admits(state, a.n, a.mode, a.t);
    unsigned absent = 0, admitted = 0;
    for (i64 j = tid; j < u; j += stride) {
        const i64 cell = a.ucell[j];
        const bool present = cell >= 0;
        const i64 h = present ? cell : ~cell;
        const i64 at = (i64)a.hlast[h] - 1;
        a.ucount[j] = (i64)a.hcount[h];
        a.uat[j] = at;
        a.hkeys[h] = 0;
        a.hcount[h] = 0;
        a.hlast[h] = 0;
        absent += !present;
        a.uadmit[j] = present && admits;
        admitted += present && admits;
    }
    absent = warp_sum(absent);
    admitted = warp_sum(admitted);
    if ((threadIdx.x & 31) == 0) {
        if (absent) atomicAdd(word(state, ORD_BATCH + F_ABSENT), (unsigned long long)absent);
        if (count_admitted && admitted) atomicAdd(word(state, ORD_BATCH + F_ADMITTED), (unsigned long long)admitted);
    }
    if (tid == 0) BATCH(F_ADMITS) = admits;
}

// The admitted keys, each linked into its set's list; the thread that adds a set lists its cell at
// the cursor scursor.
__device__ __forceinline__ void group_phase(const ordered_t& a, i64 tid, i64 stride, const unsigned long long* ucursor,
                                            unsigned long long* scursor) {
    const i64 u = (i64)*ucursor;
    for (i64 j = tid; j < u; j += stride) {
        if (!a.uadmit[j]) continue;
        const u64 set = set_of(a.ukeys[j], a.num_sets);
        i64 h = (i64)(mix64(set) & (u64)a.mask);
        while (true) {
            const u64 seen = atomicCAS(reinterpret_cast<unsigned long long*>(a.gsets + h), 0ull, (unsigned long long)(set + 1));
            if (seen == 0) {
                a.gcells[(i64)atomicAdd(scursor, 1ull)] = h;
                break;
            }
            if (seen == set + 1) break;
            h = (h + 1) & a.mask;
        }
        a.unext[j] = (i64)atomicExch(a.ghead + h, (unsigned long long)(j + 1));
    }
}

// Warp w of warps: one listed set at a time, its admitted keys in ascending key order (the list is
// walked for the next larger key each time: lists hold a few keys), each placed as insert_and_evict
// places it, its row copied at once, so a later key of the batch that takes an earlier one's slot
// wins.  The set's cell goes back to empty.  The outcome tally goes to the batch words.
//
// HitRateDeferred (defer_at >= 0): a batch whose hit rate is at least defer_at is not placed now.  Its
// rows are kept (stash[j], from out) and state[STATE_PENDING] says how many sets are listed; the lists
// stay, and the next operation's insert with pending places them (rows from the stash, at the clock of
// that batch, which has not ticked since) before anything else.
__device__ __forceinline__ void insert_phase(const ordered_t& a, slot_t* __restrict__ table,
                                             unsigned char* __restrict__ digests, char* __restrict__ values,
                                             const char* out, char* __restrict__ stash, bool pending,
                                             i64* state, i64 w, i64 warps, const unsigned long long* scursor,
                                             i64 clock) {
    const int lane = threadIdx.x & 31;
    const i64 sets = pending ? state[STATE_PENDING] : (i64)*scursor;
    const bool defer = !pending && a.defer_at >= 0.0 && a.n > 0 &&
                       (double)(a.n - BATCH(F_MISSES)) >= a.defer_at * (double)a.n;
    if (defer && w == 0 && lane == 0) state[STATE_PENDING] = sets;
    unsigned long long tally[OUTCOME_CODES] = {};
    for (i64 m = w; m < sets; m += warps) {
        const i64 h = a.gcells[m];
        const i64 head = (i64)a.ghead[h];
        if (defer) {  // keep the rows: out is the caller's once the lookup has returned
            for (i64 j = head; j; j = a.unext[j - 1])
                copy_row_cg(stash + (j - 1) * ROW_BYTES, out + a.uat[j - 1] * ROW_BYTES, lane, 32);
            continue;
        }
        const i64 base = (i64)(a.gsets[h] - 1) * WAYS;
        i64 kw[WARP_WPL], sw[WARP_WPL];
        load_set(table, base, kw, sw);
        bool started = false;
        i64 last = 0;
        while (true) {
            i64 best = -1, best_key = 0;  // the smallest key above the last one placed (every lane walks)
            for (i64 j = head; j; j = a.unext[j - 1]) {
                const i64 k = a.ukeys[j - 1];
                if ((!started || k > last) && (best < 0 || k < best_key)) { best = j - 1; best_key = k; }
            }
            if (best < 0) break;
            started = true;
            last = best_key;
            // the key's row is read before its way is chosen, so that the read (an L2 round trip) overlaps the
            // set's records in flight and the choice; a row too long for registers is copied after
            const char* row = pending ? stash + best * ROW_BYTES : out + a.uat[best] * ROW_BYTES;
            row_regs_t held;
            load_row(held, row, lane);
            const int way = insert_one(table, digests, base, kw, sw, best_key, true, a.ucount[best], clock,
                                       pending ? 0 : a.refuse_below_min, tally, set_hand(state, base));
            if (way >= 0) store_row(values + (base + way) * ROW_BYTES, held, row, lane);
        }
        __syncwarp();
        if (lane == 0) {
            a.gsets[h] = 0;
            a.ghead[h] = 0;
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int c = 0; c < OUTCOME_CODES; ++c)
            if (tally[c]) atomicAdd(word(state, ORD_BATCH + F_OUTCOMES + c), tally[c]);
    }
}

// The batch's counters into the totals and the last batch's words, then zeroed for the next batch
// (the cursors and flags too).  One whole warp, a word a lane, so that the words' loads are all in
// flight at once (a launch of fewer threads would leave words unfinished).  The fence-and-barrier
// chain of last_block orders these loads after every block's atomics; __ldcg keeps them out of L1,
// which holds the batch words' line from the blocks' own reads of BATCH(F_MISSES).
__device__ __forceinline__ void finish_phase(i64* state, i64 n) {
    static_assert(ORD_FIELDS <= 32 && F_MARK < ORD_FIELDS && F_PROBED < ORD_FIELDS, "a lane a word");
    static_assert(F_OUTCOMES + INSERTED < F_COUNTERS, "F_MARK reads a counter's total");
    const int f = threadIdx.x & 31;
    i64 batch = f < ORD_FIELDS ? __ldcg(state + ORD_BATCH + f) : 0;
    if (f == F_LOOKUPS) batch = n;
    if (f == F_BATCHES) batch = 1;
    const i64 total = f < F_COUNTERS ? __ldcg(state + ORD_TOTAL + f) + batch : 0;
    // the host derives the batch's occupancy from it (deferred insertions may follow before it asks)
    const i64 inserted = __shfl_sync(FULL_MASK, total, F_OUTCOMES + INSERTED);
    if (f < F_COUNTERS) {
        state[ORD_TOTAL + f] = total;
        state[ORD_LAST + f] = batch;
    }
    if (f == F_MARK) state[ORD_LAST + F_MARK] = inserted;
    if (f < ORD_FIELDS) state[ORD_BATCH + f] = 0;
}

// ordered_small's block tables in shared memory (gridDim.x > 1, n <= SMALL_SHARED_KEYS and the launch given
// SMALL_SHARED_BYTES of it): the hash tables of distinct missed keys and of sets (K cells each, a power of
// two; a block's distinct keys and sets number at most n, so a probe ends) and the lists (K entries).  No
// other block reads them and they die with the launch, so each step of the phases (the insert phase walks
// its lists a dependent load at a time) is a shared access, not an L2 round trip.  The sets' table reuses
// the keys' cells, which the distinct phase empties; every list entry is written before it is read.
extern __shared__ __align__(16) unsigned char small_shared[];

// (with_sketch or deferred: the host gives such a batch one block, and its lists must stay global)
__device__ __forceinline__ bool small_tables_in_shared(i64 n, bool one_block_only) {
    unsigned bytes;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
    return gridDim.x > 1 && !one_block_only && n <= SMALL_SHARED_KEYS && bytes >= SMALL_SHARED_BYTES;
}

// the block's shared hash cells zeroed (a barrier follows before any use)
__device__ __forceinline__ void zero_shared_tables(i64 tid, i64 stride) {
    u64* cells = reinterpret_cast<u64*>(small_shared);
    for (i64 c = tid; c < 3 * SMALL_SHARED_KEYS; c += stride) cells[c] = 0;
}

// the batch of `of` with the block's tables in shared memory (zero_shared_tables has emptied their cells)
__device__ __forceinline__ ordered_t shared_tables(const ordered_t& of) {
    constexpr i64 K = SMALL_SHARED_KEYS;
    static_assert((K & (K - 1)) == 0 && SMALL_SHARED_BYTES >= K * (9 * 8 + 1), "a power of two, and room for all");
    u64* cells = reinterpret_cast<u64*>(small_shared);
    ordered_t a = of;
    a.hkeys = a.gsets = cells;
    a.hcount = a.ghead = reinterpret_cast<unsigned long long*>(cells + K);
    a.hlast = reinterpret_cast<unsigned long long*>(cells + 2 * K);
    a.mask = K - 1;
    i64* lists = reinterpret_cast<i64*>(cells + 3 * K);
    a.ukeys = lists, a.ucell = lists + K, a.ucount = lists + 2 * K, a.uat = lists + 3 * K;
    a.unext = lists + 4 * K, a.gcells = lists + 5 * K, a.uadmit = reinterpret_cast<bool*>(lists + 6 * K);
    return a;
}

#define GRID_TID ((i64)blockIdx.x * blockDim.x + threadIdx.x)
#define GRID_STRIDE ((i64)gridDim.x * blockDim.x)

// ---------------------------------------------------------------- kernels
// A large batch's phases: the batch's cursors are its state words
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_misses(ORDERED_ARGS, i64* __restrict__ state) {
    misses_phase(ORDERED_PASS, GRID_TID, GRID_STRIDE, word(state, ORD_BATCH + F_UNIQUE));
}

extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_distinct(ORDERED_ARGS, i64* __restrict__ state,
                                                                             int count_admitted) {
    distinct_phase(ORDERED_PASS, state, GRID_TID, GRID_STRIDE, count_admitted, word(state, ORD_BATCH + F_UNIQUE));
}

extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_group(ORDERED_ARGS, i64* __restrict__ state) {
    group_phase(ORDERED_PASS, GRID_TID, GRID_STRIDE, word(state, ORD_BATCH + F_UNIQUE), word(state, ORD_BATCH + F_SETS));
}

extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_insert(
    ORDERED_ARGS, slot_t* __restrict__ table, unsigned char* __restrict__ digests, char* __restrict__ values,
    const char* out, char* __restrict__ stash, int pending, i64* __restrict__ state) {
    insert_phase(ORDERED_PASS, table, digests, values, out, stash, pending, state, GRID_TID / 32, GRID_STRIDE / 32,
                 word(state, ORD_BATCH + F_SETS), state[STATE_CLOCK]);
}

// one warp (gpu.py's _ONE_WARP)
extern "C" __global__ void ordered_finish(i64* __restrict__ state, i64 n) { finish_phase(state, n); }

// After ordered_insert with pending = 1: its tally into the totals (a deferred insertion belongs to
// no operation's last counts), the batch words zeroed, nothing pending.
extern "C" __global__ void ordered_flushed(i64* __restrict__ state) {
    for (int f = 0; f < F_COUNTERS; ++f) state[ORD_TOTAL + f] += BATCH(f);
    for (int f = 0; f < ORD_FIELDS; ++f) BATCH(f) = 0;
    state[STATE_PENDING] = 0;
}

// Every phase of a small batch in one launch of ORDERED_BLOCK-thread blocks, a barrier between phases
// (the phases' global atomics and writes are visible to the whole block after __syncthreads).  With
// gridDim.x > 1, block b owns the sets s with s % gridDim.x == b: it touches their hits and places
// their missed keys in its own scratch (words + b * ORDERED_WORDS, its own cursors in shared memory),
// so that no block waits for another; one block (no sketch, no deferred insertion: the host launches
// one for those) uses the batch's words and cursors as the large batch's kernels do.  Every block reads
// the clock first; the last block to finish ticks it, and its first warp ends the batch.  touch says what the probe
// left undone: TICK_NONE (it scored the hits and ticked), TICK_ONLY (hits keep their scores),
// TICK_TOUCH (the hits' scores, touch.cuh, then the tick): one launch fewer either way.  TICK_TOUCH_AGED:
// TICK_TOUCH after an aging pass that ran between the probe and this kernel; this kernel may start before
// that pass's score writes are visible (a programmatic launch), so it waits for that grid before the touch.
extern "C" __global__ void __launch_bounds__(ORDERED_BLOCK) ordered_small(
    ORDERED_ARGS, slot_t* __restrict__ table, unsigned char* __restrict__ digests, char* __restrict__ values,
    const char* out, char* __restrict__ stash, i64* __restrict__ sketch, int depth, i64 width, u64 seed,
    i64 threshold, int touch, i64* __restrict__ state) {
    __shared__ touch_shared_t sh;
    __shared__ unsigned long long cursors[2];  // a block's distinct missed keys and listed sets (gridDim.x > 1)
    const int part = blockIdx.x, parts = gridDim.x;
    const ordered_t a = ordered_of(words + (i64)part * ORDERED_WORDS, keys, n, mode, t, refuse_below_min, defer_at);
    const i64 tid = threadIdx.x, stride = blockDim.x;
    unsigned long long* ucursor = parts > 1 ? &cursors[0] : word(state, ORD_BATCH + F_UNIQUE);
    unsigned long long* scursor = parts > 1 ? &cursors[1] : word(state, ORD_BATCH + F_SETS);
    if (tid == 0) cursors[0] = cursors[1] = 0;
    // launched programmatically after the probe (common.cuh), it starts while the probe runs: first what
    // reads nothing of the probe's (the shared tables' zeroing; whether the batch needs them is known only
    // later), then it waits for the probe's announcement (F_PROBED: every slot, count and converted key
    // written, the clock ticked), runs the miss phases while the probe copies the batch's rows (the missed
    // ones over PCIe), and waits for the probe's grid itself (wait_for_prior_grid) before it reads those
    // rows from out or overwrites any row of the cache
    const bool in_shared = small_tables_in_shared(n, sketch != nullptr || defer_at >= 0.0);
    if (in_shared) zero_shared_tables(tid, stride);
    if (tid == 0) acquire_flag(state + ORD_BATCH + F_PROBED);
    __syncthreads();
    acquire_flag(state + ORD_BATCH + F_PROBED);  // set now: each thread's own acquire, one load
    if (touch == TICK_TOUCH_AGED) {  // the aging pass's scores first
        wait_for_prior_grid();
        touch = TICK_TOUCH;
    }
    const i64 clock = state[STATE_CLOCK];
    const i64 now = touch == TICK_NONE ? clock : clock + 1;  // the batch's scores and insertions
    if (touch == TICK_TOUCH) touch_chunks(table, a.slots, a.n, now, 0, 1, sh, part, parts);
    // the probe's count of the batch's misses is final (its kernel came first); the last block zeroes it
    // only after every block has arrived.  A block of a batch that all hit has no key to place: it goes
    // to the end (one block, which may hold a sketch or a deferred batch, runs every phase)
    const bool misses = parts == 1 || BATCH(F_MISSES) != 0;
    // two copies of the phases: each keeps its tables' addresses where they are (the global ones in the
    // words, the shared ones constant), where one copy would hold either set in registers and spill
    auto phases = [&](const ordered_t& b) {
        misses_phase(b, tid, stride, ucursor, part, parts);
        __syncthreads();
        distinct_phase(b, state, tid, stride, sketch == nullptr, ucursor);
        __syncthreads();
        if (sketch != nullptr) {  // one block (its estimates read every key's counts)
            sketch_add_phase(sketch, depth, width, seed, b.ukeys, b.ucount, state, tid, stride);
            __syncthreads();
            sketch_admit_phase(sketch, depth, width, seed, b.ukeys, b.uadmit, threshold, state, tid, stride);
            __syncthreads();
        }
        group_phase(b, tid, stride, ucursor, scursor);
        __syncthreads();
        wait_for_prior_grid();  // the missed rows are in out (and the probe's grid has ended)
        insert_phase(b, table, digests, values, out, stash, false, state, tid / 32, stride / 32, scursor, now);
    };
    if (misses && in_shared) {
        const ordered_t b = shared_tables(a);
        __syncthreads();  // the cursors and tables are zero, and this block's hits scored, before its keys are placed
        phases(b);
    } else {
        __syncthreads();  // the cursors are zero, and this block's hits scored, before its keys are placed
        if (misses) phases(a);
    }
    if (misses && parts > 1 && tid == 0) atomicAdd(word(state, ORD_BATCH + F_UNIQUE), cursors[0]);  // the batch's count
    wait_for_prior_grid();  // (done already with misses) no block ends before the probe's grid
    __shared__ bool last;
    const bool arrived_last = last_block(state);  // thread 0's answer
    if (tid == 0) last = arrived_last;
    __syncthreads();
    if (last && tid < 32) {  // every block has read the clock and added its counts: warp 0 ends the batch
        if (tid == 0 && touch != TICK_NONE) state[STATE_CLOCK] = now;
        finish_phase(state, a.n);
    }
}
