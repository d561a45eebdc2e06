// S3-FIFO's placement of a missed key (victim = "s3fifo"), which insert_one.cuh calls: one thread runs
// cpu.s3fifo_place on the set's slots in the table.
#pragma once

#include "common.cuh"

#if S3FIFO_VICTIM
// ---------------------------------------------------------------- S3-FIFO (victim = "s3fifo")
// One thread runs cpu.s3fifo_place on the set's slots in the table (the warp's registers are written
// through, so the table is current), statement for statement; the warp then reloads the scores.
#define S3_SMALL (WAYS / 10 > 0 ? WAYS / 10 : 1)
#define S3_GHOST (WAYS * 9 / 10)

// the way of the oldest key (lowest score) of small (main = 0) or main (main = 4) in a full set, or -1
// (no __restrict__ here: these read scores this thread has just written, never through the read-only path)
__device__ __forceinline__ int s3fifo_oldest(const slot_t* table, i64 base, i64 main) {
    int best = -1;
    i64 low = 0;
    for (int w = 0; w < WAYS; ++w) {
        const i64 s = table[base + w].score;
        if ((s & 4LL) == main && (best < 0 || s < low)) { best = w; low = s; }
    }
    return best;
}

// key into the set's ghost (st: its state row) unless there: an empty entry, else the oldest (cpu._s3fifo_ghost)
__device__ __forceinline__ void s3fifo_ghost(i64* st, i64 key) {
    int at = -1;
    for (int j = 0; j < S3_GHOST; ++j) {
        const i64 stamp = st[2 + S3_GHOST + j];
        if (stamp != 0 && st[2 + j] == key) return;
        if (at < 0 || (st[2 + S3_GHOST + at] != 0 && (stamp == 0 || stamp < st[2 + S3_GHOST + at]))) at = j;
    }
    if (at >= 0) {
        st[0] += 1;
        st[2 + at] = key;
        st[2 + S3_GHOST + at] = st[0];
    }
}

// The way (returned) and score (*score) of missed key k; empty: the set's first empty way or -1
__device__ __forceinline__ int s3fifo_place(slot_t* table, i64* st, i64 base, i64 key, int empty, i64* score) {
    bool from_ghost = false;
    for (int j = 0; j < S3_GHOST; ++j) {
        if (st[2 + S3_GHOST + j] != 0 && st[2 + j] == key) {
            st[2 + S3_GHOST + j] = 0;
            from_ghost = true;
            break;
        }
    }
    int way = empty;
    while (way < 0) {  // the set is full: evict (one pass may only move small's keys to main)
        st[1] = 1;
        int small = 0;
        for (int w = 0; w < WAYS; ++w) small += (table[base + w].score & 4LL) == 0;
        if (WAYS - small > WAYS - S3_SMALL || small == 0) {
            while (way < 0) {
                const int w = s3fifo_oldest(table, base, 4);
                const i64 f = table[base + w].score & 3LL;
                if (f >= 1) {
                    st[0] += 1;
                    table[base + w].score = st[0] * 8 + 4 + f - 1;
                } else {
                    way = w;
                }
            }
        } else {
            while (way < 0 && small > 0) {
                const int w = s3fifo_oldest(table, base, 0);
                if ((table[base + w].score & 3LL) >= 2) {
                    st[0] += 1;
                    table[base + w].score = st[0] * 8 + 4;
                    --small;
                } else {
                    way = w;
                    s3fifo_ghost(st, table[base + w].key);
                }
            }
        }
    }
    int small = 0;
    for (int w = 0; w < WAYS; ++w)
        small += w != way && table[base + w].key != EMPTY_KEY && (table[base + w].score & 4LL) == 0;
    const bool main = from_ghost || (st[1] == 0 && small >= S3_SMALL);
    st[0] += 1;
    *score = st[0] * 8 + (main ? 4 : 0);
    return way;
}
#endif

