/* The fp32 CPU reference of the row and element ops added for the device step: gather_rows_fill, scatter_rows, add
 * and cast (f32 <-> bf16, nearest even), each bit for bit against a plain loop. */
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "test.h"
#include "test_ops_util.h"

static void test_gather_fill(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 1;
    enum { R = 9, D = 13, N = 12 };
    float src[R * D], fill[D], dst[N * D], ref[N * D];
    tu_fill(src, R * D, &s, 2.0f);
    tu_fill(fill, D, &s, 1.0f);
    const int64_t rows[N] = {3, -1, 0, 8, 8, -1, 5, 1, 2, -1, 7, 4};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) ref[i * D + j] = rows[i] >= 0 ? src[rows[i] * D + j] : fill[j];
    memset(dst, 0xff, sizeof dst);
    o->gather_rows_fill(&c, dst, src, rows, N, D, fill);
    CHECK(tu_bits_eq(dst, ref, sizeof ref));
    /* no fill row: zeros */
    for (int i = 0; i < N; i++)
        if (rows[i] < 0)
            for (int j = 0; j < D; j++) ref[i * D + j] = 0.0f;
    o->gather_rows_fill(&c, dst, src, rows, N, D, NULL);
    CHECK(tu_bits_eq(dst, ref, sizeof ref));
}

static void test_scatter(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 2;
    enum { R = 10, D = 7, N = 4 };
    float src[N * D], dst[R * D], ref[R * D];
    tu_fill(src, N * D, &s, 1.0f);
    tu_fill(dst, R * D, &s, 1.0f);
    memcpy(ref, dst, sizeof dst);
    const int64_t rows[N] = {9, 0, 4, 5};
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) ref[rows[i] * D + j] = src[i * D + j]; /* overwrites, other rows kept */
    o->scatter_rows(&c, dst, src, rows, N, D);
    CHECK(tu_bits_eq(dst, ref, sizeof ref));
}

static void test_add(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 3;
    enum { N = 1001 };
    float a[N], b[N], out[N], ref[N];
    tu_fill(a, N, &s, 3.0f);
    tu_fill(b, N, &s, 1e-3f);
    for (int i = 0; i < N; i++) ref[i] = a[i] + b[i];
    o->add(&c, out, a, b, N);
    CHECK(tu_bits_eq(out, ref, sizeof ref));
    o->add(&c, a, a, b, N); /* in place on either operand */
    CHECK(tu_bits_eq(a, ref, sizeof ref));
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_cast(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 4;
    enum { N = 4096 };
    float x[N], back[N];
    uint16_t b[N], ref[N];
    tu_fill(x, N, &s, 100.0f);
    /* edge cases: ties to even both ways, the carry into the exponent, overflow to inf, denormals, signed zero,
     * infinities and NaNs (which stay NaN, sign kept) */
    const uint32_t edge[] = {0x3f808000u, 0x3f818000u, 0x3f80c000u, 0x3fffffffu, 0x7f7fffffu, 0x7f7f8000u,
                             0x7f7f7fffu, 0x00000001u, 0x00008000u, 0x00018000u, 0x80000000u, 0x7f800000u,
                             0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u, 0xbf808000u, 0xbf818001u};
    const int ne = (int)(sizeof edge / sizeof edge[0]);
    for (int i = 0; i < ne; i++) x[i] = from_bits(edge[i]);
    for (int i = 0; i < N; i++) ref[i] = tu_rne(x[i]);
    CHECK_EQ_INT(ref[0], 0x3f80);
    CHECK_EQ_INT(ref[1], 0x3f82);
    CHECK_EQ_INT(ref[4], 0x7f80);
    o->cast(&c, b, DT_BF16, x, DT_F32, N);
    CHECK(tu_bits_eq(b, ref, sizeof ref));
    int nan_ok = 1;
    for (int i = 13; i < 16; i++) nan_ok &= isnan(tu_widen(b[i])) && (b[i] >> 15) == (edge[i] >> 31);
    CHECK(nan_ok);
    /* bf16 -> f32 is exact: the bits shifted up */
    o->cast(&c, back, DT_F32, b, DT_BF16, N);
    int exact = 1;
    for (int i = 0; i < N; i++) {
        uint32_t u;
        memcpy(&u, &back[i], 4);
        exact &= u == (uint32_t)b[i] << 16;
    }
    CHECK(exact);
    /* same dtype: a copy; an unknown pair: the sticky error */
    float y[N];
    o->cast(&c, y, DT_F32, x, DT_F32, N);
    CHECK(tu_bits_eq(y, x, sizeof x));
    CHECK_EQ_INT(c.err, ERR_OK);
    o->cast(&c, y, DT_F16, x, DT_F32, N);
    CHECK(c.err != ERR_OK);
    CHECK_CONTAINS(c.errmsg, "cast");
    CHECK(o->sync(&c) != ERR_OK);
    err_clear();
}

int main(void) {
    test_gather_fill();
    test_scatter();
    test_add();
    test_cast();
    TEST_MAIN_END();
}
