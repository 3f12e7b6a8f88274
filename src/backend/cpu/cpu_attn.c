/* cpu_attn — softmax attention over packed sequences with GQA and prefix sharing, fp32.
 *
 * A query at local index t of sequence s sees: every token of s's prefix sequence (if any), then the
 * tokens of s up to t (causal) or all of s (not causal). Query head h reads KV head h / (nq / nkv).
 * scale = 1/sqrt(hd). Forward keeps lse = log(sum exp(score)) per (token, head) for backward, which
 * recomputes the probabilities instead of storing them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cpu/cpu_ops.h"
#include "io/err.h"

typedef struct key_ranges {
    int64_t a0, a1, b0, b1; /* [a0,a1) prefix keys, [b0,b1) own keys */
} key_ranges;

static key_ranges keys_of(const seq_desc *seqs, int s, int64_t t, int causal) {
    key_ranges r = {0, 0, 0, 0};
    const seq_desc *sd = &seqs[s];
    if (sd->prefix >= 0) {
        r.a0 = seqs[sd->prefix].start;
        r.a1 = r.a0 + seqs[sd->prefix].len;
    }
    r.b0 = sd->start;
    r.b1 = sd->start + (causal ? t + 1 : sd->len);
    return r;
}

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void cpu_attn_fwd(opctx *c, void *out_, float *lse, const void *q_, const void *k_, const void *v_,
                  const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    (void)c;
    (void)ntok;
    float *out = out_;
    const float *q = q_, *k = k_, *v = v_;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nq / nkv;
    float acc[OPS_ATTN_MAX_HEAD_DIM];
    if (hd < 1 || hd > OPS_ATTN_MAX_HEAD_DIM) { /* the model configuration check keeps this from happening */
        fflush(stdout);
        fprintf(stderr, "orpo-hpc: internal error: cpu attention: head dimension %d, expected 1..%d\n", hd,
                OPS_ATTN_MAX_HEAD_DIM);
        exit(ERR_INTERNAL);
    }
    for (int s = 0; s < nseq; s++) {
        for (int64_t t = 0; t < seqs[s].len; t++) {
            int64_t i = seqs[s].start + t;
            key_ranges kr = keys_of(seqs, s, t, causal);
            for (int h = 0; h < nq; h++) {
                const float *qi = q + (i * nq + h) * hd;
                int kh = h / group;
                /* online softmax: running max m, running sum l, accumulator acc */
                float m = -INFINITY, l = 0.0f;
                for (int d = 0; d < hd; d++) acc[d] = 0.0f;
                for (int part = 0; part < 2; part++) {
                    int64_t j0 = part ? kr.b0 : kr.a0, j1 = part ? kr.b1 : kr.a1;
                    for (int64_t j = j0; j < j1; j++) {
                        const float *kj = k + (j * nkv + kh) * hd, *vj = v + (j * nkv + kh) * hd;
                        float sc = dot(qi, kj, hd) * scale;
                        if (sc > m) {
                            float f = expf(m - sc);
                            l *= f;
                            for (int d = 0; d < hd; d++) acc[d] *= f;
                            m = sc;
                        }
                        float p = expf(sc - m);
                        l += p;
                        for (int d = 0; d < hd; d++) acc[d] += p * vj[d];
                    }
                }
                float *oi = out + (i * nq + h) * hd;
                for (int d = 0; d < hd; d++) oi[d] = acc[d] / l;
                lse[i * nq + h] = m + logf(l);
            }
        }
    }
}

/* P = exp(S - lse); D_i = dout_i . out_i; dS = P (dout V^T - D); dq += dS K scale; dk += dS^T q scale;
 * dv += P^T dout. Keys of a shared prefix collect the gradients of every sequence that sees them. */
void cpu_attn_bwd(opctx *c, void *dq_, void *dk_, void *dv_, const void *dout_, const void *out_,
                  const float *lse, const void *q_, const void *k_, const void *v_,
                  const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    (void)c;
    (void)ntok;
    float *dq = dq_, *dk = dk_, *dv = dv_;
    const float *dout = dout_, *out = out_, *q = q_, *k = k_, *v = v_;
    const float scale = 1.0f / sqrtf((float)hd);
    const int group = nq / nkv;
    for (int s = 0; s < nseq; s++) {
        for (int64_t t = 0; t < seqs[s].len; t++) {
            int64_t i = seqs[s].start + t;
            key_ranges kr = keys_of(seqs, s, t, causal);
            for (int h = 0; h < nq; h++) {
                const float *qi = q + (i * nq + h) * hd, *doi = dout + (i * nq + h) * hd;
                float *dqi = dq ? dq + (i * nq + h) * hd : NULL;
                float Di = dot(doi, out + (i * nq + h) * hd, hd);
                float li = lse[i * nq + h];
                int kh = h / group;
                for (int part = 0; part < 2; part++) {
                    int64_t j0 = part ? kr.b0 : kr.a0, j1 = part ? kr.b1 : kr.a1;
                    for (int64_t j = j0; j < j1; j++) {
                        const float *kj = k + (j * nkv + kh) * hd, *vj = v + (j * nkv + kh) * hd;
                        float p = expf(dot(qi, kj, hd) * scale - li);
                        float ds = p * (dot(doi, vj, hd) - Di) * scale;
                        if (dqi)
                            for (int d = 0; d < hd; d++) dqi[d] += ds * kj[d];
                        if (dk) {
                            float *dkj = dk + (j * nkv + kh) * hd;
                            for (int d = 0; d < hd; d++) dkj[d] += ds * qi[d];
                        }
                        if (dv) {
                            float *dvj = dv + (j * nkv + kh) * hd;
                            for (int d = 0; d < hd; d++) dvj[d] += p * doi[d];
                        }
                    }
                }
            }
        }
    }
}
