// f32 — the ops on fp32 arrays of the device tables' `f32` table (kops_f32.h): scaling, zeroing, copies, adds and
// row moves of the trainer's fp32 masters, gradients and embedding table. Each evaluates the fp32 CPU reference's
// expression (src/backend/cpu/cpu_misc.c, cpu_act.c) on the same values in the same order, so results are
// bit-identical to ops_cpu(); scatter_add_rows keeps the reference's row order per column (no float atomics).
#include "simt.h"
#include "kops_f32.h"

enum { F32_THREADS = 256 };

#define FOR_EACH(i, n)                                                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

__global__ static void scale_k(float *x, int64_t n, float alpha) {
    FOR_EACH(i, n) x[i] *= alpha;
}

__global__ static void zero_k(float *x, int64_t n) {
    FOR_EACH(i, n) x[i] = 0.0f;
}

__global__ static void copy_k(float *y, const float *x, int64_t n) {
    FOR_EACH(i, n) y[i] = x[i];
}

__global__ static void add_inplace_k(float *y, const float *x, int64_t n) {
    FOR_EACH(i, n) y[i] += x[i];
}

// element e of [nrows, D]: row e / D, column e % D
__global__ static void gather_rows_k(float *dst, const float *src, const int64_t *rows, int64_t nrows, int64_t D) {
    FOR_EACH(e, nrows * D) dst[e] = src[rows[e / D] * D + e % D];
}

__global__ static void scatter_rows_k(float *dst, const float *src, const int64_t *rows, int64_t nrows, int64_t D) {
    FOR_EACH(e, nrows * D) dst[rows[e / D] * D + e % D] = src[e];
}

// one thread per column: the rows in order, as the reference adds them (a row named twice adds twice, in order)
__global__ static void scatter_add_rows_k(float *dst, const float *src, const int64_t *rows, int64_t nrows,
                                          int64_t D) {
    FOR_EACH(j, D) {
        for (int64_t i = 0; i < nrows; i++) dst[rows[i] * D + j] += src[i * D + j];
    }
}

// at most 4 waves of 132 SMs' worth of blocks; the grid-stride loop takes the rest
static unsigned f32_grid(int64_t n) { return KMIN(kgrid(n, F32_THREADS), 4u * 132u * 8u); }

#define F(p) ((float *)(p))
#define CF(p) ((const float *)(p))

extern "C" void kf_scale(opctx *c, void *x, int64_t n, float alpha) {
    if (n > 0) KLAUNCH(scale_k, f32_grid(n), F32_THREADS, 0, c, F(x), n, alpha);
}

extern "C" void kf_zero(opctx *c, void *x, int64_t n) {
    if (n > 0) KLAUNCH(zero_k, f32_grid(n), F32_THREADS, 0, c, F(x), n);
}

extern "C" void kf_copy(opctx *c, void *y, const void *x, int64_t n) {
    if (n > 0 && y != x) KLAUNCH(copy_k, f32_grid(n), F32_THREADS, 0, c, F(y), CF(x), n);
}

extern "C" void kf_add_inplace(opctx *c, void *y, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(add_inplace_k, f32_grid(n), F32_THREADS, 0, c, F(y), CF(x), n);
}

extern "C" void kf_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    if (nrows > 0 && D > 0) KLAUNCH(gather_rows_k, f32_grid(nrows * D), F32_THREADS, 0, c, F(dst), CF(src), rows, nrows, D);
}

extern "C" void kf_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    if (nrows > 0 && D > 0) KLAUNCH(scatter_rows_k, f32_grid(nrows * D), F32_THREADS, 0, c, F(dst), CF(src), rows, nrows, D);
}

extern "C" void kf_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows,
                                    int64_t D) {
    if (nrows > 0 && D > 0) KLAUNCH(scatter_add_rows_k, f32_grid(D), F32_THREADS, 0, c, F(dst), CF(src), rows, nrows, D);
}
