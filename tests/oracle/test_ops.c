/* Every CPU op, forward and backward, against PyTorch autograd (tests/fixtures/ops/ops.h5 from
 * tools/oracle/make_ops_fixtures.py). Tolerance: max|diff| / max|ref| <= 1e-5 for every output and
 * gradient. Backward ops accumulate, so each gradient buffer starts with a known offset that is
 * subtracted again: a backward that overwrites instead of adding fails. */
#include <string.h>

#include "backend/ops.h"
#include "fixture_h5.h"
#include "test.h"

/* Derivation: the reference is float64 autograd on the fp32 inputs (exact to 1e-16 here), so only our fp32
 * rounding counts. Each op is one sum or dot product of at most K = 50 terms (the log-softmax over Vv = 50; linear
 * K = 12 and dW over M = 7 rows, norms over D = 16, attention over <= 18 keys and hd = 16) in any summation order:
 * gamma_50 = 3.0e-6 relative to sum|terms|, plus at most 10 element-wise roundings (exp, log, rsqrt, division,
 * the accumulation into the 0.25 offset and its removal): 6e-7. Against max|ref| of the tensor, sum|terms| is
 * the condition factor: linear y/dx/dw 1.6/1.3/1.3, layernorm dx/dw 1.3/2.3, rmsnorm 1.2/1.8 for these
 * standard-normal inputs (the log-softmax: lse has an absolute, not relative, error gamma_50, so p and its
 * gradient keep gamma_50 relative; attention forward is a convex combination: 1; its backward has the
 * layernorm-like cancellation of dS = P (dP - sum P dP)). A factor <= 2.7 gives 2.7 x 3.6e-6 <= 1e-5. */
#define TOL 1e-5

static hid_t F;
static double worst_e;
static const ops *O;
static opctx C;

static float *rd(const char *grp, const char *name, size_t *n) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", grp, name);
    return fx_f32(F, path, n);
}

static float *zeros_offset(size_t n) { /* gradient buffers start at 0.25 to test accumulation */
    float *p = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) p[i] = 0.25f;
    return p;
}

static void check_grad(const char *what, float *g, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= 0.25f;
    double e = fx_relerr(g, ref, n);
    worst_e = fmax(worst_e, e);
    if (e > TOL) fprintf(stderr, "%s: rel err %.3g\n", what, e);
    CHECK(e <= TOL);
}

static void check_out(const char *what, const float *y, const float *ref, size_t n) {
    double e = fx_relerr(y, ref, n);
    worst_e = fmax(worst_e, e);
    if (e > TOL) fprintf(stderr, "%s: rel err %.3g\n", what, e);
    CHECK(e <= TOL);
}

static void test_linear(void) {
    size_t nx, nw, nb, ny;
    float *x = rd("linear", "x", &nx), *w = rd("linear", "w", &nw), *b = rd("linear", "b", &nb);
    float *yr = rd("linear", "y", &ny), *dy = rd("linear", "dy", &ny);
    float *dxr = rd("linear", "dx", &nx), *dwr = rd("linear", "dw", &nw), *dbr = rd("linear", "db", &nb);
    int64_t N = (int64_t)nb, K = (int64_t)(nw / nb), M = (int64_t)(nx / K);
    float *y = malloc(sizeof(float) * ny), *dx = zeros_offset(nx), *dw = zeros_offset(nw), *db = zeros_offset(nb);
    O->linear_fwd(&C, y, x, w, b, M, K, N);
    check_out("linear y", y, yr, ny);
    O->linear_bwd(&C, dx, dw, db, dy, x, w, M, K, N);
    check_grad("linear dx", dx, dxr, nx);
    check_grad("linear dw", dw, dwr, nw);
    check_grad("linear db", db, dbr, nb);
    free(x); free(w); free(b); free(yr); free(dy); free(dxr); free(dwr); free(dbr);
    free(y); free(dx); free(dw); free(db);
}

static void test_norms(void) {
    size_t nx, nw, ny;
    /* RMSNorm */
    float *x = rd("rmsnorm", "x", &nx), *w = rd("rmsnorm", "w", &nw), *yr = rd("rmsnorm", "y", &ny);
    float *dy = rd("rmsnorm", "dy", &ny), *dxr = rd("rmsnorm", "dx", &nx), *dwr = rd("rmsnorm", "dw", &nw);
    int64_t D = (int64_t)nw, M = (int64_t)(nx / nw);
    float *y = malloc(sizeof(float) * ny), *rstd = malloc(sizeof(float) * M), *mean = malloc(sizeof(float) * M);
    float *dx = zeros_offset(nx), *dw = zeros_offset(nw);
    O->rmsnorm_fwd(&C, y, rstd, x, w, M, D, 1e-5f);
    check_out("rmsnorm y", y, yr, ny);
    O->rmsnorm_bwd(&C, dx, dw, dy, x, w, rstd, M, D);
    check_grad("rmsnorm dx", dx, dxr, nx);
    check_grad("rmsnorm dw", dw, dwr, nw);
    free(x); free(w); free(yr); free(dy); free(dxr); free(dwr); free(dx); free(dw);
    /* LayerNorm */
    size_t nb;
    x = rd("layernorm", "x", &nx); w = rd("layernorm", "w", &nw); yr = rd("layernorm", "y", &ny);
    float *b = rd("layernorm", "b", &nb), *dbr = rd("layernorm", "db", &nb);
    dy = rd("layernorm", "dy", &ny); dxr = rd("layernorm", "dx", &nx); dwr = rd("layernorm", "dw", &nw);
    dx = zeros_offset(nx); dw = zeros_offset(nw);
    float *db = zeros_offset(nb);
    O->layernorm_fwd(&C, y, mean, rstd, x, w, b, M, D, 1e-5f);
    check_out("layernorm y", y, yr, ny);
    O->layernorm_bwd(&C, dx, dw, db, dy, x, w, mean, rstd, M, D);
    check_grad("layernorm dx", dx, dxr, nx);
    check_grad("layernorm dw", dw, dwr, nw);
    check_grad("layernorm db", db, dbr, nb);
    free(x); free(w); free(yr); free(dy); free(dxr); free(dwr); free(dx); free(dw);
    free(b); free(dbr); free(db); free(y); free(rstd); free(mean);
}

static void test_rope(void) {
    size_t nx, ny, np;
    float *x = rd("rope", "x", &nx), *yr = rd("rope", "y", &ny), *dy = rd("rope", "dy", &ny);
    float *dxr = rd("rope", "dx", &nx);
    int32_t *pos = fx_i32(F, "rope/pos", &np);
    int nhead = (int)fx_attr_d(F, "rope", "nhead"), hd = (int)fx_attr_d(F, "rope", "hd");
    float theta = (float)fx_attr_d(F, "rope", "theta");
    O->rope_fwd(&C, x, pos, (int64_t)np, nhead, hd, theta);
    check_out("rope y", x, yr, ny);
    O->rope_bwd(&C, dy, pos, (int64_t)np, nhead, hd, theta);
    check_out("rope dx", dy, dxr, nx);
    free(x); free(yr); free(dy); free(dxr); free(pos);
}

static void test_attn(const char *g) {
    size_t nq_, nk_, ny, ns;
    float *q = rd(g, "q", &nq_), *k = rd(g, "k", &nk_), *v = rd(g, "v", &nk_);
    float *yr = rd(g, "y", &ny), *dy = rd(g, "dy", &ny);
    float *dqr = rd(g, "dq", &nq_), *dkr = rd(g, "dk", &nk_), *dvr = rd(g, "dv", &nk_);
    char path[128];
    snprintf(path, sizeof path, "%s/seqs", g);
    int32_t *sv = fx_i32(F, path, &ns);
    int nseq = (int)(ns / 4);
    seq_desc seqs[16];
    for (int i = 0; i < nseq; i++)
        seqs[i] = (seq_desc){sv[4 * i], sv[4 * i + 1], sv[4 * i + 2], sv[4 * i + 3]};
    int nq = (int)fx_attr_d(F, g, "nq"), nkv = (int)fx_attr_d(F, g, "nkv"), hd = (int)fx_attr_d(F, g, "hd");
    int causal = (int)fx_attr_d(F, g, "causal");
    int64_t ntok = (int64_t)(nq_ / (size_t)(nq * hd));
    float *y = malloc(sizeof(float) * ny), *lse = malloc(sizeof(float) * ntok * nq);
    float *dq = zeros_offset(nq_), *dk = zeros_offset(nk_), *dv = zeros_offset(nk_);
    O->attn_fwd(&C, y, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
    check_out(g, y, yr, ny);
    O->attn_bwd(&C, dq, dk, dv, dy, y, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
    check_grad("attn dq", dq, dqr, nq_);
    check_grad("attn dk", dk, dkr, nk_);
    check_grad("attn dv", dv, dvr, nk_);
    free(q); free(k); free(v); free(yr); free(dy); free(dqr); free(dkr); free(dvr); free(sv);
    free(y); free(lse); free(dq); free(dk); free(dv);
}

static void test_elementwise(void) {
    size_t n;
    const char *groups[2] = {"gelu", "quick_gelu"};
    for (int gi = 0; gi < 2; gi++) {
        const char *g = groups[gi];
        float *x = rd(g, "x", &n), *yr = rd(g, "y", &n), *dy = rd(g, "dy", &n), *dxr = rd(g, "dx", &n);
        float *y = malloc(sizeof(float) * n), *dx = zeros_offset(n);
        if (gi == 0) { O->gelu_fwd(&C, y, x, (int64_t)n); O->gelu_bwd(&C, dx, dy, x, (int64_t)n); }
        else { O->quick_gelu_fwd(&C, y, x, (int64_t)n); O->quick_gelu_bwd(&C, dx, dy, x, (int64_t)n); }
        check_out(g, y, yr, n);
        check_grad(g, dx, dxr, n);
        free(x); free(yr); free(dy); free(dxr); free(y); free(dx);
    }
    float *g = rd("swiglu", "gate", &n), *u = rd("swiglu", "up", &n), *yr = rd("swiglu", "y", &n);
    float *dy = rd("swiglu", "dy", &n), *dgr = rd("swiglu", "dgate", &n), *dur = rd("swiglu", "dup", &n);
    float *y = malloc(sizeof(float) * n), *dg = zeros_offset(n), *du = zeros_offset(n);
    O->swiglu_fwd(&C, y, g, u, (int64_t)n);
    check_out("swiglu", y, yr, n);
    O->swiglu_bwd(&C, dg, du, dy, g, u, (int64_t)n);
    check_grad("swiglu dgate", dg, dgr, n);
    check_grad("swiglu dup", du, dur, n);
    free(g); free(u); free(yr); free(dy); free(dgr); free(dur); free(y); free(dg); free(du);
}

static void test_logprob(void) {
    size_t nl, M, nd;
    float *logits = rd("logprob", "logits", &nl), *lpr = rd("logprob", "logp", &M);
    float *dy = rd("logprob", "dy", &M), *dlr = rd("logprob", "dlogits", &nd);
    int32_t *labels = fx_i32(F, "logprob/labels", &M);
    int64_t V = (int64_t)(nl / M);
    float *lp = malloc(sizeof(float) * M), *lse = malloc(sizeof(float) * M), *dl = malloc(sizeof(float) * nl);
    O->logprob_fwd(&C, lp, lse, logits, labels, (int64_t)M, V);
    check_out("logprob", lp, lpr, M);
    O->logprob_bwd(&C, dl, dy, lse, logits, labels, (int64_t)M, V);
    check_out("logprob dlogits", dl, dlr, nl);
    free(logits); free(lpr); free(dy); free(dlr); free(labels); free(lp); free(lse); free(dl);
}

static void test_embed(void) {
    /* exact: rows copied forward; backward adds rows only where the mask allows */
    float table[4 * 3] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32}, y[3 * 3], dt[12] = {0};
    int32_t ids[3] = {2, 0, 2};
    uint8_t mask[4] = {0, 0, 1, 0};
    float dy[9] = {1, 1, 1, 2, 2, 2, 3, 3, 3};
    O->embed_fwd(&C, y, table, ids, 3, 3);
    CHECK(y[0] == 20 && y[4] == 1 && y[8] == 22);
    O->embed_bwd(&C, dt, dy, ids, mask, 3, 3);
    CHECK(dt[6] == 4 && dt[0] == 0 && dt[3] == 0);
}

int main(void) {
    F = fx_open(test_fixture("ops/ops.h5"));
    O = ops_cpu();
    memset(&C, 0, sizeof C);
    test_linear();
    test_norms();
    test_rope();
    test_attn("attn_causal_prefix");
    test_attn("attn_full");
    test_elementwise();
    test_logprob();
    test_embed();
    H5Fclose(F);
    printf("ops: worst max|diff|/max|ref| %.3g (tol %g)\n", worst_e, TOL);
    TEST_MAIN_END();
}
