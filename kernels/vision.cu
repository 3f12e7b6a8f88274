// vision — the CLIP patch embedding around its GEMM, as src/backend/cpu/cpu_vision.c in bf16 mode (no backward: the
// vision tower's input and embeddings are frozen):
//
//   kc_im2col      tiles [P, 3, T, T] (f32) -> patch rows [P * g * g, 3 * p * p] (bf16, nearest even), g = T / p,
//                  patch (py, px) of tile t at row t g^2 + py g + px, its values in (channel, ky, kx) order
//   kc_vis_embed   h [ntiles, 1 + np, D]: row 0 of a tile = cls + pos[0], row 1 + i = patch[tile, i] + pos[1 + i]
//                  (one fp32 sum of the widened patch value and the f32 position embedding, rounded once)
// One block per output row, its threads along the row (coalesced writes; im2col reads runs of p pixels).
#include "simt.h"
#include "kops.h"

// at most VIS_BLOCKS blocks (two waves of 8 blocks of 256 threads per SM of an H100), each taking every
// VIS_BLOCKS-th row
enum { VIS_THREADS = 256, VIS_BLOCKS = 2048 };

#define FOR_EACH_ROW(r, n) for (int64_t r = blockIdx.x; r < (n); r += gridDim.x)

__global__ static void im2col_k(bf16 *rows, const float *pixels, int64_t nrows, int T, int p, int g) {
    const int pp = p * p, kpatch = 3 * pp;
    const int64_t np = (int64_t)g * g;
    FOR_EACH_ROW(r, nrows) {
        const int64_t t = r / np;
        const int patch = (int)(r - t * np), py = patch / g, px = patch - py * g;
        // pixel (ch, ky, kx) of this patch: pixels[((t 3 + ch) T + py p + ky) T + px p + kx]
        const float *src = pixels + (t * 3 * T + (int64_t)py * p) * T + (int64_t)px * p;
        bf16 *dst = rows + r * kpatch;
        for (int k = threadIdx.x; k < kpatch; k += blockDim.x) {
            const int ch = k / pp, rem = k - ch * pp, ky = rem / p, kx = rem - ky * p;
            dst[k] = f2bf(src[((int64_t)ch * T + ky) * T + kx]);
        }
    }
}

__global__ static void vis_embed_k(bf16 *h, const bf16 *patch, const float *cls, const float *pos, int64_t nrows,
                                   int64_t np, int64_t D) {
    FOR_EACH_ROW(r, nrows) {
        const int64_t t = r / (np + 1), i = r - t * (np + 1); // tile t, row i of it (0: the class embedding)
        bf16 *dst = h + r * D;
        const float *pe = pos + i * D;
        if (i == 0)
            for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dst[j] = f2bf(cls[j] + pe[j]);
        else {
            const bf16 *src = patch + (t * np + i - 1) * D;
            for (int64_t j = threadIdx.x; j < D; j += blockDim.x) dst[j] = f2bf(bf2f(src[j]) + pe[j]);
        }
    }
}

extern "C" void kc_im2col(opctx *c, void *rows, const float *pixels, int P, int T, int p) {
    if (p < 1 || P < 1 || T / p < 1) return;
    const int g = T / p;
    const int64_t nrows = (int64_t)P * g * g;
    KLAUNCH(im2col_k, (unsigned)KMIN(nrows, (int64_t)VIS_BLOCKS), VIS_THREADS, 0, c, (bf16 *)rows, pixels, nrows, T,
            p, g);
}

extern "C" void kc_vis_embed(opctx *c, void *h, const void *patch, const float *cls, const float *pos, int64_t ntiles,
                             int64_t np, int64_t D) {
    const int64_t nrows = ntiles * (np + 1);
    if (nrows <= 0 || D <= 0) return;
    KLAUNCH(vis_embed_k, (unsigned)KMIN(nrows, (int64_t)VIS_BLOCKS), VIS_THREADS, 0, c, (bf16 *)h,
            (const bf16 *)patch, cls, pos, nrows, np, D);
}
