// The insertion of one key into a set that a warp holds in registers, and the load of that set:
// shared by insert.cu (insert_and_evict) and ordered.cu (ordered_insert), so that both paths place
// keys by the same code.
#pragma once

#include "common.cuh"
#include "sketch.cuh"  // the victim comparison of TinyLFU

// ---------------------------------------------------------------- lookahead (Cache.lookup(upcoming=))
// The protected keys: ascending and distinct, n of them, and where each first occurs in the window
// (ranks; keys null and n 0: none).  A full set's victim is chosen among the ways whose keys are not
// protected; when every way's key is, the way of the farthest first occurrence goes, and only for a key
// that occurs before it, else the key is refused (insert_and_evict_cpu).
struct protect_t {
    const i64* keys;
    const i64* ranks;
    i64 n;
};

// key's rank in the window (a binary search of p.keys), or -1 when it is not protected (cpu.next_use)
__device__ __forceinline__ i64 next_use(const protect_t p, i64 key) {
    i64 lo = 0, hi = p.n;
    while (lo < hi) {
        const i64 mid = lo + (hi - lo) / 2;
        if (p.keys[mid] < key) lo = mid + 1; else hi = mid;
    }
    return lo < p.n && p.keys[lo] == key ? p.ranks[lo] : -1;
}

// ---------------------------------------------------------------- the hand's walk (victim = "hand")
// The hands of every set, (num_sets, 2) int64 [position, way] (way -1: none), whose address gpu.py keeps
// in state[STATE_HANDS] when the policy's victim is "hand"; the set at slot base's hand, or nullptr.
// S3-FIFO's per-set state (victim = "s3fifo") lives in the same array, SET_STATE_WIDTH words a set.
__device__ __forceinline__ i64* set_hand(const i64* state, i64 base) {
#if HAND_VICTIM || S3FIFO_VICTIM
    return reinterpret_cast<i64*>(state[STATE_HANDS]) + SET_STATE_WIDTH * (base / WAYS);
#else
    return nullptr;
#endif
}

#include "s3fifo.cuh"  // S3-FIFO's placement (victim = "s3fifo")

#if HAND_VICTIM
// whether the walk reaches slot a before slot b: the slots after the hand first, then the rest, each part
// in (position, way) order (cpu._walks_first)
__device__ __forceinline__ bool walks_first(bool after_a, i64 pos_a, int way_a, bool after_b, i64 pos_b, int way_b) {
    if (after_a != after_b) return after_a;
    if (pos_a != pos_b) return pos_a < pos_b;
    return way_a < way_b;
}

// (way, after, pos) of the lane whose slot the walk reaches first, over the warp (way -1: no slot);
// the order is total (ways differ), so every lane ends with the same slot
__device__ __forceinline__ void warp_walk_first(int& way, bool& after, i64& pos) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const int other_way = __shfl_xor_sync(FULL_MASK, way, o);
        const bool other_after = __shfl_xor_sync(FULL_MASK, (int)after, o) != 0;
        const i64 other_pos = __shfl_xor_sync(FULL_MASK, pos, o);
        if (other_way >= 0 && (way < 0 || walks_first(other_after, other_pos, other_way, after, pos, way))) {
            way = other_way;
            after = other_after;
            pos = other_pos;
        }
    }
}

// A slot's place in the walk: its position, the score without its visited bit ...
__device__ __forceinline__ i64 walk_position(i64 score) { return score - (score & 1LL); }

// ... and whether it comes after the hand in (position, way) order (every slot does when the hand is nowhere).
__device__ __forceinline__ bool after_hand(i64 pos, int way, i64 hand_pos, i64 hand_way) {
    return hand_way < 0 || pos > hand_pos || (pos == hand_pos && way > hand_way);
}

// The way a missed key takes in a full set that a warp holds in registers, by the walk of policies/_base.py,
// computed as cpu.hand_victim does: the first unvisited slot in walk order, or the first slot when every one
// is visited; the visited bits before it (all of them, in a whole turn) cleared in registers and in the table,
// and the set's hand moved to it (none if no slot is after it in (position, way) order).  Every lane calls it
// and gets the same way.
// skip[j]: way j * 32 + lane is not seen by the walk (lookahead's protected ways, cpu.hand_walk's skip): it is
// neither stopped at nor cleared; whether the hand becomes none still counts every slot.
__device__ __forceinline__ int hand_victim(slot_t* __restrict__ table, i64 base, i64 (&sw)[WARP_WPL], i64* hand,
                                           const bool (&skip)[WARP_WPL]) {
    const int lane = threadIdx.x & 31;
    const i64 hand_pos = hand[0];
    const i64 hand_way = hand[1];
    int stop = -1, first = -1;
    bool stop_after = false, first_after = false;
    i64 stop_pos = 0, first_pos = 0;
#pragma unroll
    for (int j = 0; j < WARP_WPL; ++j) {
        const int w = j * 32 + lane;
        if (w < WAYS && !skip[j]) {
            const i64 s = sw[j];
            const i64 pos = walk_position(s);
            const bool after = after_hand(pos, w, hand_pos, hand_way);
            if (first < 0 || walks_first(after, pos, w, first_after, first_pos, first)) {
                first = w; first_after = after; first_pos = pos;
            }
            if ((s & 1LL) == 0 && (stop < 0 || walks_first(after, pos, w, stop_after, stop_pos, stop))) {
                stop = w; stop_after = after; stop_pos = pos;
            }
        }
    }
    warp_walk_first(stop, stop_after, stop_pos);
    warp_walk_first(first, first_after, first_pos);
    const bool full_turn = stop < 0;
    if (full_turn) { stop = first; stop_after = first_after; stop_pos = first_pos; }
    bool later = false;  // a slot of this lane is after the victim in (position, way) order
#pragma unroll
    for (int j = 0; j < WARP_WPL; ++j) {
        const int w = j * 32 + lane;
        if (w < WAYS) {
            const i64 s = sw[j];
            const i64 pos = walk_position(s);
            later |= pos > stop_pos || (pos == stop_pos && w > stop);
            const bool after = after_hand(pos, w, hand_pos, hand_way);
            if ((s & 1LL) && !skip[j] && (full_turn || walks_first(after, pos, w, stop_after, stop_pos, stop))) {
                sw[j] = s - 1;
                table[base + w].score = s - 1;
            }
        }
    }
    const bool last = !__any_sync(FULL_MASK, later);
    __syncwarp();  // every lane has read the hand before lane 0 moves it
    if (lane == 0) {
        hand[0] = last ? 0 : stop_pos;
        hand[1] = last ? -1 : (i64)stop;
    }
    __syncwarp();  // and the next walk of this set, by this warp, reads the moved hand
    return stop;
}
#endif

// ---------------------------------------------------------------- insertion
// One key's insertion into a set whose keys and scores a warp holds in registers (way = j * 32 +
// lane), exactly as insert_and_evict_cpu does it: the way it wrote (the row still to be copied
// there) or -1 (not admitted, refused).  Writes the slot record and digest; counts the outcome.
// hand: the set's hand (set_hand), read and moved when the policy's victim is "hand".  With
// victim.counts (TinyLFU), a key enters a full set only if its sketch estimate is greater than the
// victim's (the hand's pick, after its walk; a tie refuses), as insert_and_evict_cpu's victim_sketch;
// with victim.by_frequency too (TinyLFUEvict), the victim is the lowest (estimate, chance, score, way), and
// the key enters only if its (estimate, chance, new score) is greater (cpu.frequency_victim; chance: 0 but
// with victim.chance, TinyLFUTables, singleton_chance); no hand walks.
__device__ __forceinline__ int insert_one(slot_t* __restrict__ table, unsigned char* __restrict__ digests, i64 base,
                                          i64 (&kw)[WARP_WPL], i64 (&sw)[WARP_WPL], i64 k, bool admitted, i64 count,
                                          i64 clock, int refuse_below_min, unsigned long long (&tally)[OUTCOME_CODES],
                                          i64* hand, const victim_sketch_t victim = victim_sketch_t{nullptr, 0, 0, 0, 0, nullptr},
                                          const protect_t protect = protect_t{nullptr, nullptr, 0}) {
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
#if S3FIFO_VICTIM
        // one thread places the key (refuse_below_min does not apply), then the warp reloads the scores
        way = 0;
        score = 0;
        __syncwarp();  // the warp's earlier writes to this set's slots, before one thread reads them all
        if (lane == 0) way = s3fifo_place(table, hand, base, k, empty, &score);
        __syncwarp();
        way = __shfl_sync(FULL_MASK, way, 0);
        score = __shfl_sync(FULL_MASK, score, 0);
        code = empty >= 0 ? INSERTED : EVICTED;
#pragma unroll
        for (int j = 0; j < WARP_WPL; ++j)
            if (j * 32 + lane < WAYS) sw[j] = table[base + j * 32 + lane].score;
#else
        score = new_score(0, clock, count);
        if (empty >= 0) {
            way = empty;
            code = INSERTED;
        } else {
            // lookahead: the ways whose keys are protected are no candidates (warp-uniform: protect and k are)
            bool skip[WARP_WPL];
            bool seen = false;  // a way of this lane is a candidate
            i64 far_rank = -1;  // the farthest first occurrence of this lane's protected ways, and its way
            int far_way = -1;
#pragma unroll
            for (int j = 0; j < WARP_WPL; ++j) {
                const int w = j * 32 + lane;
                const i64 r = protect.n > 0 && w < WAYS ? next_use(protect, kw[j]) : -1;
                skip[j] = r >= 0;
                seen |= w < WAYS && r < 0;
                if (r > far_rank) { far_rank = r; far_way = w; }
            }
            bool farthest = false;  // every way protected: Belady in the window
            if (protect.n > 0 && !__any_sync(FULL_MASK, seen)) {
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) {  // ranks differ (the keys do): one farthest way
                    const i64 other = __shfl_xor_sync(FULL_MASK, far_rank, o);
                    const int other_way = __shfl_xor_sync(FULL_MASK, far_way, o);
                    if (other > far_rank) { far_rank = other; far_way = other_way; }
                }
                const i64 r = next_use(protect, k);
                if (r < 0 || r > far_rank) {
                    ++tally[REFUSED];
                    return -1;
                }
                farthest = true;
            }
            // lowest (score, way) of the candidates, ties to the lowest way (the farthest way alone if farthest)
            i64 low = MAX_SCORE;
            int low_way = 1 << 30;
#pragma unroll
            for (int j = 0; j < WARP_WPL; ++j) {
                const int w = j * 32 + lane;
                const bool candidate = farthest ? w == far_way : w < WAYS && !skip[j];
                if (candidate && (sw[j] < low || (sw[j] == low && w < low_way))) { low = sw[j]; low_way = w; }
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
            if (victim.counts != nullptr && victim.by_frequency) {
                // TinyLFUEvict: the lowest (estimate, chance, score, way) of the set (chance 0 but with
                // TinyLFUTables), each lane its ways', then the warp's (warp-uniform: every lane ends with
                // the same victim and reads the same counters)
                i64 fe = MAX_SCORE, fc = MAX_SCORE, fs = MAX_SCORE;
                int fw = 1 << 30;
#pragma unroll
                for (int j = 0; j < WARP_WPL; ++j) {
                    const int w = j * 32 + lane;
                    if (w < WAYS) {
                        const i64 e = sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, kw[j]);
                        const i64 c = singleton_chance(victim, kw[j], e);
                        if (e < fe || (e == fe && (c < fc || (c == fc && (sw[j] < fs || (sw[j] == fs && w < fw)))))) {
                            fe = e; fc = c; fs = sw[j]; fw = w;
                        }
                    }
                }
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) {
                    const i64 oe = __shfl_xor_sync(FULL_MASK, fe, o);
                    const i64 oc = __shfl_xor_sync(FULL_MASK, fc, o);
                    const i64 os = __shfl_xor_sync(FULL_MASK, fs, o);
                    const int ow = __shfl_xor_sync(FULL_MASK, fw, o);
                    if (oe < fe || (oe == fe && (oc < fc || (oc == fc && (os < fs || (os == fs && ow < fw)))))) {
                        fe = oe; fc = oc; fs = os; fw = ow;
                    }
                }
                const i64 mine = sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, k);
                const i64 mc = singleton_chance(victim, k, mine);
                if (!(mine > fe || (mine == fe && (mc > fc || (mc == fc && score > fs))))) {
                    ++tally[REFUSED];
                    return -1;
                }
                way = fw;
            } else {
#if HAND_VICTIM
                way = farthest ? low_way : hand_victim(table, base, sw, hand, skip);  // farthest: the hand stays
#else
                way = low_way;
#endif
                if (victim.counts != nullptr) {  // warp-uniform: every lane holds way and reads the same counters
                    i64 victim_key = 0;
#pragma unroll
                    for (int j = 0; j < WARP_WPL; ++j)
                        if (way == j * 32 + lane) victim_key = kw[j];
                    victim_key = __shfl_sync(FULL_MASK, victim_key, way & 31);
                    // the hand's walk has run (its bits cleared, the hand moved): a refused key leaves the victim
                    if (!(sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, k) >
                          sketch_estimate_of(victim.counts, victim.depth, victim.width, victim.seed, victim_key))) {
                        ++tally[REFUSED];
                        return -1;
                    }
                }
            }
            code = EVICTED;
        }
#endif
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

