// The probe of the hit path, shared by probe.cu (probe_gather) and source.cu (probe_gather_source):
// one body, two kernels, so that the all-hit path keeps the registers of a probe without the
// source walk.
#pragma once

#include "common.cuh"

// GROUP lanes probe one key's set together (PROBE_WPL ways each), KEYS_PER_GROUP keys in flight,
// then copy the row with VEC-byte words.  slots[i] = slot or -1; rows go to out only if gather.
// fill_misses: write default_row for misses (query and captured lookups) instead of leaving them.
// Misses and reserved keys are counted into state[] once per warp.
// touch (policies whose hit rule is idempotent and reads no count, as LRU's clock or SIEVE's visited
// bit: an occurrence that reads the score a duplicate has just stored computes that same score, so
// plain stores in any order apply the rule exactly): store the hit score computed from the score
// read into each hit's slot right after its key was read, where it hits the same sector in L2; then the
// last block ticks the clock (TOUCH_IF_CLEAN: only if the batch was all hits).  The old score goes to
// old_scores[i] (when given) so that a lookup that fails later can put it back (restore_scores).
//
// FROM_SOURCE (probe_gather_source): a miss is looked up in a source of rows, an open-addressing
// table of keys with linear probing from mix64(key) & source_mask (a DeviceSource's index, in
// device memory or mapped) whose row h sits at source_rows + h * ROW_BYTES (mapped pinned memory).
// Its slot becomes SOURCE_SLOT(h) (-2 - h, still negative: a miss for every count and for the
// touch) and its row is copied from there, over PCIe, in the same pass as the hits' rows (a small
// stream-ordered batch: in a second pass with the hits' rows, after source_t::probed_word is set); a key the
// source lacks stays -1 and gets the default row.  A source without an index (keys null) holds no
// key: the host path's probe that only converts raw keys (lookup(index_rows=) over a host tier).

// What probe_gather_source reads of a DeviceSource: its index (mask + 1 keys) and its rows; and, for a
// stream-ordered lookup whose keys need converting, the keys as the caller gave them.
struct source_t {
    const i64* keys;
    i64 mask;
    const char* rows;
    int words;  // int64 words an index slot takes: 1 (a key; slot h's row is h) or 2 (key, row)
    // raw != nullptr: the probe's keys are raw's (int32 when key_bytes is 4, else int64), with ONNX
    // Gather's rules when index_rows > 0 (k < 0 means k + index_rows; a key still outside
    // [0, index_rows) becomes the key index_rows, which a table of row numbers lacks: the default row,
    // counted invalid), written to converted[] for the kernels after the probe (the `keys` argument)
    const void* raw;
    int key_bytes;
    i64 index_rows;
    i64* converted;
    int invalid_word;  // the state word that counts the keys Gather's rules replaced
    // the state words that count the misses and the reserved keys: STATE_MISSES / STATE_RESERVED,
    // which every host-path operation zeroes before it probes; a stream-ordered lookup's own batch
    // words, which its last kernel zeroes, so that no memset (a graph node) precedes its probe
    int miss_word, bad_word;
    // >= 0 (a small stream-ordered batch, ordered_small next): every row (the hits' from the cache, the
    // misses' over PCIe) is copied in a second pass, after the last block has set this state word (release)
    // once every slot and count is written, so that ordered_small's miss phases run while those rows are in
    // flight; -1: in one pass
    int probed_word;
};

// key i of a source_t with raw keys, converted; outside: whether Gather's rules replaced it
__device__ __forceinline__ i64 raw_key(const source_t& s, i64 i, unsigned& outside) {
    i64 k = s.key_bytes == 4 ? (i64) reinterpret_cast<const int*>(s.raw)[i] : reinterpret_cast<const i64*>(s.raw)[i];
    outside = 0;
    if (s.index_rows > 0) {
        if (k < 0) k += s.index_rows;
        if (k < 0 || k >= s.index_rows) {
            k = s.index_rows;
            outside = 1;
        }
    }
    return k;
}

// the source row of key, or -1 (linear probing: the DeviceSource layouts INDEX_SPLITMIX64_LINEAR, one
// word a slot, and INDEX_SPLITMIX64_LINEAR_ROWS, (key, row) pairs: one 16-byte load finds both)
__device__ __forceinline__ i64 source_find(const i64* __restrict__ source_keys, i64 mask, i64 key, int words) {
    i64 h = (i64)(mix64((u64)key) & (u64)mask);
    if (words == 2) {
        const longlong2* pairs = reinterpret_cast<const longlong2*>(source_keys);
        longlong2 p;
        while ((p = pairs[h]).x != EMPTY_KEY && p.x != key) h = (h + 1) & mask;
        return p.x == key ? (i64)p.y : -1;
    }
    i64 k;
    while ((k = source_keys[h]) != EMPTY_KEY && k != key) h = (h + 1) & mask;
    return k == key ? h : -1;
}

// The end of a probe: every warp adds its counts, and the last block ticks (when it touched) and
// publishes the state words.
__device__ __forceinline__ void report_probe(i64* state, unsigned misses, unsigned bad, i64 n,
                                             int replay, int touch, i64 clock, int warp_lane, int miss_word,
                                             int bad_word, int probed_word = -1) {
    misses = warp_sum(misses);
    bad = warp_sum(bad);
    if (warp_lane == 0) {
        if (misses) atomicAdd(reinterpret_cast<unsigned long long*>(state + miss_word), (unsigned long long)misses);
        if (bad) atomicAdd(reinterpret_cast<unsigned long long*>(state + bad_word), (unsigned long long)bad);
        if (replay && misses)
            atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_REPLAY_MISSES), (unsigned long long)misses);
    }
    if (replay && blockIdx.x == 0 && threadIdx.x == 0)
        atomicAdd(reinterpret_cast<unsigned long long*>(state + STATE_REPLAY_LOOKUPS), (unsigned long long)n);
    if (last_block(state)) {
        if (touch) tick_if(state, clock, touch == TOUCH_IF_CLEAN, miss_word, bad_word);
        if (!replay) publish(state);  // a graph replay's counts are absorbed from the device words instead
        if (probed_word >= 0) release_flag(state + probed_word);  // the slots, counts and tick, then this
    }
}

template <bool FROM_SOURCE>
__device__ __forceinline__ void probe_gather_body(
    slot_t* __restrict__ table, const unsigned char* __restrict__ digests, const char* __restrict__ values,
    u64 num_sets, const i64* __restrict__ keys, i64 n, int gather, char* __restrict__ out, i64* __restrict__ slots,
    const char* __restrict__ default_row, int fill_misses, int replay, i64* __restrict__ state, int touch,
    i64* __restrict__ old_scores, bool* __restrict__ found, const source_t source) {
    const int warp_lane = threadIdx.x & 31;
    const int lane = threadIdx.x % GROUP;
    // the rows (the hits' and the source's) in a second pass, after the slots are announced (source_t::probed_word)
    const bool rows_later = FROM_SOURCE && source.probed_word >= 0 && gather;
    const int group_first_lane = (threadIdx.x & 31) - lane;
    const unsigned group_mask = GROUP == 32 ? FULL_MASK : ((1u << GROUP) - 1u);
    const i64 stride = (i64)gridDim.x * (BLOCK / GROUP) * KEYS_PER_GROUP;
    const i64 start = ((i64)blockIdx.x * (BLOCK / GROUP) + threadIdx.x / GROUP) * KEYS_PER_GROUP;
    i64 first = start;
    unsigned misses = 0, bad = 0, invalid = 0;
    // ordered_small, launched after this on the stream, may start now: it waits for this grid before it
    // reads anything (its launch and its tables' zeroing overlap this probe)
    let_dependents_start();
    const i64 clock = touch ? state[STATE_CLOCK] : 0;
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
            if (FROM_SOURCE && source.raw != nullptr) {
                unsigned outside = 0;
                key[j] = i < n ? raw_key(source, i, outside) : EMPTY_KEY;
                if (lane == 0 && i < n) {  // one lane of the group writes the converted key and counts it
                    source.converted[i] = key[j];
                    invalid += outside;
                }
            } else {
                key[j] = i < n ? keys[i] : EMPTY_KEY;
            }
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
                if (lane == 0 && !hits && i < n && !reserved(key[j]) && source.keys != nullptr)
                    h = source_find(source.keys, source.mask, key[j], source.words);
                h = __shfl_sync(FULL_MASK, h, group_first_lane);
                if (h >= 0) slot = SOURCE_SLOT(h);
            }
            if (i < n) {
                if (lane == 0) {
                    slots[i] = slot;
                    if (found) found[i] = slot >= 0;  // query's mask: in the cache
                    misses += slot < 0;
                    bad += reserved(key[j]);
                }
                // the lane that found the key holds the score it read: it saves it and stores the new one
                if (touch && mine[j] >= 0) {
                    if (old_scores) old_scores[i] = seen[j];
                    const i64 now = hit_score(seen[j], clock + 1, 1);
                    if (seen[j] != now) table[slot].score = now;  // an unchanged score: no store
                }
                if (gather) {  // three copies, as before the source: probe_gather compiles to the same code
                    if (slot >= 0) {
                        if (!rows_later) copy_row(out + i * ROW_BYTES, values + slot * ROW_BYTES, lane, GROUP);
                    } else if (FROM_SOURCE && slot <= -2) {
                        if (!rows_later)
                            copy_row(out + i * ROW_BYTES, source.rows + SOURCE_SLOT(slot) * ROW_BYTES, lane, GROUP);
                    }
                    else if (fill_misses) copy_row(out + i * ROW_BYTES, default_row, lane, GROUP);
                }
            }
        }
    }
    if (FROM_SOURCE && source.raw != nullptr) {  // whole warps get here: the warp's sum, one atomic
        invalid = warp_sum(invalid);
        if (warp_lane == 0 && invalid)
            atomicAdd(reinterpret_cast<unsigned long long*>(state + source.invalid_word), (unsigned long long)invalid);
    }
    report_probe(state, misses, bad, n, replay, touch, clock, warp_lane, source.miss_word, source.bad_word,
                 source.probed_word);
    // the hits' rows too: the announcement then waits for no row at all, and ordered_small's miss phases
    // start one memory round trip sooner (no insertion can overwrite a hit's row meanwhile: ordered_small
    // waits for this grid before its insert phase)
    if (rows_later) {  // the same keys as the first pass; report_probe's barrier made lane 0's slots visible
        for (first = start; first < n; first += stride) {
#pragma unroll
            for (int j = 0; j < KEYS_PER_GROUP; ++j) {
                const i64 i = first + j;
                if (i >= n) break;
                const i64 slot = slots[i];
                if (slot >= 0) copy_row(out + i * ROW_BYTES, values + slot * ROW_BYTES, lane, GROUP);
                else if (slot <= -2)
                    copy_row(out + i * ROW_BYTES, source.rows + SOURCE_SLOT(slot) * ROW_BYTES, lane, GROUP);
            }
        }
    }
}

#define PROBE_GATHER_ARGS                                                                                      \
    slot_t *__restrict__ table, const unsigned char *__restrict__ digests, const char *__restrict__ values,    \
        u64 num_sets, const i64 *__restrict__ keys, i64 n, int gather, char *__restrict__ out,                 \
        i64 *__restrict__ slots, const char *__restrict__ default_row, int fill_misses, int replay,            \
        i64 *__restrict__ state, int touch, i64 *__restrict__ old_scores, bool *__restrict__ found
#define PROBE_GATHER_PASS \
    table, digests, values, num_sets, keys, n, gather, out, slots, default_row, fill_misses, replay, state, touch, old_scores, \
        found
