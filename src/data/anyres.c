/* anyres — LLaVA-NeXT anyres geometry (see anyres.h). Every expression mirrors the double
 * arithmetic of transformers' Python code (a/b then product, trunc, ceil, round(x, 7)) so that
 * grid choices and token counts agree exactly, including at floating-point boundaries. */
#include "data/anyres.h"

#include <math.h>
#include <stdio.h>

#include "io/err.h"

void anyres_config_llava16(anyres_config *cfg) {
    static const int pp[5][2] = {{336, 672}, {672, 336}, {672, 672}, {1008, 336}, {336, 1008}};
    cfg->tile = 336;
    cfg->patch = 14;
    cfg->n_pinpoints = 5;
    for (int i = 0; i < 5; i++) {
        cfg->pinpoints[i][0] = pp[i][0];
        cfg->pinpoints[i][1] = pp[i][1];
    }
}

int anyres_config_check(const anyres_config *cfg) {
    if (cfg->tile <= 0 || cfg->tile > 65536)
        return err_set(ERR_ARGS, "anyres config: tile size %d, expected 1..65536", cfg->tile);
    if (cfg->patch <= 0 || cfg->tile % cfg->patch != 0)
        return err_set(ERR_ARGS, "anyres config: patch size %d, expected a positive divisor of the tile size %d",
                       cfg->patch, cfg->tile);
    if (cfg->n_pinpoints <= 0 || cfg->n_pinpoints > ANYRES_MAX_PINPOINTS)
        return err_set(ERR_ARGS, "anyres config: %d grid pinpoints, expected 1..%d", cfg->n_pinpoints,
                       ANYRES_MAX_PINPOINTS);
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int ph = cfg->pinpoints[i][0], pw = cfg->pinpoints[i][1];
        if (ph <= 0 || pw <= 0 || ph % cfg->tile || pw % cfg->tile || ph / cfg->tile > 64 || pw / cfg->tile > 64)
            return err_set(ERR_ARGS,
                           "anyres config: grid pinpoint %d is (%d, %d), expected (height, width) positive "
                           "multiples of the tile size %d, at most 64 tiles per side",
                           i, ph, pw, cfg->tile);
    }
    return ERR_OK;
}

static int check_size(int h, int w) {
    if (h <= 0 || w <= 0) return err_set(ERR_ARGS, "anyres: image size %dx%d (HxW), expected positive", h, w);
    return ERR_OK;
}

int anyres_select(const anyres_config *cfg, int h, int w, int *best_h, int *best_w) {
    int rc = check_size(h, w);
    if (rc) return rc;
    if (cfg->n_pinpoints <= 0) return err_set(ERR_ARGS, "anyres: no grid pinpoints");
    /* maximise the effective resolution, then minimise the waste; ties keep the earlier pinpoint */
    long long best_eff = 0;
    double best_waste = INFINITY;
    int found = 0;
    long long area = (long long)h * w;
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int ph = cfg->pinpoints[i][0], pw = cfg->pinpoints[i][1];
        double sw = (double)pw / w, sh = (double)ph / h;
        double s = sh < sw ? sh : sw;
        long long dw = (long long)((double)w * s), dh = (long long)((double)h * s);
        long long eff = dw * dh;
        if (eff > area) eff = area;
        double waste = (double)((long long)pw * ph - eff);
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            best_eff = eff;
            best_waste = waste;
            *best_h = ph;
            *best_w = pw;
            found = 1;
        }
    }
    /* HF quirk kept: a candidate with zero effective area (1 x 2000 image) still beats the initial
     * infinite waste, so some pinpoint is always found; this guard cannot fire with n_pinpoints >= 1 */
    if (!found)
        return err_set(ERR_ARGS, "anyres: no grid pinpoint fits an image of %dx%d (HxW)", h, w);
    return ERR_OK;
}

int anyres_grid(const anyres_config *cfg, int h, int w, int *rows, int *cols) {
    int bh, bw;
    int rc = anyres_select(cfg, h, w, &bh, &bw);
    if (rc) return rc;
    *rows = bh / cfg->tile;
    *cols = bw / cfg->tile;
    return ERR_OK;
}

int anyres_num_patches(const anyres_config *cfg, int h, int w) {
    int rows, cols;
    if (anyres_grid(cfg, h, w, &rows, &cols)) return -1;
    return 1 + rows * cols;
}

void anyres_resize_target(int h, int w, int best_h, int best_w, int *new_h, int *new_w) {
    double sw = (double)best_w / w, sh = (double)best_h / h;
    if (sw < sh) {
        double t = ceil((double)h * sw);
        *new_w = best_w;
        *new_h = t < best_h ? (int)t : best_h;
    } else {
        double t = ceil((double)w * sh);
        *new_h = best_h;
        *new_w = t < best_w ? (int)t : best_w;
    }
}

int64_t anyres_trunc_round7(double x) {
    /* Python int(round(x, 7)) for x >= 0: round(x, 7) reaches the next integer n exactly when the
     * exact distance n - x is below 0.5e-7. n - x is exact (Sterbenz) for x >= 0.5, and the double
     * nearest to 5e-8 lies just below 5e-8, so "<=" against it is the exact decision. */
    double f = floor(x);
    double n = f + 1.0;
    if (n - x <= 5e-8) return (int64_t)n;
    return (int64_t)f;
}

void anyres_unpad(int h, int w, int cur_h, int cur_w, int *row0, int *nrows, int *col0, int *ncols) {
    double orig_ar = (double)w / h, cur_ar = (double)cur_w / cur_h;
    *row0 = 0;
    *nrows = cur_h;
    *col0 = 0;
    *ncols = cur_w;
    if (orig_ar > cur_ar) {
        double scale = (double)cur_w / w;
        int64_t nh = anyres_trunc_round7((double)h * scale);
        int pad = (int)((cur_h - nh) / 2); /* nh <= cur_h here, so this is floor division */
        *row0 = pad;
        *nrows = cur_h - 2 * pad;
    } else {
        double scale = (double)cur_h / h;
        int64_t nw = anyres_trunc_round7((double)w * scale);
        int pad = (int)((cur_w - nw) / 2);
        *col0 = pad;
        *ncols = cur_w - 2 * pad;
    }
}

int64_t anyres_num_image_tokens(const anyres_config *cfg, int h, int w) {
    int rows, cols;
    if (anyres_grid(cfg, h, w, &rows, &cols)) return -1;
    int side = cfg->tile / cfg->patch; /* features per tile side */
    int r0, nr, c0, nc;
    anyres_unpad(h, w, side * rows, side * cols, &r0, &nr, &c0, &nc);
    /* base tile (side^2, CLS dropped) + kept grid rows, each followed by one image_newline */
    return (int64_t)side * side + (int64_t)nr * (nc + 1);
}
