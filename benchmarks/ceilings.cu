// Ceilings the GPU benchmarks divide by: random-row gathers with no cache bookkeeping.
// Rows are `chunks` 16-byte words; idx holds the row of each output row.
typedef long long i64;

// one thread per 16-byte chunk: the kernel to beat (kept as first written: its machine code is the
// ceiling of every earlier result)
extern "C" __global__ void gather_chunk(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                        uint4* __restrict__ out, i64 n, int chunks) {
    const i64 total = n * chunks;
    for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
        const i64 r = t / chunks;
        const int c = (int)(t - r * chunks);
        out[t] = table[idx[r] * chunks + c];
    }
}

// gather_chunk with L2 eviction hints: LOADS_TOO 1, loads and stores that L2 evicts first (ld/st.global.cs,
// as a gather of rows read once may use); 0, the stores alone
template <int LOADS_TOO>
__device__ __forceinline__ void gather_chunk_hinted(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                                    uint4* __restrict__ out, i64 n, int chunks) {
    const i64 total = n * chunks;
    for (i64 t = (i64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (i64)gridDim.x * blockDim.x) {
        const i64 r = t / chunks;
        const int c = (int)(t - r * chunks);
        if (LOADS_TOO) __stcs(out + t, __ldcs(table + idx[r] * chunks + c));
        else __stcs(out + t, table[idx[r] * chunks + c]);
    }
}

extern "C" __global__ void gather_chunk_cs(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                           uint4* __restrict__ out, i64 n, int chunks) {
    gather_chunk_hinted<1>(table, idx, out, n, chunks);
}

extern "C" __global__ void gather_chunk_st(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                           uint4* __restrict__ out, i64 n, int chunks) {
    gather_chunk_hinted<0>(table, idx, out, n, chunks);
}

// the same with four independent chunks in flight per thread
extern "C" __global__ void gather_chunk4(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                         uint4* __restrict__ out, i64 n, int chunks) {
    const i64 total = n * chunks;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (i64 t0 = (i64)blockIdx.x * blockDim.x + threadIdx.x; t0 < total; t0 += 4 * stride) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const i64 t = t0 + u * stride;
            if (t < total) {
                const i64 r = t / chunks;
                v[u] = table[idx[r] * chunks + (t - r * chunks)];
            }
        }
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const i64 t = t0 + u * stride;
            if (t < total) out[t] = v[u];
        }
    }
}

// a warp per row, lanes over its chunks (rows of up to 32 chunks use one load per lane)
extern "C" __global__ void gather_warp(const uint4* __restrict__ table, const i64* __restrict__ idx,
                                       uint4* __restrict__ out, i64 n, int chunks) {
    const int lane = threadIdx.x & 31;
    for (i64 r = ((i64)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < n; r += (i64)gridDim.x * blockDim.x / 32) {
        const i64 src = idx[r] * chunks;
        for (int c = lane; c < chunks; c += 32) out[r * chunks + c] = table[src + c];
    }
}

// one thread that spins for ns nanoseconds of the global timer: work ahead of a start event, so that what
// follows it is already queued when the event passes (gpu_table.replay_times(queued=True))
extern "C" __global__ void spin(long long ns) {
    long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (t - t0 < ns);
}
