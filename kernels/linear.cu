// linear — y = x W^T + b, its backward, and LoRA's y += alpha x W^T, as src/backend/cpu/cpu_linear.c, on bf16
// activations and weights (W [N, K], PyTorch layout). The products are kgemm's (cuBLASLt; fp32 accumulation):
//   forward     y = bf16(x W^T + b)                      one rounding (the bias is the GEMM's epilogue, fp32)
//   backward    dx = bf16(dx + dy W)                     the old dx read, added in fp32, rounded once (beta = 1)
//               dW += dy^T x                             fp32 (beta = 1)
//               db[j] += dy[0, j] + dy[1, j] + ...       fp32, row by row in order: the reference's own order
//   matmul_acc  y = bf16(y + alpha x W^T)
// The column sums of dy are one thread per column walking the rows in order: deterministic, and bit-identical to
// the reference's loop.
#include "kgemm.h"
#include "kops.h"

enum { LIN_THREADS = 256 };

__global__ static void colsum_k(float *db, const bf16 *dy, int64_t M, int64_t N) {
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < N; j += (int64_t)blockDim.x * gridDim.x) {
        float s = db[j];
        for (int64_t i = 0; i < M; i++) s += bf2f(dy[i * N + j]);
        db[j] = s;
    }
}

extern "C" void kc_linear_fwd(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K,
                              int64_t N) {
    kgemm_args g = {};
    g.tb = 1, g.m = M, g.n = N, g.k = K, g.alpha = 1.0f;
    g.A = x, g.lda = K, g.B = w, g.ldb = K;
    g.C = y, g.cdt = KG_BF16, g.ldc = N, g.batch = 1, g.bias = (const float *)b;
    kgemm(c, g);
}

extern "C" void kc_linear_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                              int64_t M, int64_t K, int64_t N) {
    if (dx) { // dx[M, K] += dy[M, N] W[N, K]
        kgemm_args g = {};
        g.m = M, g.n = K, g.k = N, g.alpha = 1.0f;
        g.A = dy, g.lda = N, g.B = w, g.ldb = K;
        g.beta = 1.0f, g.C = dx, g.cdt = KG_BF16, g.ldc = K, g.batch = 1;
        kgemm(c, g);
    }
    if (dw) { // dW[N, K] += dy^T[N, M] x[M, K]
        kgemm_args g = {};
        g.ta = 1, g.m = N, g.n = K, g.k = M, g.alpha = 1.0f;
        g.A = dy, g.lda = N, g.B = x, g.ldb = K;
        g.beta = 1.0f, g.C = dw, g.cdt = KG_F32, g.ldc = K, g.batch = 1;
        kgemm(c, g);
    }
    if (db && N > 0) KLAUNCH(colsum_k, kgrid(N, LIN_THREADS), LIN_THREADS, 0, c, db, (const bf16 *)dy, M, N);
}

extern "C" void kc_matmul_acc(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N,
                              float alpha) {
    kgemm_args g = {};
    g.tb = 1, g.m = M, g.n = N, g.k = K, g.alpha = alpha;
    g.A = x, g.lda = K, g.B = w, g.ldb = K;
    g.beta = 1.0f, g.C = y, g.cdt = KG_BF16, g.ldc = N, g.batch = 1;
    kgemm(c, g);
}
