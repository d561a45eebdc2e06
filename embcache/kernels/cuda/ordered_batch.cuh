// The stream-ordered lookup's batch as every phase of ordered.cu reads it: the batch's keys and how it
// admits, and the addresses of its scratch (see ordered.cu).
#pragma once

#include "common.cuh"

// What every phase reads: the batch (keys, n, how it admits) and the scratch, whose addresses the host
// writes once, when it makes the scratch, into a small device array of words (ORDERED_WORDS, in the
// order of ordered_of), so that a launch passes one pointer for all of them.
struct ordered_t {
    const i64* keys;       // the probed keys (n)
    const i64* slots;      // the probe's slots: >= 0 hit, -1 neither cached nor in the source, <= -2 source row
    i64 n;
    u64* hkeys;            // distinct missed keys: cells (encode(key)), mask + 1 of them
    unsigned long long* hcount;
    unsigned long long* hlast;  // last occurrence + 1
    i64 mask;
    i64* ukeys;            // the u distinct missed keys, in no particular order
    i64* ucell;            // their cells, ~cell (< 0) for a key the source lacks
    i64* ucount;           // occurrences in the batch
    i64* uat;              // where each one's row is in out
    bool* uadmit;
    u64* gsets;            // sets of admitted keys: cells (set + 1)
    unsigned long long* ghead;  // each set's first key (+ 1)
    i64* unext;            // the next key of a key's set (+ 1, 0 ends the list)
    i64* gcells;           // the listed sets' cells
    u64 num_sets;
    int mode;              // ADMIT_*: how the batch admits
    double t;              // its hit rate for ADMIT_BELOW_HIT_RATE
    int refuse_below_min;
    double defer_at;       // HitRateDeferred's t, or < 0
};

#define ORDERED_ARGS                                                                                        \
    const u64 *__restrict__ words, const i64 *__restrict__ keys, i64 n, int mode, double t, int refuse_below_min, \
        double defer_at
#define ORDERED_PASS ordered_of(words, keys, n, mode, t, refuse_below_min, defer_at)

__device__ __forceinline__ ordered_t ordered_of(const u64* words, const i64* keys, i64 n, int mode, double t,
                                                int refuse_below_min, double defer_at) {
    ordered_t a;
    a.keys = keys;
    a.n = n;
    a.slots = reinterpret_cast<const i64*>(words[0]);
    a.hkeys = reinterpret_cast<u64*>(words[1]);
    a.hcount = reinterpret_cast<unsigned long long*>(words[2]);
    a.hlast = reinterpret_cast<unsigned long long*>(words[3]);
    a.mask = (i64)words[4];
    a.ukeys = reinterpret_cast<i64*>(words[5]);
    a.ucell = reinterpret_cast<i64*>(words[6]);
    a.ucount = reinterpret_cast<i64*>(words[7]);
    a.uat = reinterpret_cast<i64*>(words[8]);
    a.uadmit = reinterpret_cast<bool*>(words[9]);
    a.gsets = reinterpret_cast<u64*>(words[10]);
    a.ghead = reinterpret_cast<unsigned long long*>(words[11]);
    a.unext = reinterpret_cast<i64*>(words[12]);
    a.gcells = reinterpret_cast<i64*>(words[13]);
    a.num_sets = words[14];
    a.mode = mode;
    a.t = t;
    a.refuse_below_min = refuse_below_min;
    a.defer_at = defer_at;
    return a;
}
