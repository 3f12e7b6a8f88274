/* cpu_linear — y = x W^T + b through OpenBLAS, forward and backward. */
#include <cblas.h>

#include "backend/cpu/cpu_ops.h"

void cpu_linear_fwd(opctx *c, void *y_, const void *x_, const void *w_, const void *b_, int64_t M,
                    int64_t K, int64_t N) {
    (void)c;
    float *y = y_;
    const float *x = x_, *w = w_, *b = b_;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, x, (int)K, w,
                (int)K, 0.0f, y, (int)N);
    if (b)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) y[i * N + j] += b[j];
}

void cpu_linear_bwd(opctx *c, void *dx_, float *dw, float *db, const void *dy_, const void *x_,
                    const void *w_, int64_t M, int64_t K, int64_t N) {
    (void)c;
    float *dx = dx_;
    const float *dy = dy_, *x = x_, *w = w_;
    if (dx) /* dx[M,K] += dy[M,N] W[N,K] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)K, (int)N, 1.0f, dy,
                    (int)N, w, (int)K, 1.0f, dx, (int)K);
    if (dw) /* dW[N,K] += dy^T[N,M] x[M,K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)K, (int)M, 1.0f, dy,
                    (int)N, x, (int)K, 1.0f, dw, (int)K);
    if (db)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) db[j] += dy[i * N + j];
}

void cpu_matmul_acc(opctx *c, void *y_, const void *x_, const void *w_, int64_t M, int64_t K, int64_t N, float alpha) {
    (void)c;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, alpha, (const float *)x_, (int)K,
                (const float *)w_, (int)K, 1.0f, (float *)y_, (int)N);
}
