// embcache GPU kernels: the miss path of a stream-ordered lookup, which never waits for the host.
//
// gpu.py prepends generated #defines (see common.cuh).  After probe_gather_source has written every
// row (hits from the cache, misses from the DeviceSource) and the clock has ticked, these kernels
// finish the batch on the device, in the contract's order (DESIGN.md section 3):
//
//   ordered_misses   every missed occurrence into a hash table of distinct missed keys (count, last index)
//   ordered_distinct per distinct key: its count, where its row is (its last occurrence in out), whether
//                    the source held it, and the batch's admission decision (mode below)
//   [sketch.cu's ordered_sketch_add, ordered_sketch_admit: MinFrequency's count-min sketch]
//   ordered_group    the admitted keys linked into one list per set (a hash table of sets)
//   ordered_insert   one warp per set: its keys in ascending key order, each as insert_and_evict does it,
//                    rows copied from out
//   ordered_finish   the batch's counters added to the totals and kept as the last batch's, then zeroed
//
// Every kernel is launched with a grid the host sizes from the batch length n alone; counts that only
// the device knows (distinct misses u, sets m) are read from the state words, and each kernel loops to
// them.  The scratch tables are all zero between batches: each kernel that empties a cell puts it back,
// so no memset is needed and a captured graph replays from a clean state.
//
// Counter words: state[ORD_BATCH + F_*] this batch, state[ORD_TOTAL + F_*] since the cache was made,
// state[ORD_LAST + F_*] the last batch's.  The probe's STATE_MISSES and STATE_RESERVED are this batch's
// misses and invalid keys (reserved keys, which a device batch cannot refuse without waiting).

#include "common.cuh"

#define BATCH(f) state[ORD_BATCH + (f)]

__device__ __forceinline__ unsigned long long* word(i64* state, int w) {
    return reinterpret_cast<unsigned long long*>(state + w);
}

// A distinct missed key is stored as its bits xor EMPTY_KEY, so that an empty cell is 0 (a reserved
// key never gets here).
__device__ __forceinline__ u64 encode(i64 key) { return (u64)key ^ (u64)EMPTY_KEY; }

// The keys a stream-ordered lookup probes, as int64, from int32 or int64 keys: with rows > 0 they are
// row numbers of a table of rows rows (ONNX Gather's indices): k < 0 means k + rows, and a key still
// outside [0, rows) becomes the key rows (which a table of row numbers does not hold: the default row)
// and is counted invalid.
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_keys(
    const void* __restrict__ raw, int key_bytes, i64 n, i64 rows, i64* __restrict__ keys, i64* __restrict__ state) {
    unsigned invalid = 0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 k = key_bytes == 4 ? (i64) reinterpret_cast<const int*>(raw)[i] : reinterpret_cast<const i64*>(raw)[i];
        if (rows > 0) {
            if (k < 0) k += rows;
            if (k < 0 || k >= rows) {
                k = rows;
                ++invalid;
            }
        }
        keys[i] = k;
    }
    invalid = warp_sum(invalid);  // blocks of whole warps
    if ((threadIdx.x & 31) == 0 && invalid) atomicAdd(word(state, ORD_BATCH + F_INVALID), (unsigned long long)invalid);
}

// Every missed occurrence (slot < 0) of a key that is not reserved: into the table of distinct missed
// keys (hkeys, hcount, hlast: mask + 1 cells, mask + 1 >= 2 n), counting occurrences and keeping the
// last index (+ 1).  The thread that adds a key lists it: ukeys[j], ucell[j], j from BATCH(F_UNIQUE).
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_misses(
    const i64* __restrict__ keys, const i64* __restrict__ slots, i64 n, u64* __restrict__ hkeys,
    unsigned long long* __restrict__ hcount, unsigned long long* __restrict__ hlast, i64 mask,
    i64* __restrict__ ukeys, i64* __restrict__ ucell, i64* __restrict__ state) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        if (slots[i] >= 0) continue;
        const i64 key = keys[i];
        if (reserved(key)) continue;
        const u64 enc = encode(key);
        i64 h = (i64)(mix64((u64)key) & (u64)mask);
        while (true) {
            const u64 seen = atomicCAS(reinterpret_cast<unsigned long long*>(hkeys + h), 0ull, (unsigned long long)enc);
            if (seen == 0) {
                const i64 j = (i64)atomicAdd(word(state, ORD_BATCH + F_UNIQUE), 1ull);
                ukeys[j] = key;
                ucell[j] = h;
                break;
            }
            if (seen == enc) break;
            h = (h + 1) & mask;
        }
        atomicAdd(hcount + h, 1ull);
        atomicMax(hlast + h, (unsigned long long)(i + 1));
    }
}

// The admission mode of a batch (gpu.py's _ADMIT_*): never (a policy that does not insert on lookup),
// always, or only while the batch's hit rate is below t (HitRateThreshold: hits < t * lookups, in
// double precision as Python computes it).
__device__ __forceinline__ bool batch_admits(const i64* state, i64 n, int mode, double t) {
    if (mode == ADMIT_NEVER) return false;
    if (mode == ADMIT_ALWAYS) return true;
    const i64 hits = n - state[STATE_MISSES];
    return n > 0 && (double)hits < t * (double)n;
}

// Per distinct missed key j < u: its count, where its row is in out (its last occurrence), whether
// the source held it, and whether it is admitted (the source held it and the batch admits); its cell
// goes back to empty.  Counts the absent keys and, when nothing is sketched, the admitted ones.
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_distinct(
    const i64* __restrict__ slots, i64 n, u64* __restrict__ hkeys, unsigned long long* __restrict__ hcount,
    unsigned long long* __restrict__ hlast, const i64* __restrict__ ucell, i64* __restrict__ ucount,
    i64* __restrict__ uat, bool* __restrict__ uadmit, i64* __restrict__ state, int mode, double t,
    int count_admitted) {
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    const bool admits = batch_admits(state, n, mode, t);
    unsigned absent = 0, admitted = 0;
    for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < u; j += (i64)gridDim.x * blockDim.x) {
        const i64 h = ucell[j];
        const i64 at = (i64)hlast[h] - 1;
        ucount[j] = (i64)hcount[h];
        uat[j] = at;
        hkeys[h] = 0;
        hcount[h] = 0;
        hlast[h] = 0;
        const bool present = slots[at] != -1;  // -1: neither cached nor in the source
        absent += !present;
        uadmit[j] = present && admits;
        admitted += present && admits;
    }
    absent = warp_sum(absent);  // every lane of a block's warps gets here (blocks of whole warps)
    admitted = warp_sum(admitted);
    if ((threadIdx.x & 31) == 0) {
        if (absent) atomicAdd(word(state, ORD_BATCH + F_ABSENT), (unsigned long long)absent);
        if (count_admitted && admitted) atomicAdd(word(state, ORD_BATCH + F_ADMITTED), (unsigned long long)admitted);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) BATCH(F_ADMITS) = admits;
}

// The admitted keys, each linked into its set's list: a table of sets (gsets: set + 1, ghead: the
// list's first key index + 1; mask + 1 >= 2 n cells), unext[j] the next key of j's list (+ 1, 0 ends).
// The thread that adds a set lists its cell: gcells[m], m from BATCH(F_SETS).
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_group(
    const i64* __restrict__ ukeys, const bool* __restrict__ uadmit, u64 num_sets, u64* __restrict__ gsets,
    unsigned long long* __restrict__ ghead, i64 mask, i64* __restrict__ unext, i64* __restrict__ gcells,
    i64* __restrict__ state) {
    const i64 u = state[ORD_BATCH + F_UNIQUE];
    for (i64 j = (i64)blockIdx.x * blockDim.x + threadIdx.x; j < u; j += (i64)gridDim.x * blockDim.x) {
        if (!uadmit[j]) continue;
        const u64 set = set_of(ukeys[j], num_sets);
        i64 h = (i64)(mix64(set) & (u64)mask);
        while (true) {
            const u64 seen = atomicCAS(reinterpret_cast<unsigned long long*>(gsets + h), 0ull, (unsigned long long)(set + 1));
            if (seen == 0) {
                gcells[(i64)atomicAdd(word(state, ORD_BATCH + F_SETS), 1ull)] = h;
                break;
            }
            if (seen == set + 1) break;
            h = (h + 1) & mask;
        }
        unext[j] = (i64)atomicExch(ghead + h, (unsigned long long)(j + 1));
    }
}

// insert.cu's per-key step, shared: the same code decides where a key goes on both paths
#include "insert_one.cuh"

// One warp per listed set: its admitted keys in ascending key order (the list is walked for the
// next larger key each time: lists hold a few keys), each placed as insert_and_evict places it, its
// row copied at once, so a later key of the batch that takes an earlier one's slot wins.  The set's
// cell goes back to empty.  The outcome tally goes to the batch words.
//
// HitRateDeferred (defer_at >= 0): a batch whose hit rate is at least defer_at is not placed now.  Its
// rows are kept (stash[j], from out) and state[STATE_PENDING] says how many sets are listed; the lists
// stay, and the next operation's ordered_insert with pending = 1 places them (rows from the stash, at
// the clock of that batch, which has not ticked since) before anything else.
extern "C" __global__ void __launch_bounds__(UTILITY_BLOCK) ordered_insert(
    slot_t* __restrict__ table, unsigned char* __restrict__ digests, char* __restrict__ values,
    const i64* __restrict__ ukeys, const i64* __restrict__ ucount, const i64* __restrict__ uat,
    const char* __restrict__ out, u64* __restrict__ gsets, unsigned long long* __restrict__ ghead,
    const i64* __restrict__ unext, const i64* __restrict__ gcells, i64* __restrict__ state,
    int refuse_below_min, i64 n, double defer_at, int pending, char* __restrict__ stash) {
    const int lane = threadIdx.x & 31;
    const i64 sets = pending ? state[STATE_PENDING] : state[ORD_BATCH + F_SETS];
    const i64 clock = state[STATE_CLOCK];
    const i64 warps = (i64)gridDim.x * (blockDim.x / 32);
    const bool defer = !pending && defer_at >= 0.0 && n > 0 && (double)(n - state[STATE_MISSES]) >= defer_at * (double)n;
    if (defer && blockIdx.x == 0 && threadIdx.x == 0) state[STATE_PENDING] = sets;
    unsigned long long tally[OUTCOME_CODES] = {};
    for (i64 m = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; m < sets; m += warps) {
        const i64 h = gcells[m];
        const i64 head = (i64)ghead[h];
        if (defer) {  // keep the rows: out is the caller's once the lookup has returned
            for (i64 j = head; j; j = unext[j - 1])
                copy_row(stash + (j - 1) * ROW_BYTES, out + uat[j - 1] * ROW_BYTES, lane, 32);
            continue;
        }
        const i64 base = (i64)(gsets[h] - 1) * WAYS;
        i64 kw[WARP_WPL], sw[WARP_WPL];
        load_set(table, base, kw, sw);
        bool started = false;
        i64 last = 0;
        while (true) {
            // the smallest key above the last one placed (every lane walks the same list)
            i64 best = -1, best_key = 0;
            for (i64 j = head; j; j = unext[j - 1]) {
                const i64 k = ukeys[j - 1];
                if ((!started || k > last) && (best < 0 || k < best_key)) { best = j - 1; best_key = k; }
            }
            if (best < 0) break;
            started = true;
            last = best_key;
            const int way = insert_one(table, digests, base, kw, sw, best_key, true, ucount[best], clock,
                                       refuse_below_min, tally);
            if (way >= 0) {
                const char* row = pending ? stash + best * ROW_BYTES : out + uat[best] * ROW_BYTES;
                copy_row(values + (base + way) * ROW_BYTES, row, lane, 32);
            }
        }
        __syncwarp();
        if (lane == 0) {
            gsets[h] = 0;
            ghead[h] = 0;
        }
    }
    if (lane == 0) {
#pragma unroll
        for (int c = 0; c < OUTCOME_CODES; ++c)
            if (tally[c]) atomicAdd(word(state, ORD_BATCH + F_OUTCOMES + c), tally[c]);
    }
}

// After ordered_insert with pending = 1: its tally into the totals (a deferred insertion belongs to
// no operation's last counts), the batch words zeroed, nothing pending.
extern "C" __global__ void ordered_flushed(i64* __restrict__ state) {
    for (int f = 0; f < F_COUNTERS; ++f) state[ORD_TOTAL + f] += BATCH(f);
    for (int f = 0; f < ORD_FIELDS; ++f) BATCH(f) = 0;
    state[STATE_PENDING] = 0;
}

// One thread: the batch's counters into the totals and the last batch's words, then zeroed for the
// next batch (the probe's miss and reserved counters too).
extern "C" __global__ void ordered_finish(i64* __restrict__ state, i64 n) {
    BATCH(F_LOOKUPS) = n;
    BATCH(F_MISSES) = state[STATE_MISSES];
    BATCH(F_INVALID) += state[STATE_RESERVED];  // beside ordered_keys' out-of-range row numbers
    BATCH(F_BATCHES) = 1;
    for (int f = 0; f < F_COUNTERS; ++f) {
        state[ORD_TOTAL + f] += BATCH(f);
        state[ORD_LAST + f] = BATCH(f);
    }
    for (int f = 0; f < ORD_FIELDS; ++f) BATCH(f) = 0;  // the cursors and flags too
    state[STATE_MISSES] = 0;
    state[STATE_RESERVED] = 0;
}
