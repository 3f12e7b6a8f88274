/* attn_selftest — the fused attention (cuDNN) against kernels/attn.cu's version on the same device: afz_selftest
 * (backend/attn_fused.h). Both tables run on one context; inputs are made on the host, uploaded, both ops run on copies
 * of them, the outputs are downloaded and compared element by element.
 *
 * Cases (every one forward, then backward from the reference's out and lse, with nonzero initial gradients so that
 * the accumulation (+=) is checked): a causal ORPO layout (a shared prompt of `prefix` tokens, a chosen and a
 * rejected answer that see it in full, an uncomputed row at the end), and two tiles that see themselves in full (not
 * causal); GQA with the shape's nq / nkv heads.
 *
 * Tolerance. Both sides are fused or materialised attention with bf16 inputs, fp32 softmax statistics, the
 * probabilities P and the score gradients dS rounded to bf16 for their products (FlashAttention's online softmax in
 * cuDNN; attn.cu's fp32 masked softmax with bf16 P / dS), fp32 accumulation in any order, possibly truncating (tensor
 * cores). With u = 2^-24, u16 = 2^-8 (bf16's unit roundoff), GG(n) = 4 n u / (1 - 4 n u) (a sum of n terms in two
 * different orders, each side's accumulation rounding to within 2u: Higham's gamma_n(2u) per side, relative to the
 * sum of |terms|), LIBM = 32 u (one exp / log of a GPU vs another), scale = 1/sqrt(hd), Qm Km Vm Gm Om the largest
 * |q| |k| |v| |dout| |out|, L the most keys a query sees, C the most (query row, head) pairs that see one key:
 *   score s = scale q.k:    per side within scale hd Qm Km GG(hd + 1) / 2; es = scale hd Qm Km GG(hd + 1) both
 *   out = sum_j p_j v_j:    the weights p_j = exp(s_j - m) / l differ by 2 es + 2 LIBM + 2 GG(L + 2) relative (the
 *                           score, the max, the exp, the normaliser's sum, FlashAttention's rescaling of its running
 *                           sums, fewer than L roundings), and each side rounds p_j to bf16 (u16 relative):
 *                           |diff| <= (2 es + 2 LIBM + 2 GG(L + 2) + 2 u16) Vm, since sum_j p_j = 1
 *   lse = m + log l:        2 (es + GG(L + 2) + LIBM) + 8 u |lse|
 *   backward (lse given): p = exp(s - lse): es + 2 LIBM + 4 u relative; H = hd Gm (Vm + Om) bounds |dP - D| with
 *                           dP = dout.v, D = dout.out (each GG(hd + 1) H / 2 per side);
 *                           dS = p (dP - D) scale: |diff| <= p EDS, EDS = scale H (es + 2 LIBM + GG(hd + 1) + 8 u
 *                           + 2 u16) (the bf16 rounding of dS on each side)
 *   dq_i += sum_j dS_ij k_j:  Km EDS + GG(L + 1) (|dq0| + scale Km H)
 *   dk_j += sum dS q (C pairs), dv_j += sum p dout:
 *                           C Qm EDS + GG(C + 1) (|dk0| + C scale Qm H);  C Gm (es + 2 LIBM + 4 u + 2 u16) + GG(C + 1)
 *                           (|dv0| + C Gm)
 *   roundings:              attn.cu rounds each gradient once (dq per row; dk / dv summed in fp32 over the chunks);
 *                           the fused path rounds each segment's dQ / dK / dV to bf16 and adds it to the gradient in
 *                           bf16: one more half ulp of the segment's part and of the sum per addition, at most
 *                           nseq + 1 additions to a row (a prompt's keys get one per sequence that sees them):
 *                           + (nseq + 1) ulp16(|g0| + the part's bound R) for dk and dv, + ulp16(|dq0| + scale Km H)
 *                           for dq; and 1 ulp of the larger value for the final bf16 outputs.
 * A wrong key, head, row or a gradient added twice moves a value by a whole term (about Vm / L forward, scale Km H / L
 * backward), far beyond these bounds at the shapes used (tests/kernels/test_k_attn_fused.c breaks the fused path on
 * purpose and sees it fail). */
#include "backend/attn_fused.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/h5x.h"
#include "io/mem.h"

#define AU 0x1p-24
#define AU16 0x1p-8
#define ALIBM (32.0 * AU)

static double GG(double n) { return 4.0 * n * AU / (1.0 - 4.0 * n * AU); }

static double ulp16(double a) {
    a = fabs(a);
    if (!(a >= 0x1p-126)) return 0x1p-133;
    int e;
    frexp(a, &e);
    return ldexp(1.0, e - 8);
}

typedef struct ast {
    const ops *ref, *dev;
    opctx *c;
    uint64_t rng;
    char *why;
    size_t why_len;
    double worst;
    int failed;
} ast;

static float urand(ast *s) {
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(s->rng >> 40) / (double)(1ULL << 23) - 1.0);
}

static uint16_t *hbf16(ast *s, int64_t n, float scale) {
    uint16_t *t = mem_alloc(sizeof(uint16_t) * (size_t)(n ? n : 1), "attention self-test: inputs");
    for (int64_t i = 0; i < n; i++) t[i] = h5x_f32_to_bf16(scale * urand(s));
    return t;
}

/* a device copy of `bytes` of host memory; NULL (and the failure recorded) when it cannot be had */
static void *up(ast *s, const void *h, size_t bytes) {
    void *d = s->dev->mem_alloc(s->c, bytes ? bytes : 1, MEM_DEVICE, "attention self-test");
    if (!d) return NULL;
    s->dev->upload(s->c, d, h, bytes);
    return d;
}

static void down(ast *s, void *h, const void *d, size_t bytes) { s->dev->download(s->c, h, d, bytes); }

static void failf(ast *s, const char *fmt, const char *what, long long i, double got, double want, double tol) {
    if (!s->failed) snprintf(s->why, s->why_len, fmt, what, i, got, want, tol);
    s->failed = 1;
}

/* every element of dev's output `got` against ref's `want` (bf16 when w16, else f32): |got - want| <= tol[i] (+ one
 * bf16 ulp of the larger for bf16) */
static void cmp(ast *s, const char *what, int w16, const void *got, const void *want, const double *tol, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double g = w16 ? h5x_bf16_to_f32(((const uint16_t *)got)[i]) : ((const float *)got)[i];
        double w = w16 ? h5x_bf16_to_f32(((const uint16_t *)want)[i]) : ((const float *)want)[i];
        double t = tol[i] + (w16 ? ulp16(fabs(g) > fabs(w) ? g : w) : 0.0), d = fabs(g - w);
        if (!(d <= t)) {
            failf(s, "%s: element %lld is %.8g, attn.cu's version %.8g (bound %.3g)", what, (long long)i, g, w, t);
            return;
        }
        if (t > 0 && d / t > s->worst) s->worst = d / t;
    }
}

/* the keys query row i of computed sequence a sees (the reference's mask: the prefix, then its own up to i or all) */
static int64_t keys_of(const seq_desc *sq, int a, int64_t i, int causal, int64_t *key) {
    int64_t n = 0;
    if (sq[a].prefix >= 0)
        for (int64_t j = 0; j < sq[sq[a].prefix].len; j++) key[n++] = sq[sq[a].prefix].start + j;
    const int64_t end = causal ? i + 1 : (int64_t)sq[a].start + sq[a].len;
    for (int64_t j = sq[a].start; j < end; j++) key[n++] = j;
    return n;
}

static double w16(const uint16_t *x, int64_t i) { return (double)h5x_bf16_to_f32(x[i]); }

/* The per-element bounds, from the exact quantities of every (query row, head, key) the mask allows, computed in
 * double from the same bf16 inputs and the reference's fp32 lse (given to both sides' backward):
 *   s = scale q.k, es = scale sum|q k| GG(hd + 1) (both sides' score difference), p = exp(s - lse)
 *   forward  out[i,h,d]: (2 max_j es + 2 LIBM + 2 GG(L + 2) + 2 u16) sum_j p_j |v_jd|
 *            lse[i,h]:   2 (max_j es + GG(L + 2) + LIBM) + 8 u |lse|
 *   backward dS = p (dP - D) scale with dP = dout.v, D = dout.out, H = sum|dout v| + sum|dout out|:
 *            eds = |dS| (es + 2 LIBM + 8 u + 2 u16) + p scale GG(hd + 1) H
 *            dq[i,h,d] += sum_j:  sum_j eds |k_jd| + GG(L + 1) (|dq0| + R) + ulp16(|dq0| + R), R = sum_j |dS k_jd|
 *            dk[j,g,d] += sum over the (i, h) of group g that see j:  sum eds |q_ihd| + GG(C + 1) (|dk0| + R)
 *                         + nadd ulp16(|dk0| + R), R = sum |dS q_ihd|
 *            dv[j,g,d] += sum p dout:  sum p (es + 2 LIBM + 4 u + 2 u16) |dout_ihd| + GG(C + 1) (|dv0| + R)
 *                         + nadd ulp16(|dv0| + R), R = sum p |dout_ihd|
 * (derivation: the header comment). eo / el / eq / ek / ev receive the bounds; rows no sequence computes get 0. */
static void bounds(const seq_desc *sq, int nseq, int64_t T, int nq, int nkv, int hd, int causal, const uint16_t *q,
                   const uint16_t *k, const uint16_t *v, const uint16_t *out, const float *lse, const uint16_t *dout,
                   const uint16_t *dq0, const uint16_t *dk0, const uint16_t *dv0, double *eo, double *el, double *eq,
                   double *ek, double *ev) {
    const int grp = nq / nkv;
    const double scale = 1.0 / sqrt((double)hd), Ghd = GG(hd + 1.0), nadd = nseq + 1.0;
    const int64_t nqv = T * nq * hd, nkvv = T * nkv * hd;
    int64_t *key = mem_alloc(sizeof(int64_t) * (size_t)(2 * T + 1), "attention self-test: keys");
    double *P = mem_alloc(sizeof(double) * (size_t)(2 * T + 1), "attention self-test: p");
    double *E = mem_alloc(sizeof(double) * (size_t)(2 * T + 1), "attention self-test: es");
    double *DS = mem_alloc(sizeof(double) * (size_t)(2 * T + 1), "attention self-test: ds");
    double *EDS = mem_alloc(sizeof(double) * (size_t)(2 * T + 1), "attention self-test: eds");
    /* dk / dv: their sums, then the bounds; C: the pairs that see each key row of each group */
    double *Rk = mem_calloc((size_t)nkvv, sizeof(double), "attention self-test"), *Rv = mem_calloc((size_t)nkvv, sizeof(double), "attention self-test");
    double *Cn = mem_calloc((size_t)(T * nkv), sizeof(double), "attention self-test");
    memset(eo, 0, sizeof(double) * (size_t)nqv), memset(eq, 0, sizeof(double) * (size_t)nqv);
    memset(el, 0, sizeof(double) * (size_t)(T * nq));
    memset(ek, 0, sizeof(double) * (size_t)nkvv), memset(ev, 0, sizeof(double) * (size_t)nkvv);
    for (int a = 0; a < nseq; a++)
        for (int64_t i = sq[a].start; i < (int64_t)sq[a].start + sq[a].len; i++) {
            const int64_t L = keys_of(sq, a, i, causal, key);
            for (int h = 0; h < nq; h++) {
                const int64_t qo = (i * nq + h) * hd, g = h / grp;
                const double li = lse[i * nq + h];
                double esmax = 0, D = 0, Dab = 0;
                for (int d = 0; d < hd; d++) D += w16(dout, qo + d) * w16(out, qo + d), Dab += fabs(w16(dout, qo + d) * w16(out, qo + d));
                for (int64_t t = 0; t < L; t++) {
                    const int64_t ko = (key[t] * nkv + g) * hd;
                    double dot = 0, ab = 0, dp = 0, dpab = 0;
                    for (int d = 0; d < hd; d++) {
                        const double qd = w16(q, qo + d), kd = w16(k, ko + d), gd = w16(dout, qo + d), vd = w16(v, ko + d);
                        dot += qd * kd, ab += fabs(qd * kd), dp += gd * vd, dpab += fabs(gd * vd);
                    }
                    E[t] = scale * ab * Ghd;
                    esmax = fmax(esmax, E[t]);
                    P[t] = exp(dot * scale - li);
                    DS[t] = P[t] * (dp - D) * scale;
                    EDS[t] = fabs(DS[t]) * (E[t] + 2 * ALIBM + 8 * AU + 2 * AU16) + P[t] * scale * Ghd * (dpab + Dab);
                }
                el[i * nq + h] = 2 * (esmax + GG((double)L + 2) + ALIBM) + 8 * AU * fabs(li);
                const double wf = 2 * esmax + 2 * ALIBM + 2 * GG((double)L + 2) + 2 * AU16;
                for (int d = 0; d < hd; d++) {
                    double A = 0, Eq = 0, Rq = 0;
                    for (int64_t t = 0; t < L; t++) {
                        const int64_t ko = (key[t] * nkv + g) * hd + d;
                        A += P[t] * fabs(w16(v, ko));
                        Eq += EDS[t] * fabs(w16(k, ko));
                        Rq += fabs(DS[t] * w16(k, ko));
                        const double qd = fabs(w16(q, qo + d)), gd = fabs(w16(dout, qo + d));
                        ek[ko] += EDS[t] * qd;
                        Rk[ko] += fabs(DS[t]) * qd;
                        ev[ko] += P[t] * (E[t] + 2 * ALIBM + 4 * AU + 2 * AU16) * gd;
                        Rv[ko] += P[t] * gd;
                    }
                    eo[qo + d] = wf * A;
                    const double g0 = fabs(w16(dq0, qo + d));
                    eq[qo + d] = Eq + GG((double)L + 1) * (g0 + Rq) + ulp16(g0 + Rq);
                }
                for (int64_t t = 0; t < L; t++) Cn[key[t] * nkv + g] += 1;
            }
        }
    for (int64_t j = 0; j < T; j++)
        for (int g = 0; g < nkv; g++) {
            const double C = Cn[j * nkv + g];
            for (int d = 0; d < hd; d++) {
                const int64_t e = (j * nkv + g) * hd + d;
                const double k0 = fabs(w16(dk0, e)), v0 = fabs(w16(dv0, e));
                ek[e] += GG(C + 1) * (k0 + Rk[e]) + nadd * ulp16(k0 + Rk[e]);
                ev[e] += GG(C + 1) * (v0 + Rv[e]) + nadd * ulp16(v0 + Rv[e]);
            }
        }
    free(key), free(P), free(E), free(DS), free(EDS), free(Rk), free(Rv), free(Cn);
}

static void one(ast *s, const seq_desc *sq, int nseq, int64_t T, int nq, int nkv, int hd, int causal,
                const char *name) {
    const int64_t nqv = T * nq * hd, nkvv = T * nkv * hd, nl = T * nq;
    const size_t bq = 2 * (size_t)nqv, bk = 2 * (size_t)nkvv, bl = 4 * (size_t)nl;
    char what[120];
    uint16_t *q = hbf16(s, nqv, 1.0f), *k = hbf16(s, nkvv, 1.0f), *v = hbf16(s, nkvv, 1.0f);
    uint16_t *junk = hbf16(s, nqv, 1.0f), *dout = hbf16(s, nqv, 1.0f);
    uint16_t *dq0 = hbf16(s, nqv, 0.5f), *dk0 = hbf16(s, nkvv, 0.5f), *dv0 = hbf16(s, nkvv, 0.5f);
    float *l0 = mem_calloc((size_t)nl, sizeof(float), "attention self-test: lse");
    uint16_t *o_r = mem_alloc(bq, "attention self-test"), *o_d = mem_alloc(bq, "attention self-test");
    float *l_r = mem_alloc(bl, "attention self-test"), *l_d = mem_alloc(bl, "attention self-test");
    uint16_t *g_r = mem_alloc(bq, "attention self-test"), *g_d = mem_alloc(bq, "attention self-test");
    uint16_t *gk_r = mem_alloc(bk, "attention self-test"), *gk_d = mem_alloc(bk, "attention self-test");
    uint16_t *gv_r = mem_alloc(bk, "attention self-test"), *gv_d = mem_alloc(bk, "attention self-test");
    double *eo = mem_alloc(sizeof(double) * (size_t)nqv, "attention self-test: bounds");
    double *eq = mem_alloc(sizeof(double) * (size_t)nqv, "attention self-test: bounds");
    double *el = mem_alloc(sizeof(double) * (size_t)nl, "attention self-test: bounds");
    double *ek = mem_alloc(sizeof(double) * (size_t)nkvv, "attention self-test: bounds");
    double *ev = mem_alloc(sizeof(double) * (size_t)nkvv, "attention self-test: bounds");
    void *Q = up(s, q, bq), *K = up(s, k, bk), *V = up(s, v, bk), *S = up(s, sq, sizeof(seq_desc) * (size_t)nseq);
    void *Or = up(s, junk, bq), *Od = up(s, junk, bq), *Lr = up(s, l0, bl), *Ld = up(s, l0, bl);
    void *DO = up(s, dout, bq), *DQr = up(s, dq0, bq), *DQd = up(s, dq0, bq), *DKr = up(s, dk0, bk);
    void *DKd = up(s, dk0, bk), *DVr = up(s, dv0, bk), *DVd = up(s, dv0, bk);
    if (!Q || !K || !V || !S || !Or || !Od || !Lr || !Ld || !DO || !DQr || !DQd || !DKr || !DKd || !DVr || !DVd) {
        if (!s->failed) snprintf(s->why, s->why_len, "%s: cannot allocate device memory: %s", name, s->c->errmsg);
        s->failed = 1;
        goto done;
    }
    /* forward */
    s->ref->attn_fwd(s->c, Or, Lr, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    s->dev->attn_fwd(s->c, Od, Ld, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    if (s->dev->sync(s->c)) {
        if (!s->failed) snprintf(s->why, s->why_len, "%s forward: device error: %s", name, s->c->errmsg);
        s->failed = 1;
        goto done;
    }
    down(s, o_r, Or, bq), down(s, o_d, Od, bq), down(s, l_r, Lr, bl), down(s, l_d, Ld, bl);
    bounds(sq, nseq, T, nq, nkv, hd, causal, q, k, v, o_r, l_r, dout, dq0, dk0, dv0, eo, el, eq, ek, ev);
    snprintf(what, sizeof what, "%s: out", name);
    cmp(s, what, 1, o_d, o_r, eo, nqv);
    snprintf(what, sizeof what, "%s: lse", name);
    cmp(s, what, 0, l_d, l_r, el, nl);
    /* backward from the reference's out and lse (on both sides) */
    s->ref->attn_bwd(s->c, DQr, DKr, DVr, DO, Or, Lr, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    s->dev->attn_bwd(s->c, DQd, DKd, DVd, DO, Or, Lr, Q, K, V, S, nseq, T, nq, nkv, hd, causal);
    if (s->dev->sync(s->c)) {
        if (!s->failed) snprintf(s->why, s->why_len, "%s backward: device error: %s", name, s->c->errmsg);
        s->failed = 1;
        goto done;
    }
    down(s, g_r, DQr, bq), down(s, g_d, DQd, bq), down(s, gk_r, DKr, bk), down(s, gk_d, DKd, bk);
    down(s, gv_r, DVr, bk), down(s, gv_d, DVd, bk);
    snprintf(what, sizeof what, "%s: dq", name);
    cmp(s, what, 1, g_d, g_r, eq, nqv);
    snprintf(what, sizeof what, "%s: dk", name);
    cmp(s, what, 1, gk_d, gk_r, ek, nkvv);
    snprintf(what, sizeof what, "%s: dv", name);
    cmp(s, what, 1, gv_d, gv_r, ev, nkvv);
done:;
    void *dbufs[] = {Q, K, V, S, Or, Od, Lr, Ld, DO, DQr, DQd, DKr, DKd, DVr, DVd};
    for (size_t i = 0; i < sizeof dbufs / sizeof dbufs[0]; i++)
        if (dbufs[i]) s->dev->mem_free(s->c, dbufs[i], MEM_DEVICE);
    void *hbufs[] = {q, k, v, junk, dout, dq0, dk0, dv0, l0, o_r, o_d, l_r, l_d, g_r, g_d, gk_r, gk_d, gv_r, gv_d,
                     eo, eq, el, ek, ev};
    for (size_t i = 0; i < sizeof hbufs / sizeof hbufs[0]; i++) free(hbufs[i]);
}

int afz_selftest(const ops *ref, const ops *dev, opctx *c, int nq, int nkv, int hd, int prefix, uint64_t seed,
                 char *why, size_t why_len, double *worst) {
    ast s;
    memset(&s, 0, sizeof s);
    s.ref = ref, s.dev = dev, s.c = c, s.why = why, s.why_len = why_len;
    s.rng = seed * 0x9E3779B97F4A7C15ull + 7;
    if (why_len) why[0] = 0;
    if (nq < 1 || nkv < 1 || nq % nkv || hd < 2 || prefix < 2) {
        snprintf(why, why_len, "attention self-test: bad shape (%d / %d heads of %d, prefix %d)", nq, nkv, hd, prefix);
        return ERR_INTERNAL;
    }
    const int P = prefix, A = prefix / 2 + 3, B = prefix / 3 + 1;
    /* a shared prompt, a chosen and a rejected answer that see it, one row no sequence computes */
    const seq_desc orpo[3] = {{0, P, 0, -1}, {P, A, P, 0}, {P + A, B, P, 0}};
    one(&s, orpo, 3, (int64_t)P + A + B + 1, nq, nkv, hd, 1, "causal, shared prefix");
    /* two tiles that see themselves in full */
    const seq_desc tiles[2] = {{0, P, 0, -1}, {P, P + 1, 0, -1}};
    one(&s, tiles, 2, 2 * (int64_t)P + 1, nq, nkv, hd, 0, "not causal");
    if (worst) *worst = s.worst;
    return s.failed ? ERR_INTERNAL : ERR_OK;
}

int afz_check_gpu(void *ctx, char *why, size_t why_len) {
    const ops *ref = ops_for(DEVICE_CUDA, DT_BF16), *dev = afz_ops_cuda();
    if (!ref || !dev) {
        snprintf(why, why_len, "this orpo-hpc has no CUDA attention to compare");
        return ERR_INTERNAL;
    }
    /* the decoder's GQA at the 7B head size (32 / 8 heads of 128, here 8 / 2) and the tower's (heads of 64) */
    long f0, b0, f1, b1;
    char fw[256];
    afz_counts(&f0, &b0, fw, sizeof fw);
    int rc = afz_selftest(ref, dev, (opctx *)ctx, 8, 2, 128, 70, 1, why, why_len, NULL);
    if (!rc) rc = afz_selftest(ref, dev, (opctx *)ctx, 4, 4, 64, 40, 2, why, why_len, NULL);
    afz_counts(&f1, &b1, fw, sizeof fw);
    /* the fused table falls back per call: agreeing with attn.cu is not enough, cuDNN must have run every call
     * (libcudnn missing at run time, or an engine that refuses these shapes, would otherwise pass unnoticed) */
    if (!rc && (b1 > b0 || f1 - f0 < 8)) {
        snprintf(why, why_len, "cuDNN did not run the self-test's attention calls (%ld of 8; %s)", f1 - f0,
                 fw[0] ? fw : "no reason recorded");
        rc = ERR_INTERNAL;
    }
    return rc;
}
