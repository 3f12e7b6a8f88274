/* test_k_vision — kernels/vision.cu (im2col, vis_embed) run by the CPU executor against ops_cpu_bf16: odd tile and
 * patch sizes (a tile that is not a multiple of the patch: its last pixels unused; patch 1; one-pixel tiles), odd
 * widths (1, 31, 257), tiles without patches, zero-size calls, and CLIP ViT-L/336 (tiles 336, patch 14: 576 patches
 * of 588 values; D 1024) at 5 tiles, more rows than the kernels' 2048 blocks.
 *
 * Tolerance 0 (bit-identical): im2col rounds each f32 pixel once (nearest even), vis_embed forms the reference's one
 * fp32 sum (the widened patch value or cls, plus pos) and rounds it once. */
#include "kcheck.h"

static void im2col_case(int P, int T, int p) {
    uint64_t s = 0x12c0000u + (uint64_t)(P * 1000 + T * 10 + p);
    const ops *r = kc_ref();
    const int64_t g = p > 0 ? T / p : 0, n = (int64_t)P * g * g * 3 * p * p;
    float *pix = kc_f32((int64_t)P * 3 * T * T, &s, 2.0f);
    uint16_t *want = kc_bf16(n + 1, &s, 1.0f), *got = kc_dup(want, 2 * (size_t)(n + 1));
    long before = simt_launches();
    r->im2col(&kc_rctx, want, pix, P, T, p);
    kc_im2col(&kc_kctx, got, pix, P, T, p);
    char what[96];
    snprintf(what, sizeof what, "im2col P=%d T=%d p=%d", P, T, p);
    CHECK(kc_same_bf16(what, got, want, n + 1, 0)); /* the value after the rows untouched */
    if (n > 0) KC_RAN(before);
    free(pix), free(want), free(got);
}

static void vis_embed_case(int64_t ntiles, int64_t np, int64_t D) {
    uint64_t s = 0xe3b0000u + (uint64_t)(ntiles * 100000 + np * 100 + D);
    const ops *r = kc_ref();
    const int64_t n = ntiles * (np + 1) * D;
    uint16_t *patch = kc_bf16(ntiles * np * D, &s, 2.0f);
    float *cls = kc_f32(D, &s, 1.0f), *pos = kc_f32((np + 1) * D, &s, 0.5f);
    uint16_t *want = kc_bf16(n + 1, &s, 1.0f), *got = kc_dup(want, 2 * (size_t)(n + 1));
    long before = simt_launches();
    r->vis_embed(&kc_rctx, want, patch, cls, pos, ntiles, np, D);
    kc_vis_embed(&kc_kctx, got, patch, cls, pos, ntiles, np, D);
    char what[96];
    snprintf(what, sizeof what, "vis_embed ntiles=%lld np=%lld D=%lld", (long long)ntiles, (long long)np, (long long)D);
    CHECK(kc_same_bf16(what, got, want, n + 1, 0));
    if (n > 0) KC_RAN(before);
    free(patch), free(cls), free(pos), free(want), free(got);
}

int main(void) {
    long before = simt_launches(); /* zero-size calls with NULL buffers launch nothing */
    kc_im2col(&kc_kctx, NULL, NULL, 0, 336, 14);
    kc_vis_embed(&kc_kctx, NULL, NULL, NULL, NULL, 0, 576, 1024);
    CHECK(simt_launches() == before && kc_kctx.err == 0);
    im2col_case(0, 14, 14);
    im2col_case(1, 1, 1);
    im2col_case(1, 14, 14);
    im2col_case(2, 31, 5); /* 6 x 6 patches, the last pixel row and column unused */
    im2col_case(3, 9, 1);
    im2col_case(1, 257, 16);
    im2col_case(5, 336, 14); /* CLIP ViT-L/336: 5 tiles (base + 4 of the anyres grid), 2880 rows of 588 */

    vis_embed_case(0, 576, 1024);
    vis_embed_case(2, 3, 0);
    const int64_t Ds[] = {1, 31, 257};
    for (int i = 0; i < 3; i++) {
        vis_embed_case(1, 0, Ds[i]); /* the class row only */
        vis_embed_case(1, 1, Ds[i]);
        vis_embed_case(3, 31, Ds[i]);
    }
    vis_embed_case(5, 576, 1024); /* CLIP: 5 tiles of 577 rows of 1024 */
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
