/* test_k_embed — kernels/embed.cu (embedding rows, answer log-probabilities; forward and backward) run by the CPU
 * executor against ops_cpu_bf16, at odd shapes (D, V = 1, 31, 33, 1000; M = 1, 7) and at the 7B shapes (hidden
 * 4096, vocab 32064 with a few rows).
 *
 * Tolerance 0 (bit-identical) for embed_fwd (an f32 table row rounded once to bf16), embed_bwd (dy widened, added to
 * the f32 dtable token by token in order, as the reference; ids repeat and some rows are masked) and logprob_bwd
 * (given the same lse: the reference's fp32 formula, -dlogp expf(x - lse), + dlogp at the label, rounded once).
 *
 * logprob_fwd: the kernel sums s = sum_j expf(x_j - max) in fp32 — each of T = min(1024, V rounded up to 32) threads
 * adds k = ceil(V / T) terms in order, then block_sum's tree of 5 + 5 levels — while the reference sums in double.
 * The max is exact in any order and the terms are the same (same expf on the same values), all >= 0, so with u =
 * 2^-24 the kernel's s is within (k - 1 + 10) u s of the exact sum and the reference's within V 2^-53 s (< u s for
 * V < 2^29); log turns a relative error into an absolute one (|log(1 + d)| <= 1.01 |d| here), and then each side
 * rounds log(s) to f32 (u |L|, L = log s) and m + L (u |lse|). Hence
 *     |lse_kernel - lse_ref| <= 1.01 (k + 10) u + 2 u (|L| + |lse|)
 * and logp = x[label] - lse adds one more rounding per side: + 2 u |logp|. */
#include "kcheck.h"

static void embed_case(int64_t ntok, int64_t D, int64_t nrows) {
    uint64_t s = 0xe3b0000u + (uint64_t)(ntok * 131 + D);
    const ops *r = kc_ref();
    float *table = kc_f32(nrows * D, &s, 0.5f);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)ntok);
    uint8_t *mask = malloc((size_t)nrows);
    for (int64_t t = 0; t < ntok; t++) ids[t] = (int32_t)(fabsf(tu_rand(&s)) * (float)(nrows < 4 ? nrows : 4));
    if (ntok > 2) ids[ntok - 1] = ids[0]; /* a repeated id (also repeats among the first 4 rows) */
    for (int64_t i = 0; i < nrows; i++) mask[i] = (uint8_t)(i % 3 != 1);
    uint16_t *want = kc_bf16(ntok * D, &s, 1.0f), *got = kc_bf16(ntok * D, &s, 1.0f);
    char what[96];
    long before = simt_launches();
    r->embed_fwd(&kc_rctx, want, table, ids, ntok, D);
    kc_embed_fwd(&kc_kctx, got, table, ids, ntok, D);
    snprintf(what, sizeof what, "embed_fwd ntok=%lld D=%lld", (long long)ntok, (long long)D);
    CHECK(kc_same_bf16(what, got, want, ntok * D, 0));

    uint16_t *dy = kc_bf16(ntok * D, &s, 1.0f);
    for (int masked = 0; masked < 2; masked++) {
        float *dw = kc_f32(nrows * D, &s, 0.25f), *dg = kc_dup(dw, sizeof(float) * (size_t)(nrows * D));
        r->embed_bwd(&kc_rctx, dw, dy, ids, masked ? mask : NULL, ntok, D);
        kc_embed_bwd(&kc_kctx, dg, dy, ids, masked ? mask : NULL, ntok, D);
        if (!tu_bits_eq(dg, dw, sizeof(float) * (size_t)(nrows * D)))
            fprintf(stderr, "  embed_bwd ntok=%lld D=%lld mask=%d: not bit-identical\n", (long long)ntok, (long long)D,
                    masked);
        CHECK(tu_bits_eq(dg, dw, sizeof(float) * (size_t)(nrows * D)));
        free(dw), free(dg);
    }
    KC_RAN(before);
    free(table), free(ids), free(mask), free(want), free(got), free(dy);
}

static void logprob_case(int64_t M, int64_t V, float scale) {
    uint64_t s = 0x109b0000u + (uint64_t)(M * 7919 + V);
    const ops *r = kc_ref();
    uint16_t *logits = kc_bf16(M * V, &s, scale);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)M);
    for (int64_t i = 0; i < M; i++) labels[i] = (int32_t)(fabsf(tu_rand(&s)) * (float)V) % (int32_t)V;
    float *lp_w = kc_f32(M, &s, 1), *lse_w = kc_f32(M, &s, 1), *lp_g = kc_f32(M, &s, 1), *lse_g = kc_f32(M, &s, 1);
    long before = simt_launches();
    r->logprob_fwd(&kc_rctx, lp_w, lse_w, logits, labels, M, V);
    kc_logprob_fwd(&kc_kctx, lp_g, lse_g, logits, labels, M, V);
    const int64_t T = V < 1024 ? (V + 31) / 32 * 32 : 1024, k = (V + T - 1) / T;
    const double u = ldexp(1.0, -24);
    char what[96];
    for (int64_t i = 0; i < M; i++) {
        float m = -INFINITY;
        for (int64_t j = 0; j < V; j++) m = fmaxf(m, tu_widen(logits[i * V + j]));
        const double L = fabs((double)lse_w[i] - m);
        const double tl = 1.01 * (double)(k + 10) * u + 2 * u * (L + fabs(lse_w[i]));
        snprintf(what, sizeof what, "logprob_fwd lse row %lld M=%lld V=%lld", (long long)i, (long long)M, (long long)V);
        CHECK(kc_same_f32(what, &lse_g[i], &lse_w[i], 1, 0, tl));
        snprintf(what, sizeof what, "logprob_fwd logp row %lld M=%lld V=%lld", (long long)i, (long long)M, (long long)V);
        CHECK(kc_same_f32(what, &lp_g[i], &lp_w[i], 1, 0, tl + 2 * u * fabs(lp_w[i])));
    }

    /* backward from the reference's lse, overwriting whatever dlogits held */
    float *dlogp = kc_f32(M, &s, 2.0f);
    uint16_t *dw = kc_bf16(M * V, &s, 1.0f), *dg = kc_bf16(M * V, &s, 1.0f);
    r->logprob_bwd(&kc_rctx, dw, dlogp, lse_w, logits, labels, M, V);
    kc_logprob_bwd(&kc_kctx, dg, dlogp, lse_w, logits, labels, M, V);
    snprintf(what, sizeof what, "logprob_bwd M=%lld V=%lld", (long long)M, (long long)V);
    CHECK(kc_same_bf16(what, dg, dw, M * V, 0));
    KC_RAN(before);
    free(logits), free(labels), free(lp_w), free(lse_w), free(lp_g), free(lse_g), free(dlogp), free(dw), free(dg);
}

int main(void) {
    const int64_t Ds[] = {1, 31, 33, 1000}, Ms[] = {1, 7};
    for (size_t a = 0; a < sizeof Ds / sizeof *Ds; a++)
        for (size_t b = 0; b < sizeof Ms / sizeof *Ms; b++) {
            embed_case(Ms[b], Ds[a], 5);
            logprob_case(Ms[b], Ds[a], 8.0f);
        }
    embed_case(7, 4096, 9);        /* 7 tokens of the 7B hidden size */
    logprob_case(3, 32064, 12.0f); /* 3 answer rows of the 7B vocabulary */
    logprob_case(2, 32064, 0.5f);  /* flat logits: every term counts in the sum */
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
