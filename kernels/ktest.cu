// ktest — tiny kernels that test the executor and simt.h themselves (tests/kernels/test_simt.c), with C launchers.
// They are plain CUDA and compile with nvcc too (a GPU self-test could run them), except kt_divergent_barrier, a
// deliberately broken kernel that must only run on the CPU executor (on a GPU it would hang or be undefined).
//
//   kt_reduce(c, ws, bs, bm, in, nt)     one block of nt threads (a multiple of 32, <= 1024): thread t writes
//                                        warp_sum(in[t]), block_sum(in[t]) and block_max(in[t])
//   kt_shuffles(c, out, nt, delta, src, xmask)
//                                        one block of nt threads (a multiple of 32), each with value t: out[4 nt]
//                                        = __shfl_down_sync(delta), __shfl_sync(src), __shfl_xor_sync(xmask) and
//                                        __shfl_down_sync(delta) at width 16
//   kt_dyn_smem(c, pre, out, in, nt, nblocks)
//                                        nblocks blocks of nt threads with nt floats of dynamic shared memory: pre =
//                                        the value found there before any write (the executor fills it with 0xff:
//                                        NaN; unspecified on a GPU), out[b nt + t] = in[b nt + nt - 1 - t] through it
//   kt_dims(c, lin, coord, count, gx, gy, gz, bx, by, bz)
//                                        a 3-D grid of 3-D blocks: each thread writes its linear index into lin at
//                                        that index, its coordinates packed into coord, and the block's thread count
//                                        (an integer atomicAdd in shared memory, then a barrier) into count
//   kt_divergent_barrier(c, out)         32 threads, half wait at __syncthreads, half at __syncwarp (then out[t] = 1)
#include "simt.h"

extern "C" {
void kt_reduce(opctx *c, float *ws, float *bs, float *bm, const float *in, int nt);
void kt_shuffles(opctx *c, int *out, int nt, int delta, int src, int xmask);
void kt_dyn_smem(opctx *c, float *pre, float *out, const float *in, int nt, int nblocks);
void kt_dims(opctx *c, int *lin, int *coord, int *count, int gx, int gy, int gz, int bx, int by, int bz);
void kt_divergent_barrier(opctx *c, int *out);
}

__global__ static void reduce_k(float *ws, float *bs, float *bm, const float *in) {
    __shared__ float red[32];
    const int t = threadIdx.x;
    const float v = in[t];
    ws[t] = warp_sum(v);
    bs[t] = block_sum(v, red);
    bm[t] = block_max(v, red);
}

__global__ static void shuffles_k(int *out, int delta, int src, int xmask) {
    const int t = threadIdx.x, n = blockDim.x;
    out[t] = __shfl_down_sync(KFULL, t, delta);
    out[n + t] = __shfl_sync(KFULL, t, src);
    out[2 * n + t] = __shfl_xor_sync(KFULL, t, xmask);
    out[3 * n + t] = __shfl_down_sync(KFULL, t, delta, 16);
}

__global__ static void dyn_smem_k(float *pre, float *out, const float *in) {
    SMEM_DYN(float, s);
    const int t = threadIdx.x, n = blockDim.x;
    const int64_t base = (int64_t)blockIdx.x * n;
    pre[base + t] = s[t];
    __syncthreads(); // every thread has read s before any writes it
    s[t] = in[base + t];
    __syncthreads();
    out[base + t] = s[n - 1 - t];
}

__global__ static void dims_k(int *lin, int *coord, int *count) {
    __shared__ int cnt;
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) cnt = 0;
    __syncthreads();
    atomicAdd(&cnt, 1);
    __syncthreads();
    const int nb = (int)(blockDim.x * blockDim.y * blockDim.z);
    const int block = (int)((blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x);
    const int i = block * nb + (int)((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x);
    lin[i] = i;
    coord[i] = (int)(threadIdx.x | threadIdx.y << 4 | threadIdx.z << 8 | blockIdx.x << 12 | blockIdx.y << 16 |
                     blockIdx.z << 20);
    count[i] = cnt;
}

__global__ static void divergent_barrier_k(int *out) {
    if (threadIdx.x & 16) __syncwarp();
    else __syncthreads();
    out[threadIdx.x] = 1;
}

extern "C" void kt_reduce(opctx *c, float *ws, float *bs, float *bm, const float *in, int nt) {
    KLAUNCH(reduce_k, 1, nt, 0, c, ws, bs, bm, in);
}

extern "C" void kt_shuffles(opctx *c, int *out, int nt, int delta, int src, int xmask) {
    KLAUNCH(shuffles_k, 1, nt, 0, c, out, delta, src, xmask);
}

extern "C" void kt_dyn_smem(opctx *c, float *pre, float *out, const float *in, int nt, int nblocks) {
    KLAUNCH(dyn_smem_k, nblocks, nt, sizeof(float) * (size_t)nt, c, pre, out, in);
}

extern "C" void kt_dims(opctx *c, int *lin, int *coord, int *count, int gx, int gy, int gz, int bx, int by, int bz) {
    KLAUNCH(dims_k, dim3(gx, gy, gz), dim3(bx, by, bz), 0, c, lin, coord, count);
}

extern "C" void kt_divergent_barrier(opctx *c, int *out) { KLAUNCH(divergent_barrier_k, 1, 32, 0, c, out); }
