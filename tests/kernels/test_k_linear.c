/* test_k_linear — kernels/linear.cu (linear forward and backward, LoRA's matmul_acc; products through kgemm, whose
 * SIMT path sums in plain loops) run by the CPU executor against ops_cpu_bf16, at odd shapes and at sampled rows of
 * the 7B shapes (q/gate/up: 4096 -> 14336 wide, down: 14336 -> 4096, the projector 1024 -> 4096 with its bias, a
 * rank-16 LoRA up-projection).
 *
 * Tolerance. Both sides widen the same bf16 operands exactly and form each output as one fp32 sum of n terms (the K
 * products, the bias, the old value of an accumulated output), in different orders: the reference's OpenBLAS blocks
 * and vectorises, kgemm sums k in ascending order (cuBLASLt on the GPU: its own order). Each fp32 sum is within
 * gamma_n sum|terms| of the exact one for any order (docs/testing.md, Higham Lemma 3.1), so the two differ by at
 * most 2 gamma_n S, S = sum|terms| of that element (computed here in double). A bf16 output is then rounded once by
 * each side (nearest even), which adds at most one bf16 ulp of the larger of the two: the check per element is
 * |got - want| <= 2 gamma_n S + ulp_bf16. dW (fp32) gets 2 gamma_n S. db is bit-identical (tolerance 0): the kernel
 * sums each column row by row in the reference's own order. */
#include "kcheck.h"

static double g_u = 1.0 / 16777216.0;

static double gam(double n) { return n * g_u / (1 - n * g_u); }

/* one bf16 ulp at the magnitude of x (0 for 0) */
static double ulp16(double x) {
    int e;
    if (x == 0) return 0;
    frexp(fabs(x), &e);
    return ldexp(1.0, e - 8);
}

static int close16(const char *what, const uint16_t *got, const uint16_t *want, const double *S, int64_t n,
                   double nterms) {
    int64_t bad = 0, worst = -1;
    double wr = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = tu_widen(got[i]), w = tu_widen(want[i]);
        double tol = 2 * gam(nterms) * S[i] + ulp16(fabs(g) > fabs(w) ? g : w), d = fabs(g - w);
        if (!(d <= tol)) {
            bad++;
            if (!(d / (tol > 0 ? tol : 1e-30) <= wr)) wr = d / (tol > 0 ? tol : 1e-30), worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld beyond the bound; worst at %lld: %.8g vs reference %.8g (bound %.3g)\n",
                what, (long long)bad, (long long)n, (long long)worst, tu_widen(got[worst]), tu_widen(want[worst]),
                2 * gam(nterms) * S[worst] + ulp16(tu_widen(want[worst])));
    return bad == 0;
}

static int close32(const char *what, const float *got, const float *want, const double *S, int64_t n, double nterms) {
    int64_t bad = 0, worst = -1;
    for (int64_t i = 0; i < n; i++) {
        double tol = 2 * gam(nterms) * S[i], d = fabs((double)got[i] - want[i]);
        if (!(d <= tol) && (bad++, worst < 0)) worst = i;
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld beyond the bound; first at %lld: %.9g vs reference %.9g (bound %.3g)\n",
                what, (long long)bad, (long long)n, (long long)worst, got[worst], want[worst],
                2 * gam(nterms) * S[worst]);
    return bad == 0;
}

/* |x| of n bf16 values, widened */
static float *absw(const uint16_t *x, int64_t n) {
    float *a = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) a[i] = fabsf(tu_widen(x[i]));
    return a;
}

static double *dbl(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }

static void one_shape(int64_t M, int64_t K, int64_t N, int with_bias, float alpha) {
    uint64_t s = 0x11ea0000u + (uint64_t)(M * 131 + K * 7 + N);
    const ops *r = kc_ref();
    char what[128];
    uint16_t *x = kc_bf16(M * K, &s, 1.0f), *w = kc_bf16(N * K, &s, 0.5f), *dy = kc_bf16(M * N, &s, 1.0f);
    float *b = with_bias ? kc_f32(N, &s, 1.0f) : NULL;
    uint16_t *y0 = kc_bf16(M * N, &s, 0.5f), *dx0 = kc_bf16(M * K, &s, 0.5f);
    float *dw0 = kc_f32(N * K, &s, 0.5f), *db0 = kc_f32(N, &s, 0.5f);
    uint16_t *yw = kc_dup(y0, 2 * (size_t)(M * N)), *yg = kc_dup(y0, 2 * (size_t)(M * N));
    uint16_t *dxw = kc_dup(dx0, 2 * (size_t)(M * K)), *dxg = kc_dup(dx0, 2 * (size_t)(M * K));
    float *dww = kc_dup(dw0, 4 * (size_t)(N * K)), *dwg = kc_dup(dw0, 4 * (size_t)(N * K));
    float *dbw = kc_dup(db0, 4 * (size_t)N), *dbg = kc_dup(db0, 4 * (size_t)N);
    double *S = dbl(M * N > M * K ? (M * N > N * K ? M * N : N * K) : (M * K > N * K ? M * K : N * K));
    double *Sxw = dbl(M * N);
    long before = simt_launches();

    /* forward: S = sum_k |x w| + |b| */
    r->linear_fwd(&kc_rctx, yw, x, w, b, M, K, N);
    kc_linear_fwd(&kc_kctx, yg, x, w, b, M, K, N);
    float *ax = absw(x, M * K), *aw = absw(w, N * K), *ady = absw(dy, M * N);
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double a = 0;
            for (int64_t k = 0; k < K; k++) a += (double)ax[i * K + k] * aw[j * K + k];
            Sxw[i * N + j] = a;
            S[i * N + j] = a + (b ? fabs(b[j]) : 0);
        }
    snprintf(what, sizeof what, "linear_fwd %lldx%lldx%lld%s", (long long)M, (long long)K, (long long)N,
             b ? " +bias" : "");
    CHECK(close16(what, yg, yw, S, M * N, (double)K + 1));
    if (b) KC_RAN(before); /* without a bias the SIMT product launches no kernel */

    /* backward, all three gradients: dx += dy W (S = |dx0| + sum_j |dy w|), dW += dy^T x, db += colsum(dy) */
    r->linear_bwd(&kc_rctx, dxw, dww, dbw, dy, x, w, M, K, N);
    kc_linear_bwd(&kc_kctx, dxg, dwg, dbg, dy, x, w, M, K, N);
    for (int64_t i = 0; i < M; i++) {
        double *row = S + i * K;
        for (int64_t k = 0; k < K; k++) row[k] = fabs(tu_widen(dx0[i * K + k]));
        for (int64_t j = 0; j < N; j++)
            for (int64_t k = 0; k < K; k++) row[k] += (double)ady[i * N + j] * aw[j * K + k];
    }
    snprintf(what, sizeof what, "linear_bwd dx %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
    CHECK(close16(what, dxg, dxw, S, M * K, (double)N + 1));
    for (int64_t j = 0; j < N; j++) {
        double *row = S + j * K;
        for (int64_t k = 0; k < K; k++) row[k] = fabs(dw0[j * K + k]);
        for (int64_t i = 0; i < M; i++)
            for (int64_t k = 0; k < K; k++) row[k] += (double)ady[i * N + j] * ax[i * K + k];
    }
    snprintf(what, sizeof what, "linear_bwd dW %lldx%lldx%lld", (long long)M, (long long)K, (long long)N);
    CHECK(close32(what, dwg, dww, S, N * K, (double)M + 1));
    snprintf(what, sizeof what, "linear_bwd db %lldx%lldx%lld (bit-identical)", (long long)M, (long long)K,
             (long long)N);
    if (!tu_bits_eq(dbg, dbw, 4 * (size_t)N)) fprintf(stderr, "  %s differs\n", what);
    CHECK(tu_bits_eq(dbg, dbw, 4 * (size_t)N));

    /* the gradients one at a time (the others NULL, and the operands they alone need): the same values */
    uint16_t *dx1 = kc_dup(dx0, 2 * (size_t)(M * K));
    float *dw1 = kc_dup(dw0, 4 * (size_t)(N * K)), *db1 = kc_dup(db0, 4 * (size_t)N);
    if (M * K * N < 1000000) {
        kc_linear_bwd(&kc_kctx, dx1, NULL, NULL, dy, NULL, w, M, K, N);
        kc_linear_bwd(&kc_kctx, NULL, dw1, NULL, dy, x, NULL, M, K, N);
        kc_linear_bwd(&kc_kctx, NULL, NULL, db1, dy, NULL, NULL, M, K, N);
        CHECK(tu_bits_eq(dx1, dxg, 2 * (size_t)(M * K)));
        CHECK(tu_bits_eq(dw1, dwg, 4 * (size_t)(N * K)));
        CHECK(tu_bits_eq(db1, dbg, 4 * (size_t)N));
    }

    /* matmul_acc: y += alpha x W^T, S = |y0| + |alpha| sum_k |x w| */
    memcpy(yw, y0, 2 * (size_t)(M * N));
    memcpy(yg, y0, 2 * (size_t)(M * N));
    r->matmul_acc(&kc_rctx, yw, x, w, M, K, N, alpha);
    kc_matmul_acc(&kc_kctx, yg, x, w, M, K, N, alpha);
    for (int64_t e = 0; e < M * N; e++) S[e] = fabs(tu_widen(y0[e])) + fabs(alpha) * Sxw[e];
    snprintf(what, sizeof what, "matmul_acc %lldx%lldx%lld alpha %g", (long long)M, (long long)K, (long long)N,
             (double)alpha);
    CHECK(close16(what, yg, yw, S, M * N, (double)K + 1));
    CHECK(kc_kctx.err == 0);
    free(x), free(w), free(dy), free(b), free(y0), free(dx0), free(dw0), free(db0), free(yw), free(yg), free(dxw);
    free(dxg), free(dww), free(dwg), free(dbw), free(dbg), free(S), free(Sxw), free(ax), free(aw), free(ady), free(dx1), free(dw1), free(db1);
}

int main(void) {
    /* odd shapes, with and without a bias */
    one_shape(1, 1, 1, 1, 1.0f);
    one_shape(3, 5, 7, 0, 2.0f);
    one_shape(17, 33, 9, 1, 0.5f);
    one_shape(64, 129, 65, 1, -1.5f);
    one_shape(31, 16, 257, 0, 2.0f);
    /* 7B: 3 rows of gate/up (4096 -> 14336) and 2 of down (14336 -> 4096); the projector's first linear (1024 -> 4096,
     * bias); a rank-16 LoRA up-projection into 4096 (alpha 2) */
    one_shape(3, 4096, 14336, 0, 1.0f);
    one_shape(2, 14336, 4096, 0, 1.0f);
    one_shape(16, 1024, 4096, 1, 1.0f);
    one_shape(48, 16, 4096, 0, 2.0f);
    free(kc_kctx.kscratch);
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
