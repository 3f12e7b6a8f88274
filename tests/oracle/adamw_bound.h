/* adamw_bound — a per-element bound on |w_ours - w_torch| after AdamW steps, derived from how far our
 * gradients may be from torch's, computed from OUR OWN gradients, moments and weights (test_step.c,
 * test_adamw.c). No number in it comes from one machine or one fixture.
 *
 *   ab_init(b, opt, n)                  n elements (all tensors back to back), bounds 0
 *   ab_begin_step(b)                    call once per optimiser step, before ab_grad
 *   ab_grad(b, off, g, n, dabs, drel)   the clipped gradients g[0..n) of elements off.. may differ from the
 *                                       reference's by delta_i = dabs + (drel + u)|g_i|
 *   ab_step(b, off, w, m, v, n, lr, wd) after adamw_step: advance the bound of w[0..n) (lr incl. the schedule)
 *   ab_ratio(b, off, w, ref, n, &at)    max_i |w_i - ref_i| / bound_i (> 1: the check fails)
 *   ab_free(b)
 *
 * Derivation. u = 2^-24 is the fp32 unit roundoff. Step t (1-based), per element, with hat-g_s the clipped
 * gradients of steps s <= t and, in exact arithmetic,
 *   m_hat = sum_s a_s g_s,  a_s = (1-b1) b1^(t-s) / (1-b1^t)   (the a_s are > 0 and sum to 1)
 *   r     = sqrt(v_hat) = sqrt(sum_s c_s g_s^2),  c_s = (1-b2) b2^(t-s) / (1-b2^t)  (> 0, sum to 1)
 *   U     = m_hat / (r + eps),   w_t = w_{t-1} (1 - lr_t wd) - lr_t U.
 * 1. Gradients: |g_s - g'_s| <= delta_s (from the gradient check; see ab_grad's callers).
 *    |m_hat - m_hat'| <= D1 = sum_s a_s delta_s                       (the a_s are convex weights)
 *    |r - r'|         <= D2 = sqrt(sum_s c_s delta_s^2)               (triangle inequality of the c-weighted
 *                                                                      2-norm; exact, no small-step assumption)
 *    U - U' = (m_hat - m_hat')/(r' + eps) + m_hat (r' - r)/((r + eps)(r' + eps)), so with r' >= r - D2:
 *    |U - U'| <= (D1 + |U| D2) / (r - D2 + eps)                        when r > D2.
 *    Always (Cauchy-Schwarz over the weights): |m_hat| <= sqrt(sum_s a_s^2/c_s) r = Umax r, so |U'| <= Umax
 *    (1 at t = 1, 1.0014 at t = 2, 1.0047 at t = 3 with betas 0.9/0.999) and |U - U'| <= |U| + Umax.
 *    Take the smaller. An element whose gradient is not larger than its own uncertainty (r <= D2) has an update
 *    of undetermined sign: it is bounded only by |U| + Umax, about 2 lr. That is what made the old fixed 1e-5
 *    relative check fail with other BLAS kernels (AMD EPYC: OpenBLAS Zen/Haswell kernels): a LoRA A element with a
 *    gradient of rounding-noise size moved 0.016 lr away from torch's.
 * 2. Rounding of the AdamW arithmetic, in each of the two implementations (both fp32, the same formula;
 *    first order in u):
 *    m = m + (1-b1)(g - m): 3 roundings a step plus that of (1-b1), each <= u (|g| + |m|): |dm_hat| <= (4t+1) u A,
 *      A = sum_s a_s |g_s|;
 *    v = v b2 + (1-b2) g g: 6 roundings a step, all terms >= 0: relative <= 6t u; sqrt, / sqrt(1-b2^t) (and its
 *      rounding), + eps: the denominator relative <= (3t + 4) u; lr/(1-b1^t) rounded, times m, divided: 3 more:
 *    |dU| <= (4t+1) u A/(r+eps) + (3t+7) u |U|  per implementation, twice that between the two.
 *    The weight update: (1 - lr wd) rounded, the product, the sum: 3 u |w| per implementation, 6 u |w| in all.
 * 3. e_t = e_{t-1} (1 - lr_t wd) + lr_t (|U - U'| + rounding of U) + 6 u (|w_t| + lr_t |U|),  e_0 = 0.
 * The gradients of step t are taken at weights that already differ by e_{t-1}, a small fraction of the step
 * lr_t |U| itself; that moves the gradient by much less than the tolerance of the gradient check, which callers
 * therefore apply to every step (in test_step, step 2 repeats step 1's weights exactly: lr is 0 in the warm-up). */
#ifndef ORPO_ADAMW_BOUND_H
#define ORPO_ADAMW_BOUND_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "train/adamw.h"

#define AB_U (1.0 / 16777216.0) /* fp32 unit roundoff 2^-24 */

typedef struct ab_state {
    double beta1, beta2, eps;
    int t;
    int64_t n;
    double *e;  /* the bound on |w - w_ref| */
    double *dm; /* sum_s (1-b1) b1^(t-s) delta_s   (D1 before bias correction) */
    double *dv; /* sum_s (1-b2) b2^(t-s) delta_s^2 (D2^2 before bias correction) */
    double *am; /* sum_s (1-b1) b1^(t-s) |g_s|     (A before bias correction) */
    int64_t undetermined; /* elements bounded by |U| + Umax (gradient within its own uncertainty) this step */
    int64_t elements;
} ab_state;

static inline void ab_init(ab_state *b, const adamw_opt *o, int64_t n) {
    b->beta1 = o->beta1;
    b->beta2 = o->beta2;
    b->eps = o->eps;
    b->t = 0;
    b->n = n;
    b->e = calloc((size_t)n * 4, sizeof(double));
    b->dm = b->e + n;
    b->dv = b->e + 2 * n;
    b->am = b->e + 3 * n;
    b->undetermined = b->elements = 0;
}

static inline void ab_free(ab_state *b) { free(b->e); }

static inline void ab_begin_step(ab_state *b) {
    b->t++;
    b->undetermined = b->elements = 0;
}

static inline void ab_grad(ab_state *b, int64_t off, const float *g, int64_t n, double dabs, double drel) {
    for (int64_t i = 0; i < n; i++) {
        double ag = fabs((double)g[i]), d = dabs + (drel + AB_U) * ag;
        b->dm[off + i] = b->beta1 * b->dm[off + i] + (1 - b->beta1) * d;
        b->dv[off + i] = b->beta2 * b->dv[off + i] + (1 - b->beta2) * d * d;
        b->am[off + i] = b->beta1 * b->am[off + i] + (1 - b->beta1) * ag;
    }
}

/* sqrt(sum_s a_s^2 / c_s) for step t: the largest |m_hat| / sqrt(v_hat) over all gradient histories */
static inline double ab_umax(const ab_state *b) {
    double bc1 = 1 - pow(b->beta1, b->t), bc2 = 1 - pow(b->beta2, b->t), s = 0;
    for (int k = 1; k <= b->t; k++) {
        double a = (1 - b->beta1) * pow(b->beta1, b->t - k) / bc1, c = (1 - b->beta2) * pow(b->beta2, b->t - k) / bc2;
        s += a * a / c;
    }
    return sqrt(s);
}

static inline void ab_step(ab_state *b, int64_t off, const float *w, const float *m, const float *v, int64_t n,
                           double lr, double wd) {
    const int t = b->t;
    const double bc1 = 1 - pow(b->beta1, t), bc2 = 1 - pow(b->beta2, t), umax = ab_umax(b);
    for (int64_t i = 0; i < n; i++) {
        int64_t k = off + i;
        double r = sqrt((double)v[i] / bc2), U = fabs((double)m[i] / bc1) / (r + b->eps);
        double D1 = b->dm[k] / bc1, D2 = sqrt(b->dv[k] / bc2), A = b->am[k] / bc1;
        double dU = U + umax;
        if (r > D2) {
            double tight = (D1 + U * D2) / (r - D2 + b->eps);
            if (tight < dU) dU = tight;
        }
        if (dU >= U + umax) b->undetermined++;
        b->elements++;
        dU += 2 * AB_U * ((4 * t + 1) * A / (r + b->eps) + (3 * t + 7) * U);
        b->e[k] = b->e[k] * fabs(1 - lr * wd) + lr * dU + 6 * AB_U * (fabs((double)w[i]) + lr * U);
    }
}

static inline double ab_ratio(const ab_state *b, int64_t off, const float *w, const float *ref, int64_t n,
                              int64_t *at) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)w[i] - (double)ref[i]);
        double q = d == 0 ? 0 : (b->e[off + i] > 0 ? d / b->e[off + i] : INFINITY);
        if (isnan(d)) q = INFINITY;
        if (q > worst) {
            worst = q;
            if (at) *at = i;
        }
    }
    return worst;
}

#endif
