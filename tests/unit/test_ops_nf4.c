/* ops->nf4_dequant of the fp32 CPU reference (backend/cpu/cpu_nf4.c, the dequantisation moved out of model/nf4.c):
 * fp32 and bf16 outputs bit for bit against the per-element formula of docs/nf4.md, several 256-block groups of the
 * nested absmax, odd lengths; model/nf4.c's nf4_dequantize / _rows / _bf16 give the same values; a bad output dtype
 * sets the sticky error. (tests/oracle/test_nf4.c checks the same code against bitsandbytes.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "model/nf4.h"
#include "test.h"
#include "test_ops_util.h"

static float formula(const uint8_t *pk, const uint8_t *q, const float *a2, float off, int64_t i, int bs, int bs2) {
    int64_t b = i / bs;
    float am = nf4_dynamic_map[q[b]] * a2[b / bs2];
    am = am + off;
    int nib = (i & 1) ? pk[i >> 1] & 15 : pk[i >> 1] >> 4;
    return nf4_code[nib] * am;
}

static void check_n(int64_t n, int bs, int bs2, uint64_t seed) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = seed;
    int64_t nb = (n + bs - 1) / bs, nb2 = (nb + bs2 - 1) / bs2;
    uint8_t *pk = malloc((size_t)(n + 1) / 2), *q = malloc((size_t)nb);
    float *a2 = malloc(sizeof(float) * (size_t)nb2), off = 0.0371f;
    for (int64_t i = 0; i < (n + 1) / 2; i++) pk[i] = (uint8_t)(tu_rand(&s) * 128 + 128);
    for (int64_t i = 0; i < nb; i++) q[i] = (uint8_t)(tu_rand(&s) * 128 + 128);
    for (int64_t i = 0; i < nb2; i++) a2[i] = 0.05f + 0.01f * (float)i + 0.001f * tu_rand(&s);
    float *y = malloc(sizeof(float) * (size_t)n), *ref = malloc(sizeof(float) * (size_t)n), *old = malloc(sizeof(float) * (size_t)n);
    uint16_t *yb = malloc(2 * (size_t)n), *refb = malloc(2 * (size_t)n), *oldb = malloc(2 * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        ref[i] = formula(pk, q, a2, off, i, bs, bs2);
        refb[i] = tu_rne(ref[i]);
    }
    o->nf4_dequant(&c, y, DT_F32, pk, q, a2, off, n, bs, bs2);
    CHECK(tu_bits_eq(y, ref, sizeof(float) * (size_t)n));
    o->nf4_dequant(&c, yb, DT_BF16, pk, q, a2, off, n, bs, bs2);
    CHECK(tu_bits_eq(yb, refb, 2 * (size_t)n));
    CHECK_EQ_INT(o->sync(&c), ERR_OK);
    CHECK_EQ_INT(nf4_dequantize(pk, q, a2, off, n, bs, bs2, old), ERR_OK);
    CHECK(tu_bits_eq(old, ref, sizeof(float) * (size_t)n));
    CHECK_EQ_INT(nf4_dequantize_bf16(pk, q, a2, off, n, bs, bs2, oldb), ERR_OK);
    CHECK(tu_bits_eq(oldb, refb, 2 * (size_t)n));
    if (n % 37 == 0) { /* rows 3..7 of a [n/37, 37] matrix: starts on an odd element */
        CHECK_EQ_INT(nf4_dequantize_rows(pk, q, a2, off, n / 37, 37, bs, bs2, 3, 7, old), ERR_OK);
        CHECK(tu_bits_eq(old, ref + 3 * 37, sizeof(float) * 4 * 37));
    }
    free(pk); free(q); free(a2); free(y); free(ref); free(old); free(yb); free(refb); free(oldb);
}

static void test_bad_dtype(void) {
    opctx c = {0};
    uint8_t pk = 0x12, q = 3;
    float a2 = 1.0f, y[2];
    ops_cpu()->nf4_dequant(&c, y, DT_F16, &pk, &q, &a2, 0.0f, 2, 64, 256);
    CHECK(c.err != ERR_OK);
    CHECK_CONTAINS(c.errmsg, "nf4_dequant");
    err_clear();
}

int main(void) {
    check_n(64 * 300 + 37 * 0 + 1, 64, 256, 1); /* 301 blocks: two absmax2 groups, odd tail */
    check_n(37 * 600, 64, 256, 2);              /* 22200 = 346.9 blocks, rows of 37 */
    check_n(2 * 4096, 4096, 32, 3);
    check_n(1, 64, 256, 4);
    test_bad_dtype();
    TEST_MAIN_END();
}
