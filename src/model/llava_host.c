/* llava_host — host-side helpers of the graph (llava.h): the fp32 weight of a linear, and the row map of anyres
 * packing. The forward itself is the trainer's (llava_train.c); these are the two pieces others need on the host.
 *
 *   lin_f32(&w, scratch)                    a linear's fp32 weight: in place, or NF4 dequantized into scratch
 *                                           (export, tests)
 *   llava_pack_index(cfg, P, h, w, idx)     where each packed image row comes from (the trainer's packing index)
 */
#include <stdint.h>

#include "backend/tensor.h"
#include "model/llava.h"
#include "model/nf4.h"

const float *lin_f32(const lin_w *w, float *scratch) {
    if (w->dtype != DT_NF4) return (const float *)w->w;
    nf4_dequantize(w->w, w->qabsmax, w->absmax2, w->offset, w->out * w->in, NF4_BLOCKSIZE, NF4_BLOCKSIZE2, scratch);
    return scratch;
}

int64_t llava_pack_index(const llava_config *cfg, int P, int h, int wd, int64_t *idx) {
    const int s = cfg->v_image / cfg->v_patch;
    const int64_t np = (int64_t)s * s;
    int rows = 0, cols = 0;
    if (anyres_grid(&cfg->anyres, h, wd, &rows, &cols)) return -1;
    if (P != 1 + rows * cols) return -1;
    int64_t n = 0;
    for (int64_t i = 0; i < np; i++, n++) /* base image first, no newline */
        if (idx) idx[n] = i;
    const int CH = rows * s, CW = cols * s;
    int r0, nr, c0, nc;
    anyres_unpad(h, wd, CH, CW, &r0, &nr, &c0, &nc);
    for (int y = r0; y < r0 + nr; y++) {
        for (int x = c0; x < c0 + nc; x++, n++)
            if (idx) idx[n] = (1 + (int64_t)(y / s) * cols + x / s) * np + (int64_t)(y % s) * s + x % s;
        if (idx) idx[n] = -1; /* image_newline */
        n++;
    }
    return n;
}
