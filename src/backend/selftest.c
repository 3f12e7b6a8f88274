/* selftest — every op of a table against ops_cpu_bf16 on the same random inputs (see selftest.h).
 *
 * Each check: inputs made on the host, a copy uploaded to the device under test (its mem_alloc / upload), the
 * reference op run on the host copies, the device op on the device copies, the outputs downloaded and compared with
 * a per-element bound: bound_i = extra_i + rel |want_i| + ulps * ulp(max(|got_i|, |want_i|)) for bf16 outputs; a
 * bound of 0 means bit-identical. extra_i is derived from the magnitudes of the terms of element i, computed on the
 * host from the inputs before the ops run (they may be overwritten in place).
 *
 * Error model (u = 2^-24):
 *   G(n) = gamma_n(u) + gamma_n(2u) = 3 n u / (1 - 3 n u): a sum of n terms in any order differs from the exact sum
 *          by at most gamma_n times the sum of |terms| (Higham, Lemma 3.1); the reference rounds to nearest (u), the
 *          device may truncate in tensor-core accumulation (2u). Each element-wise rounding of a formula is counted as
 *          one more term (n + k).
 *   LIBM = 32 u: the relative difference of one expf / erff / logf / sincosf / powf between a GPU's implementation
 *          (CUDA guide: 2 ulp for expf, erff, sinf, cosf; __expf-style fast paths more for large arguments) and glibc.
 *   ELT = 64 u: the difference of an element-wise formula of a few such calls and products (each <= LIBM, FMA
 *          contraction removes a rounding), relative to the magnitudes of its terms; it matters only where an
 *          accumulation or a difference cancels (e.g. gelu's 1 + erf(x / sqrt 2) for x << 0).
 *   U16 = 2^-8: bf16's unit roundoff. The CUDA attention (kernels/attn.cu, as FlashAttention and cuDNN do) feeds the
 *          probabilities P and the score gradients dS to its GEMMs as bf16, where the CPU bf16 mode keeps them fp32:
 *          out = sum_j p_j v_j moves by at most U16 sum_j p_j |v_j| <= U16 max|v|; dS by 2 U16 relative (p and dS
 *          each rounded once); dV = P^T dO by U16 times its sum of |terms|.
 * A bf16 output then adds 1 ulp: two fp32 values that differ by less than that can round to neighbours. */
#include "backend/selftest.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/nf4_tables.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"

#define U 0x1p-24
#define LIBM (32.0 * U)
#define ELT (64.0 * U)
#define U16 0x1p-8

static double G(double n) { return 3.0 * n * U / (1.0 - 3.0 * n * U); }

/* the op slots of the table, in ops.h order; SELFTEST_NOPS of them */
static const char *const OP_NAMES[] = {
    "linear_fwd", "linear_bwd", "rmsnorm_fwd", "rmsnorm_bwd", "layernorm_fwd", "layernorm_bwd", "rope_fwd",
    "rope_bwd", "attn_fwd", "attn_bwd", "gelu_fwd", "gelu_bwd", "quick_gelu_fwd", "quick_gelu_bwd", "swiglu_fwd",
    "swiglu_bwd", "add_inplace", "embed_fwd", "embed_bwd", "logprob_fwd", "logprob_bwd", "matmul_acc", "scale",
    "zero", "copy", "dropout", "gather_rows", "scatter_add_rows", "gather_rows_fill", "scatter_rows", "add",
    "nf4_dequant", "im2col", "vis_embed", "cast", "sumsq", "adamw"};
_Static_assert(sizeof OP_NAMES / sizeof OP_NAMES[0] == SELFTEST_NOPS, "one name per op");
/* a new op in ops.h changes the size of the op part of the table: it needs a check here */
_Static_assert((offsetof(ops, mem_alloc) - offsetof(ops, linear_fwd)) / sizeof(void (*)(void)) == SELFTEST_NOPS,
               "every op of backend/ops.h has a check in selftest.c");

typedef struct tb {
    void *d, *h;
    size_t bytes;
} tb;

typedef struct st {
    const ops *dev, *ref;
    opctx *dc, rc;
    uint64_t rng;
    tb b[40];
    int nb, oom;
    const char *op;
    int op_failed;
    char used[SELFTEST_NOPS];
    char also[256];
    const selftest_shape *sh;
    selftest_result *res;
} st;

/* ---- inputs --------------------------------------------------------------------------------------------------- */

static float urand(st *s) { /* uniform in [-1, 1) */
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(s->rng >> 40) / (double)(1ULL << 23) - 1.0);
}

static void fail(st *s, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!s->op_failed) {
        s->op_failed = 1;
        s->res->nfail++;
        if (s->res->nfail > 1) {
            size_t n = strlen(s->also);
            snprintf(s->also + n, sizeof s->also - n, "%s%s", n ? ", " : "", s->op);
        }
    }
    if (!s->res->why[0]) snprintf(s->res->why, sizeof s->res->why, "op %s: %s", s->op, msg);
}

/* a buffer of `bytes` on both sides, both holding `init` (zeros when NULL); returns the device pointer */
static void *buf(st *s, size_t bytes, const void *init, void **host) {
    void *h = mem_calloc(bytes ? bytes : 1, 1, "selftest: host buffer");
    if (init) memcpy(h, init, bytes);
    *host = h;
    void *d = s->dev->mem_alloc(s->dc, bytes ? bytes : 1, MEM_DEVICE, "selftest: device buffer");
    if (!d) {
        if (!s->oom) fail(s, "cannot allocate %zu bytes of device memory: %s", bytes, s->dc->errmsg);
        s->oom = 1;
        s->b[s->nb++] = (tb){NULL, h, bytes};
        return h; /* never used: the check stops at ready() */
    }
    s->dev->upload(s->dc, d, h, bytes);
    s->b[s->nb++] = (tb){d, h, bytes};
    return d;
}

static void *rbf16(st *s, int64_t n, float scale, uint16_t **h) {
    uint16_t *t = mem_alloc(sizeof(uint16_t) * (size_t)(n ? n : 1), "selftest: inputs");
    for (int64_t i = 0; i < n; i++) t[i] = h5x_f32_to_bf16(scale * urand(s));
    void *d = buf(s, sizeof(uint16_t) * (size_t)n, t, (void **)h);
    free(t);
    return d;
}

static void *rf32(st *s, int64_t n, float scale, float shift, float **h) {
    float *t = mem_alloc(sizeof(float) * (size_t)(n ? n : 1), "selftest: inputs");
    for (int64_t i = 0; i < n; i++) t[i] = shift + scale * urand(s);
    void *d = buf(s, sizeof(float) * (size_t)n, t, (void **)h);
    free(t);
    return d;
}

static double *dzero(int64_t n) { return mem_calloc((size_t)(n ? n : 1), sizeof(double), "selftest: bounds"); }
static double w16(uint16_t b) { return (double)h5x_bf16_to_f32(b); }

static int begin(st *s, const char *name) {
    s->op = name;
    s->op_failed = 0;
    s->oom = 0;
    for (int i = 0; i < SELFTEST_NOPS; i++)
        if (!strcmp(OP_NAMES[i], name)) {
            if (!s->used[i]) s->res->nops++;
            s->used[i] = 1;
        }
    return 1;
}

/* the device ran the op: its sticky error, if any, is the op's failure (cleared so that the next op can run) */
static int devok(st *s) {
    int e = s->dev->sync(s->dc);
    if (!e) return 1;
    fail(s, "device error %d: %s", e, s->dc->errmsg);
    s->dc->err = 0;
    s->dc->errmsg[0] = 0;
    return 0;
}

static void end(st *s) {
    for (int i = 0; i < s->nb; i++) {
        if (s->b[i].d) s->dev->mem_free(s->dc, s->b[i].d, MEM_DEVICE);
        free(s->b[i].h);
    }
    s->nb = 0;
}

/* ---- comparison ----------------------------------------------------------------------------------------------- */

enum { K_BF16, K_F32, K_F64 };

static double ulp16(double a) { /* one bf16 unit at magnitude a */
    a = fabs(a);
    if (!(a >= 0x1p-126)) return 0x1p-133;
    int e;
    frexp(a, &e);
    return ldexp(1.0, e - 8);
}

static double val(int kind, const void *p, int64_t i) {
    if (kind == K_BF16) return w16(((const uint16_t *)p)[i]);
    if (kind == K_F32) return ((const float *)p)[i];
    return ((const double *)p)[i];
}

static int same_bits(int kind, const void *a, const void *b, int64_t i) {
    size_t w = kind == K_BF16 ? 2 : kind == K_F32 ? 4 : 8;
    return !memcmp((const char *)a + w * (size_t)i, (const char *)b + w * (size_t)i, w);
}

/* the device's output `d` (downloaded) against the reference's `want` (host) */
static void cmp(st *s, const char *out, int kind, const void *d, const void *want, int64_t n, int ulps, double rel,
                const double *extra) {
    if (s->op_failed && s->oom) return;
    size_t w = kind == K_BF16 ? 2 : kind == K_F32 ? 4 : 8;
    void *got = mem_alloc(w * (size_t)(n ? n : 1), "selftest: downloaded output");
    s->dev->download(s->dc, got, d, w * (size_t)n);
    if (!devok(s)) {
        free(got);
        return;
    }
    int64_t bad = 0, worst = -1;
    double wr = -1, wd = 0, wb = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = val(kind, got, i), r = val(kind, want, i);
        double bound = (extra ? extra[i] : 0.0) + rel * fabs(r);
        if (kind == K_BF16 && ulps) bound += ulps * ulp16(fmax(fabs(g), fabs(r)));
        double diff = fabs(g - r), ratio;
        if (isnan(g) || isnan(r)) ratio = isnan(g) && isnan(r) ? 0.0 : INFINITY;
        else if (bound == 0.0) ratio = same_bits(kind, got, want, i) ? 0.0 : INFINITY;
        else ratio = diff / bound;
        if (ratio > 1.0) bad++;
        if (ratio > wr) wr = ratio, worst = i, wd = diff, wb = bound;
    }
    if (wr > s->res->worst_ratio && isfinite(wr) && wr <= 1.0) {
        s->res->worst_ratio = wr;
        snprintf(s->res->worst_op, sizeof s->res->worst_op, "%s", s->op);
    }
    if (bad) {
        if (wb == 0.0)
            fail(s, "output %s: %lld of %lld values differ from the CPU bf16 reference (expected bit-identical); "
                 "worst at [%lld]: %.9g, reference %.9g", out, (long long)bad, (long long)n, (long long)worst,
                 val(kind, got, worst), val(kind, want, worst));
        else
            fail(s, "output %s: %lld of %lld values beyond the tolerance; worst at [%lld]: %.9g, CPU bf16 reference "
                 "%.9g, |difference| %.3g > bound %.3g", out, (long long)bad, (long long)n, (long long)worst,
                 val(kind, got, worst), val(kind, want, worst), wd, wb);
        s->res->worst_ratio = INFINITY;
        snprintf(s->res->worst_op, sizeof s->res->worst_op, "%s", s->op);
    }
    free(got);
}

#define READY(s)                                                                                                     \
    do {                                                                                                             \
        if ((s)->oom) {                                                                                              \
            end(s);                                                                                                  \
            return;                                                                                                  \
        }                                                                                                            \
    } while (0)

/* ---- linear ----------------------------------------------------------------------------------------------------- */

static void t_linear(st *s) {
    const int64_t M = s->sh->m, K = s->sh->k, N = s->sh->nout;
    uint16_t *x, *w, *y, *dy, *dx;
    float *b, *dw, *db;
    begin(s, "linear_fwd");
    void *X = rbf16(s, M * K, 1.0f, &x), *W = rbf16(s, N * K, 0.5f, &w), *B = rf32(s, N, 0.5f, 0.0f, &b);
    void *Y = rbf16(s, M * N, 1.0f, &y);
    READY(s);
    double *ey = dzero(M * N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double a = fabs(b[j]);
            for (int64_t k = 0; k < K; k++) a += fabs(w16(x[i * K + k]) * w16(w[j * K + k]));
            ey[i * N + j] = G((double)K + 1) * a;
        }
    s->ref->linear_fwd(&s->rc, y, x, w, b, M, K, N);
    s->dev->linear_fwd(s->dc, Y, X, W, B, M, K, N);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, M * N, 1, 0.0, ey);
    free(ey);
    end(s);

    begin(s, "linear_bwd");
    X = rbf16(s, M * K, 1.0f, &x), W = rbf16(s, N * K, 0.5f, &w), Y = rbf16(s, M * N, 1.0f, &dy);
    void *DX = rbf16(s, M * K, 0.5f, &dx), *DW = rf32(s, N * K, 0.5f, 0.0f, &dw), *DB = rf32(s, N, 0.5f, 0.0f, &db);
    READY(s);
    double *edx = dzero(M * K), *edw = dzero(N * K), *edb = dzero(N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) {
            double a = fabs(w16(dx[i * K + k]));
            for (int64_t j = 0; j < N; j++) a += fabs(w16(dy[i * N + j]) * w16(w[j * K + k]));
            edx[i * K + k] = G((double)N + 1) * a;
        }
    for (int64_t j = 0; j < N; j++) {
        double c = fabs(db[j]);
        for (int64_t i = 0; i < M; i++) c += fabs(w16(dy[i * N + j]));
        edb[j] = G((double)M + 1) * c;
        for (int64_t k = 0; k < K; k++) {
            double a = fabs(dw[j * K + k]);
            for (int64_t i = 0; i < M; i++) a += fabs(w16(dy[i * N + j]) * w16(x[i * K + k]));
            edw[j * K + k] = G((double)M + 1) * a;
        }
    }
    s->ref->linear_bwd(&s->rc, dx, dw, db, dy, x, w, M, K, N);
    s->dev->linear_bwd(s->dc, DX, DW, DB, Y, X, W, M, K, N);
    if (devok(s)) {
        cmp(s, "dx", K_BF16, DX, dx, M * K, 1, 0.0, edx);
        cmp(s, "dw", K_F32, DW, dw, N * K, 0, 0.0, edw);
        cmp(s, "db", K_F32, DB, db, N, 0, 0.0, edb);
    }
    free(edx), free(edw), free(edb);
    end(s);

    begin(s, "matmul_acc");
    const float alpha = 0.75f;
    X = rbf16(s, M * K, 1.0f, &x), W = rbf16(s, N * K, 0.5f, &w), Y = rbf16(s, M * N, 1.0f, &y);
    READY(s);
    ey = dzero(M * N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double a = 0;
            for (int64_t k = 0; k < K; k++) a += fabs(w16(x[i * K + k]) * w16(w[j * K + k]));
            ey[i * N + j] = G((double)K + 2) * (fabs(w16(y[i * N + j])) + alpha * a);
        }
    s->ref->matmul_acc(&s->rc, y, x, w, M, K, N, alpha);
    s->dev->matmul_acc(s->dc, Y, X, W, M, K, N, alpha);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, M * N, 1, 0.0, ey);
    free(ey);
    end(s);
}

/* ---- norms ------------------------------------------------------------------------------------------------------ */

static void t_rmsnorm(st *s) {
    const int64_t M = s->sh->m, D = s->sh->d;
    const float eps = 1e-5f;
    uint16_t *x, *y, *dx, *dy;
    float *w, *r, *dw;
    begin(s, "rmsnorm_fwd");
    void *X = rbf16(s, M * D, 2.0f, &x), *W = rf32(s, D, 0.5f, 1.0f, &w), *Y = rbf16(s, M * D, 1.0f, &y);
    void *R = rf32(s, M, 1.0f, 0.0f, &r);
    READY(s);
    s->ref->rmsnorm_fwd(&s->rc, y, r, x, w, M, D, eps);
    s->dev->rmsnorm_fwd(s->dc, Y, R, X, W, M, D, eps);
    /* rstd: a sum of D positive squares (G(D) relative), /D, +eps, sqrt (halves it), 1/ or a 2-ulp rsqrtf: 8 u */
    double rel_r = G((double)D) / 2 + 8 * U, *ey = dzero(M * D);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < D; j++) ey[i * D + j] = fabs(w[j] * w16(x[i * D + j]) * r[i]) * (rel_r + 4 * U);
    if (devok(s)) {
        cmp(s, "rstd", K_F32, R, r, M, 0, rel_r, NULL);
        cmp(s, "y", K_BF16, Y, y, M * D, 1, 0.0, ey);
    }
    free(ey);
    float *rstd = mem_alloc(sizeof(float) * (size_t)M, "selftest: rstd");
    memcpy(rstd, r, sizeof(float) * (size_t)M);
    end(s);

    begin(s, "rmsnorm_bwd");
    X = rbf16(s, M * D, 2.0f, &x), W = rf32(s, D, 0.5f, 1.0f, &w);
    void *DY = rbf16(s, M * D, 1.0f, &dy), *DX = rbf16(s, M * D, 0.5f, &dx), *DW = rf32(s, D, 0.5f, 0.0f, &dw);
    R = buf(s, sizeof(float) * (size_t)M, rstd, (void **)&r);
    READY(s);
    double *edx = dzero(M * D), *edw = dzero(D);
    for (int64_t j = 0; j < D; j++) edw[j] = fabs(dw[j]);
    for (int64_t i = 0; i < M; i++) {
        double ri = r[i], dot = 0;
        for (int64_t j = 0; j < D; j++) dot += fabs(w16(dy[i * D + j]) * w[j] * w16(x[i * D + j]) * ri);
        dot /= (double)D;
        for (int64_t j = 0; j < D; j++) {
            double xh = fabs(w16(x[i * D + j]) * ri);
            edx[i * D + j] = G((double)D + 8) * (fabs(w16(dx[i * D + j])) + ri * (fabs(w16(dy[i * D + j]) * w[j]) + xh * dot));
            edw[j] += fabs(w16(dy[i * D + j])) * xh;
        }
    }
    for (int64_t j = 0; j < D; j++) edw[j] *= G((double)M + 4);
    s->ref->rmsnorm_bwd(&s->rc, dx, dw, dy, x, w, r, M, D);
    s->dev->rmsnorm_bwd(s->dc, DX, DW, DY, X, W, R, M, D);
    if (devok(s)) {
        cmp(s, "dx", K_BF16, DX, dx, M * D, 1, 0.0, edx);
        cmp(s, "dw", K_F32, DW, dw, D, 0, 0.0, edw);
    }
    free(edx), free(edw), free(rstd);
    end(s);
}

static void t_layernorm(st *s) {
    const int64_t M = s->sh->m, D = s->sh->d;
    const float eps = 1e-5f;
    uint16_t *x, *y, *dx, *dy;
    float *w, *b, *mu, *r, *dw, *db;
    begin(s, "layernorm_fwd");
    void *X = rbf16(s, M * D, 2.0f, &x), *W = rf32(s, D, 0.5f, 1.0f, &w), *B = rf32(s, D, 0.5f, 0.0f, &b);
    void *Y = rbf16(s, M * D, 1.0f, &y), *MU = rf32(s, M, 1.0f, 0.0f, &mu), *R = rf32(s, M, 1.0f, 0.0f, &r);
    READY(s);
    s->ref->layernorm_fwd(&s->rc, y, mu, r, x, w, b, M, D, eps);
    s->dev->layernorm_fwd(s->dc, Y, MU, R, X, W, B, M, D, eps);
    double *ey = dzero(M * D), *emu = dzero(M), *er = dzero(M);
    for (int64_t i = 0; i < M; i++) {
        double sa = 0, s2 = 0, m = 0;
        for (int64_t j = 0; j < D; j++) sa += fabs(w16(x[i * D + j])), s2 += w16(x[i * D + j]) * w16(x[i * D + j]), m += w16(x[i * D + j]);
        m /= (double)D;
        double var = s2 / (double)D - m * m;
        /* mean: D terms and a division; var: two-pass or one-pass (E[x^2] - mean^2), relative to E[x^2] / var;
         * rstd: half of var's, plus sqrt, 1/ or a 2-ulp rsqrtf */
        double dmu = G((double)D + 1) * sa / (double)D;
        double rel_r = G((double)D + 3) * (s2 / (double)D) / (var + eps) + 4 * U;
        emu[i] = dmu;
        er[i] = rel_r * fabs(r[i]);
        for (int64_t j = 0; j < D; j++) {
            double xc = fabs(w16(x[i * D + j]) - m);
            ey[i * D + j] = xc * r[i] * fabs(w[j]) * (rel_r + 4 * U) + r[i] * fabs(w[j]) * dmu +
                            3 * U * (xc * r[i] * fabs(w[j]) + fabs(b[j]));
        }
    }
    if (devok(s)) {
        cmp(s, "mean", K_F32, MU, mu, M, 0, 0.0, emu);
        cmp(s, "rstd", K_F32, R, r, M, 0, 0.0, er);
        cmp(s, "y", K_BF16, Y, y, M * D, 1, 0.0, ey);
    }
    free(ey), free(emu), free(er);
    float *mean = mem_alloc(sizeof(float) * (size_t)M * 2, "selftest: mean, rstd");
    memcpy(mean, mu, sizeof(float) * (size_t)M);
    memcpy(mean + M, r, sizeof(float) * (size_t)M);
    end(s);

    begin(s, "layernorm_bwd");
    X = rbf16(s, M * D, 2.0f, &x), W = rf32(s, D, 0.5f, 1.0f, &w);
    void *DY = rbf16(s, M * D, 1.0f, &dy), *DX = rbf16(s, M * D, 0.5f, &dx);
    void *DW = rf32(s, D, 0.5f, 0.0f, &dw), *DB = rf32(s, D, 0.5f, 0.0f, &db);
    MU = buf(s, sizeof(float) * (size_t)M, mean, (void **)&mu);
    R = buf(s, sizeof(float) * (size_t)M, mean + M, (void **)&r);
    READY(s);
    double *edx = dzero(M * D), *edw = dzero(D), *edb = dzero(D);
    for (int64_t j = 0; j < D; j++) edw[j] = fabs(dw[j]), edb[j] = fabs(db[j]);
    for (int64_t i = 0; i < M; i++) {
        double m1 = 0, m2 = 0;
        for (int64_t j = 0; j < D; j++) {
            double g = fabs(w16(dy[i * D + j]) * w[j]), xh = fabs((w16(x[i * D + j]) - mu[i]) * r[i]);
            m1 += g, m2 += g * xh;
        }
        m1 /= (double)D, m2 /= (double)D;
        for (int64_t j = 0; j < D; j++) {
            double g = fabs(w16(dy[i * D + j]) * w[j]), xh = fabs((w16(x[i * D + j]) - mu[i]) * r[i]);
            edx[i * D + j] = G((double)D + 8) * (fabs(w16(dx[i * D + j])) + r[i] * (g + m1 + xh * m2));
            edw[j] += fabs(w16(dy[i * D + j])) * xh;
            edb[j] += fabs(w16(dy[i * D + j]));
        }
    }
    for (int64_t j = 0; j < D; j++) edw[j] *= G((double)M + 4), edb[j] *= G((double)M + 1);
    s->ref->layernorm_bwd(&s->rc, dx, dw, db, dy, x, w, mu, r, M, D);
    s->dev->layernorm_bwd(s->dc, DX, DW, DB, DY, X, W, MU, R, M, D);
    if (devok(s)) {
        cmp(s, "dx", K_BF16, DX, dx, M * D, 1, 0.0, edx);
        cmp(s, "dw", K_F32, DW, dw, D, 0, 0.0, edw);
        cmp(s, "db", K_F32, DB, db, D, 0, 0.0, edb);
    }
    free(edx), free(edw), free(edb), free(mean);
    end(s);
}

/* ---- rope --------------------------------------------------------------------------------------------------------- */

static void t_rope(st *s) {
    const int64_t T = s->sh->m;
    const int nh = s->sh->nq, hd = s->sh->hd, h2 = hd / 2;
    const float theta = 10000.0f;
    int32_t *pos = mem_alloc(sizeof(int32_t) * (size_t)T, "selftest: positions");
    for (int64_t t = 0; t < T; t++) pos[t] = (int32_t)(5 * t + 1);
    for (int dir = 0; dir < 2; dir++) {
        uint16_t *x;
        int32_t *hp;
        begin(s, dir ? "rope_bwd" : "rope_fwd");
        void *X = rbf16(s, T * nh * hd, 2.0f, &x), *P = buf(s, sizeof(int32_t) * (size_t)T, pos, (void **)&hp);
        READY(s);
        /* the angle pos * inv_freq: inv_freq from powf (LIBM relative), so an angle difference of about
         * (pos + 1) LIBM; cos / sin another LIBM; a * cos -+ b * sin cancels: relative to |a| + |b| */
        double *e = dzero(T * nh * hd);
        for (int64_t t = 0; t < T; t++)
            for (int h = 0; h < nh; h++)
                for (int j = 0; j < hd; j++) {
                    int64_t i = (t * nh + h) * hd, jj = j < h2 ? j + h2 : j - h2;
                    e[i + j] = ((double)pos[t] + 2.0) * ELT * (fabs(w16(x[i + j])) + fabs(w16(x[i + jj])));
                }
        if (dir) {
            s->ref->rope_bwd(&s->rc, x, hp, T, nh, hd, theta);
            s->dev->rope_bwd(s->dc, X, P, T, nh, hd, theta);
        } else {
            s->ref->rope_fwd(&s->rc, x, hp, T, nh, hd, theta);
            s->dev->rope_fwd(s->dc, X, P, T, nh, hd, theta);
        }
        if (devok(s)) cmp(s, "x", K_BF16, X, x, T * nh * hd, 1, 0.0, e);
        free(e);
        end(s);
    }
    free(pos);
}

/* ---- attention ---------------------------------------------------------------------------------------------------
 * scale = 1/sqrt(hd); Qm, Km, Vm, Gm, Om the largest |q|, |k|, |v|, |dout|, |out| of the inputs.
 *   score s_ij = scale q_i.k_j:   |difference| <= es = G(hd + 1) scale hd Qm Km
 *   p_ij = exp(s_ij - lse_i):     relative dp = 2 es + LIBM + 2 G(T + 2) (its score, the lse's max score, the exp, the
 *                                 normaliser's sum of T positive terms and the online rescaling, each <= T roundings)
 *   out_i = sum_j p_ij v_j:       sum p = 1, so |difference| <= (dp + G(T + 1)) Vm
 *   lse_i:                        es + G(T + 2) + LIBM + 4 u |lse|
 * backward (lse given): dp_b = es + LIBM + 2u; H = hd Gm (Vm + Om) bounds |dout.v_j - dout.out|;
 *   ds_ij = p_ij (dout.v_j - D_i) scale: |difference| <= p_ij EDS, EDS = scale H (dp_b + G(hd + 1) + 3u)
 *   dq_i  = sum_j ds_ij k_j:      Km EDS + G(T + 1) (|dq0| + scale Km H)
 *   dk_j  = sum_(i,h) ds k/q:     up to C = T * nq/nkv (query, head) pairs see a key, each p <= 1:
 *                                 C Qm EDS + G(C + 1) (|dk0| + C scale Qm H)
 *   dv_j  = sum_(i,h) p dout:     C Gm dp_b + G(C + 1) (|dv0| + C Gm) */

static double amax16(const uint16_t *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(w16(x[i])));
    return m;
}

static int attn_seqs(const selftest_shape *sh, int causal, seq_desc *sq, int64_t *T) {
    int P = sh->prefix;
    if (causal) { /* a shared prefix and two answers that see it */
        sq[0] = (seq_desc){0, P, 0, -1};
        sq[1] = (seq_desc){P, P - 1, P, 0};
        sq[2] = (seq_desc){2 * P - 1, P / 2 + 1, P, 0};
        *T = 2 * P - 1 + P / 2 + 1;
        return 3;
    }
    sq[0] = (seq_desc){0, P, 0, -1}; /* vision: two tiles that see themselves in full */
    sq[1] = (seq_desc){P, P + 1, 0, -1};
    *T = 2 * P + 1;
    return 2;
}

static void t_attn(st *s, int causal) {
    const int nq = s->sh->nq, nkv = s->sh->nkv, hd = s->sh->hd;
    seq_desc sq[3];
    int64_t T;
    int nseq = attn_seqs(s->sh, causal, sq, &T);
    const double scale = 1.0 / sqrt((double)hd), C = (double)T * (nq / nkv);
    const int64_t nqv = T * nq * hd, nkvv = T * nkv * hd;
    uint16_t *q, *k, *v, *o;
    float *lse;
    seq_desc *hs;
    begin(s, "attn_fwd");
    void *Q = rbf16(s, nqv, 1.0f, &q), *K = rbf16(s, nkvv, 1.0f, &k), *V = rbf16(s, nkvv, 1.0f, &v);
    void *O = rbf16(s, nqv, 1.0f, &o), *L = rf32(s, T * nq, 1.0f, 0.0f, &lse);
    void *S = buf(s, sizeof(seq_desc) * (size_t)nseq, sq, (void **)&hs);
    READY(s);
    double Qm = amax16(q, nqv), Km = amax16(k, nkvv), Vm = amax16(v, nkvv);
    double es = G(hd + 1.0) * scale * hd * Qm * Km, dp = 2 * es + LIBM + 2 * G((double)T + 2);
    s->ref->attn_fwd(&s->rc, o, lse, q, k, v, hs, nseq, T, nq, nkv, hd, causal);
    s->dev->attn_fwd(s->dc, O, L, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    double *eo = dzero(nqv), *el = dzero(T * nq);
    for (int64_t i = 0; i < nqv; i++) eo[i] = (dp + G((double)T + 1) + U16) * Vm;
    for (int64_t i = 0; i < T * nq; i++) el[i] = es + G((double)T + 2) + LIBM + 4 * U * fabs(lse[i]);
    if (devok(s)) {
        cmp(s, causal ? "out (causal, shared prefix)" : "out (not causal)", K_BF16, O, o, nqv, 1, 0.0, eo);
        cmp(s, causal ? "lse (causal, shared prefix)" : "lse (not causal)", K_F32, L, lse, T * nq, 0, 0.0, el);
    }
    free(eo), free(el);
    /* the backward from the reference's out and lse */
    uint16_t *out0 = mem_alloc(sizeof(uint16_t) * (size_t)nqv, "selftest: out");
    float *lse0 = mem_alloc(sizeof(float) * (size_t)(T * nq), "selftest: lse");
    memcpy(out0, o, sizeof(uint16_t) * (size_t)nqv);
    memcpy(lse0, lse, sizeof(float) * (size_t)(T * nq));
    uint16_t *q0 = mem_alloc(sizeof(uint16_t) * (size_t)(nqv + 2 * nkvv), "selftest: q, k, v");
    memcpy(q0, q, sizeof(uint16_t) * (size_t)nqv);
    memcpy(q0 + nqv, k, sizeof(uint16_t) * (size_t)nkvv);
    memcpy(q0 + nqv + nkvv, v, sizeof(uint16_t) * (size_t)nkvv);
    end(s);

    begin(s, "attn_bwd");
    uint16_t *dout, *dq, *dk, *dv;
    Q = buf(s, sizeof(uint16_t) * (size_t)nqv, q0, (void **)&q);
    K = buf(s, sizeof(uint16_t) * (size_t)nkvv, q0 + nqv, (void **)&k);
    V = buf(s, sizeof(uint16_t) * (size_t)nkvv, q0 + nqv + nkvv, (void **)&v);
    O = buf(s, sizeof(uint16_t) * (size_t)nqv, out0, (void **)&o);
    L = buf(s, sizeof(float) * (size_t)(T * nq), lse0, (void **)&lse);
    S = buf(s, sizeof(seq_desc) * (size_t)nseq, sq, (void **)&hs);
    void *DO = rbf16(s, nqv, 1.0f, &dout), *DQ = rbf16(s, nqv, 0.5f, &dq), *DK = rbf16(s, nkvv, 0.5f, &dk);
    void *DV = rbf16(s, nkvv, 0.5f, &dv);
    free(out0), free(lse0), free(q0);
    READY(s);
    double Gm = amax16(dout, nqv), Om = amax16(o, nqv), H = hd * Gm * (Vm + Om);
    double dpb = es + LIBM + 2 * U, EDS = scale * H * (dpb + G(hd + 1.0) + 3 * U + 2 * U16);
    double *edq = dzero(nqv), *edk = dzero(nkvv), *edv = dzero(nkvv);
    for (int64_t i = 0; i < nqv; i++) edq[i] = Km * EDS + G((double)T + 1) * (fabs(w16(dq[i])) + scale * Km * H);
    for (int64_t i = 0; i < nkvv; i++) {
        edk[i] = C * Qm * EDS + G(C + 1) * (fabs(w16(dk[i])) + C * scale * Qm * H);
        edv[i] = C * Gm * (dpb + U16) + G(C + 1) * (fabs(w16(dv[i])) + C * Gm);
    }
    s->ref->attn_bwd(&s->rc, dq, dk, dv, dout, o, lse, q, k, v, hs, nseq, T, nq, nkv, hd, causal);
    s->dev->attn_bwd(s->dc, DQ, DK, DV, DO, O, L, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    if (devok(s)) {
        cmp(s, causal ? "dq (causal, shared prefix)" : "dq (not causal)", K_BF16, DQ, dq, nqv, 1, 0.0, edq);
        cmp(s, causal ? "dk (causal, shared prefix)" : "dk (not causal)", K_BF16, DK, dk, nkvv, 1, 0.0, edk);
        cmp(s, causal ? "dv (causal, shared prefix)" : "dv (not causal)", K_BF16, DV, dv, nkvv, 1, 0.0, edv);
    }
    free(edq), free(edk), free(edv);
    end(s);
}

/* ---- element-wise ------------------------------------------------------------------------------------------------- */

typedef void (*un_fn)(opctx *, void *, const void *, int64_t);
typedef void (*unb_fn)(opctx *, void *, const void *, const void *, int64_t);

/* gelu / quick_gelu: y = f(x) (1 ulp, plus ELT |x|: 1 + erf cancels for x << 0); backward dx += dy f'(x) with
 * |f'(x)| <= 1 + |x| */
static void t_unary(st *s, const char *fwd, un_fn rf, un_fn df, const char *bwd, unb_fn rb, unb_fn db) {
    const int64_t n = s->sh->n;
    uint16_t *x, *y, *dx, *dy;
    begin(s, fwd);
    void *X = rbf16(s, n, 4.0f, &x), *Y = rbf16(s, n, 1.0f, &y);
    READY(s);
    double *e = dzero(n);
    for (int64_t i = 0; i < n; i++) e[i] = ELT * fabs(w16(x[i]));
    rf(&s->rc, y, x, n);
    df(s->dc, Y, X, n);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, n, 1, 0.0, e);
    end(s);
    begin(s, bwd);
    X = rbf16(s, n, 4.0f, &x);
    void *DY = rbf16(s, n, 1.0f, &dy), *DX = rbf16(s, n, 0.5f, &dx);
    READY(s);
    for (int64_t i = 0; i < n; i++) e[i] = ELT * (fabs(w16(dx[i])) + 2 * fabs(w16(dy[i])) * (1 + fabs(w16(x[i]))));
    rb(&s->rc, dx, dy, x, n);
    db(s->dc, DX, DY, X, n);
    if (devok(s)) cmp(s, "dx", K_BF16, DX, dx, n, 1, 0.0, e);
    free(e);
    end(s);
}

static void t_swiglu(st *s) {
    const int64_t n = s->sh->n;
    uint16_t *g, *u, *h, *dg, *du, *dh;
    begin(s, "swiglu_fwd");
    void *Gg = rbf16(s, n, 4.0f, &g), *Uu = rbf16(s, n, 2.0f, &u), *Hh = rbf16(s, n, 1.0f, &h);
    READY(s);
    double *e = dzero(n), *e2 = dzero(n);
    for (int64_t i = 0; i < n; i++) e[i] = ELT * fabs(w16(g[i]) * w16(u[i]));
    s->ref->swiglu_fwd(&s->rc, h, g, u, n);
    s->dev->swiglu_fwd(s->dc, Hh, Gg, Uu, n);
    if (devok(s)) cmp(s, "h", K_BF16, Hh, h, n, 1, 0.0, e);
    end(s);
    begin(s, "swiglu_bwd");
    Gg = rbf16(s, n, 4.0f, &g), Uu = rbf16(s, n, 2.0f, &u);
    void *DH = rbf16(s, n, 1.0f, &dh), *DG = rbf16(s, n, 0.5f, &dg), *DU = rbf16(s, n, 0.5f, &du);
    READY(s);
    for (int64_t i = 0; i < n; i++) {
        double G_ = fabs(w16(g[i])), Uv = fabs(w16(u[i])), Dh = fabs(w16(dh[i]));
        e[i] = ELT * (fabs(w16(dg[i])) + 2 * Dh * Uv * (1 + G_));
        e2[i] = ELT * (fabs(w16(du[i])) + Dh * G_);
    }
    s->ref->swiglu_bwd(&s->rc, dg, du, dh, g, u, n);
    s->dev->swiglu_bwd(s->dc, DG, DU, DH, Gg, Uu, n);
    if (devok(s)) {
        cmp(s, "dgate", K_BF16, DG, dg, n, 1, 0.0, e);
        cmp(s, "dup", K_BF16, DU, du, n, 1, 0.0, e2);
    }
    free(e), free(e2);
    end(s);
}

/* adds of two bf16 values are exact in fp32, rounded once: bit-identical. scale and dropout: one product (dropout:
 * by 1/(1-p)), 1 ulp; a different keep mask would differ by the whole value */
static void t_simple(st *s) {
    const int64_t n = s->sh->n;
    uint16_t *x, *y, *a;
    begin(s, "add_inplace");
    void *X = rbf16(s, n, 2.0f, &x), *Y = rbf16(s, n, 2.0f, &y);
    READY(s);
    s->ref->add_inplace(&s->rc, y, x, n);
    s->dev->add_inplace(s->dc, Y, X, n);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, n, 0, 0.0, NULL);
    end(s);

    begin(s, "add");
    X = rbf16(s, n, 2.0f, &x), Y = rbf16(s, n, 2.0f, &y);
    void *A = rbf16(s, n, 1.0f, &a);
    READY(s);
    s->ref->add(&s->rc, a, x, y, n);
    s->dev->add(s->dc, A, X, Y, n);
    if (devok(s)) cmp(s, "out", K_BF16, A, a, n, 0, 0.0, NULL);
    end(s);

    begin(s, "scale");
    X = rbf16(s, n, 2.0f, &x);
    READY(s);
    s->ref->scale(&s->rc, x, n, 0.3f);
    s->dev->scale(s->dc, X, n, 0.3f);
    if (devok(s)) cmp(s, "x", K_BF16, X, x, n, 1, 0.0, NULL);
    end(s);

    begin(s, "dropout");
    const uint32_t key[2] = {0x1234u, 0x5678u};
    X = rbf16(s, n, 2.0f, &x), Y = rbf16(s, n, 1.0f, &y);
    READY(s);
    s->ref->dropout(&s->rc, y, x, n, 0.25f, key, 3, 5, 100);
    s->dev->dropout(s->dc, Y, X, n, 0.25f, key, 3, 5, 100);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, n, 1, 0.0, NULL);
    end(s);

    begin(s, "zero");
    X = rbf16(s, n, 2.0f, &x);
    READY(s);
    s->ref->zero(&s->rc, x, n);
    s->dev->zero(s->dc, X, n);
    if (devok(s)) cmp(s, "x", K_BF16, X, x, n, 0, 0.0, NULL);
    end(s);

    begin(s, "copy");
    X = rbf16(s, n, 2.0f, &x), Y = rbf16(s, n, 2.0f, &y);
    READY(s);
    s->ref->copy(&s->rc, y, x, n);
    s->dev->copy(s->dc, Y, X, n);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, n, 0, 0.0, NULL);
    end(s);
}

/* ---- embeddings, log-probabilities -------------------------------------------------------------------------------- */

static void t_embed(st *s) {
    const int64_t T = s->sh->m, D = s->sh->d, V = 50;
    int32_t ids[256];
    uint8_t mask[50];
    for (int64_t i = 0; i < T && i < 256; i++) ids[i] = (int32_t)((s->rng >> 33) % 8), urand(s); /* repeats */
    ids[0] = 49;
    for (int64_t v = 0; v < V; v++) mask[v] = v != 3;
    float *tab, *dt;
    uint16_t *y, *dy;
    int32_t *hid;
    uint8_t *hm;
    begin(s, "embed_fwd");
    void *TB = rf32(s, V * D, 1.0f, 0.0f, &tab), *Y = rbf16(s, T * D, 1.0f, &y);
    void *I = buf(s, sizeof(int32_t) * (size_t)T, ids, (void **)&hid);
    READY(s);
    s->ref->embed_fwd(&s->rc, y, tab, hid, T, D);
    s->dev->embed_fwd(s->dc, Y, TB, I, T, D);
    if (devok(s)) cmp(s, "y", K_BF16, Y, y, T * D, 0, 0.0, NULL);
    end(s);

    begin(s, "embed_bwd");
    void *DT = rf32(s, V * D, 0.5f, 0.0f, &dt), *DY = rbf16(s, T * D, 1.0f, &dy);
    I = buf(s, sizeof(int32_t) * (size_t)T, ids, (void **)&hid);
    void *MK = buf(s, (size_t)V, mask, (void **)&hm);
    READY(s);
    double *e = dzero(V * D), cnt[50] = {0};
    for (int64_t i = 0; i < T; i++)
        if (mask[ids[i]]) {
            cnt[ids[i]]++;
            for (int64_t j = 0; j < D; j++) e[ids[i] * D + j] += fabs(w16(dy[i * D + j]));
        }
    for (int64_t v = 0; v < V; v++)
        for (int64_t j = 0; j < D; j++)
            if (cnt[v] > 0) e[v * D + j] = G(cnt[v] + 1) * (e[v * D + j] + fabs(dt[v * D + j]));
    s->ref->embed_bwd(&s->rc, dt, dy, hid, hm, T, D);
    s->dev->embed_bwd(s->dc, DT, DY, I, MK, T, D);
    if (devok(s)) cmp(s, "dtable", K_F32, DT, dt, V * D, 0, 0.0, e);
    free(e);
    end(s);
}

/* logp = x[label] - lse, lse = max + log(sum exp(x - max)): the sum of V positive terms (G(V + 2)), one exp each and the
 * log (LIBM), the roundings of max + log and of the difference (u |value|).
 * backward: dlogits = dlogp (onehot - p), p = exp(x - lse): the exp (LIBM) of an argument rounded to u |x - lse| */
static void t_logprob(st *s) {
    const int64_t M = 5, V = s->sh->vocab;
    int32_t lab[5];
    for (int i = 0; i < 5; i++) lab[i] = (int32_t)((i * 37 + 11) % V);
    uint16_t *x, *dl;
    float *lp, *lse, *dlp;
    int32_t *hl;
    begin(s, "logprob_fwd");
    void *X = rbf16(s, M * V, 4.0f, &x), *LP = rf32(s, M, 1.0f, 0.0f, &lp), *L = rf32(s, M, 1.0f, 0.0f, &lse);
    void *LB = buf(s, sizeof lab, lab, (void **)&hl);
    READY(s);
    s->ref->logprob_fwd(&s->rc, lp, lse, x, hl, M, V);
    s->dev->logprob_fwd(s->dc, LP, L, X, LB, M, V);
    double el[5], ep[5];
    for (int64_t i = 0; i < M; i++) {
        el[i] = G((double)V + 2) + LIBM + 4 * U * fabs(lse[i]);
        ep[i] = el[i] + 2 * U * (fabs(w16(x[i * V + lab[i]])) + fabs(lse[i]));
    }
    if (devok(s)) {
        cmp(s, "lse", K_F32, L, lse, M, 0, 0.0, el);
        cmp(s, "logp", K_F32, LP, lp, M, 0, 0.0, ep);
    }
    float lse0[5];
    memcpy(lse0, lse, sizeof lse0);
    uint16_t *x0 = mem_alloc(sizeof(uint16_t) * (size_t)(M * V), "selftest: logits");
    memcpy(x0, x, sizeof(uint16_t) * (size_t)(M * V));
    end(s);

    begin(s, "logprob_bwd");
    X = buf(s, sizeof(uint16_t) * (size_t)(M * V), x0, (void **)&x);
    L = buf(s, sizeof lse0, lse0, (void **)&lse);
    LB = buf(s, sizeof lab, lab, (void **)&hl);
    void *DLP = rf32(s, M, 1.0f, 0.0f, &dlp), *DL = rbf16(s, M * V, 1.0f, &dl);
    free(x0);
    READY(s);
    double *e = dzero(M * V);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < V; j++) {
            double xv = w16(x[i * V + j]), p = exp(xv - lse[i]);
            e[i * V + j] = 2 * fabs(dlp[i]) * p * (LIBM + U * (fabs(xv) + fabs(lse[i])) + 3 * U);
        }
    s->ref->logprob_bwd(&s->rc, dl, dlp, lse, x, hl, M, V);
    s->dev->logprob_bwd(s->dc, DL, DLP, L, X, LB, M, V);
    if (devok(s)) cmp(s, "dlogits", K_BF16, DL, dl, M * V, 1, 0.0, e);
    free(e);
    end(s);
}

/* ---- rows --------------------------------------------------------------------------------------------------------- */

static void t_rows(st *s) {
    const int64_t R = 20, D = s->sh->d, nr = 13;
    int64_t rows[13], perm[13], frows[13];
    for (int i = 0; i < 13; i++) {
        rows[i] = (i * 7 + 3) % 20;
        perm[i] = (i * 11 + 5) % 20; /* distinct: 11 is prime to 20 */
        frows[i] = i % 4 == 1 ? -1 : (i * 3) % 20;
    }
    rows[5] = rows[2]; /* a repeat for scatter_add_rows */
    uint16_t *src, *dst, *fill;
    int64_t *hr;
    begin(s, "gather_rows");
    void *S = rbf16(s, R * D, 2.0f, &src), *Dd = rbf16(s, nr * D, 1.0f, &dst);
    void *RW = buf(s, sizeof rows, rows, (void **)&hr);
    READY(s);
    s->ref->gather_rows(&s->rc, dst, src, hr, nr, D);
    s->dev->gather_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "dst", K_BF16, Dd, dst, nr * D, 0, 0.0, NULL);
    end(s);

    begin(s, "scatter_rows");
    S = rbf16(s, nr * D, 2.0f, &src), Dd = rbf16(s, R * D, 1.0f, &dst);
    RW = buf(s, sizeof perm, perm, (void **)&hr);
    READY(s);
    s->ref->scatter_rows(&s->rc, dst, src, hr, nr, D);
    s->dev->scatter_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "dst", K_BF16, Dd, dst, R * D, 0, 0.0, NULL);
    end(s);

    begin(s, "gather_rows_fill");
    for (int with = 0; with < 2; with++) {
        S = rbf16(s, R * D, 2.0f, &src), Dd = rbf16(s, nr * D, 1.0f, &dst);
        void *F = rbf16(s, D, 1.0f, &fill);
        RW = buf(s, sizeof frows, frows, (void **)&hr);
        READY(s);
        s->ref->gather_rows_fill(&s->rc, dst, src, hr, nr, D, with ? fill : NULL);
        s->dev->gather_rows_fill(s->dc, Dd, S, RW, nr, D, with ? F : NULL);
        if (devok(s)) cmp(s, with ? "dst (fill row)" : "dst (zero fill)", K_BF16, Dd, dst, nr * D, 0, 0.0, NULL);
        end(s);
    }

    begin(s, "scatter_add_rows");
    S = rbf16(s, nr * D, 2.0f, &src), Dd = rbf16(s, R * D, 1.0f, &dst);
    RW = buf(s, sizeof rows, rows, (void **)&hr);
    READY(s);
    double *e = dzero(R * D), cnt[20] = {0};
    for (int64_t i = 0; i < nr; i++) {
        cnt[rows[i]]++;
        for (int64_t j = 0; j < D; j++) e[rows[i] * D + j] += fabs(w16(src[i * D + j]));
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < D; j++) e[r * D + j] = G(cnt[r] + 1) * (e[r * D + j] + fabs(w16(dst[r * D + j])));
    s->ref->scatter_add_rows(&s->rc, dst, src, hr, nr, D);
    s->dev->scatter_add_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "dst", K_BF16, Dd, dst, R * D, 1, 0.0, e);
    free(e);
    end(s);
}

/* the device's fp32 table (ops.f32: what the trainer does to its fp32 masters, gradients and the embedding table),
 * against the fp32 CPU reference: the same formula in the same order, so bit-identical (exact) */
static void t_f32_run(st *s) {
    const int64_t R = 20, D = s->sh->d, nr = 13, n = R * D;
    int64_t rows[13], perm[13];
    for (int i = 0; i < 13; i++) rows[i] = (i * 7 + 3) % 20, perm[i] = (i * 11 + 5) % 20;
    rows[5] = rows[2]; /* a repeat for scatter_add_rows */
    float *x, *y, *src, *dst;
    int64_t *hr;
    begin(s, "f32.scale, copy, add_inplace, zero");
    void *X = rf32(s, n, 2.0f, 0.0f, &x), *Y = rf32(s, n, 1.0f, 0.0f, &y);
    READY(s);
    s->ref->scale(&s->rc, x, n, 0.37f), s->dev->scale(s->dc, X, n, 0.37f);
    s->ref->add_inplace(&s->rc, y, x, n), s->dev->add_inplace(s->dc, Y, X, n);
    if (devok(s)) cmp(s, "scale then add_inplace", K_F32, Y, y, n, 0, 0.0, NULL);
    s->ref->copy(&s->rc, x, y, n), s->dev->copy(s->dc, X, Y, n);
    s->ref->zero(&s->rc, y, D), s->dev->zero(s->dc, Y, D);
    if (devok(s)) cmp(s, "copy", K_F32, X, x, n, 0, 0.0, NULL);
    if (devok(s)) cmp(s, "zero", K_F32, Y, y, n, 0, 0.0, NULL);
    end(s);
    begin(s, "f32.gather_rows, scatter_rows, scatter_add_rows");
    void *S = rf32(s, R * D, 2.0f, 0.0f, &src), *Dd = rf32(s, R * D, 1.0f, 0.0f, &dst);
    void *RW = buf(s, sizeof rows, rows, (void **)&hr);
    READY(s);
    s->ref->gather_rows(&s->rc, dst, src, hr, nr, D), s->dev->gather_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "gather_rows", K_F32, Dd, dst, R * D, 0, 0.0, NULL);
    s->ref->scatter_add_rows(&s->rc, dst, src, hr, nr, D), s->dev->scatter_add_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "scatter_add_rows", K_F32, Dd, dst, R * D, 0, 0.0, NULL);
    memcpy(hr, perm, sizeof perm); /* distinct rows for scatter_rows */
    s->dev->upload(s->dc, RW, perm, sizeof perm);
    s->ref->scatter_rows(&s->rc, dst, src, hr, nr, D), s->dev->scatter_rows(s->dc, Dd, S, RW, nr, D);
    if (devok(s)) cmp(s, "scatter_rows", K_F32, Dd, dst, R * D, 0, 0.0, NULL);
    end(s);
}

static void t_f32(st *s) {
    const ops *dev = s->dev, *ref = s->ref;
    if (!dev->f32 || dev->f32 == dev) return; /* the CPU's: its fp32 table is ops_cpu() itself */
    s->dev = dev->f32, s->ref = ops_cpu();
    t_f32_run(s);
    s->dev = dev, s->ref = ref;
}

/* ---- NF4, vision, casts --------------------------------------------------------------------------------------------
 * NF4: absmax = map[q] * absmax2 + offset may be one FMA on a GPU (one rounding less): w = code * absmax then differs
 * by at most |code| u (|map a2| + |off|) plus its own rounding: 3 u |code| (|map a2| + |off|) in fp32, 1 ulp in bf16 */
static void t_nf4(st *s) {
    const int bs = 64, bs2 = 4;
    const int64_t nb = 12, n = nb * bs, nb2 = 3;
    const float off = 0.02f;
    uint8_t pk[384], qa[12];
    for (int i = 0; i < 384; i++) pk[i] = (uint8_t)(s->rng >> 40), urand(s);
    for (int i = 0; i < 12; i++) qa[i] = (uint8_t)(s->rng >> 48), urand(s);
    uint8_t *hp, *hq;
    float *a2, *of;
    uint16_t *ob;
    begin(s, "nf4_dequant");
    void *PK = buf(s, sizeof pk, pk, (void **)&hp), *QA = buf(s, sizeof qa, qa, (void **)&hq);
    void *A2 = rf32(s, nb2, 0.005f, 0.01f, &a2), *OF = rf32(s, n, 1.0f, 0.0f, &of), *OB = rbf16(s, n, 1.0f, &ob);
    READY(s);
    double *e = dzero(n);
    for (int64_t i = 0; i < n; i++) {
        int nib = i & 1 ? pk[i >> 1] & 15 : pk[i >> 1] >> 4;
        int64_t b = i / bs;
        e[i] = 3 * U * fabs(nf4_code[nib]) * (fabs(nf4_dynamic_map[qa[b]] * a2[b / bs2]) + off);
    }
    s->ref->nf4_dequant(&s->rc, of, DT_F32, hp, hq, a2, off, n, bs, bs2);
    s->ref->nf4_dequant(&s->rc, ob, DT_BF16, hp, hq, a2, off, n, bs, bs2);
    s->dev->nf4_dequant(s->dc, OF, DT_F32, PK, QA, A2, off, n, bs, bs2);
    s->dev->nf4_dequant(s->dc, OB, DT_BF16, PK, QA, A2, off, n, bs, bs2);
    if (devok(s)) {
        cmp(s, "out (f32)", K_F32, OF, of, n, 0, 0.0, e);
        cmp(s, "out (bf16)", K_BF16, OB, ob, n, 1, 0.0, NULL);
    }
    free(e);
    end(s);
}

static void t_vision(st *s) {
    const int P = s->sh->tiles, T = s->sh->tile, p = s->sh->patch, g = T / p;
    const int64_t np = (int64_t)g * g, cols = 3LL * p * p, D = s->sh->d;
    float *px, *cls, *pos;
    uint16_t *rows, *patch, *h;
    begin(s, "im2col");
    void *PX = rf32(s, (int64_t)P * 3 * T * T, 2.0f, 0.0f, &px), *RW = rbf16(s, P * np * cols, 1.0f, &rows);
    READY(s);
    s->ref->im2col(&s->rc, rows, px, P, T, p);
    s->dev->im2col(s->dc, RW, PX, P, T, p);
    if (devok(s)) cmp(s, "rows", K_BF16, RW, rows, P * np * cols, 0, 0.0, NULL);
    end(s);

    begin(s, "vis_embed");
    void *PA = rbf16(s, P * np * D, 2.0f, &patch), *CL = rf32(s, D, 1.0f, 0.0f, &cls);
    void *PO = rf32(s, (np + 1) * D, 1.0f, 0.0f, &pos), *H = rbf16(s, P * (np + 1) * D, 1.0f, &h);
    READY(s);
    s->ref->vis_embed(&s->rc, h, patch, cls, pos, P, np, D);
    s->dev->vis_embed(s->dc, H, PA, CL, PO, P, np, D);
    if (devok(s)) cmp(s, "h", K_BF16, H, h, P * (np + 1) * D, 0, 0.0, NULL);
    end(s);
}

static void t_cast(st *s) {
    const int64_t n = s->sh->n;
    float *f, *f2;
    uint16_t *b, *b2;
    begin(s, "cast");
    void *F = rf32(s, n, 3.0f, 0.0f, &f), *B = rbf16(s, n, 1.0f, &b);
    void *B2 = rbf16(s, n, 2.0f, &b2), *F2 = rf32(s, n, 1.0f, 0.0f, &f2);
    READY(s);
    s->ref->cast(&s->rc, b, DT_BF16, f, DT_F32, n);
    s->ref->cast(&s->rc, f2, DT_F32, b2, DT_BF16, n);
    s->dev->cast(s->dc, B, DT_BF16, F, DT_F32, n);
    s->dev->cast(s->dc, F2, DT_F32, B2, DT_BF16, n);
    if (devok(s)) {
        cmp(s, "f32 -> bf16", K_BF16, B, b, n, 0, 0.0, NULL);
        cmp(s, "bf16 -> f32", K_F32, F2, f2, n, 0, 0.0, NULL);
    }
    end(s);
}

/* ---- optimiser ------------------------------------------------------------------------------------------------------
 * sumsq: squares of fp32 are exact in double; the sum of n + 1 terms (the running value first) in any order:
 * 2 gamma_(n+1) with u = 2^-53, relative to the sum of the terms (all positive).
 * adamw (FMA contraction may remove a rounding in each update): m' = m + w1 (g - m): 3u (|m| + |w1 (g - m)|);
 * v' = v b2 + w2 g^2: 4u (|v b2| + |w2 g^2|); denom = sqrt(v') / bc2 + eps: relative half of v''s plus 3u;
 * p' = p decay + neg_step m' / denom: 3u (|p decay| + |step|) + |neg_step| dm' / denom + |step| ddenom. */
static void t_optim(st *s) {
    const int64_t n = s->sh->n, h = n / 2;
    double *ss, init = 1.5;
    float *x;
    begin(s, "sumsq");
    void *X = rf32(s, n, 2.0f, 0.0f, &x), *SS = buf(s, sizeof(double), &init, (void **)&ss);
    READY(s);
    double tot = init, u53 = 0x1p-53, e;
    for (int64_t i = 0; i < n; i++) tot += (double)x[i] * x[i];
    e = 2 * ((double)n + 1) * u53 / (1 - ((double)n + 1) * u53) * tot;
    s->ref->sumsq(&s->rc, ss, x, h);
    s->ref->sumsq(&s->rc, ss, x + h, n - h);
    s->dev->sumsq(s->dc, SS, X, h);
    s->dev->sumsq(s->dc, SS, (float *)X + h, n - h);
    if (devok(s)) cmp(s, "out (two calls in a row)", K_F64, SS, ss, 1, 0, 0.0, &e);
    end(s);

    begin(s, "adamw");
    float *p, *g, *m, *v;
    void *Pp = rf32(s, n, 1.0f, 0.0f, &p), *Gg = rf32(s, n, 0.1f, 0.0f, &g), *Mm = rf32(s, n, 0.01f, 0.0f, &m);
    void *Vv = rf32(s, n, 0.5e-4f, 0.51e-4f, &v);
    READY(s);
    const float decay = 1.0f - 2e-4f * 0.01f, w1 = 0.1f, b2 = 0.999f, w2 = 0.001f, bc2 = 0.0547f, eps = 1e-8f;
    const float neg_step = -2e-4f / 0.271f;
    double *ep = dzero(n), *em = dzero(n), *ev = dzero(n);
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i], mi = m[i], vi = v[i], pi = p[i];
        double m1 = mi + w1 * (gi - mi), v1 = vi * b2 + w2 * gi * gi, den = sqrt(v1) / bc2 + eps;
        em[i] = 3 * U * (fabs(mi) + fabs(w1 * (gi - mi)));
        ev[i] = 4 * U * (fabs(vi * b2) + fabs(w2 * gi * gi));
        double step = fabs(neg_step * m1 / den), dden = ev[i] / fabs(v1) / 2 + 3 * U;
        ep[i] = 3 * U * (fabs(pi * decay) + step) + fabs(neg_step) * em[i] / den + step * dden;
    }
    s->ref->adamw(&s->rc, p, g, m, v, n, decay, 1, w1, b2, w2, bc2, eps, neg_step);
    s->dev->adamw(s->dc, Pp, Gg, Mm, Vv, n, decay, 1, w1, b2, w2, bc2, eps, neg_step);
    if (devok(s)) {
        cmp(s, "m", K_F32, Mm, m, n, 0, 0.0, em);
        cmp(s, "v", K_F32, Vv, v, n, 0, 0.0, ev);
        cmp(s, "p", K_F32, Pp, p, n, 0, 0.0, ep);
    }
    free(ep), free(em), free(ev);
    end(s);
}

/* ---- memory: pinned host memory, asynchronous copies both ways, memset ------------------------------------------ */
static void t_memory(st *s) {
    const size_t n = 4096;
    s->op = "memory (copy_async, copy_fence, copy_wait, memset)";
    s->op_failed = 0;
    unsigned char *a = s->dev->mem_alloc(s->dc, n, MEM_HOST, "selftest: pinned host buffer");
    unsigned char *b = s->dev->mem_alloc(s->dc, n, MEM_HOST, "selftest: pinned host buffer");
    void *d = s->dev->mem_alloc(s->dc, n, MEM_DEVICE, "selftest: device buffer");
    if (!a || !b || !d) {
        fail(s, "cannot allocate 4 KB of pinned host or device memory: %s", s->dc->errmsg);
    } else {
        for (size_t i = 0; i < n; i++) a[i] = (unsigned char)(i * 7 + 1), b[i] = 0;
        s->dev->copy_async(s->dc, d, a, n, MEM_H2D);
        s->dev->copy_wait(s->dc, s->dev->copy_fence(s->dc));
        s->dev->memset(s->dc, (char *)d + 100, 0xab, 50);
        if (devok(s)) {
            s->dev->copy_async(s->dc, b, d, n, MEM_D2H);
            s->dev->copy_wait(s->dc, s->dev->copy_fence(s->dc));
            if (devok(s))
                for (size_t i = 0; i < n; i++) {
                    unsigned char want = i >= 100 && i < 150 ? 0xab : (unsigned char)(i * 7 + 1);
                    if (b[i] != want) {
                        fail(s, "byte %zu came back as 0x%02x, expected 0x%02x", i, b[i], want);
                        break;
                    }
                }
        }
    }
    if (a) s->dev->mem_free(s->dc, a, MEM_HOST);
    if (b) s->dev->mem_free(s->dc, b, MEM_HOST);
    if (d) s->dev->mem_free(s->dc, d, MEM_DEVICE);
}

/* ---- the whole check ------------------------------------------------------------------------------------------------ */

void selftest_shape_default(selftest_shape *s) {
    *s = (selftest_shape){.n = 999, .m = 13, .k = 40, .nout = 24, .d = 64, .vocab = 97, .nq = 4, .nkv = 2, .hd = 16,
                          .prefix = 6, .tiles = 2, .tile = 28, .patch = 14};
}

int ops_selftest_ex(const ops *dev, opctx *dc, const selftest_shape *shape, uint64_t seed, selftest_result *res) {
    memset(res, 0, sizeof *res);
    double t0 = log_now();
    if (shape->m < 1 || shape->m > 256 || shape->d < 1 || shape->hd < 2 || shape->hd % 2 || shape->nkv < 1 ||
        shape->nq % shape->nkv || shape->prefix < 2 || shape->patch < 1 || shape->tile % shape->patch || shape->n < 2) {
        snprintf(res->why, sizeof res->why, "selftest: bad shape (m 1..256, even hd, nq a multiple of nkv, prefix >= 2, "
                 "tile a multiple of patch)");
        return ERR_INTERNAL;
    }
    const void *const *slots = (const void *const *)&dev->linear_fwd;
    for (int i = 0; i < SELFTEST_NOPS; i++)
        if (!slots[i]) {
            snprintf(res->why, sizeof res->why, "op %s: missing from the %s table", OP_NAMES[i], dev->name);
            res->nfail = 1;
            return ERR_INTERNAL;
        }
    const struct { const char *name; int missing; } mem[] = {
        {"mem_alloc", !dev->mem_alloc}, {"mem_free", !dev->mem_free}, {"upload", !dev->upload},
        {"download", !dev->download}, {"copy_async", !dev->copy_async}, {"copy_fence", !dev->copy_fence},
        {"copy_wait", !dev->copy_wait}, {"memset", !dev->memset}, {"sync", !dev->sync}};
    for (size_t i = 0; i < sizeof mem / sizeof mem[0]; i++)
        if (mem[i].missing) {
            snprintf(res->why, sizeof res->why, "memory function %s: missing from the %s table", mem[i].name, dev->name);
            res->nfail = 1;
            return ERR_INTERNAL;
        }
    st s;
    memset(&s, 0, sizeof s);
    s.dev = dev, s.dc = dc, s.ref = ops_cpu_bf16(), s.sh = shape, s.res = res;
    s.rc.device = 0, s.rc.act_dtype = DT_BF16, s.rc.threads = 1;
    s.rng = seed * 0x9E3779B97F4A7C15ull + 1;
    t_linear(&s);
    t_rmsnorm(&s);
    t_layernorm(&s);
    t_rope(&s);
    t_attn(&s, 1);
    t_attn(&s, 0);
    t_unary(&s, "gelu_fwd", s.ref->gelu_fwd, dev->gelu_fwd, "gelu_bwd", s.ref->gelu_bwd, dev->gelu_bwd);
    t_unary(&s, "quick_gelu_fwd", s.ref->quick_gelu_fwd, dev->quick_gelu_fwd, "quick_gelu_bwd", s.ref->quick_gelu_bwd,
            dev->quick_gelu_bwd);
    t_swiglu(&s);
    t_simple(&s);
    t_embed(&s);
    t_logprob(&s);
    t_rows(&s);
    t_f32(&s);
    t_nf4(&s);
    t_vision(&s);
    t_cast(&s);
    t_optim(&s);
    t_memory(&s);
    opctx_release(&s.rc);
    for (int i = 0; i < SELFTEST_NOPS; i++)
        if (!s.used[i] && !res->why[0]) {
            snprintf(res->why, sizeof res->why, "selftest: op %s was not checked (internal error)", OP_NAMES[i]);
            res->nfail++;
        }
    if (res->nfail > 1 && s.also[0]) {
        size_t n = strlen(res->why);
        snprintf(res->why + n, sizeof res->why - n, " (also beyond tolerance: %s)", s.also);
    }
    res->seconds = log_now() - t0;
    return res->nfail ? ERR_INTERNAL : ERR_OK;
}

int ops_selftest(const ops *dev, opctx *dc, char *why, size_t why_len) {
    selftest_shape sh;
    selftest_result r;
    selftest_shape_default(&sh);
    int rc = ops_selftest_ex(dev, dc, &sh, 1, &r);
    snprintf(why, why_len, "%s", rc ? r.why : "");
    return rc;
}
