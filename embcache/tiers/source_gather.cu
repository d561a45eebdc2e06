// Zero-copy reads of a tier's DeviceSource (embcache/_source.py; a pinned HostStore, a SharedHostStore)
// from the GPU: the tier's hash index and rows live in mapped host memory (or the index in device
// memory), so missed rows cross PCIe once, straight into device memory, with no staging copy.  The
// "splitmix64-linear" layouts: linear probing exactly as host.py's _probe and _find.
// _gather.py prepends layout_defines() and ROW_BYTES, VEC, GROUP, BLOCK.
#include "layout.cuh"

#include "vec.cuh"  // vec_t, the word a row is copied in

#define CHUNKS (ROW_BYTES / VEC)

// rows[i] = the stored row of keys[i] (default_row where absent); found[i] says which.
// GROUP lanes per key: lane 0 walks the probe chain, then the group copies the row.
// words: the int64 words an index slot takes, 1 (a key: slot h's row is row h) or 2 ((key, row) pairs:
// the "splitmix64-linear-rows" layout, rows stored densely).
extern "C" __global__ void __launch_bounds__(BLOCK) source_gather(
    const volatile i64* table, i64 mask, const char* values, const i64* __restrict__ keys, i64 n,
    char* __restrict__ rows, bool* __restrict__ found, const char* __restrict__ default_row, int words) {
    const int lane = threadIdx.x % GROUP;
    const int group_first_lane = (threadIdx.x & 31) - lane;
    // a group's lanes always run the same iterations; other groups of the warp may have left
    const unsigned group_mask = (GROUP == 32 ? 0xffffffffu : ((1u << GROUP) - 1u)) << group_first_lane;
    const i64 groups = (i64)gridDim.x * (BLOCK / GROUP);
    for (i64 i = (i64)blockIdx.x * (BLOCK / GROUP) + threadIdx.x / GROUP; i < n; i += groups) {
        const i64 key = keys[i];
        i64 h = -1;
        if (lane == 0) {
            h = (i64)(mix64((u64)key) & (u64)mask);
            i64 k;
            while ((k = table[h * words]) != EMPTY_KEY && k != key) h = (h + 1) & mask;
            h = k != key ? -1 : words == 2 ? table[2 * h + 1] : h;
        }
        h = __shfl_sync(group_mask, h, group_first_lane);
        const vec_t* src = reinterpret_cast<const vec_t*>(h >= 0 ? values + h * ROW_BYTES : default_row);
        vec_t* dst = reinterpret_cast<vec_t*>(rows + i * ROW_BYTES);
#pragma unroll 4
        for (int c = lane; c < CHUNKS; c += GROUP) dst[c] = src[c];
        if (lane == 0) found[i] = h >= 0;
    }
}
