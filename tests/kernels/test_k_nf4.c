/* test_k_nf4 — kernels/nf4.cu (NF4 dequantisation with double-quantised absmax, f32 and bf16 output) run by the CPU
 * executor against ops_cpu_bf16 (the fp32 table's cpu_nf4_dequant): odd sizes (1, 31, 257: a last byte of one value;
 * 2, 62, 130, 4098), blocks of 64 / 256 and odd ones (1, 3, 7 values: a byte whose two values lie in two blocks;
 * second-level blocks of 1 and 5), outputs and packed bytes not aligned for the 8-value path, zero-size calls, refused
 * arguments, and a whole 7B MLP weight (14336 x 4096 = 58.7M values) in both output types.
 *
 * Tolerance 0 (bit-identical): the kernel forms the reference's absmax (one fp32 product, then the offset: two
 * roundings, no FMA) and weight (one fp32 product) from the same tables (nf4_tables.h) and rounds bf16 once. */
#include "kcheck.h"

#include "io/err.h"

typedef struct nf4_in {
    uint8_t *packed, *qabsmax;
    float *absmax2;
} nf4_in;

static nf4_in make_in(int64_t n, int bs, int bs2, uint64_t *s) {
    const int64_t nbytes = (n + 1) / 2, nb = (n + bs - 1) / bs, nb2 = (nb + bs2 - 1) / bs2;
    nf4_in in = {malloc((size_t)(nbytes ? nbytes : 1)), malloc((size_t)(nb ? nb : 1)),
                 malloc(sizeof(float) * (size_t)(nb2 ? nb2 : 1))};
    for (int64_t i = 0; i < nbytes; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        in.packed[i] = (uint8_t)(*s >> 56);
    }
    for (int64_t i = 0; i < nb; i++) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        in.qabsmax[i] = (uint8_t)(*s >> 48);
    }
    for (int64_t i = 0; i < nb2; i++) in.absmax2[i] = 0.05f + 0.04f * tu_rand(s);
    return in;
}

static void free_in(nf4_in in) { free(in.packed), free(in.qabsmax), free(in.absmax2); }

/* mis: 0 all buffers aligned (the kernel's 8-values-per-thread path), 1 the output one value off, 2 the packed bytes
 * one byte off (both: the one-byte-per-thread path) */
static void one_case(int64_t n, int bs, int bs2, float offset, int mis) {
    uint64_t s = 0x4f400000u + (uint64_t)(n * 131 + bs * 7 + bs2 + mis);
    const ops *r = kc_ref();
    nf4_in in = make_in(n, bs, bs2, &s);
    const int out_off = mis == 1;
    uint8_t *pk_buf = NULL;
    if (mis == 2) {
        pk_buf = malloc((size_t)(n + 1) / 2 + 1);
        memcpy(pk_buf + 1, in.packed, (size_t)(n + 1) / 2);
        free(in.packed);
        in.packed = pk_buf + 1;
    }
    const int64_t m = n + out_off + 1; /* the value after the output stays untouched */
    float *wf = kc_f32(m, &s, 1.0f), *gf = kc_dup(wf, 4 * (size_t)m);
    uint16_t *wb = kc_bf16(m, &s, 1.0f), *gb = kc_dup(wb, 2 * (size_t)m);
    char what[128];
    long before = simt_launches();
    r->nf4_dequant(&kc_rctx, wf + out_off, DT_F32, in.packed, in.qabsmax, in.absmax2, offset, n, bs, bs2);
    kc_nf4_dequant(&kc_kctx, gf + out_off, DT_F32, in.packed, in.qabsmax, in.absmax2, offset, n, bs, bs2);
    snprintf(what, sizeof what, "nf4_dequant f32 n=%lld bs=%d/%d mis=%d", (long long)n, bs, bs2, mis);
    if (!tu_bits_eq(gf, wf, 4 * (size_t)m)) {
        fprintf(stderr, "  %s differs\n", what);
        CHECK(0);
    }
    r->nf4_dequant(&kc_rctx, wb + out_off, DT_BF16, in.packed, in.qabsmax, in.absmax2, offset, n, bs, bs2);
    kc_nf4_dequant(&kc_kctx, gb + out_off, DT_BF16, in.packed, in.qabsmax, in.absmax2, offset, n, bs, bs2);
    snprintf(what, sizeof what, "nf4_dequant bf16 n=%lld bs=%d/%d mis=%d", (long long)n, bs, bs2, mis);
    CHECK(kc_same_bf16(what, gb, wb, m, 0));
    CHECK(kc_kctx.err == 0);
    if (n > 0) KC_RAN(before);
    if (pk_buf) in.packed = pk_buf;
    free_in(in), free(wf), free(gf), free(wb), free(gb);
}

static void refused(void) {
    float out[4];
    uint8_t b[2] = {0x12, 0x34};
    float a2 = 1.0f;
    kc_kctx.err = 0;
    kc_nf4_dequant(&kc_kctx, out, DT_F16, b, b, &a2, 0.0f, 4, 64, 256);
    CHECK(kc_kctx.err == ERR_INTERNAL && strstr(kc_kctx.errmsg, "f32 or bf16") != NULL);
    kc_kctx.err = 0;
    kc_nf4_dequant(&kc_kctx, out, DT_F32, b, b, &a2, 0.0f, 4, 0, 256);
    CHECK(kc_kctx.err == ERR_INTERNAL && strstr(kc_kctx.errmsg, "blocks") != NULL);
    kc_kctx.err = 0, kc_kctx.errmsg[0] = 0;
}

int main(void) {
    const int64_t sizes[] = {0, 1, 2, 31, 62, 130, 257, 4098};
    const int bss[][2] = {{64, 256}, {1, 1}, {3, 5}, {7, 1}, {64, 5}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (size_t j = 0; j < sizeof bss / sizeof *bss; j++)
            for (int mis = 0; mis < 3; mis++) one_case(sizes[i], bss[j][0], bss[j][1], 0.0173f, mis);
    one_case(4098, 64, 256, 0.0f, 0);
    refused();
    long before = simt_launches(); /* a zero-size call with NULL buffers launches nothing */
    kc_nf4_dequant(&kc_kctx, NULL, DT_BF16, NULL, NULL, NULL, 0.0f, 0, 64, 256);
    CHECK(simt_launches() == before && kc_kctx.err == 0);
    /* a 7B MLP weight (gate / up: 14336 x 4096), blocks of 64 / 256 as bitsandbytes */
    one_case(14336LL * 4096, 64, 256, 0.0093f, 0);
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
