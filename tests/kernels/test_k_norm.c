/* test_k_norm — kernels/norm.cu (RMSNorm, LayerNorm; forward and backward) run by the CPU executor against
 * ops_cpu_bf16, at odd shapes (D = 1, 31, 33, 1000; M = 1, 7), at the 7B shape (hidden 4096, 64 sampled token rows)
 * and at one CLIP tile (577 tokens x 1024).
 *
 * Tolerance 0 (bit-identical) for the weight gradients dw, db: the kernel adds the rows to each column in row order,
 * as the reference, with the same fp32 expression per term.
 *
 * The row statistics (rstd, mean, the backward's mean(dy w xhat) and mean(dy w)) are sums over the row, sequential in
 * the reference, a fixed tree in the kernel: each of T = min(256, D rounded up to 32) threads adds k = ceil(D / T)
 * terms in order, then block_sum's 5 + 5 butterfly levels. With u = 2^-24, terms computed identically on both sides
 * and A = sum |term|, the reference's sum is within (D - 1) u A of the exact one and the kernel's within (k + 9) u A,
 * so they differ by at most  sig A,  sig = (D + k + 8) u.  From there, first order in u (every later fp32 operation
 * whose inputs differ rounds differently on each side: 2 u of its result per operation), per row:
 *   rmsnorm_fwd   terms x^2 (exact: bf16 squares fit in fp32), >= 0: ss differs by sig ss; ss / D + eps by
 *                 (sig + 4u) of itself; the sqrt halves that, then sqrt and 1/ round:  rstd rel  rho = sig/2 + 6u;
 *                 y = w (x r): |dy| <= (rho + 4u) |w x r|
 *   layernorm_fwd mean: terms x, dmu = (sig + 2u) sum|x| / D (abs);  var: each term (x - mu)^2 moves by at most
 *                 2 |d| (dmu + 2u |d|) + (dmu + 2u |d|)^2 + 2u d^2 (d = x - mean), the order adds sig sum d^2, the
 *                 / D rounds: dvar = [2 dmu sum|d| + D dmu^2 + (sig + 6u) sum d^2] / D + 2u var;  rstd rel
 *                 rho = dvar / (2 (var + eps)) + 5u;  y = ((x - mu) r) w + b: |dy| <= |w| r (dmu + |d| (rho + 6u))
 *                 + 2u |y|
 *   rmsnorm_bwd   dot = mean(dy w x r): ddot = (sig + 2u) sum|dy w x r| / D;  dx += r (dy w - xhat dot):
 *                 |ddx| <= r |xhat| ddot + 8u (|dx| + r |dy w| + r |xhat dot|)
 *   layernorm_bwd m1 = mean(dy w), m2 = mean(dy w (x - mu) r): dm = (sig + 2u) sum|term| / D each;
 *                 dx += r (dy w - m1 - xhat m2): |ddx| <= r (dm1 + |xhat| dm2) + 8u (|dx| + r (|dy w| + |m1| +
 *                 |xhat m2|))
 * (the 8u terms count the four to five roundings after the sum, 2u each; a factor 1.01 covers the second order).
 * f32 outputs (rstd, mean) are checked against these bounds; a bf16 output whose fp32 values differ by at most e may
 * round to values differing by at most e + (ulp(got) + ulp(want)) / 2 (each rounding moves by half an ulp of its
 * result): at most 1 bf16 ulp while e stays below an ulp, as it does at these shapes (sig <= 4200 u ~ 2.5e-4). */
#include "kcheck.h"

static const double U = 1.0 / 16777216.0; /* 2^-24 */

static double sig_of(int64_t D) {
    const int64_t T = D < 256 ? (D + 31) / 32 * 32 : 256, k = (D + T - 1) / T;
    return (double)(D + k + 8) * U;
}

/* the spacing of bf16 values at x (normal range; the smallest subnormal step at 0) */
static double bf16_ulp(double x) {
    int ex;
    if (x == 0) return ldexp(1.0, -133);
    frexp(fabs(x), &ex);
    return fmax(ldexp(1.0, ex - 8), ldexp(1.0, -133));
}

/* |got - want| <= e[i] + (ulp(got) + ulp(want)) / 2 for every value (NaN must match NaN) */
static int near_bf16(const char *what, const uint16_t *got, const uint16_t *want, const double *e, int64_t n) {
    int64_t bad = 0, worst = -1;
    double wr = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = tu_widen(got[i]), w = tu_widen(want[i]);
        if (isnan(g) || isnan(w)) {
            if (isnan(g) != isnan(w)) bad++, worst = i, wr = INFINITY;
            continue;
        }
        double tol = 1.01 * e[i] + 0.5 * (bf16_ulp(g) + bf16_ulp(w)), r = fabs(g - w) / tol;
        if (!(r <= 1)) {
            bad++;
            if (!(r <= wr)) wr = r, worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld values beyond the bound; worst at %lld: %.9g vs reference %.9g (bound %g)\n",
                what, (long long)bad, (long long)n, (long long)worst, tu_widen(got[worst]), tu_widen(want[worst]),
                1.01 * e[worst] + 0.5 * (bf16_ulp(tu_widen(got[worst])) + bf16_ulp(tu_widen(want[worst]))));
    return bad == 0;
}

/* |got - want| <= 1.01 tol[i] */
static int near_f32(const char *what, const float *got, const float *want, const double *tol, int64_t n) {
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) ok = kc_same_f32(what, &got[i], &want[i], 1, 0, 1.01 * tol[i]);
    return ok;
}

typedef struct inputs {
    int64_t M, D;
    uint16_t *x, *dy, *dx0;
    float *w, *b;
} inputs;

static inputs make(int64_t M, int64_t D, float offset, uint64_t seed) {
    uint64_t s = seed + (uint64_t)(M * 1009 + D);
    inputs in = {M, D, kc_bf16(M * D, &s, 2.0f), kc_bf16(M * D, &s, 1.0f), kc_bf16(M * D, &s, 0.5f),
                 kc_f32(D, &s, 0.25f), kc_f32(D, &s, 0.1f)};
    /* values over ten binades (so that no order of the row sums is exact); LayerNorm: every other one near offset */
    for (int64_t i = 0; i < M * D; i++)
        in.x[i] = tu_rne(ldexpf(tu_widen(in.x[i]), (int)(i % 10) - 8) + (i % 2 ? offset : 0.0f));
    for (int64_t j = 0; j < D; j++) in.w[j] += 1.0f;
    return in;
}

static void drop(inputs *in) { free(in->x), free(in->dy), free(in->dx0), free(in->w), free(in->b); }

#define X(i, j) ((double)tu_widen(in->x[(i) * D + (j)]))
#define DY(i, j) ((double)tu_widen(in->dy[(i) * D + (j)]))
#define DX0(i, j) ((double)tu_widen(in->dx0[(i) * D + (j)]))

static void rms_case(int64_t M, int64_t D) {
    inputs in_ = make(M, D, 0.0f, 0x3a50000u), *in = &in_;
    const ops *r = kc_ref();
    const double sig = sig_of(D);
    uint16_t *yw = kc_bf16(M * D, &(uint64_t){1}, 1), *yg = kc_dup(yw, 2 * (size_t)(M * D));
    float *rw = malloc(sizeof(float) * (size_t)M), *rg = malloc(sizeof(float) * (size_t)M);
    double *e = malloc(sizeof(double) * (size_t)(M * D)), *tr = malloc(sizeof(double) * (size_t)M);
    char what[96];
    long before = simt_launches();
    r->rmsnorm_fwd(&kc_rctx, yw, rw, in->x, in->w, M, D, 1e-5f);
    kc_rmsnorm_fwd(&kc_kctx, yg, rg, in->x, in->w, M, D, 1e-5f);
    const double rho = sig / 2 + 6 * U;
    for (int64_t i = 0; i < M; i++) {
        tr[i] = rho * rw[i];
        for (int64_t j = 0; j < D; j++) e[i * D + j] = (rho + 4 * U) * fabs(in->w[j] * X(i, j) * rw[i]);
    }
    snprintf(what, sizeof what, "rmsnorm_fwd rstd M=%lld D=%lld", (long long)M, (long long)D);
    CHECK(near_f32(what, rg, rw, tr, M));
    snprintf(what, sizeof what, "rmsnorm_fwd y M=%lld D=%lld", (long long)M, (long long)D);
    CHECK(near_bf16(what, yg, yw, e, M * D));

    /* backward from the reference's rstd: dx and dw, then each alone */
    for (int which = 0; which < 3; which++) {
        uint64_t s = 0xd00u + (uint64_t)which;
        uint16_t *dxw = which == 2 ? NULL : kc_dup(in->dx0, 2 * (size_t)(M * D));
        uint16_t *dxg = which == 2 ? NULL : kc_dup(in->dx0, 2 * (size_t)(M * D));
        float *dww = which == 1 ? NULL : kc_f32(D, &s, 0.5f);
        float *dwg = which == 1 ? NULL : kc_dup(dww, sizeof(float) * (size_t)D);
        r->rmsnorm_bwd(&kc_rctx, dxw, dww, in->dy, in->x, in->w, rw, M, D);
        kc_rmsnorm_bwd(&kc_kctx, dxg, dwg, in->dy, in->x, in->w, rw, M, D);
        if (dxw) {
            for (int64_t i = 0; i < M; i++) {
                double A = 0, dot = 0;
                for (int64_t j = 0; j < D; j++) {
                    double t = DY(i, j) * in->w[j] * X(i, j) * rw[i];
                    A += fabs(t), dot += t;
                }
                const double ddot = (sig + 2 * U) * A / (double)D;
                dot = fabs(dot) / (double)D + ddot;
                for (int64_t j = 0; j < D; j++) {
                    double xhat = fabs(X(i, j) * rw[i]), g = fabs(DY(i, j) * in->w[j]);
                    e[i * D + j] = rw[i] * xhat * ddot + 8 * U * (fabs(DX0(i, j)) + rw[i] * g + rw[i] * xhat * dot);
                }
            }
            snprintf(what, sizeof what, "rmsnorm_bwd dx (case %d) M=%lld D=%lld", which, (long long)M, (long long)D);
            CHECK(near_bf16(what, dxg, dxw, e, M * D));
        }
        if (dww) {
            if (!tu_bits_eq(dwg, dww, sizeof(float) * (size_t)D))
                fprintf(stderr, "  rmsnorm_bwd dw (case %d) M=%lld D=%lld: not bit-identical\n", which, (long long)M,
                        (long long)D);
            CHECK(tu_bits_eq(dwg, dww, sizeof(float) * (size_t)D));
        }
        free(dxw), free(dxg), free(dww), free(dwg);
    }
    KC_RAN(before);
    free(yw), free(yg), free(rw), free(rg), free(e), free(tr);
    drop(in);
}

static void ln_case(int64_t M, int64_t D, int with_bias) {
    inputs in_ = make(M, D, 3.0f, 0x1a50000u), *in = &in_;
    const ops *r = kc_ref();
    const double sig = sig_of(D);
    const float *b = with_bias ? in->b : NULL;
    uint16_t *yw = kc_bf16(M * D, &(uint64_t){1}, 1), *yg = kc_dup(yw, 2 * (size_t)(M * D));
    float *mw = malloc(sizeof(float) * (size_t)M), *mg = malloc(sizeof(float) * (size_t)M);
    float *rw = malloc(sizeof(float) * (size_t)M), *rg = malloc(sizeof(float) * (size_t)M);
    double *e = malloc(sizeof(double) * (size_t)(M * D)), *tm = malloc(sizeof(double) * (size_t)M);
    double *tr = malloc(sizeof(double) * (size_t)M);
    char what[96];
    long before = simt_launches();
    r->layernorm_fwd(&kc_rctx, yw, mw, rw, in->x, in->w, b, M, D, 1e-5f);
    kc_layernorm_fwd(&kc_kctx, yg, mg, rg, in->x, in->w, b, M, D, 1e-5f);
    for (int64_t i = 0; i < M; i++) {
        double A = 0, A2 = 0, Q = 0;
        for (int64_t j = 0; j < D; j++) {
            double d = X(i, j) - mw[i];
            A += fabs(X(i, j)), A2 += fabs(d), Q += d * d;
        }
        const double dmu = (sig + 2 * U) * A / (double)D, var = Q / (double)D;
        const double dvar = (2 * dmu * A2 + (double)D * dmu * dmu + (sig + 6 * U) * Q) / (double)D + 2 * U * var;
        const double rho = dvar / (2 * (var + 1e-5)) + 5 * U;
        tm[i] = dmu, tr[i] = rho * rw[i];
        for (int64_t j = 0; j < D; j++) {
            double d = fabs(X(i, j) - mw[i]), y = fabs((X(i, j) - mw[i]) * rw[i] * in->w[j] + (b ? b[j] : 0));
            e[i * D + j] = fabs(in->w[j]) * rw[i] * (dmu + d * (rho + 6 * U)) + 2 * U * y;
        }
    }
    snprintf(what, sizeof what, "layernorm_fwd mean M=%lld D=%lld", (long long)M, (long long)D);
    CHECK(near_f32(what, mg, mw, tm, M));
    snprintf(what, sizeof what, "layernorm_fwd rstd M=%lld D=%lld", (long long)M, (long long)D);
    CHECK(near_f32(what, rg, rw, tr, M));
    snprintf(what, sizeof what, "layernorm_fwd y M=%lld D=%lld bias=%d", (long long)M, (long long)D, with_bias);
    CHECK(near_bf16(what, yg, yw, e, M * D));

    /* backward from the reference's mean and rstd: dx, dw and db; dx alone; dw alone; db alone */
    for (int which = 0; which < 4; which++) {
        uint64_t s = 0xb00u + (uint64_t)which;
        uint16_t *dxw = which >= 2 ? NULL : kc_dup(in->dx0, 2 * (size_t)(M * D));
        uint16_t *dxg = which >= 2 ? NULL : kc_dup(in->dx0, 2 * (size_t)(M * D));
        float *dww = which == 1 || which == 3 ? NULL : kc_f32(D, &s, 0.5f);
        float *dwg = dww ? kc_dup(dww, sizeof(float) * (size_t)D) : NULL;
        float *dbw = which == 1 || which == 2 ? NULL : kc_f32(D, &s, 0.5f);
        float *dbg = dbw ? kc_dup(dbw, sizeof(float) * (size_t)D) : NULL;
        r->layernorm_bwd(&kc_rctx, dxw, dww, dbw, in->dy, in->x, in->w, mw, rw, M, D);
        kc_layernorm_bwd(&kc_kctx, dxg, dwg, dbg, in->dy, in->x, in->w, mw, rw, M, D);
        if (dxw) {
            for (int64_t i = 0; i < M; i++) {
                double A1 = 0, A2 = 0, m1 = 0, m2 = 0;
                for (int64_t j = 0; j < D; j++) {
                    double g = DY(i, j) * in->w[j], h = g * (X(i, j) - mw[i]) * rw[i];
                    A1 += fabs(g), A2 += fabs(h), m1 += g, m2 += h;
                }
                const double dm1 = (sig + 2 * U) * A1 / (double)D, dm2 = (sig + 2 * U) * A2 / (double)D;
                m1 = fabs(m1) / (double)D + dm1, m2 = fabs(m2) / (double)D + dm2;
                for (int64_t j = 0; j < D; j++) {
                    double xhat = fabs((X(i, j) - mw[i]) * rw[i]), g = fabs(DY(i, j) * in->w[j]);
                    e[i * D + j] = rw[i] * (dm1 + xhat * dm2) + 8 * U * (fabs(DX0(i, j)) + rw[i] * (g + m1 + xhat * m2));
                }
            }
            snprintf(what, sizeof what, "layernorm_bwd dx (case %d) M=%lld D=%lld", which, (long long)M, (long long)D);
            CHECK(near_bf16(what, dxg, dxw, e, M * D));
        }
        if (dww) CHECK(tu_bits_eq(dwg, dww, sizeof(float) * (size_t)D));
        if (dbw) CHECK(tu_bits_eq(dbg, dbw, sizeof(float) * (size_t)D));
        free(dxw), free(dxg), free(dww), free(dwg), free(dbw), free(dbg);
    }
    KC_RAN(before);
    free(yw), free(yg), free(mw), free(mg), free(rw), free(rg), free(e), free(tm), free(tr);
    drop(in);
}

int main(void) {
    const int64_t Ds[] = {1, 31, 33, 1000}, Ms[] = {1, 7};
    for (size_t a = 0; a < sizeof Ds / sizeof *Ds; a++)
        for (size_t c = 0; c < sizeof Ms / sizeof *Ms; c++) {
            rms_case(Ms[c], Ds[a]);
            ln_case(Ms[c], Ds[a], 1);
            ln_case(Ms[c], Ds[a], 0);
        }
    rms_case(64, 4096); /* 64 token rows of the 7B hidden size */
    ln_case(577, 1024, 1); /* one CLIP tile */
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
