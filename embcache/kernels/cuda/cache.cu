// embcache GPU kernels over the set-associative arrays (DESIGN.md sections 3-4).
//
// gpu.py prepends generated #defines: the layout constants from layout.py, the policy's score
// expressions, the row size and the launch shape from the tuning table (see common.cuh).
// Every kernel copies rows as raw bits (VEC-byte words), so results equal the CPU backend's.
//
// Slot s = set * WAYS + way; table[s] holds its key and score (slot_t, common.cuh).  64-bit indices
// throughout, so tables may exceed 2^31 slots and 4 GiB.

#include "common.cuh"

#define FULL_MASK 0xffffffffu
#define CHUNKS (ROW_BYTES / VEC)
// ways each lane of a probing group reads, and ways each lane of an inserting warp holds
#define PROBE_WPL (WAYS / GROUP)
#define WARP_WPL ((WAYS + 31) / 32)

// state[] words shared with gpu.py (STATE_* there)
#define STATE_CLOCK 0
#define STATE_MISSES 1
#define STATE_RESERVED 2
#define STATE_REPLAY_LOOKUPS 3
#define STATE_REPLAY_MISSES 4
#define STATE_LISTED 5
#define STATE_DONE 6  // blocks of the running reporting kernel that have finished (the last one reports)
#define STATE_OUTCOMES 8  // 5 words: how many keys of the last insert_and_evict got each outcome code
#define STATE_PUBLISHED 13  // words 0 .. 12 go to the host's copy
#define STATE_DISTINCT 13  // count_source_misses: distinct missed keys
#define STATE_ABSENT 14  // and how many of those the source lacked
#define STATE_HOST 15  // the device address of the host's pinned copy of the state words

__device__ __forceinline__ void copy_row(char* __restrict__ dst, const char* __restrict__ src, int lane, int lanes) {
    const vec_t* s = reinterpret_cast<const vec_t*>(src);
    vec_t* d = reinterpret_cast<vec_t*>(dst);
#pragma unroll 4
    for (int c = lane; c < CHUNKS; c += lanes) d[c] = s[c];
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

// ---------------------------------------------------------------- hit path
// Every thread calls this at the end of a kernel that reports to the host: true in thread 0 of the
// block that finishes last, once every block's counter atomics are visible.  It resets the arrival
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
// old value.  With if_clean it ticks only if no block found a miss or a reserved key.
__device__ __forceinline__ void tick_if(i64* state, i64 clock, int if_clean) {
    const volatile i64* counters = state;
    if (!if_clean || !(counters[STATE_MISSES] | counters[STATE_RESERVED])) state[STATE_CLOCK] = clock + 1;
}

// GROUP lanes probe one key's set together (PROBE_WPL ways each), KEYS_PER_GROUP keys in flight,
// then copy the row with VEC-byte words.  slots[i] = slot or -1; rows go to out only if gather.
// fill_misses: write default_row for misses (query and captured lookups) instead of leaving them.
// Misses and reserved keys are counted into state[] once per warp.
// touch (policies whose hit score is the clock's alone, as LRU's: every occurrence of a slot gets
// the same score, so a plain store applies the rule exactly): store the hit score
// into each hit's slot right after its key was read, where it hits the same sector in L2; then the
// last block ticks the clock (TOUCH_IF_CLEAN: only if the batch was all hits).  The old score goes to
// old_scores[i] (when given) so that a lookup that fails later can put it back (restore_scores).
//
// FROM_SOURCE (probe_gather_source): a miss is looked up in a source of rows, an open-addressing
// table of keys with linear probing from mix64(key) & source_mask (a pinned HostStore's index, in
// device memory or mapped) whose row h sits at source_rows + h * ROW_BYTES (mapped pinned memory).
// Its slot becomes SOURCE_SLOT(h) (-2 - h, still negative: a miss for every count and for the
// touch) and its row is copied from there, over PCIe, in the same pass as the hits' rows; a key the
// source lacks stays -1 and gets the default row.
#define TOUCH_NONE 0
#define TOUCH_IF_CLEAN 1
#define TOUCH_ALWAYS 2
#define SOURCE_SLOT(h) (-2 - (h))  // its own inverse

// the source row of key, or -1 (linear probing, as tiers/host.py's _probe)
__device__ __forceinline__ i64 source_find(const i64* __restrict__ source_keys, i64 mask, i64 key) {
    i64 h = (i64)(mix64((u64)key) & (u64)mask);
    i64 k;
    while ((k = source_keys[h]) != EMPTY_KEY && k != key) h = (h + 1) & mask;
    return k == key ? h : -1;
}

template <bool FROM_SOURCE>
__device__ __forceinline__ void probe_gather_body(
    slot_t* __restrict__ table, const unsigned char* __restrict__ digests, const char* __restrict__ values,
    u64 num_sets, const i64* __restrict__ keys, i64 n, int gather, char* __restrict__ out, i64* __restrict__ slots,
    const char* __restrict__ default_row, int fill_misses, int replay, i64* __restrict__ state, int touch,
    i64* __restrict__ old_scores, const i64* __restrict__ source_keys, i64 source_mask,
    const char* __restrict__ source_rows) {
    const int warp_lane = threadIdx.x & 31;
    const int lane = threadIdx.x % GROUP;
    const int group_first_lane = (threadIdx.x & 31) - lane;
    const unsigned group_mask = GROUP == 32 ? FULL_MASK : ((1u << GROUP) - 1u);
    const i64 stride = (i64)gridDim.x * (BLOCK / GROUP) * KEYS_PER_GROUP;
    i64 first = ((i64)blockIdx.x * (BLOCK / GROUP) + threadIdx.x / GROUP) * KEYS_PER_GROUP;
    unsigned misses = 0, bad = 0;
    const i64 clock = touch ? state[STATE_CLOCK] : 0;
    const i64 touched = hit_score(0, clock + 1, 1);
    // the whole warp runs the same iterations (its lane 0 has the lowest index), so full-mask
    // ballots and shuffles are safe; indices >= n are simply not valid
    for (; __shfl_sync(FULL_MASK, first, 0) < n; first += stride) {
        i64 key[KEYS_PER_GROUP], base[KEYS_PER_GROUP];
        // per key: the way this lane found it in (or -1) and that slot's score as the probe read it
        int mine[KEYS_PER_GROUP];
        i64 seen[KEYS_PER_GROUP];
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            const i64 i = first + j;
            key[j] = i < n ? keys[i] : EMPTY_KEY;
            base[j] = (i64)set_of(key[j], num_sets) * WAYS;
            mine[j] = -1;
            seen[j] = 0;
        }
#if DIGESTS
        // digests first (WAYS bytes a set), then only the records behind matching digests: all loads
        // of one stage are independent, so KEYS_PER_GROUP keys keep that many requests in flight
        unsigned tags[KEYS_PER_GROUP][(PROBE_WPL + 3) / 4];
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            const unsigned char* d = digests + base[j] + lane * PROBE_WPL;
            if (first + j < n) {
#if PROBE_WPL >= 4
#pragma unroll
                for (int q = 0; q < PROBE_WPL / 4; ++q) tags[j][q] = reinterpret_cast<const unsigned*>(d)[q];
#else
                tags[j][0] = 0;
#pragma unroll
                for (int w = 0; w < PROBE_WPL; ++w) tags[j][0] |= (unsigned)d[w] << (8 * w);
#endif
            }
        }
        // a lane's ways whose digest matches: nearly always none or one (1/256 a way by chance), so
        // the first candidate's whole record (key and score, one 16-byte load) is read for every key
        // at once and any further candidates one by one after
        unsigned candidates[KEYS_PER_GROUP];
        slot_t first_record[KEYS_PER_GROUP];
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            const unsigned want = digest_of(key[j]);
            candidates[j] = 0;
#pragma unroll
            for (int w = 0; w < PROBE_WPL; ++w)
                candidates[j] |= (unsigned)(((tags[j][w / 4] >> (8 * (w % 4))) & 0xffu) == want) << w;
            if (first + j >= n || reserved(key[j])) candidates[j] = 0;
            const slot_t* p = table + base[j] + lane * PROBE_WPL;
            first_record[j].key = EMPTY_KEY;  // EMPTY_KEY never equals a key that is looked up
            if (candidates[j]) first_record[j] = p[__ffs(candidates[j]) - 1];
        }
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            const slot_t* p = table + base[j] + lane * PROBE_WPL;
            if (candidates[j] && first_record[j].key == key[j]) {
                mine[j] = __ffs(candidates[j]) - 1;
                seen[j] = first_record[j].score;
            } else if (candidates[j]) {
                for (unsigned rest = candidates[j] & (candidates[j] - 1); rest; rest &= rest - 1) {
                    const int w = __ffs(rest) - 1;
                    const slot_t r = p[w];
                    if (r.key == key[j]) { mine[j] = w; seen[j] = r.score; break; }
                }
            }
        }
#else
        i64 probe[KEYS_PER_GROUP][PROBE_WPL];
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            if (first + j < n) {
                const slot_t* p = table + base[j] + lane * PROBE_WPL;
#pragma unroll
                for (int w = 0; w < PROBE_WPL; ++w) probe[j][w] = p[w].key;
            }
        }
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            if (first + j < n && !reserved(key[j])) {
#pragma unroll
                for (int w = 0; w < PROBE_WPL; ++w)
                    if (probe[j][w] == key[j]) mine[j] = w;
                if (touch && mine[j] >= 0) seen[j] = table[base[j] + lane * PROBE_WPL + mine[j]].score;
            }
        }
#endif
#pragma unroll
        for (int j = 0; j < KEYS_PER_GROUP; ++j) {
            const i64 i = first + j;
            const unsigned hits = (__ballot_sync(FULL_MASK, mine[j] >= 0) >> group_first_lane) & group_mask;
            const int hit_lane = hits ? __ffs(hits) - 1 : 0;
            const int way = __shfl_sync(FULL_MASK, mine[j], group_first_lane + hit_lane) + hit_lane * PROBE_WPL;
            i64 slot = hits ? base[j] + way : -1;
            if (FROM_SOURCE) {
                i64 h = -1;
                if (lane == 0 && !hits && i < n && !reserved(key[j])) h = source_find(source_keys, source_mask, key[j]);
                h = __shfl_sync(FULL_MASK, h, group_first_lane);
                if (h >= 0) slot = SOURCE_SLOT(h);
            }
            if (i < n) {
                if (lane == 0) {
                    slots[i] = slot;
                    misses += slot < 0;
                    bad += reserved(key[j]);
                }
                // the lane that found the key holds the score it read: it saves it and stores the new one
                if (touch && mine[j] >= 0) {
                    if (old_scores) old_scores[i] = seen[j];
                    table[slot].score = touched;
                }
                if (gather) {  // three copies, as before the source: probe_gather compiles to the same code
                    if (slot >= 0) copy_row(out + i * ROW_BYTES, values + slot * ROW_BYTES, lane, GROUP);
                    else if (FROM_SOURCE && slot <= -2)
                        copy_row(out + i * ROW_BYTES, source_rows + SOURCE_SLOT(slot) * ROW_BYTES, lane, GROUP);
                    else if (fill_misses) copy_row(out + i * ROW_BYTES, default_row, lane, GROUP);
                }
            }
        }
    }
    misses = warp_sum(misses);
    bad = warp_sum(bad);
    if (warp_lane == 0) {
        if (misses) atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_MISSES), (unsigned long long)misses);
        if (bad) atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_RESERVED), (unsigned long long)bad);
        if (replay && misses)
            atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_REPLAY_MISSES), (unsigned long long)misses);
    }
    if (replay && blockIdx.x == 0 && threadIdx.x == 0)
        atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_REPLAY_LOOKUPS), (unsigned long long)n);
    if (last_block(state)) {
        if (touch) tick_if(state, clock, touch == TOUCH_IF_CLEAN);
        if (!replay) publish(state);  // a graph replay's counts are absorbed from the device words instead
    }
}

#define PROBE_GATHER_ARGS                                                                                      \
    slot_t *__restrict__ table, const unsigned char *__restrict__ digests, const char *__restrict__ values,    \
        u64 num_sets, const i64 *__restrict__ keys, i64 n, int gather, char *__restrict__ out,                 \
        i64 *__restrict__ slots, const char *__restrict__ default_row, int fill_misses, int replay,            \
        i64 *__restrict__ state, int touch, i64 *__restrict__ old_scores
#define PROBE_GATHER_PASS \
    table, digests, values, num_sets, keys, n, gather, out, slots, default_row, fill_misses, replay, state, touch, old_scores

// two kernels, so that the all-hit path keeps the registers of a probe without the source walk
extern "C" __global__ void __launch_bounds__(BLOCK) probe_gather(PROBE_GATHER_ARGS) {
    probe_gather_body<false>(PROBE_GATHER_PASS, nullptr, 0, nullptr);
}

extern "C" __global__ void __launch_bounds__(BLOCK) probe_gather_source(
    PROBE_GATHER_ARGS, const i64* __restrict__ source_keys, i64 source_mask, const char* __restrict__ source_rows) {
    probe_gather_body<true>(PROBE_GATHER_PASS, source_keys, source_mask, source_rows);
}

// Undo probe_gather's touch after a lookup failed before its end (reserved key, tier error): each hit
// occurrence read either the slot's score before the batch or `touched` (a duplicate key's write
// landed first), and the first read of each slot was the former, so writing back every read that is
// not `touched` restores every slot, whatever the order.  The clock was not ticked (not clean).
extern "C" __global__ void restore_scores(slot_t* __restrict__ table, const i64* __restrict__ slots,
                                          const i64* __restrict__ old_scores, i64 n, const i64* __restrict__ state) {
    const i64 touched = hit_score(0, state[STATE_CLOCK] + 1, 1);
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 s = slots[i];
        if (s >= 0 && old_scores[i] != touched) table[s].score = old_scores[i];
    }
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

// Apply the hit rule for every occurrence of every slot.  The rule composes (count a then b equals
// a + b), so a block first counts each slot's occurrences in a chunk of TOUCH_CHUNK in a shared hash
// table, then applies the rule once per distinct slot with that count.  Skewed batches touch a few
// hot slots thousands of times; without this those atomics serialize on one address.
#define TOUCH_TABLE (2 * TOUCH_CHUNK)  // load factor <= 1/2: a probe chain always ends
extern "C" __global__ void __launch_bounds__(256) touch(slot_t* __restrict__ table, const i64* __restrict__ slots,
                                                      i64 n, i64* __restrict__ state, int if_clean) {
    __shared__ unsigned long long table_slot[TOUCH_TABLE];
    __shared__ unsigned table_count[TOUCH_TABLE];
    if (skip(state, if_clean)) return;
    const i64 old_clock = state[STATE_CLOCK], clock = old_clock + 1;
    const unsigned long long empty = ~0ull;  // no slot is -1 once negative slots (misses) are skipped
    for (i64 base = (i64)blockIdx.x * TOUCH_CHUNK; base < n; base += (i64)gridDim.x * TOUCH_CHUNK) {
        for (int t = threadIdx.x; t < TOUCH_TABLE; t += blockDim.x) {
            table_slot[t] = empty;
            table_count[t] = 0;
        }
        __syncthreads();
        for (int j = threadIdx.x; j < TOUCH_CHUNK && base + j < n; j += blockDim.x) {
            const i64 s = slots[base + j];
            if (s < 0) continue;
            unsigned h = (unsigned)mix64((u64)s) & (TOUCH_TABLE - 1);
            while (true) {
                const unsigned long long seen = atomicCAS(&table_slot[h], empty, (unsigned long long)s);
                if (seen == empty || seen == (unsigned long long)s) break;
                h = (h + 1) & (TOUCH_TABLE - 1);
            }
            atomicAdd(&table_count[h], 1u);
        }
        __syncthreads();
        for (int t = threadIdx.x; t < TOUCH_TABLE; t += blockDim.x) {
            if (table_slot[t] != empty) {
                const i64 count = table_count[t];
                atomic_apply(&table[table_slot[t]].score, [clock, count](i64 score) {
                    return hit_score(score, clock, count);
                });
            }
        }
        __syncthreads();
    }
    if (last_block(state)) tick_if(state, old_clock, 0);
}

// Every slot's digest from its key (after clear, load, or turning digests on).
extern "C" __global__ void make_digests(const slot_t* __restrict__ table, i64 n, unsigned char* __restrict__ digests) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        digests[i] = digest_of(table[i].key);
}

// ---------------------------------------------------------------- insertion
// One key's insertion into a set whose keys and scores a warp holds in registers (way = j * 32 +
// lane), exactly as insert_and_evict_cpu does it: the way it wrote (the row still to be copied
// there) or -1 (not admitted, refused).  Writes the slot record and digest; counts the outcome.
__device__ __forceinline__ int insert_one(slot_t* __restrict__ table, unsigned char* __restrict__ digests, i64 base,
                                          i64 (&kw)[WARP_WPL], i64 (&sw)[WARP_WPL], i64 k, bool admitted, i64 count,
                                          i64 clock, int refuse_below_min, unsigned long long (&tally)[5]) {
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
            way = low_way;
            code = EVICTED;
        }
    }
#pragma unroll
    for (int c = 0; c < 5; ++c) tally[c] += c == code;
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

// Keys are unique; order[] lists them sorted by (set, key).  A warp takes 32 sorted positions at a
// time, and every run of equal sets that starts among them (to its end, past the 32 if need be),
// applying its keys in order as insert_and_evict_cpu does.  The memory waits overlap: each lane
// reads its position's key (whose set it computes), admit flag and count at once,
// the next run's set is read while one is applied, and the rows are copied at the end, one word
// per lane, after every decision of the 32.  A later key that takes the slot of an earlier one
// (evicting a key inserted by this batch) cancels the earlier copy, so the last row wins.
// Only the tally of outcome codes leaves the kernel (state[STATE_OUTCOMES], published to the host):
// per-key outcomes would be two scattered writes a key that no caller reads.
extern "C" __global__ void __launch_bounds__(256) insert_and_evict(
    slot_t* __restrict__ table, unsigned char* __restrict__ digests,
    char* __restrict__ values, u64 num_sets, const i64* __restrict__ keys, const i64* __restrict__ counts, const char* __restrict__ rows,
    const bool* __restrict__ admit, const i64* __restrict__ order, i64 n, i64* __restrict__ state,
    int refuse_below_min) {
    const int lane = threadIdx.x & 31;
    const i64 warps = (i64)gridDim.x * (blockDim.x / 32);
    const i64 clock = state[STATE_CLOCK];
    // outcomes are warp-uniform, so each warp tallies in registers and adds once at the end
    unsigned long long tally[5] = {0, 0, 0, 0, 0};
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
                                           clock, refuse_below_min, tally);
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
                                               refuse_below_min, tally);
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
        for (int c = 0; c < 5; ++c)
            if (tally[c]) atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_OUTCOMES + c), tally[c]);
    }
    if (last_block(state)) publish(state);
}

// ---------------------------------------------------------------- unique (sorted keys in, runs out)
// Both kernels take keys already sorted by a stable argsort (order[]), so results are deterministic.
// starts[i] = 1 where a run of equal keys begins.
extern "C" __global__ void run_starts(const i64* __restrict__ sorted, i64 n, i64* __restrict__ starts) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        starts[i] = i == 0 || sorted[i] != sorted[i - 1];
}

// rank[i] = inclusive prefix sum of starts.  Writes the u unique keys, the sorted position where each
// run begins (bounds[u] = n) and, for every original position, the index of its unique key.
extern "C" __global__ void run_scatter(const i64* __restrict__ sorted, const i64* __restrict__ order,
                                       const i64* __restrict__ starts, const i64* __restrict__ rank, i64 n, i64 u,
                                       i64* __restrict__ ukeys, i64* __restrict__ bounds, i64* __restrict__ inverse) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 r = rank[i] - 1;
        if (starts[i]) { ukeys[r] = sorted[i]; bounds[r] = i; }
        inverse[order[i]] = r;
        if (i == 0) bounds[u] = n;
    }
}

// Set of every key, as the type the sort uses (32-bit when num_sets allows: half the radix passes).
extern "C" __global__ void sets_of(const i64* __restrict__ keys, i64 n, u64 num_sets, set_t* __restrict__ out) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        out[i] = (set_t)set_of(keys[i], num_sets);
}

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

// ---------------------------------------------------------------- count-min sketch
__device__ __forceinline__ i64 sketch_column(i64 key, int row, u64 seed, i64 width) {
    return (i64)(mix64((u64)key + (u64)(row + 1) * GOLDEN + seed) & (u64)(width - 1));
}

// Batch-synchronous like sketch_cpu: this kernel adds every key's count, sketch_estimate reads after.
extern "C" __global__ void sketch_add(i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                      const i64* __restrict__ keys, const i64* __restrict__ counts, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        const i64 c = counts[i];
        for (int r = 0; r < depth; ++r)
            atomic_apply(sketch + r * width + sketch_column(keys[i], r, seed, width),
                         [c](i64 v) { return sat_add(v, c); });
    }
}

extern "C" __global__ void sketch_estimate(const i64* __restrict__ sketch, int depth, i64 width, u64 seed,
                                           const i64* __restrict__ keys, i64 n, i64* __restrict__ estimate) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) {
        i64 best = MAX_SCORE;
        for (int r = 0; r < depth; ++r) {
            const i64 v = sketch[r * width + sketch_column(keys[i], r, seed, width)];
            best = v < best ? v : best;
        }
        estimate[i] = best;
    }
}
