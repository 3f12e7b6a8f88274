/* cpu_rope — split-half ("rotate_half") rotary embedding, as transformers' Llama/Mistral.
 * inv_freq_i = 1 / theta^(2i/hd) and angle = pos * inv_freq_i, both in fp32 as HF computes them.
 * Forward:  x'_j = x_j cos - x_{j+h} sin,  x'_{j+h} = x_{j+h} cos + x_j sin   (h = hd/2)
 * Backward: the transposed rotation (angle -> -angle). */
#include <math.h>

#include "backend/cpu/cpu_ops.h"

static void rope_apply(float *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta,
                       float sign) {
    int h2 = hd / 2;
    for (int64_t t = 0; t < ntok; t++) {
        for (int i = 0; i < h2; i++) {
            float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
            float ang = (float)pos[t] * inv;
            float cs = cosf(ang), sn = sign * sinf(ang);
            for (int h = 0; h < nhead; h++) {
                float *row = x + (t * nhead + h) * (int64_t)hd;
                float a = row[i], b = row[i + h2];
                row[i] = a * cs - b * sn;
                row[i + h2] = b * cs + a * sn;
            }
        }
    }
}

void cpu_rope_fwd(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    (void)c;
    rope_apply(x, pos, ntok, nhead, hd, theta, 1.0f);
}

void cpu_rope_bwd(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    (void)c;
    rope_apply(dx, pos, ntok, nhead, hd, theta, -1.0f);
}
