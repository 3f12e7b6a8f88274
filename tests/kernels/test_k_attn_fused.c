/* test_k_attn_fused — the fused attention's glue (kernels/attn_fused.cu: the segments of backend/attn_fused.h, the
 * copies into cuDNN's padded layout, the Stats <-> lse transposes, the gradient additions, the fallback) run by the
 * CPU executor, with cudnn_attn.h's contract played by attn_fused.cu's plain-loop stand-in, against kernels/attn.cu's
 * version (the reference on the GPU) through the same self-test that decides on a GPU (backend/attn_selftest.c,
 * its tolerances derived there): GQA, packed sequences, causal with a shared prefix, not causal; the 7B decoder's
 * heads (32 / 8 of 128) and the tower's (16 / 16 of 64). Then the glue must be able to fail: a table whose forward
 * reads the wrong prefix rows (attn.cu's forward with the prefix dropped) and a backward that adds a gradient twice
 * are caught; a call cuDNN cannot take (head dimension 12) runs attn.cu's version, bit for bit, and is counted as a
 * fallback with its reason. */
#include "backend/attn_fused.h"
#include "cudnn_attn.h"
#include "kcheck.h"

static const ops *base(void) { return ops_simt(); }

static ops fused_table(void) {
    ops t = *base();
    t.name = "simt-fused";
    t.attn_fwd = kc_attn_fused_fwd;
    t.attn_bwd = kc_attn_fused_bwd;
    return t;
}

/* broken on purpose: the backward adds every gradient twice */
static void bwd_twice(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                      const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok,
                      int nq, int nkv, int hd, int causal) {
    kc_attn_fused_bwd(c, dq, dk, dv, dout, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
    kc_attn_fused_bwd(c, dq, dk, dv, dout, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
}

/* broken on purpose: the forward without the prefix (every sequence's own keys only) */
static void fwd_no_prefix(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                          const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    seq_desc h[8];
    for (int s = 0; s < nseq && s < 8; s++) h[s] = seqs[s], h[s].prefix = -1; /* host memory in the executor */
    kc_attn_fused_fwd(c, out, lse, q, k, v, h, nseq, ntok, nq, nkv, hd, causal);
}

int main(void) {
    ops f = fused_table();
    char why[600];
    double worst = 0;
    const struct { int nq, nkv, hd, prefix; } shapes[] = {{4, 2, 16, 6}, {8, 2, 128, 70}, {32, 8, 128, 45},
                                                          {16, 16, 64, 40}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        long before = simt_launches(), c0 = kc_attn_fused_count[0], c1 = kc_attn_fused_count[1];
        int rc = afz_selftest(base(), &f, &kc_kctx, shapes[i].nq, shapes[i].nkv, shapes[i].hd, shapes[i].prefix,
                              (uint64_t)(11 + i), why, sizeof why, &worst);
        printf("%d / %d heads of %d, prefix %d: %s, worst %.3f of the bound, %ld fused calls, %ld fallbacks%s%s\n",
               shapes[i].nq, shapes[i].nkv, shapes[i].hd, shapes[i].prefix, rc ? "FAIL" : "ok", worst,
               kc_attn_fused_count[0] - c0, kc_attn_fused_count[1] - c1, rc ? ": " : "", rc ? why : "");
        CHECK_EQ_INT(rc, 0);
        CHECK(worst > 0);                                /* compared, not vacuous */
        CHECK_EQ_INT(kc_attn_fused_count[0] - c0, 4);   /* forward and backward of both layouts, all by "cuDNN" */
        CHECK_EQ_INT(kc_attn_fused_count[1] - c1, 0);
        KC_RAN(before);
        opctx_release(&kc_kctx);
    }
    /* the self-test catches a glue bug: a gradient added twice, a prefix not seen */
    ops twice = f;
    twice.attn_bwd = bwd_twice;
    CHECK(afz_selftest(base(), &twice, &kc_kctx, 4, 2, 16, 6, 5, why, sizeof why, NULL) != 0);
    CHECK_CONTAINS(why, "causal, shared prefix: d");
    printf("a gradient added twice: %s\n", why);
    ops nopre = f;
    nopre.attn_fwd = fwd_no_prefix;
    CHECK(afz_selftest(base(), &nopre, &kc_kctx, 4, 2, 16, 6, 5, why, sizeof why, NULL) != 0);
    CHECK_CONTAINS(why, "causal, shared prefix: out");
    printf("the prefix not seen: %s\n", why);
    opctx_release(&kc_kctx);

    /* a head dimension cuDNN does not take: attn.cu's version runs, bit for bit, and the fallback is counted */
    {
        const int nq = 4, nkv = 2, hd = 12;
        const seq_desc sq[3] = {{0, 9, 0, -1}, {9, 5, 9, 0}, {14, 3, 9, 0}};
        const int64_t T = 17, nqv = T * nq * hd, nkvv = T * nkv * hd;
        uint64_t s = 77;
        uint16_t *q = kc_bf16(nqv, &s, 1.0f), *k = kc_bf16(nkvv, &s, 1.0f), *v = kc_bf16(nkvv, &s, 1.0f);
        uint16_t *o1 = kc_bf16(nqv, &s, 1.0f), *o2 = kc_dup(o1, 2 * (size_t)nqv);
        float *l1 = kc_f32(T * nq, &s, 1.0f), *l2 = kc_dup(l1, 4 * (size_t)(T * nq));
        long c1 = kc_attn_fused_count[1];
        kc_attn_fwd(&kc_rctx, o1, l1, q, k, v, sq, 3, T, nq, nkv, hd, 1);
        kc_attn_fused_fwd(&kc_kctx, o2, l2, q, k, v, sq, 3, T, nq, nkv, hd, 1);
        CHECK(kc_kctx.err == 0);
        CHECK(kc_same_bf16("fallback out", o2, o1, nqv, 0));
        CHECK(!memcmp(l1, l2, 4 * (size_t)(T * nq)));
        CHECK_EQ_INT(kc_attn_fused_count[1] - c1, 1);
        CHECK_CONTAINS(kc_attn_fused_why, "forward: head dimension 12");
        printf("fallback: %s\n", kc_attn_fused_why);
        free(q), free(k), free(v), free(o1), free(o2), free(l1), free(l2);
        opctx_release(&kc_kctx);
        opctx_release(&kc_rctx);
    }
    TEST_MAIN_END();
}
