// simt.h — what kernel source may use. The same kernels/*.cu compile with nvcc for the GPU and with g++ for the
// CPU, where kernels/simt/simt_cpu.h runs each block's threads as fibers (tests/kernels checks them against the CPU
// reference with it). Kernel code uses only what this header and the CUDA built-ins the shim emulates offer:
//
//   bf16, bf2f(x), f2bf(f)              the activation type; widening (exact) and rounding (nearest even)
//   KLAUNCH(k, grid, block, smem, c, args...)
//                                       launch kernel k on the op context's stream (c: opctx *); on the GPU a
//                                       launch error goes to the context's sticky error
//   SMEM_DYN(T, name)                   the launch's dynamic shared memory as T *name (instead of extern __shared__)
//   warp_sum(v), warp_max(v)            butterfly over the 32 lanes: every lane gets the same value, a fixed tree
//   block_sum(v, red), block_max(v, red) over the whole block (red: a __shared__ float[32]); every thread gets it;
//                                       blockDim.x a multiple of 32, at most 1024
//   kgrid(n, threads)                   blocks for n items at `threads` per block (capped at 2^31 - 1)
//   KMIN / KMAX                         min / max of two values of one type
// Built-ins the shim emulates: threadIdx, blockIdx, blockDim, gridDim, __syncthreads, __syncwarp, __shfl_xor_sync,
// __shfl_down_sync, __shfl_sync (32 lanes, full mask), __shared__ (static arrays inside a kernel), integer
// atomicAdd. No floating-point atomics anywhere (results must not depend on scheduling: reductions are fixed trees).
// Math: expf, logf, erff, sqrtf, fmaxf, ... as in C (no __expf-style fast intrinsics: the CPU reference is the judge).
#ifndef ORPO_KERNELS_SIMT_H
#define ORPO_KERNELS_SIMT_H

#include <stdint.h>
#include <math.h>

extern "C" {
#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
}

#ifdef __CUDACC__
#include <cuda_runtime.h>
#include <cuda_bf16.h>
typedef __nv_bfloat16 bf16;
__host__ __device__ static __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
__host__ __device__ static __forceinline__ bf16 f2bf(float f) { return __float2bfloat16_rn(f); }
#define KFULL 0xffffffffu
#define SMEM_DYN(T, name)                                                                                            \
    extern __shared__ __align__(16) unsigned char simt_dyn_smem_[];                                                  \
    T *name = reinterpret_cast<T *>(simt_dyn_smem_)
// the launch, then any launch error (bad configuration, no kernel image for this GPU) into the sticky error
#define KLAUNCH(k, grid, block, smem, c, ...)                                                                        \
    do {                                                                                                             \
        k<<<(grid), (block), (smem), (cudaStream_t)(c)->stream>>>(__VA_ARGS__);                                     \
        cudaError_t klaunch_e_ = cudaGetLastError();                                                                 \
        if (klaunch_e_ != cudaSuccess)                                                                               \
            opctx_fail((c), ERR_INTERNAL, "kernel %s (or asynchronous work before it): %s", #k,                      \
                       cudaGetErrorString(klaunch_e_));                                                              \
    } while (0)
#else
#include "simt/simt_cpu.h"
#endif

#define KMIN(a, b) ((a) < (b) ? (a) : (b))
#define KMAX(a, b) ((a) > (b) ? (a) : (b))

__device__ static __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KFULL, v, o);
    return v;
}

__device__ static __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(KFULL, v, o));
    return v;
}

// each warp's sum into red[warp], then warp 0 sums those (zeros for missing warps); red is reusable on return
__device__ static __forceinline__ float block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // red may still be read by an earlier call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ static __forceinline__ float block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

static inline unsigned kgrid(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 2147483647 ? 2147483647 : b);
}

#endif
