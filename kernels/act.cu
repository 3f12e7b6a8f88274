// act — element-wise ops on bf16 activations: GELU (erf), quick GELU, SwiGLU, residual adds; forward and backward
// side by side, as src/backend/cpu/cpu_act.c. Each value is widened, computed in fp32 with the reference's formula
// and rounded once (nearest even); a gradient the op accumulates into (+=) is widened, summed in fp32, rounded.
#include "simt.h"
#include "kops.h"

enum { ACT_THREADS = 256 };

// grid-stride loop over n values
#define FOR_EACH(i, n)                                                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

__device__ static __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// gelu(x) = 0.5 x (1 + erf(x / sqrt2));  gelu'(x) = 0.5 (1 + erf(x / sqrt2)) + x phi(x)
__global__ static void gelu_fwd_k(bf16 *y, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) {
        float v = bf2f(x[i]);
        y[i] = f2bf(0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2)));
    }
}

__global__ static void gelu_bwd_k(bf16 *dx, const bf16 *dy, const bf16 *x, int64_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    FOR_EACH(i, n) {
        float v = bf2f(x[i]);
        float cdf = 0.5f * (1.0f + erff(v * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * v * v);
        dx[i] = f2bf(bf2f(dx[i]) + bf2f(dy[i]) * (cdf + v * pdf));
    }
}

// quick_gelu(x) = x s(1.702 x);  d/dx = s + 1.702 x s (1 - s)
__global__ static void quick_gelu_fwd_k(bf16 *y, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) {
        float v = bf2f(x[i]);
        y[i] = f2bf(v * sigmoid_f(1.702f * v));
    }
}

__global__ static void quick_gelu_bwd_k(bf16 *dx, const bf16 *dy, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) {
        float v = bf2f(x[i]), s = sigmoid_f(1.702f * v);
        dx[i] = f2bf(bf2f(dx[i]) + bf2f(dy[i]) * (s + 1.702f * v * s * (1.0f - s)));
    }
}

// h = silu(g) u, silu(g) = g s(g);  dg += dh u s (1 + g (1 - s));  du += dh silu(g)
__global__ static void swiglu_fwd_k(bf16 *h, const bf16 *g, const bf16 *u, int64_t n) {
    FOR_EACH(i, n) {
        float gv = bf2f(g[i]);
        h[i] = f2bf(gv * sigmoid_f(gv) * bf2f(u[i]));
    }
}

__global__ static void swiglu_bwd_k(bf16 *dg, bf16 *du, const bf16 *dh, const bf16 *g, const bf16 *u, int64_t n) {
    FOR_EACH(i, n) {
        float gv = bf2f(g[i]), uv = bf2f(u[i]), d = bf2f(dh[i]), s = sigmoid_f(gv);
        if (dg) dg[i] = f2bf(bf2f(dg[i]) + d * uv * s * (1.0f + gv * (1.0f - s)));
        if (du) du[i] = f2bf(bf2f(du[i]) + d * gv * s);
    }
}

__global__ static void add_inplace_k(bf16 *y, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) y[i] = f2bf(bf2f(y[i]) + bf2f(x[i]));
}

__global__ static void add_k(bf16 *out, const bf16 *a, const bf16 *b, int64_t n) {
    FOR_EACH(i, n) out[i] = f2bf(bf2f(a[i]) + bf2f(b[i]));
}

// at most 4 waves of 132 SMs' worth of blocks; the grid-stride loop takes the rest
static unsigned act_grid(int64_t n) { return KMIN(kgrid(n, ACT_THREADS), 4u * 132u * 8u); }

#define B(p) ((bf16 *)(p))
#define CB(p) ((const bf16 *)(p))

extern "C" void kc_gelu_fwd(opctx *c, void *y, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(gelu_fwd_k, act_grid(n), ACT_THREADS, 0, c, B(y), CB(x), n);
}
extern "C" void kc_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(gelu_bwd_k, act_grid(n), ACT_THREADS, 0, c, B(dx), CB(dy), CB(x), n);
}
extern "C" void kc_quick_gelu_fwd(opctx *c, void *y, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(quick_gelu_fwd_k, act_grid(n), ACT_THREADS, 0, c, B(y), CB(x), n);
}
extern "C" void kc_quick_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(quick_gelu_bwd_k, act_grid(n), ACT_THREADS, 0, c, B(dx), CB(dy), CB(x), n);
}
extern "C" void kc_swiglu_fwd(opctx *c, void *h, const void *g, const void *u, int64_t n) {
    if (n > 0) KLAUNCH(swiglu_fwd_k, act_grid(n), ACT_THREADS, 0, c, B(h), CB(g), CB(u), n);
}
extern "C" void kc_swiglu_bwd(opctx *c, void *dg, void *du, const void *dh, const void *g, const void *u, int64_t n) {
    if (n > 0 && (dg || du)) KLAUNCH(swiglu_bwd_k, act_grid(n), ACT_THREADS, 0, c, B(dg), B(du), CB(dh), CB(g), CB(u), n);
}
extern "C" void kc_add_inplace(opctx *c, void *y, const void *x, int64_t n) {
    if (n > 0) KLAUNCH(add_inplace_k, act_grid(n), ACT_THREADS, 0, c, B(y), CB(x), n);
}
extern "C" void kc_add(opctx *c, void *out, const void *a, const void *b, int64_t n) {
    if (n > 0) KLAUNCH(add_k, act_grid(n), ACT_THREADS, 0, c, B(out), CB(a), CB(b), n);
}
