/* The patch embedding ops of the fp32 CPU reference: im2col bit for bit against a plain loop over the index
 * formula, and vis_embed against the trainer's copy + add sequence. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "test.h"
#include "test_ops_util.h"

static void test_im2col(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 11;
    const int sizes[][3] = {{2, 12, 4}, {3, 14, 7}, {1, 6, 1}}; /* P, T, p */
    for (int k = 0; k < 3; k++) {
        const int P = sizes[k][0], T = sizes[k][1], p = sizes[k][2], g = T / p;
        const int64_t np = (int64_t)g * g, kp = 3LL * p * p, npix = (int64_t)P * 3 * T * T;
        float *pix = malloc(sizeof(float) * (size_t)npix);
        float *rows = malloc(sizeof(float) * (size_t)(P * np * kp)), *ref = malloc(sizeof(float) * (size_t)(P * np * kp));
        tu_fill(pix, npix, &s, 1.0f);
        /* the reference, a plain loop over the index formula: row (t, py, px), column (ch, ky, kx) = pixel
         * (t, ch, py p + ky, px p + kx), the columns in the patch convolution's weight layout */
        for (int t = 0; t < P; t++)
            for (int64_t r = 0; r < np; r++)
                for (int64_t col = 0; col < kp; col++) {
                    int py = (int)(r / g), px = (int)(r % g), ch = (int)(col / (p * p)), ky = (int)(col / p % p),
                        kx = (int)(col % p);
                    ref[((int64_t)t * np + r) * kp + col] =
                        pix[(((int64_t)t * 3 + ch) * T + py * p + ky) * T + px * p + kx];
                }
        memset(rows, 0xff, sizeof(float) * (size_t)(P * np * kp)); /* NaN: a value im2col does not write shows */
        o->im2col(&c, rows, pix, P, T, p);
        CHECK(tu_bits_eq(rows, ref, sizeof(float) * (size_t)(P * np * kp)));
        free(pix);
        free(rows);
        free(ref);
    }
}

static void test_vis_embed(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    uint64_t s = 12;
    enum { NT = 3, NP = 5, D = 8, L = NP + 1 };
    float patch[NT * NP * D], cls[D], pos[L * D], h[NT * L * D], ref[NT * L * D];
    tu_fill(patch, NT * NP * D, &s, 1.0f);
    tu_fill(cls, D, &s, 1.0f);
    tu_fill(pos, L * D, &s, 0.1f);
    for (int t = 0; t < NT; t++) { /* the sequence the trainer ran: copy cls, add pos[0]; copy patches, add pos[1..] */
        float *h0 = ref + t * L * D;
        o->copy(&c, h0, cls, D);
        o->add_inplace(&c, h0, pos, D);
        o->copy(&c, h0 + D, patch + t * NP * D, NP * D);
        o->add_inplace(&c, h0 + D, pos + D, NP * D);
    }
    memset(h, 0xff, sizeof h);
    o->vis_embed(&c, h, patch, cls, pos, NT, NP, D);
    CHECK(tu_bits_eq(h, ref, sizeof ref));
    CHECK(h[L * D] == cls[0] + pos[0]); /* tile 1 row 0 */
}

int main(void) {
    test_im2col();
    test_vis_embed();
    TEST_MAIN_END();
}
