/* tolerance — the error model behind the oracle tolerances of the LLaVA tests (docs/testing.md, "Oracle tolerances").
 *
 *   TOL_U                        fp32 unit roundoff u = 2^-24
 *   tol_gamma(n)                 gamma_n = n u / (1 - n u): the worst-case error of an fp32 sum or dot product of n
 *                                terms, relative to the sum of |terms|, for ANY summation order (Higham, Accuracy and
 *                                Stability of Numerical Algorithms, 2nd ed., Lemma 3.1 and (3.4)): any BLAS kernel,
 *                                any blocking, FMA or not, any number of threads
 *   tol_llava_fwd(cfg, L)        first-order bound of the forward chain of the LLaVA-NeXT model for a sequence of L
 *                                tokens: the sum of gamma_K over the products the value passes through
 *   tol_llava_bwd(cfg, L, R)     the same for a gradient: forward chain, backward chain (the transposed products) and
 *                                the weight-gradient sum over R rows
 *   tol_llava_logp(cfg, L)       the same for a log-prob (log-softmax of the logits): twice the logit bound
 *   tol_llava_wround(cfg, uw)    first-order effect on the logits of storing every weight with relative rounding uw
 *                                (bf16: uw = 2^-9), one term per weight product in the chain
 *
 * Model. Each product is computed with a relative error <= gamma_K of its own result (the condition factor
 * sum|a_k b_k| / |sum a_k b_k| is taken as 1 per element: the checks normalise by max|ref| of the whole tensor,
 * not per element, and the layers of a randomly initialised model are well scaled); errors of chained products
 * add to first order; every element-wise op (norm scale, residual add, exp, silu/gelu, rope, softmax division)
 * adds a few u, counted as 10 u per layer. The oracle (transformers in fp32) makes the same kind of error in its
 * own order, so a comparison allows twice the bound, plus u for storing the reference in fp32. */
#ifndef ORPO_TOLERANCE_H
#define ORPO_TOLERANCE_H

#include "model/llava.h"

#define TOL_U (1.0 / 16777216.0)

static inline double tol_gamma(double n) { return n * TOL_U / (1 - n * TOL_U); }

/* vision tower (the layers actually run) + projector + decoder + lm_head, input to logits, one implementation */
static inline double tol_llava_fwd(const llava_config *c, int64_t L) {
    double T = (double)(c->v_image / c->v_patch) * (c->v_image / c->v_patch) + 1; /* patches + CLS */
    double d = c->v_hidden, hd_v = (double)c->v_hidden / c->v_heads, D = c->t_hidden, F = c->t_inter;
    double vis = 2 * tol_gamma(d)                         /* layer norm: mean, variance */
               + tol_gamma(d) + tol_gamma(hd_v)           /* q/k/v, scores */
               + 2 * tol_gamma(T) + tol_gamma(d)          /* softmax sum, P V, out_proj */
               + 2 * tol_gamma(d) + tol_gamma(d) + tol_gamma(c->v_inter) /* layer norm, fc1, fc2 */
               + 10 * TOL_U;
    double dec = tol_gamma(D) + tol_gamma(D) + tol_gamma(c->t_head_dim)  /* rms norm, q/k/v, scores */
               + 2 * tol_gamma((double)L) + tol_gamma((double)c->t_heads * c->t_head_dim) /* softmax, P V, o */
               + tol_gamma(D) + tol_gamma(D) + tol_gamma(F)               /* rms norm, gate/up, down */
               + 10 * TOL_U;
    return c->v_run_layers * vis + tol_gamma(d) + tol_gamma(D) /* projector */
         + c->t_layers * dec + tol_gamma(D) + tol_gamma(D);   /* final norm, lm_head */
}

/* the gradient of a weight of the first layer: the forward chain, then back through every layer (dX = dY W^T sums
 * over the output dimension; attention backward sums over head_dim and L; norm backward over the width; the
 * log-softmax backward over the vocabulary), then dW = X^T dY over R rows */
static inline double tol_llava_bwd(const llava_config *c, int64_t L, int64_t R) {
    double T = (double)(c->v_image / c->v_patch) * (c->v_image / c->v_patch) + 1;
    double d = c->v_hidden, D = c->t_hidden, F = c->t_inter, HD = (double)c->t_heads * c->t_head_dim;
    double vis = 2 * tol_gamma(d) + 3 * tol_gamma(d) + tol_gamma(c->v_inter) + tol_gamma(d) /* norms, qkv, fc1^T, fc2^T, out^T */
               + tol_gamma((double)c->v_hidden / c->v_heads) + 3 * tol_gamma(T) + 10 * TOL_U;
    double dec = 2 * tol_gamma(D) + tol_gamma(HD) + tol_gamma(D) + tol_gamma(F) + tol_gamma(D) /* norms, qkv^T, o^T, gate/up^T, down^T */
               + tol_gamma(c->t_head_dim) + 3 * tol_gamma((double)L) + 10 * TOL_U;
    return tol_llava_fwd(c, L) + tol_gamma(c->vocab) + tol_gamma(c->vocab) /* log-softmax, lm_head^T */
         + c->t_layers * dec + 2 * tol_gamma(D) + c->v_run_layers * vis + tol_gamma((double)R);
}

/* log p_t = z_t - lse(z): |d log p| <= |dz_t| + max_k |dz_k| (lse's derivative is a probability vector) = 2 max|dz|,
 * plus gamma_V for the sum inside lse; relative to the log-prob scale, which on the checked rows is not below the
 * logit scale (|log p_t| = lse - z_t >= max z - z_t, and the logits of a random model straddle 0) */
static inline double tol_llava_logp(const llava_config *c, int64_t L) {
    return 2 * tol_llava_fwd(c, L) + tol_gamma(c->vocab);
}

/* Every stored weight w becomes w(1 + e), |e| <= uw. A product W x then changes by at most uw sum|w_k x_k|, i.e. by
 * uw of its own result under the model above (condition 1), and an element-wise scale (norm weight) or an added
 * vector (bias, position embedding) by uw of its result. One term per weight-carrying op in the chain: per vision
 * layer 6 (2 layer norms, q/k/v, out_proj, fc1, fc2), per decoder layer 6 (2 RMS norms, q/k/v, o_proj, gate/up,
 * down_proj), and patch embedding, position embedding, pre-layer-norm, 2 projector linears, token embedding, final
 * norm, lm_head: 8. */
static inline double tol_llava_wround(const llava_config *c, double uw) {
    return uw * (6.0 * c->v_run_layers + 6.0 * c->t_layers + 8.0);
}

#endif
