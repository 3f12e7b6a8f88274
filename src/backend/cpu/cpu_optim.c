/* cpu_optim — the optimiser's ops on fp32 tensors: the sum of squares of the global gradient norm and the AdamW
 * update (train/adamw.c drives both; the float maths here is exactly torch's single-tensor AdamW as adamw.h states). */
#include <math.h>

#include "backend/cpu/cpu_ops.h"

/* continues the running sum in *out, in index order: several calls in a row equal one loop over all values */
void cpu_sumsq(opctx *c, double *out, const float *x, int64_t n) {
    (void)c;
    double s = *out;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    *out = s;
}

void cpu_adamw(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd, float w1,
               float b2, float w2, float bc2, float eps, float neg_step) {
    (void)c;
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        if (has_wd) p[i] *= decay;
        m[i] = m[i] + w1 * (gi - m[i]);
        float vi = v[i] * b2;
        v[i] = vi + w2 * gi * gi;
        float denom = sqrtf(v[i]) / bc2 + eps;
        p[i] = p[i] + neg_step * m[i] / denom;
    }
}
