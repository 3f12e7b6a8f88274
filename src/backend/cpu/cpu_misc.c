/* cpu_misc — scale, zero, copy, dropout (counter RNG), row gathers / scatters (plain, with a fill row, adding) and
 * the f32 <-> bf16 cast. */
#include <string.h>

#include "backend/cpu/cpu_ops.h"
#include "backend/rng.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/h5x.h" /* the bf16 conversions */

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

void cpu_gather_rows_fill(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                          const void *fill) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++) {
        float *d = (float *)dst + i * D;
        if (rows[i] >= 0) memcpy(d, (const float *)src + rows[i] * D, sizeof(float) * (size_t)D);
        else if (fill) memcpy(d, fill, sizeof(float) * (size_t)D);
        else memset(d, 0, sizeof(float) * (size_t)D);
    }
}

void cpu_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++)
        memcpy((float *)dst + rows[i] * D, (const float *)src + i * D, sizeof(float) * (size_t)D);
}

void cpu_cast(opctx *c, void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
    if (dst_dtype == src_dtype && (dst_dtype == DT_F32 || dst_dtype == DT_BF16))
        memmove(dst, src, dtype_size(dst_dtype) * (size_t)n);
    else if (dst_dtype == DT_BF16 && src_dtype == DT_F32)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = h5x_f32_to_bf16(((const float *)src)[i]);
    else if (dst_dtype == DT_F32 && src_dtype == DT_BF16)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = h5x_bf16_to_f32(((const uint16_t *)src)[i]);
    else
        opctx_fail(c, ERR_INTERNAL, "cast: %s -> %s: expected f32 <-> bf16", dtype_name(src_dtype),
                   dtype_name(dst_dtype));
}
