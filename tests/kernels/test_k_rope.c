/* test_k_rope — kernels/rope.cu (split-half rotary embedding, forward and backward, in place) run by the CPU executor
 * against ops_cpu_bf16: odd token counts (1, 31, 257), odd and even head counts and head dimensions (2, 6, 64, 130,
 * an odd 7: its last value untouched), positions from 0 to 32k with repeats and packed restarts, theta 1e4 and 1e6,
 * zero-size calls, and the 7B shapes (3100 tokens: q 32 x 128, k 8 x 128; CLIP has no rotary embedding).
 *
 * Tolerance 0 (bit-identical): the kernel's angle is the reference's (inv_i by the same host expression, one fp32
 * product), cos / sin are the same libm's here, the rotation is the same fp32 expression without contraction, and
 * each value is rounded once. (On a GPU, cosf / sinf differ by up to 3 ulp: kernels/rope.cu derives that bound.) */
#include "kcheck.h"

static void one_case(int64_t ntok, int nhead, int hd, float theta, int32_t maxpos) {
    uint64_t s = 0x20be0000u + (uint64_t)(ntok * 977 + nhead * 31 + hd) + (uint64_t)maxpos;
    const ops *r = kc_ref();
    const int64_t n = ntok * nhead * hd;
    uint16_t *x = kc_bf16(n, &s, 3.0f), *want = kc_dup(x, 2 * (size_t)n), *got = kc_dup(x, 2 * (size_t)n);
    int32_t *pos = malloc(sizeof(int32_t) * (size_t)(ntok ? ntok : 1));
    /* packed sequences: positions count up from a random start and restart now and then */
    int32_t p = 0;
    for (int64_t t = 0; t < ntok; t++) {
        if (t == 0 || tu_rand(&s) > 0.95f) p = (int32_t)((tu_rand(&s) + 1.0f) * 0.5f * (float)maxpos);
        pos[t] = p < maxpos ? p++ : (p = 0);
    }
    char what[128];
    long before = simt_launches();
    r->rope_fwd(&kc_rctx, want, pos, ntok, nhead, hd, theta);
    kc_rope_fwd(&kc_kctx, got, pos, ntok, nhead, hd, theta);
    snprintf(what, sizeof what, "rope_fwd ntok=%lld nhead=%d hd=%d theta=%g", (long long)ntok, nhead, hd,
             (double)theta);
    CHECK(kc_same_bf16(what, got, want, n, 0));
    memcpy(want, x, 2 * (size_t)n), memcpy(got, x, 2 * (size_t)n);
    r->rope_bwd(&kc_rctx, want, pos, ntok, nhead, hd, theta);
    kc_rope_bwd(&kc_kctx, got, pos, ntok, nhead, hd, theta);
    snprintf(what, sizeof what, "rope_bwd ntok=%lld nhead=%d hd=%d theta=%g", (long long)ntok, nhead, hd,
             (double)theta);
    CHECK(kc_same_bf16(what, got, want, n, 0));
    if (n > 0 && hd >= 2) KC_RAN(before);
    free(x), free(want), free(got), free(pos);
}

int main(void) {
    long before = simt_launches(); /* zero-size calls with NULL buffers launch nothing */
    kc_rope_fwd(&kc_kctx, NULL, NULL, 0, 32, 128, 1e4f);
    kc_rope_bwd(&kc_kctx, NULL, NULL, 0, 32, 128, 1e4f);
    CHECK(simt_launches() == before && kc_kctx.err == 0);
    one_case(0, 4, 64, 1e4f, 100);
    one_case(5, 0, 64, 1e4f, 100);
    const int64_t toks[] = {1, 31, 257};
    const int heads[] = {1, 3, 8};
    const int hds[] = {2, 6, 7, 64, 130};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int d = 0; d < 5; d++)
                one_case(toks[a], heads[b], hds[d], b == 1 ? 1e6f : 1e4f, a == 2 ? 32768 : 500);
    /* more tokens than blocks (2048): blocks take several tokens, whose (cos, sin) the threads share */
    one_case(2100, 3, 130, 1e4f, 4000);
    /* Mistral-7B: 3100 tokens, q 32 heads and k 8 heads of 128, theta 1e6 (v0.2) and 1e4 (v0.1) */
    one_case(3100, 32, 128, 1e6f, 32768);
    one_case(3100, 8, 128, 1e4f, 32768);
    /* a head dimension beyond the largest the ops take is refused */
    uint16_t x[4] = {0};
    int32_t pos[1] = {3};
    kc_kctx.err = 0;
    kc_rope_fwd(&kc_kctx, x, pos, 1, 1, OPS_ATTN_MAX_HEAD_DIM + 2, 1e4f);
    CHECK(kc_kctx.err != 0);
    kc_kctx.err = 0, kc_kctx.errmsg[0] = 0;
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
