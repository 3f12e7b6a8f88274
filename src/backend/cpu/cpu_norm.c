/* cpu_norm — RMSNorm (Mistral) and LayerNorm (CLIP), forward and backward, fp32. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"

void cpu_rmsnorm_fwd(opctx *c, void *y_, float *rstd, const void *x_, const void *w_, int64_t M,
                     int64_t D, float eps) {
    (void)c;
    float *y = y_;
    const float *x = x_, *w = w_;
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D;
        float ss = 0.0f;
        for (int64_t j = 0; j < D; j++) ss += xi[j] * xi[j];
        float r = 1.0f / sqrtf(ss / (float)D + eps);
        rstd[i] = r;
        for (int64_t j = 0; j < D; j++) y[i * D + j] = w[j] * (xi[j] * r);
    }
}

/* xhat = x r; y = w xhat.  dxhat = dy w;  dx = r (dxhat - xhat mean(dxhat xhat));  dw += dy xhat */
void cpu_rmsnorm_bwd(opctx *c, void *dx_, float *dw, const void *dy_, const void *x_, const void *w_,
                     const float *rstd, int64_t M, int64_t D) {
    (void)c;
    float *dx = dx_;
    const float *dy = dy_, *x = x_, *w = w_;
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D, *dyi = dy + i * D;
        float r = rstd[i], dot = 0.0f;
        for (int64_t j = 0; j < D; j++) dot += dyi[j] * w[j] * xi[j] * r;
        dot /= (float)D;
        for (int64_t j = 0; j < D; j++) {
            float xhat = xi[j] * r;
            if (dx) dx[i * D + j] += r * (dyi[j] * w[j] - xhat * dot);
            if (dw) dw[j] += dyi[j] * xhat;
        }
    }
}

void cpu_layernorm_fwd(opctx *c, void *y_, float *mean, float *rstd, const void *x_, const void *w_,
                       const void *b_, int64_t M, int64_t D, float eps) {
    (void)c;
    float *y = y_;
    const float *x = x_, *w = w_, *b = b_;
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D;
        float mu = 0.0f, var = 0.0f;
        for (int64_t j = 0; j < D; j++) mu += xi[j];
        mu /= (float)D;
        for (int64_t j = 0; j < D; j++) var += (xi[j] - mu) * (xi[j] - mu);
        var /= (float)D;
        float r = 1.0f / sqrtf(var + eps);
        mean[i] = mu;
        rstd[i] = r;
        for (int64_t j = 0; j < D; j++) y[i * D + j] = (xi[j] - mu) * r * w[j] + (b ? b[j] : 0.0f);
    }
}

/* dxhat = dy w;  dx = r (dxhat - mean(dxhat) - xhat mean(dxhat xhat));  dw += dy xhat;  db += dy */
void cpu_layernorm_bwd(opctx *c, void *dx_, float *dw, float *db, const void *dy_, const void *x_,
                       const void *w_, const float *mean, const float *rstd, int64_t M, int64_t D) {
    (void)c;
    float *dx = dx_;
    const float *dy = dy_, *x = x_, *w = w_;
    for (int64_t i = 0; i < M; i++) {
        const float *xi = x + i * D, *dyi = dy + i * D;
        float r = rstd[i], mu = mean[i], m1 = 0.0f, m2 = 0.0f;
        for (int64_t j = 0; j < D; j++) {
            float g = dyi[j] * w[j];
            m1 += g;
            m2 += g * (xi[j] - mu) * r;
        }
        m1 /= (float)D;
        m2 /= (float)D;
        for (int64_t j = 0; j < D; j++) {
            float xhat = (xi[j] - mu) * r;
            if (dx) dx[i * D + j] += r * (dyi[j] * w[j] - m1 - xhat * m2);
            if (dw) dw[j] += dyi[j] * xhat;
            if (db) db[j] += dyi[j];
        }
    }
}
