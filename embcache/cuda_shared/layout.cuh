// The layout every embcache .cu file shares (layout.py): key types, splitmix64, the sentinels.
// _cuda.layout_defines() prepends EMPTY_KEY, LOCKED_KEY, MAX_SCORE, MIX_M1, MIX_M2.
#pragma once

typedef long long i64;
typedef unsigned long long u64;

// splitmix64 finalizer, as layout.mix64
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * MIX_M1;
    z = (z ^ (z >> 27)) * MIX_M2;
    return z ^ (z >> 31);
}
