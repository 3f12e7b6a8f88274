/* Unit tests for src/model/nf4.c: edge cases (n = 1, zeros, odd n, ties, bad input, row ranges). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "io/err.h"
#include "io/h5x.h"
#include "model/nf4.h"
#include "test.h"

static uint32_t bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }

static void test_constants(void) {
    CHECK_EQ_INT(bits(nf4_code[0]), 0xbf800000u);
    CHECK_EQ_INT(bits(nf4_code[7]), 0u);
    CHECK_EQ_INT(bits(nf4_code[8]), 0x3da2faffu);
    CHECK_EQ_INT(bits(nf4_code[15]), 0x3f800000u);
    int sorted = 1;
    for (int i = 1; i < 256; i++) sorted &= nf4_dynamic_map[i] > nf4_dynamic_map[i - 1];
    CHECK(sorted);
    CHECK_EQ_INT(bits(nf4_dynamic_map[127]), 0u);
    CHECK_EQ_INT(bits(nf4_dynamic_map[255]), 0x3f800000u);
    CHECK_EQ_INT(bits(nf4_dynamic_map[0]), 0xbf7e3333u); /* -0.99296875: there is no -1.0 */
    const uint8_t *lut = nf4_cpu_lut();
    int mono = 1;
    for (int k = 1; k < 65536; k++) mono &= lut[k] >= lut[k - 1];
    CHECK(mono);
    CHECK_EQ_INT(lut[0], 0);
    CHECK_EQ_INT(lut[65535], 255);
    CHECK_EQ_INT(lut[32768], 131); /* x = 0 lands in the cell of 1.5e-5: code 2.125e-5, not 0 */
}

static void test_n1(void) {
    float w = -0.7f, am, absmax2, off, out;
    uint8_t pk = 0xaa, q = 0xaa;
    for (int fl = 0; fl < 2; fl++) {
        CHECK_EQ_INT(nf4_quantize_ex(&w, 1, 64, fl, &pk, &am), ERR_OK);
        CHECK_EQ_INT(pk, 0x07); /* code 0 (-1.0) in the high nibble, pad nibble 7 */
        CHECK_EQ_INT(bits(am), bits(0.7f));
    }
    CHECK_EQ_INT(nf4_quantize_full(&w, 1, 64, 256, NF4_FLAVOR_CUDA, &pk, &q, &absmax2, &off), ERR_OK);
    CHECK_EQ_INT(q, 0);
    CHECK_EQ_INT(bits(absmax2), 0u);
    CHECK_EQ_INT(bits(off), bits(0.7f));
    CHECK_EQ_INT(nf4_dequantize(&pk, &q, &absmax2, off, 1, 64, 256, &out), ERR_OK);
    CHECK_EQ_INT(bits(out), bits(-0.7f));
}

static void test_zero_blocks(void) {
    float w[74] = {0};
    w[64] = 0.5f; /* second (partial, 10 elements) block is not zero */
    uint8_t pk[37];
    float am[2];
    CHECK_EQ_INT(nf4_quantize_ex(w, 74, 64, NF4_FLAVOR_CUDA, pk, am), ERR_OK);
    CHECK_EQ_INT(pk[0], 0x00); /* CUDA: 0 * (1/0) = NaN -> code 0 */
    CHECK_EQ_INT(pk[31], 0x00);
    CHECK_EQ_INT(pk[32], 0xf7); /* 0.5/0.5 -> 15, then 0 -> 7 */
    CHECK_EQ_INT(bits(am[0]), 0u);
    CHECK_EQ_INT(nf4_quantize_ex(w, 74, 64, NF4_FLAVOR_CPU, pk, am), ERR_OK);
    CHECK_EQ_INT(pk[0], 0x77); /* torch back end: absmax clamped to 1e-38, 0 -> code 7 */
    CHECK_EQ_INT(bits(am[0]), 0u);
    /* an all-zero last partial block keeps the clamped absmax on the CPU back end */
    float z[10] = {0};
    CHECK_EQ_INT(nf4_quantize_ex(z, 10, 64, NF4_FLAVOR_CPU, pk, am), ERR_OK);
    CHECK_EQ_INT(bits(am[0]), bits(1e-38f));
    CHECK_EQ_INT(pk[4], 0x77);
    CHECK_EQ_INT(nf4_quantize_ex(z, 10, 64, NF4_FLAVOR_CUDA, pk, am), ERR_OK);
    CHECK_EQ_INT(bits(am[0]), 0u);
    CHECK_EQ_INT(pk[4], 0x00);
    /* dequantising the CUDA zero block gives -0.0 (code -1.0 times absmax 0) */
    uint8_t q = 0;
    float a2 = 0.0f, out[10];
    CHECK_EQ_INT(nf4_dequantize(pk, &q, &a2, 0.0f, 10, 64, 256, out), ERR_OK);
    CHECK(out[3] == 0.0f && signbit(out[3]));
}

static void test_ties_and_odd(void) {
    /* a block with absmax 1: a value equal to a threshold goes to the lower code, one ulp up to the upper */
    static const float thr_mid_8 = 0x1.ec90c4p-4f; /* threshold between codes 8 and 9 */
    float w[3] = {1.0f, thr_mid_8, nextafterf(thr_mid_8, 1.0f)};
    uint8_t pk[2];
    float am;
    for (int fl = 0; fl < 2; fl++) {
        CHECK_EQ_INT(nf4_quantize_ex(w, 3, 64, fl, pk, &am), ERR_OK);
        CHECK_EQ_INT(pk[0], 0xf8);
        CHECK_EQ_INT(pk[1], 0x97); /* element 2 -> 9, odd n: pad nibble 7 */
    }
}

static void test_rows_odd_cols(void) {
    enum { R = 5, C = 27 };
    float w[R * C], full[R * C], part[R * C];
    for (int i = 0; i < R * C; i++) w[i] = sinf((float)i * 0.37f) * (1.0f + (float)(i % 7));
    uint8_t pk[(R * C + 1) / 2], q[3];
    float a2[1], off;
    CHECK_EQ_INT(nf4_quantize_full(w, R * C, 64, 256, NF4_FLAVOR_CPU, pk, q, a2, &off), ERR_OK);
    CHECK_EQ_INT(nf4_dequantize(pk, q, a2, off, R * C, 64, 256, full), ERR_OK);
    CHECK_EQ_INT(nf4_dequantize_rows(pk, q, a2, off, R, C, 64, 256, 1, 4, part), ERR_OK); /* starts at odd 27 */
    CHECK(memcmp(part, full + C, 3 * C * sizeof(float)) == 0);
    double maxerr = 0;
    for (int i = 0; i < R * C; i++) maxerr = fmax(maxerr, fabs(full[i] - w[i]));
    CHECK(maxerr < 8.0 * 0.16); /* half the widest NF4 gap (0.152) times absmax <= 8, plus absmax rounding */
    CHECK_EQ_INT(nf4_dequantize_rows(pk, q, a2, off, R, C, 64, 256, 3, 3, part), ERR_ARGS);
    CHECK_EQ_INT(nf4_dequantize_rows(pk, q, a2, off, R, C, 64, 256, 2, 6, part), ERR_ARGS);
}

static void test_bad_input(void) {
    float w[100];
    for (int i = 0; i < 100; i++) w[i] = 0.01f * (float)i;
    uint8_t pk[50];
    float am[2];
    w[70] = NAN;
    CHECK_EQ_INT(nf4_quantize(w, 100, 64, pk, am), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "element 70 of 100 is NaN");
    w[70] = -INFINITY;
    CHECK_EQ_INT(nf4_quantize_ex(w, 100, 64, NF4_FLAVOR_CPU, pk, am), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "infinite");
    uint16_t wb[4] = {0x3f80, 0x7fc0, 0, 0};
    CHECK_EQ_INT(nf4_quantize_bf16_ex(wb, 4, 64, NF4_FLAVOR_CUDA, pk, am), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "element 1 of 4 is NaN");
    w[70] = 0.0f;
    CHECK_EQ_INT(nf4_quantize(w, 0, 64, pk, am), ERR_ARGS);
    CHECK_EQ_INT(nf4_quantize(w, 100, 48, pk, am), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "blocksize 48");
    CHECK_EQ_INT(nf4_quantize_ex(w, 100, 64, 7, pk, am), ERR_ARGS);
    float bad_am[3] = {0.1f, -0.2f, 0.3f}, a2, off;
    uint8_t q[3];
    CHECK_EQ_INT(nf4_double_quant(bad_am, 3, 256, q, &a2, &off), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "absmax[1]");
    bad_am[1] = INFINITY;
    CHECK_EQ_INT(nf4_double_quant(bad_am, 3, 256, q, &a2, &off), ERR_DATA);
    CHECK_EQ_INT(nf4_double_quant_offset(w, 3, 256, NF4_FLAVOR_CPU, NAN, q, &a2), ERR_DATA);
    CHECK_EQ_INT(nf4_double_quant(w, 3, 100, q, &a2, &off), ERR_ARGS);
    err_clear();
}

static void test_bf16(void) {
    /* bf16 <-> fp32 is h5x's converter (tested in test_h5x); the bf16 dequantisation is the fp32 one, rounded */
    float w[200], deq[200];
    uint16_t deqb[200];
    uint8_t pk[100], q[4];
    float am2, off;
    for (int i = 0; i < 200; i++) w[i] = sinf(0.37f * (float)i) * (1.0f + (float)(i % 7));
    CHECK_EQ_INT(nf4_quantize_full(w, 200, 64, 256, NF4_FLAVOR_CUDA, pk, q, &am2, &off), ERR_OK);
    CHECK_EQ_INT(nf4_dequantize(pk, q, &am2, off, 200, 64, 256, deq), ERR_OK);
    CHECK_EQ_INT(nf4_dequantize_bf16(pk, q, &am2, off, 200, 64, 256, deqb), ERR_OK);
    int same = 0;
    for (int i = 0; i < 200; i++) same += deqb[i] == h5x_f32_to_bf16(deq[i]);
    CHECK_EQ_INT(same, 200);
    /* a bf16 source quantises exactly like its fp32 upcast */
    uint16_t wb[130];
    float wf[130];
    for (int i = 0; i < 130; i++) {
        wb[i] = h5x_f32_to_bf16(cosf((float)i) * 0.1f);
        wf[i] = h5x_bf16_to_f32(wb[i]);
    }
    uint8_t p1[65], p2[65];
    float a1[3], a2[3];
    CHECK_EQ_INT(nf4_quantize_bf16_ex(wb, 130, 64, NF4_FLAVOR_CPU, p1, a1), ERR_OK);
    CHECK_EQ_INT(nf4_quantize_ex(wf, 130, 64, NF4_FLAVOR_CPU, p2, a2), ERR_OK);
    CHECK(memcmp(p1, p2, sizeof p1) == 0 && memcmp(a1, a2, sizeof a1) == 0);
}

int main(void) {
    test_constants();
    test_n1();
    test_zero_blocks();
    test_ties_and_odd();
    test_rows_odd_cols();
    test_bad_input();
    test_bf16();
    TEST_MAIN_END();
}
