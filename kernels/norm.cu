// norm — RMSNorm (Mistral) and LayerNorm (CLIP), forward and backward, as src/backend/cpu/cpu_norm.c in the bf16
// contract (activations bf16; norm weights, biases, rstd / mean and the weight gradients dw / db f32).
//
// Rows: one block per row. Each thread sums its strided values of the row in order, then block_sum (simt.h) adds
// the threads' sums in a fixed tree; the block size is a function of D only (norm_threads), so the result depends on
// D and the data, never on scheduling or the GPU. The reference sums each row sequentially, so the row statistics
// (rstd, mean, the backward's dot products) differ from it by rounding: tests/kernels/test_k_norm.c derives the bound.
// Everything after the row sums is the reference's fp32 formula in its order, rounded once to bf16.
//
// Weight gradients (dw, db += a sum over the M rows): a second kernel where each thread owns one column and adds the
// rows in index order, i.e. the reference's order: bit-identical and deterministic, without float atomics or
// scratch. Its parallelism is D threads (16 blocks at D = 4096) and each warp reads 64 contiguous bytes per row:
// slower than a split over row chunks, but a chunked sum would need scratch that the op contract does not give.
#include "simt.h"
#include "kops.h"

enum { NORM_MAX_THREADS = 256, NORM_COL_THREADS = 256 };

// threads per row: D rounded up to a warp, at most NORM_MAX_THREADS (depends on D only: the tree is fixed by D)
static int norm_threads(int64_t D) { return (int)KMIN((D + 31) / 32 * 32, (int64_t)NORM_MAX_THREADS); }

// ---- RMSNorm: y = w (x r), r = 1 / sqrt(mean(x^2) + eps) ---------------------------------------------------------

__global__ static void rmsnorm_fwd_k(bf16 *y, float *rstd, const bf16 *x, const float *w, int64_t D, float eps) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const bf16 *xr = x + row * D;
    float ss = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float v = bf2f(xr[j]);
        ss += v * v;
    }
    ss = block_sum(ss, red);
    const float r = 1.0f / sqrtf(ss / (float)D + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) y[row * D + j] = f2bf(w[j] * (bf2f(xr[j]) * r));
}

// dot = mean_j(dy w xhat);  dx += r (dy w - xhat dot)
__global__ static void rmsnorm_bwd_dx_k(bf16 *dx, const bf16 *dy, const bf16 *x, const float *w, const float *rstd,
                                        int64_t D) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const bf16 *xr = x + row * D, *dyr = dy + row * D;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dot += bf2f(dyr[j]) * w[j] * bf2f(xr[j]) * r;
    dot = block_sum(dot, red) / (float)D;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float xhat = bf2f(xr[j]) * r;
        dx[row * D + j] = f2bf(bf2f(dx[row * D + j]) + r * (bf2f(dyr[j]) * w[j] - xhat * dot));
    }
}

// dw[j] += sum over rows, in row order, of dy xhat
__global__ static void rmsnorm_bwd_dw_k(float *dw, const bf16 *dy, const bf16 *x, const float *rstd, int64_t M,
                                        int64_t D) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    float acc = dw[j];
    for (int64_t i = 0; i < M; i++) acc += bf2f(dy[i * D + j]) * (bf2f(x[i * D + j]) * rstd[i]);
    dw[j] = acc;
}

// ---- LayerNorm: y = (x - mean) r w + b, r = 1 / sqrt(var + eps) ---------------------------------------------------

__global__ static void layernorm_fwd_k(bf16 *y, float *mean, float *rstd, const bf16 *x, const float *w,
                                       const float *b, int64_t D, float eps) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const bf16 *xr = x + row * D;
    float mu = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) mu += bf2f(xr[j]);
    mu = block_sum(mu, red) / (float)D;
    float var = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float d = bf2f(xr[j]) - mu;
        var += d * d;
    }
    var = block_sum(var, red) / (float)D;
    const float r = 1.0f / sqrtf(var + eps);
    if (threadIdx.x == 0) mean[row] = mu, rstd[row] = r;
    // + 0.0f without a bias, as the reference (it turns -0 into +0)
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x)
        y[row * D + j] = f2bf((bf2f(xr[j]) - mu) * r * w[j] + (b ? b[j] : 0.0f));
}

// m1 = mean(dy w), m2 = mean(dy w xhat);  dx += r (dy w - m1 - xhat m2)
__global__ static void layernorm_bwd_dx_k(bf16 *dx, const bf16 *dy, const bf16 *x, const float *w, const float *mean,
                                          const float *rstd, int64_t D) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const bf16 *xr = x + row * D, *dyr = dy + row * D;
    const float r = rstd[row], mu = mean[row];
    float m1 = 0.0f, m2 = 0.0f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float g = bf2f(dyr[j]) * w[j];
        m1 += g;
        m2 += g * (bf2f(xr[j]) - mu) * r;
    }
    m1 = block_sum(m1, red) / (float)D;
    m2 = block_sum(m2, red) / (float)D;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
        float xhat = (bf2f(xr[j]) - mu) * r;
        dx[row * D + j] = f2bf(bf2f(dx[row * D + j]) + r * (bf2f(dyr[j]) * w[j] - m1 - xhat * m2));
    }
}

// dw[j] += sum over rows of dy xhat, db[j] += sum of dy, each in row order
__global__ static void layernorm_bwd_dwb_k(float *dw, float *db, const bf16 *dy, const bf16 *x, const float *mean,
                                           const float *rstd, int64_t M, int64_t D) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    float aw = dw ? dw[j] : 0.0f, ab = db ? db[j] : 0.0f;
    for (int64_t i = 0; i < M; i++) {
        float g = bf2f(dy[i * D + j]);
        aw += g * ((bf2f(x[i * D + j]) - mean[i]) * rstd[i]);
        ab += g;
    }
    if (dw) dw[j] = aw;
    if (db) db[j] = ab;
}

#define B(p) ((bf16 *)(p))
#define CB(p) ((const bf16 *)(p))
#define CF(p) ((const float *)(p))

extern "C" void kc_rmsnorm_fwd(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M, int64_t D,
                               float eps) {
    if (M > 0 && D > 0) KLAUNCH(rmsnorm_fwd_k, (unsigned)M, norm_threads(D), 0, c, B(y), rstd, CB(x), CF(w), D, eps);
}

extern "C" void kc_rmsnorm_bwd(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w,
                               const float *rstd, int64_t M, int64_t D) {
    if (M <= 0 || D <= 0) return;
    if (dx) KLAUNCH(rmsnorm_bwd_dx_k, (unsigned)M, norm_threads(D), 0, c, B(dx), CB(dy), CB(x), CF(w), rstd, D);
    if (dw) KLAUNCH(rmsnorm_bwd_dw_k, kgrid(D, NORM_COL_THREADS), NORM_COL_THREADS, 0, c, dw, CB(dy), CB(x), rstd, M, D);
}

extern "C" void kc_layernorm_fwd(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w,
                                 const void *b, int64_t M, int64_t D, float eps) {
    if (M > 0 && D > 0)
        KLAUNCH(layernorm_fwd_k, (unsigned)M, norm_threads(D), 0, c, B(y), mean, rstd, CB(x), CF(w), CF(b), D, eps);
}

extern "C" void kc_layernorm_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                                 const float *mean, const float *rstd, int64_t M, int64_t D) {
    if (M <= 0 || D <= 0) return;
    if (dx)
        KLAUNCH(layernorm_bwd_dx_k, (unsigned)M, norm_threads(D), 0, c, B(dx), CB(dy), CB(x), CF(w), mean, rstd, D);
    if (dw || db)
        KLAUNCH(layernorm_bwd_dwb_k, kgrid(D, NORM_COL_THREADS), NORM_COL_THREADS, 0, c, dw, db, CB(dy), CB(x), mean,
                rstd, M, D);
}
