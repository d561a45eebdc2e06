// Shared by every embcache .cu file.  gpu.py prepends #defines for:
//   EMPTY_KEY, LOCKED_KEY, MAX_SCORE, MIX_M1, MIX_M2, GOLDEN   (layout.py, kernels/_shared.py)
//   NOT_ADMITTED, INSERTED, EVICTED, REFRESHED, REFUSED        (outcome codes, kernels/_shared.py)
//   NEW_SCORE_EXPR, HIT_SCORE_EXPR                              (the policy's expressions)
//   WAYS, ROW_BYTES, VEC, SET_BITS, GROUP, KEYS_PER_GROUP, BLOCK, DIGESTS (layout and launch shape)
#pragma once

#include "layout.cuh"  // i64, u64, mix64 (embcache/cuda_shared, on the include path of every module)

#if VEC == 16
typedef uint4 vec_t;
#elif VEC == 8
typedef uint2 vec_t;
#elif VEC == 4
typedef unsigned int vec_t;
#else
typedef unsigned short vec_t;
#endif

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
__device__ __forceinline__ i64 sat_add(i64 a, i64 b) { return b > MAX_SCORE - a ? MAX_SCORE : a + b; }
__device__ __forceinline__ i64 score_min(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 score_max(i64 a, i64 b) { return a > b ? a : b; }

__device__ __forceinline__ i64 new_score(i64 score, i64 clock, i64 count) { return (i64)(NEW_SCORE_EXPR); }
__device__ __forceinline__ i64 hit_score(i64 score, i64 clock, i64 count) { return (i64)(HIT_SCORE_EXPR); }
