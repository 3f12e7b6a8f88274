/* cpu_vision — the CLIP patch embedding around its GEMM: im2col (tiles -> patch rows) and vis_embed ([CLS | patches]
 * plus position embeddings). Neither has a backward: the vision tower's input and embeddings are frozen. */
#include <string.h>

#include "backend/cpu/cpu_ops.h"

/* tiles [P, 3, T, T] -> rows [P * g * g, 3 * p * p], g = T / p, patch (py, px) of tile t at row t g^2 + py g + px,
 * its values in (channel, ky, kx) order: the conv weight [D, 3, p, p] flattened is the matching [D, 3 p p] */
void cpu_im2col(opctx *c, void *rows_, const float *pixels, int P, int T, int p) {
    (void)c;
    float *rows = rows_;
    const int g = T / p;
    const int64_t np = (int64_t)g * g, kpatch = 3LL * p * p;
    for (int t = 0; t < P; t++)
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++) {
                float *row = rows + ((int64_t)t * np + py * g + px) * kpatch;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(row + ((int64_t)ch * p + ky) * p,
                               pixels + (((int64_t)t * 3 + ch) * T + (int64_t)py * p + ky) * T + (int64_t)px * p,
                               sizeof(float) * (size_t)p);
            }
}

/* h [ntiles, 1 + np, D]: row 0 of a tile = cls + pos[0], row 1 + i = patch[tile, i] + pos[1 + i] */
void cpu_vis_embed(opctx *c, void *h_, const void *patch_, const float *cls, const float *pos, int64_t ntiles,
                   int64_t np, int64_t D) {
    (void)c;
    float *h = h_;
    const float *patch = patch_;
    for (int64_t t = 0; t < ntiles; t++) {
        float *h0 = h + t * (np + 1) * D;
        const float *pt = patch + t * np * D;
        for (int64_t j = 0; j < D; j++) h0[j] = cls[j] + pos[j];
        for (int64_t j = 0; j < np * D; j++) h0[D + j] = pt[j] + pos[D + j];
    }
}
