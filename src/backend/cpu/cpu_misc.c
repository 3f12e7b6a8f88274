/* cpu_misc — scale, zero, dropout (counter RNG) and row gather / scatter-add. */
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/rng.h"

void cpu_scale(opctx *c, void *x_, int64_t n, float alpha) {
    (void)c;
    float *x = x_;
    for (int64_t i = 0; i < n; i++) x[i] *= alpha;
}

void cpu_zero(opctx *c, void *x, int64_t n) {
    (void)c;
    memset(x, 0, sizeof(float) * (size_t)n);
}

void cpu_copy(opctx *c, void *y, const void *x, int64_t n) {
    (void)c;
    memmove(y, x, sizeof(float) * (size_t)n);
}

void cpu_dropout(opctx *c, void *y_, const void *x_, int64_t n, float p, const uint32_t key[2], uint32_t a,
                 uint32_t b, uint64_t c0) {
    (void)c;
    float *y = y_;
    const float *x = x_;
    rng_key_t k = {{key[0], key[1]}};
    const float inv = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < n; i++) y[i] = rng_uniform(k, a, b, c0 + (uint64_t)i) >= p ? x[i] * inv : 0.0f;
}

void cpu_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++)
        memcpy((float *)dst + i * D, (const float *)src + rows[i] * D, sizeof(float) * (size_t)D);
}

void cpu_scatter_add_rows(opctx *c, void *dst_, const void *src_, const int64_t *rows, int64_t nrows, int64_t D) {
    (void)c;
    float *dst = dst_;
    const float *src = src_;
    for (int64_t i = 0; i < nrows; i++)
        for (int64_t j = 0; j < D; j++) dst[rows[i] * D + j] += src[i * D + j];
}
