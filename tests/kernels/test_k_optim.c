/* test_k_optim — kernels/optim.cu (AdamW update, sum of squares) run by the CPU executor against the CPU reference
 * (ops_cpu_bf16's adamw and sumsq are the fp32 table's: cpu_optim.c), at odd sizes and at 7B-sized chunks.
 *
 * adamw: tolerance 0 (bit-identical p, m, v): the kernel evaluates the reference's fp32 expression in its order, one
 * rounding per operation (sqrtf correctly rounded on both sides).
 * sumsq: the kernel adds in a fixed tree (one block of T = 1024 threads, each a strided loop, then warp and block
 * butterflies), the reference in index order. Every square (double)x * (double)x is exact (24 + 24 bits <= 53) and
 * every term is >= 0, so with S = |*out| + sum x^2 and u = 2^-53 the reference (n additions) is within n u S of the
 * exact sum, the tree (at most ceil(n / T) - 1 + 5 + 5 + 1 roundings on any path) within (n / T + 11) u S: they differ
 * by at most (n + n / T + 11) u S; two calls in a row (each tree ending in an add to *out) by the sum of two such
 * tree terms plus the reference's n u S. The kernel must also give the same bits when run twice. */
#include "kcheck.h"

static void adamw_case(int64_t n, int has_wd, int step) {
    uint64_t s = 0xada0000u + (uint64_t)n * 7 + (uint64_t)has_wd;
    float *p = kc_f32(n, &s, 0.5f), *g = kc_f32(n, &s, 1e-2f), *m = kc_f32(n, &s, 1e-3f), *v = kc_f32(n, &s, 1e-5f);
    for (int64_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    if (n > 3) g[1] = 0.0f, m[2] = 0.0f, v[2] = 0.0f; /* zero gradient, zero moments: denominator eps */
    float *p2 = kc_dup(p, 4 * (size_t)n), *m2 = kc_dup(m, 4 * (size_t)n), *v2 = kc_dup(v, 4 * (size_t)n);
    /* the coefficients as train/adamw.c forms them (lr 2e-4, betas 0.9 / 0.999, eps 1e-8, weight decay 0.01) */
    const double lr = 2e-4, wd = 0.01, b1 = 0.9, bb2 = 0.999, t = step;
    const double bc1 = 1.0 - pow(b1, t), bc2 = sqrt(1.0 - pow(bb2, t));
    const float decay = (float)(1.0 - lr * wd), neg_step = (float)(-(lr / bc1));
    const float w1 = (float)(1.0 - b1), b2 = (float)bb2, w2 = (float)(1.0 - bb2);
    long before = simt_launches();
    kc_ref()->adamw(&kc_rctx, p, g, m, v, n, decay, has_wd, w1, b2, w2, (float)bc2, 1e-8f, neg_step);
    kc_adamw(&kc_kctx, p2, g, m2, v2, n, decay, has_wd, w1, b2, w2, (float)bc2, 1e-8f, neg_step);
    KC_RAN(before);
    if (!tu_bits_eq(p2, p, 4 * (size_t)n) || !tu_bits_eq(m2, m, 4 * (size_t)n) || !tu_bits_eq(v2, v, 4 * (size_t)n))
        fprintf(stderr, "  adamw n=%lld wd=%d step=%d: not bit-identical\n", (long long)n, has_wd, step);
    CHECK(tu_bits_eq(p2, p, 4 * (size_t)n));
    CHECK(tu_bits_eq(m2, m, 4 * (size_t)n));
    CHECK(tu_bits_eq(v2, v, 4 * (size_t)n));
    free(p), free(g), free(m), free(v), free(p2), free(m2), free(v2);
}

/* the bound above for a reference over n values and `calls` kernel calls over the same values */
static double sumsq_tol(int64_t n, int calls, double S) {
    const double u = ldexp(1.0, -53);
    return ((double)n + calls * ((double)n / 1024.0 + 12.0)) * u * S;
}

static void sumsq_case(int64_t n, float scale) {
    uint64_t s = 0x5500000u + (uint64_t)n;
    float *x = kc_f32(n, &s, scale);
    /* values over many binades, so that the order of the additions shows in the last bits */
    for (int64_t i = 0; i < n; i++) x[i] = ldexpf(x[i], (int)(i % 23) - 11);
    const double start = 3.25;
    double want = start, got = start, got2 = start, split = start;
    kc_ref()->sumsq(&kc_rctx, &want, x, n);
    long before = simt_launches();
    kc_sumsq(&kc_kctx, &got, x, n);
    kc_sumsq(&kc_kctx, &got2, x, n);
    KC_RAN(before);
    const double S = want; /* every term >= 0: the sum is S up to n u S */
    if (!(fabs(got - want) <= sumsq_tol(n, 1, S)))
        fprintf(stderr, "  sumsq n=%lld: %.17g vs reference %.17g (tol %g)\n", (long long)n, got, want,
                sumsq_tol(n, 1, S));
    CHECK(fabs(got - want) <= sumsq_tol(n, 1, S));
    CHECK(memcmp(&got, &got2, sizeof got) == 0); /* the same bits every run */
    /* two calls in a row: the running sum continues */
    int64_t h = n / 3;
    kc_sumsq(&kc_kctx, &split, x, h);
    kc_sumsq(&kc_kctx, &split, x + h, n - h);
    if (!(fabs(split - want) <= sumsq_tol(n, 2, S)))
        fprintf(stderr, "  sumsq n=%lld in two calls: %.17g vs reference %.17g\n", (long long)n, split, want);
    CHECK(fabs(split - want) <= sumsq_tol(n, 2, S));
    free(x);
}

int main(void) {
    const int64_t sizes[] = {1, 7, 31, 33, 1000, 4099};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        adamw_case(sizes[i], 1, 1);
        adamw_case(sizes[i], 0, 7);
        sumsq_case(sizes[i], 1.0f);
    }
    /* a 7B-sized tensor: one LoRA A of the 7B attention (rank 64 x 4096) and a 4M-value slice of the ~40M gradients */
    adamw_case(64 * 4096, 1, 1000);
    sumsq_case(64 * 4096, 1e-2f);
    sumsq_case(4 * 1024 * 1024 + 5, 1e-3f);
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
