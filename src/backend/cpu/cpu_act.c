/* cpu_act — element-wise ops: GELU (erf), quick GELU, SwiGLU, residual add (in place, and out = a + b); forward and
 * backward. */
#include <math.h>

#include "backend/cpu/cpu_ops.h"

/* gelu(x) = 0.5 x (1 + erf(x/sqrt2));  gelu'(x) = 0.5 (1 + erf(x/sqrt2)) + x phi(x) */
void cpu_gelu_fwd(opctx *c, void *y_, const void *x_, int64_t n) {
    (void)c;
    float *y = y_;
    const float *x = x_;
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

void cpu_gelu_bwd(opctx *c, void *dx_, const void *dy_, const void *x_, int64_t n) {
    (void)c;
    float *dx = dx_;
    const float *dy = dy_, *x = x_;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (int64_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* quick_gelu(x) = x s(1.702x);  d/dx = s + 1.702 x s (1 - s) */
void cpu_quick_gelu_fwd(opctx *c, void *y_, const void *x_, int64_t n) {
    (void)c;
    float *y = y_;
    const float *x = x_;
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(1.702f * x[i]);
}

void cpu_quick_gelu_bwd(opctx *c, void *dx_, const void *dy_, const void *x_, int64_t n) {
    (void)c;
    float *dx = dx_;
    const float *dy = dy_, *x = x_;
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(1.702f * x[i]);
        dx[i] += dy[i] * (s + 1.702f * x[i] * s * (1.0f - s));
    }
}

/* h = silu(g) u, silu(g) = g s(g);  dg = dh u s (1 + g (1 - s));  du = dh silu(g) */
void cpu_swiglu_fwd(opctx *c, void *h_, const void *g_, const void *u_, int64_t n) {
    (void)c;
    float *h = h_;
    const float *g = g_, *u = u_;
    for (int64_t i = 0; i < n; i++) h[i] = g[i] * sigmoidf(g[i]) * u[i];
}

void cpu_swiglu_bwd(opctx *c, void *dg_, void *du_, const void *dh_, const void *g_, const void *u_,
                    int64_t n) {
    (void)c;
    float *dg = dg_, *du = du_;
    const float *dh = dh_, *g = g_, *u = u_;
    for (int64_t i = 0; i < n; i++) {
        float s = sigmoidf(g[i]);
        if (dg) dg[i] += dh[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        if (du) du[i] += dh[i] * g[i] * s;
    }
}

void cpu_add_inplace(opctx *c, void *y_, const void *x_, int64_t n) {
    (void)c;
    float *y = y_;
    const float *x = x_;
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void cpu_add(opctx *c, void *out_, const void *a_, const void *b_, int64_t n) {
    (void)c;
    float *out = out_;
    const float *a = a_, *b = b_;
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}
