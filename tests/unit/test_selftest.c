/* test_selftest — the runtime self-test (backend/selftest.c) with ops_cpu_bf16 itself as the device (every op checked,
 * every value bit-identical) and with copies of that table where one op is broken on purpose: each is refused with a
 * message naming the op; an error of 1 bf16 ulp in an element-wise op is inside its stated tolerance, 2 ulp are not. */
#include <math.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/selftest.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "test.h"

static const ops *R;

/* the element of largest magnitude moved by k bf16 ulp (k > 0: away from zero) */
static void bump_largest(void *p, int64_t n, int k) {
    uint16_t *b = p;
    int64_t at = 0;
    for (int64_t i = 1; i < n; i++)
        if ((b[i] & 0x7fff) > (b[at] & 0x7fff)) at = i;
    b[at] = (uint16_t)(b[at] + k);
}

static void gelu_2ulp(opctx *c, void *y, const void *x, int64_t n) {
    R->gelu_fwd(c, y, x, n);
    bump_largest(y, n, 2);
}

static void gelu_1ulp_all(opctx *c, void *y, const void *x, int64_t n) {
    R->gelu_fwd(c, y, x, n);
    for (int64_t i = 0; i < n; i++) ((uint16_t *)y)[i] = (uint16_t)(((uint16_t *)y)[i] + 1);
}

/* the last input feature left out of the dot products */
static void linear_short(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K,
                         int64_t N) {
    uint16_t *xs = malloc(sizeof(uint16_t) * (size_t)(M * K));
    memcpy(xs, x, sizeof(uint16_t) * (size_t)(M * K));
    for (int64_t i = 0; i < M; i++) xs[i * K + K - 1] = 0;
    R->linear_fwd(c, y, xs, w, b, M, K, N);
    free(xs);
}

static void attn_never_causal(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                              const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    (void)causal;
    R->attn_fwd(c, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, 0);
}

/* dw overwritten instead of accumulated */
static void rmsnorm_bwd_overwrites(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w,
                                   const float *rstd, int64_t M, int64_t D) {
    memset(dw, 0, sizeof(float) * (size_t)D);
    R->rmsnorm_bwd(c, dx, dw, dy, x, w, rstd, M, D);
}

static void adamw_no_decay(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd,
                           float w1, float b2, float w2, float bc2, float eps, float neg_step) {
    (void)decay, (void)has_wd;
    R->adamw(c, p, g, m, v, n, 1.0f, 0, w1, b2, w2, bc2, eps, neg_step);
}

static void sumsq_restarts(opctx *c, double *out, const float *x, int64_t n) {
    *out = 0;
    R->sumsq(c, out, x, n);
}

static void dropout_other_key(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a,
                              uint32_t b, uint64_t c0) {
    const uint32_t k2[2] = {key[0] + 1, key[1]};
    R->dropout(c, y, x, n, p, k2, a, b, c0);
}

static void swiglu_fails(opctx *c, void *h, const void *g, const void *u, int64_t n) {
    R->swiglu_fwd(c, h, g, u, n);
    opctx_fail(c, ERR_INTERNAL, "launch failed: too many resources requested");
}

/* refused, with a message that names the op (and each of `also`) */
static void refused(const ops *t, const char *op, const char *also) {
    opctx c = {.device = 0, .act_dtype = DT_BF16, .threads = 1};
    char why[512];
    int rc = ops_selftest(t, &c, why, sizeof why);
    printf("  broken %s: rc %d: %s\n", op, rc, why);
    CHECK_EQ_INT(rc, ERR_INTERNAL);
    char want[64];
    snprintf(want, sizeof want, "op %s:", op);
    CHECK_CONTAINS(why, want);
    if (also) CHECK_CONTAINS(why, also);
    opctx_release(&c);
}

int main(void) {
    R = ops_cpu_bf16();
    opctx c = {.device = 0, .act_dtype = DT_BF16, .threads = 1};
    selftest_shape sh;
    selftest_result res;

    /* the reference against itself, at the default shapes and at larger ones (7B-like head dim, GQA 4:1) */
    selftest_shape_default(&sh);
    CHECK_EQ_INT(ops_selftest_ex(R, &c, &sh, 1, &res), ERR_OK);
    printf("cpu-bf16 vs itself: %d ops, %d failing, worst %.3g of the tolerance, %.3f s; %s\n", res.nops, res.nfail,
           res.worst_ratio, res.seconds, res.why);
    CHECK_EQ_INT(res.nops, SELFTEST_NOPS);
    CHECK(res.worst_ratio == 0.0); /* the same code on the same inputs: bit-identical */
    sh.m = 70, sh.k = 256, sh.nout = 96, sh.d = 512, sh.vocab = 1000, sh.nq = 8, sh.nkv = 2, sh.hd = 128;
    sh.prefix = 33, sh.n = 10001, sh.tile = 42;
    CHECK_EQ_INT(ops_selftest_ex(R, &c, &sh, 7, &res), ERR_OK);
    printf("cpu-bf16 vs itself, larger shapes: %d ops, %.3f s\n", res.nops, res.seconds);
    CHECK_EQ_INT(res.nops, SELFTEST_NOPS);

    ops t;
    t = *R, t.gelu_fwd = gelu_1ulp_all;
    char why[512];
    CHECK_EQ_INT(ops_selftest(&t, &c, why, sizeof why), ERR_OK); /* 1 ulp: inside the tolerance */
    if (why[0]) printf("  gelu +1 ulp: %s\n", why);
    t = *R, t.gelu_fwd = gelu_2ulp;
    refused(&t, "gelu_fwd", "beyond the tolerance");
    t = *R, t.linear_fwd = linear_short;
    refused(&t, "linear_fwd", "output y");
    t = *R, t.attn_fwd = attn_never_causal;
    refused(&t, "attn_fwd", "causal");
    t = *R, t.rmsnorm_bwd = rmsnorm_bwd_overwrites;
    refused(&t, "rmsnorm_bwd", "output dw");
    t = *R, t.adamw = adamw_no_decay;
    refused(&t, "adamw", "output p");
    t = *R, t.sumsq = sumsq_restarts;
    refused(&t, "sumsq", NULL);
    t = *R, t.dropout = dropout_other_key;
    refused(&t, "dropout", NULL);
    t = *R, t.swiglu_fwd = swiglu_fails;
    refused(&t, "swiglu_fwd", "too many resources requested");
    t = *R, t.linear_fwd = linear_short, t.adamw = adamw_no_decay;
    refused(&t, "linear_fwd", "also beyond tolerance: adamw");
    t = *R, t.embed_bwd = NULL;
    refused(&t, "embed_bwd", "missing");
    t = *R, t.copy_fence = NULL;
    CHECK_EQ_INT(ops_selftest(&t, &c, why, sizeof why), ERR_INTERNAL);
    CHECK_CONTAINS(why, "memory function copy_fence: missing");
    opctx_release(&c);
    TEST_MAIN_END();
}
