/* test_k_act — kernels/act.cu (GELU, quick GELU, SwiGLU, residual adds; forward and backward) run by the CPU
 * executor against ops_cpu_bf16, at odd sizes and at a sample of the 7B MLP's shape (64 tokens x 14336).
 *
 * Tolerance 0 (bit-identical): each kernel widens its bf16 operands (exact), evaluates the reference's fp32 formula
 * in the same order with the same libm (expf, erff) and rounds once to nearest even, as ops_cpu_bf16 does; the
 * accumulating backward ops widen the gradient, add in fp32 and round once, also as the reference does. */
#include "kcheck.h"

static void one_size(int64_t n, float scale) {
    uint64_t s = 0x5eed0000u + (uint64_t)n;
    const ops *r = kc_ref();
    uint16_t *x = kc_bf16(n, &s, scale), *g = kc_bf16(n, &s, scale), *u = kc_bf16(n, &s, scale);
    uint16_t *dy = kc_bf16(n, &s, 1.0f), *acc = kc_bf16(n, &s, 0.5f);
    uint16_t *want = kc_dup(acc, 2 * (size_t)n), *got = kc_dup(acc, 2 * (size_t)n);
    uint16_t *want2 = kc_dup(acc, 2 * (size_t)n), *got2 = kc_dup(acc, 2 * (size_t)n);
    char what[96];
    long before = simt_launches();

#define FWD1(op)                                                                                                     \
    r->op(&kc_rctx, want, x, n);                                                                                     \
    kc_##op(&kc_kctx, got, x, n);                                                                                    \
    snprintf(what, sizeof what, #op " n=%lld", (long long)n);                                                        \
    CHECK(kc_same_bf16(what, got, want, n, 0));
#define BWD1(op)                                                                                                     \
    memcpy(want, acc, 2 * (size_t)n);                                                                                \
    memcpy(got, acc, 2 * (size_t)n);                                                                                 \
    r->op(&kc_rctx, want, dy, x, n);                                                                                 \
    kc_##op(&kc_kctx, got, dy, x, n);                                                                                \
    snprintf(what, sizeof what, #op " n=%lld", (long long)n);                                                        \
    CHECK(kc_same_bf16(what, got, want, n, 0));

    FWD1(gelu_fwd)
    BWD1(gelu_bwd)
    FWD1(quick_gelu_fwd)
    BWD1(quick_gelu_bwd)

    r->swiglu_fwd(&kc_rctx, want, g, u, n);
    kc_swiglu_fwd(&kc_kctx, got, g, u, n);
    snprintf(what, sizeof what, "swiglu_fwd n=%lld", (long long)n);
    CHECK(kc_same_bf16(what, got, want, n, 0));
    /* both gradients, then each alone (NULL for the other) */
    for (int which = 0; which < 3; which++) {
        memcpy(want, acc, 2 * (size_t)n), memcpy(got, acc, 2 * (size_t)n);
        memcpy(want2, dy, 2 * (size_t)n), memcpy(got2, dy, 2 * (size_t)n);
        r->swiglu_bwd(&kc_rctx, which == 2 ? NULL : want, which == 1 ? NULL : want2, dy, g, u, n);
        kc_swiglu_bwd(&kc_kctx, which == 2 ? NULL : got, which == 1 ? NULL : got2, dy, g, u, n);
        snprintf(what, sizeof what, "swiglu_bwd dg (case %d) n=%lld", which, (long long)n);
        CHECK(kc_same_bf16(what, got, want, n, 0));
        snprintf(what, sizeof what, "swiglu_bwd du (case %d) n=%lld", which, (long long)n);
        CHECK(kc_same_bf16(what, got2, want2, n, 0));
    }

    memcpy(want, acc, 2 * (size_t)n), memcpy(got, acc, 2 * (size_t)n);
    r->add_inplace(&kc_rctx, want, x, n);
    kc_add_inplace(&kc_kctx, got, x, n);
    snprintf(what, sizeof what, "add_inplace n=%lld", (long long)n);
    CHECK(kc_same_bf16(what, got, want, n, 0));
    r->add(&kc_rctx, want, x, g, n);
    kc_add(&kc_kctx, got, x, g, n);
    snprintf(what, sizeof what, "add n=%lld", (long long)n);
    CHECK(kc_same_bf16(what, got, want, n, 0));
    if (n > 0) KC_RAN(before);
    free(x), free(g), free(u), free(dy), free(acc), free(want), free(got), free(want2), free(got2);
}

int main(void) {
    const int64_t sizes[] = {1, 31, 257, 4099};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) one_size(sizes[i], 4.0f);
    one_size(64 * 14336, 6.0f); /* 64 tokens of the 7B MLP (14336 wide) */
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
