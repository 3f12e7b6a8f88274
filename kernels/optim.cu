// optim — the optimiser's ops on fp32 tensors, as src/backend/cpu/cpu_optim.c (train/adamw.c drives both):
//
//   adamw   torch's single-tensor AdamW update, element-wise, grid-stride: the reference's fp32 expression in its
//           order with every product, quotient and sum rounded separately (on the GPU through the _rn intrinsics,
//           so that nvcc cannot contract a * b + c into one fma): bit-identical to cpu_adamw
//   sumsq   *out += sum x^2, in double. The reference adds the squares in index order; here ONE block of
//           SUMSQ_THREADS threads: thread t adds x[t], x[t + T], x[t + 2T], ... in order (each square (double)x *
//           (double)x is exact: 24 + 24 significant bits), then a fixed tree — warp butterflies, the warps' sums
//           through shared memory, a butterfly over those — and thread 0 adds the total to *out. The order is fixed
//           by n alone (the same on every GPU and run, independent of timing), but it is not the reference's order,
//           so "calls in a row equal one loop" holds up to rounding: with S = |*out| + sum x^2 (every term >= 0),
//           the reference's n additions are within n 2^-53 S of the exact sum and this tree's at most
//           ceil(n / T) - 1 + 5 + 5 + 1 roundings along any path within (n / T + 11) 2^-53 S, so the two differ by
//           at most (n + n / T + 11) 2^-53 S (tests/kernels/test_k_optim.c checks it) — under 5e-9 relative at the
//           7B adapter's ~40M values, far below anything the clip coefficient can see.
//           Cost: one block streams n floats from one SM (~40M values, 160 MB, once per optimiser step: about a
//           millisecond at one SM's bandwidth), in exchange for no scratch memory, no atomics and no second launch.
#include "simt.h"
#include "kops.h"

enum { ADAMW_THREADS = 256, SUMSQ_THREADS = 1024 };

// one rounding per operation, as the C reference (no fma contraction on the GPU)
#ifdef __CUDACC__
#define FMUL(a, b) __fmul_rn((a), (b))
#define FADD(a, b) __fadd_rn((a), (b))
#define FSUB(a, b) __fsub_rn((a), (b))
#define FDIV(a, b) __fdiv_rn((a), (b))
#else
#define FMUL(a, b) ((a) * (b))
#define FADD(a, b) ((a) + (b))
#define FSUB(a, b) ((a) - (b))
#define FDIV(a, b) ((a) / (b))
#endif

// p *= decay (has_wd); m += w1 (g - m); v = v b2 + w2 g g; p += neg_step m / (sqrt(v) / bc2 + eps)
__global__ static void adamw_k(float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd,
                               float w1, float b2, float w2, float bc2, float eps, float neg_step) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)blockDim.x * gridDim.x) {
        const float gi = g[i];
        float pi = p[i];
        if (has_wd) pi = FMUL(pi, decay);
        const float mi = FADD(m[i], FMUL(w1, FSUB(gi, m[i])));
        const float vi = FADD(FMUL(v[i], b2), FMUL(FMUL(w2, gi), gi));
        const float denom = FADD(FDIV(sqrtf(vi), bc2), eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = FADD(pi, FDIV(FMUL(neg_step, mi), denom));
    }
}

__device__ static __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(KFULL, v, o);
    return v;
}

// launched with one block of SUMSQ_THREADS threads
__global__ static void __launch_bounds__(SUMSQ_THREADS) sumsq_k(double *out, const float *x, int64_t n) {
    __shared__ double red[SUMSQ_THREADS / 32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += (double)x[i] * (double)x[i];
    s = warp_sum_d(s);
    if (lane == 0) red[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = warp_sum_d(red[lane]);
        if (lane == 0) *out += s;
    }
}

// at most 4 waves of 132 SMs' worth of blocks; the grid-stride loop takes the rest
static unsigned adamw_grid(int64_t n) { return KMIN(kgrid(n, ADAMW_THREADS), 4u * 132u * 8u); }

extern "C" void kc_adamw(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd,
                         float w1, float b2, float w2, float bc2, float eps, float neg_step) {
    if (n > 0)
        KLAUNCH(adamw_k, adamw_grid(n), ADAMW_THREADS, 0, c, p, g, m, v, n, decay, has_wd, w1, b2, w2, bc2, eps,
                neg_step);
}

extern "C" void kc_sumsq(opctx *c, double *out, const float *x, int64_t n) {
    if (n > 0) KLAUNCH(sumsq_k, 1, SUMSQ_THREADS, 0, c, out, x, n);
}
