/* test_k_attn — kernels/attn.cu (attention forward and backward over packed sequences: GQA, shared prefixes, a KV
 * cache's prefix descriptors, causal or not; query chunks) run by the CPU executor against ops_cpu_bf16: odd shapes
 * with several chunks, the 7B decoder's heads (32 query / 8 key-value heads, head dim 128) over 300 packed tokens of
 * one prompt and two answers, and one CLIP ViT-L/336 tile (16 heads, head dim 64, 577 tokens, not causal).
 *
 * Tolerance, per element, derived from the fp32 error model of docs/testing.md (u = 2^-24, gamma_n = n u / (1 - n u)
 * relative to the sum of |terms| for any order) plus the kernel's bf16 roundings (u16 = 2^-8: its GEMM operands P and
 * dS are bf16), with the exact values computed here in double from the same bf16 inputs. Both sides are bounded
 * against the exact value and the bounds added; a bf16 output adds one bf16 ulp (both round once, nearest even).
 *   scores  x_j = scale q.k_j: each side within e_s = gamma_hd scale sum|q k| + u |x| (the same fp32 scale)
 *   forward weights w_j = softmax(x): relative error per side <= 4 e_s (numerator and normaliser) + 3 gamma_L (the
 *           sum l, the sum over the keys, slack) + 3 L u (the reference's online softmax rescales its running sums at
 *           most L times, about 3 u each) + 8 u (exp, log, division) plus u |x_j - m| per term (the subtraction);
 *           the kernel's bf16 P adds u16 per term:
 *           |out - ref| <= u16 A + 2 ((4 e_s + 3 gamma_L + 3 L u + 8 u) A + 2 u B) + ulp, A = sum w_j |v_j|,
 *           B = sum w_j |v_j| |x_j - m|; lse: 2 (3 e_s + gamma_L + 3 L u + 6 u + u sum w_j |x_j - m|) + 2 u |lse|
 *   backward p = exp(x - lse) (lse given): relative ep = e_s + u |x - lse| + 3 u; dP = dout.v: absolute gamma_hd
 *           sum|dout v|; D = dout.out: gamma_hd sum|dout out|; dS = p (dP - D) scale: |dS| (ep + 3 u) + p scale
 *           (e_dP + e_D). Each gradient is the old value plus a sum of n products (dq: over the row's keys; dk, dv:
 *           over every query row and head that sees the key): per side sum |other factor| e_factor, plus gamma_{n+1}
 *           (|old| + R), R = sum |products|; the kernel rounds dS (for dq, dk) and p (for dv) to bf16: u16 R.
 * A wrong key, a missing prefix, a wrong head or row moves a value by the size of a term (~A, ~R / n), hundreds of
 * times these bounds (tested by breaking the kernel on purpose). Rows outside the computed sequences must stay
 * untouched (the fp32 reference does not write them; its bf16 mode copies its scratch there, so they are compared
 * with the initial contents instead). */
#include "kcheck.h"

extern int64_t kc_attn_chunk_entries;

#define U (1.0 / 16777216.0)
#define U16 (1.0 / 256.0)

static double gam(double n) { return n * U / (1 - n * U); }

static double ulp16(double x) {
    int e;
    if (x == 0) return 0;
    frexp(fabs(x), &e);
    return ldexp(1.0, e - 8);
}

typedef struct acase {
    const char *name;
    int64_t ntok;
    int nq, nkv, hd, causal, nseq;
    seq_desc d[8];
    int64_t rows; /* query rows per chunk (0: the kernel's default) */
    int every;    /* bounds and checks at every `every`-th query row and key row (the kernel computes them all) */
} acase;

static int owner_of(const acase *a, int64_t i) {
    int o = -1;
    for (int s = 0; s < a->nseq; s++)
        if (i >= a->d[s].start && i < (int64_t)a->d[s].start + a->d[s].len) o = s;
    return o;
}

/* the keys query row i (of sequence s) sees, in the reference's order: prefix, then own */
static int64_t keys_of(const acase *a, int s, int64_t i, int64_t *key) {
    int64_t n = 0;
    const seq_desc *sd = &a->d[s];
    if (sd->prefix >= 0)
        for (int64_t j = a->d[sd->prefix].start; j < (int64_t)a->d[sd->prefix].start + a->d[sd->prefix].len; j++)
            key[n++] = j;
    int64_t b1 = a->causal ? i + 1 : (int64_t)sd->start + sd->len;
    for (int64_t j = sd->start; j < b1; j++) key[n++] = j;
    return n;
}

static int sees(const acase *a, int s, int64_t i, int64_t j) {
    const seq_desc *sd = &a->d[s];
    if (sd->prefix >= 0 && j >= a->d[sd->prefix].start && j < (int64_t)a->d[sd->prefix].start + a->d[sd->prefix].len)
        return 1;
    return j >= sd->start && j < (a->causal ? i + 1 : (int64_t)sd->start + sd->len);
}

/* the exact backward quantities of one (query row i, head h, key j) and their per-side error bounds */
typedef struct pair_t {
    double p, ep; /* probability, its relative error */
    double ds, eds; /* dS = p (dP - D) scale, its absolute error */
} pair_t;

static pair_t pair_terms(const acase *a, const float *qf, const float *kf, const float *vf, const float *df,
                         const double *D, const double *eD, const float *lse, int64_t i, int h, int64_t j,
                         double scale) {
    const int64_t NQ = a->nq, NKV = a->nkv, HD = a->hd, kh = h / (a->nq / a->nkv);
    const float *qi = qf + (i * NQ + h) * HD, *doi = df + (i * NQ + h) * HD;
    const float *kj = kf + (j * NKV + kh) * HD, *vj = vf + (j * NKV + kh) * HD;
    double dot = 0, ab = 0, dp = 0, dab = 0;
    for (int d = 0; d < a->hd; d++) {
        dot += (double)qi[d] * kj[d], ab += fabs((double)qi[d] * kj[d]);
        dp += (double)doi[d] * vj[d], dab += fabs((double)doi[d] * vj[d]);
    }
    double xs = dot * scale, e_s = gam(a->hd) * ab * scale + U * fabs(xs), li = lse[i * NQ + h];
    pair_t r;
    r.p = exp(xs - li);
    r.ep = e_s + U * fabs(xs - li) + 3 * U;
    r.ds = r.p * (dp - D[i * NQ + h]) * scale;
    r.eds = fabs(r.ds) * (r.ep + 3 * U) + r.p * scale * (gam(a->hd) * dab + eD[i * NQ + h]);
    return r;
}

static float *widen(const uint16_t *x, int64_t n) {
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) f[i] = tu_widen(x[i]);
    return f;
}

/* |got - want| <= tol[i] + one bf16 ulp of the larger, for every element */
static int close16(const char *what, const uint16_t *got, const uint16_t *want, const double *tol, int64_t n) {
    int64_t bad = 0, worst = -1;
    double wr = 0;
    for (int64_t i = 0; i < n; i++) {
        if (tol[i] < 0) continue; /* not sampled */
        double g = tu_widen(got[i]), w = tu_widen(want[i]), t = tol[i] + ulp16(fabs(g) > fabs(w) ? g : w);
        double d = fabs(g - w), q = t > 0 ? d / t : (d > 0 ? INFINITY : 0);
        if (q > 1 && (bad++, q > wr)) wr = q, worst = i;
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld beyond the bound; worst at %lld: %.8g vs reference %.8g (%.3g x the "
                "bound)\n", what, (long long)bad, (long long)n, (long long)worst, tu_widen(got[worst]),
                tu_widen(want[worst]), wr);
    return bad == 0;
}

static int close32(const char *what, const float *got, const float *want, const double *tol, int64_t n) {
    int64_t bad = 0, worst = -1;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol[i]) && (bad++, worst < 0)) worst = i;
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld beyond the bound; first at %lld: %.9g vs reference %.9g (bound %.3g)\n",
                what, (long long)bad, (long long)n, (long long)worst, got[worst], want[worst], tol[worst]);
    return bad == 0;
}

static void one_case(const acase *a) {
    const int64_t T = a->ntok, NQ = a->nq, NKV = a->nkv, HD = a->hd, nqv = T * NQ * HD, nkvv = T * NKV * HD;
    const int group = a->nq / a->nkv;
    const double scale = (double)(1.0f / sqrtf((float)a->hd));
    uint64_t s = 0xa7700000u + (uint64_t)(T * 977 + NQ * 31 + HD);
    const ops *r = kc_ref();
    char what[160];
    uint16_t *q = kc_bf16(nqv, &s, 2.0f), *k = kc_bf16(nkvv, &s, 2.0f), *v = kc_bf16(nkvv, &s, 1.0f);
    uint16_t *dout = kc_bf16(nqv, &s, 1.0f), *junk = kc_bf16(nqv, &s, 1.0f);
    uint16_t *dq0 = kc_bf16(nqv, &s, 0.5f), *dk0 = kc_bf16(nkvv, &s, 0.5f), *dv0 = kc_bf16(nkvv, &s, 0.5f);
    float *ljunk = kc_f32(T * NQ, &s, 1.0f);
    uint16_t *ow = kc_dup(junk, 2 * (size_t)nqv), *og = kc_dup(junk, 2 * (size_t)nqv);
    float *lw = kc_dup(ljunk, 4 * (size_t)(T * NQ)), *lg = kc_dup(ljunk, 4 * (size_t)(T * NQ));
    kc_attn_chunk_entries = a->rows ? NQ * ((T + 15) & ~(int64_t)15) * a->rows : (int64_t)1 << 23;
    long before = simt_launches();

    /* ---- forward ---- */
    r->attn_fwd(&kc_rctx, ow, lw, q, k, v, a->d, a->nseq, T, a->nq, a->nkv, a->hd, a->causal);
    kc_attn_fwd(&kc_kctx, og, lg, q, k, v, a->d, a->nseq, T, a->nq, a->nkv, a->hd, a->causal);
    CHECK(kc_kctx.err == 0);
    KC_RAN(before);
    float *qf = widen(q, nqv), *kf = widen(k, nkvv), *vf = widen(v, nkvv), *df = widen(dout, nqv);
    double *tol = calloc((size_t)nqv, sizeof(double)), *tl = calloc((size_t)(T * NQ), sizeof(double));
    int64_t *key = malloc(sizeof(int64_t) * (size_t)(2 * T));
    double *x = malloc(sizeof(double) * (size_t)(2 * T)), *es = malloc(sizeof(double) * (size_t)(2 * T));
    uint16_t *oref = kc_dup(ow, 2 * (size_t)nqv);
    float *lref = kc_dup(lw, 4 * (size_t)(T * NQ));
    int unowned_ok = 1;
    for (int64_t i = 0; i < T; i++) {
        int o = owner_of(a, i);
        if (o < 0) { /* not computed: the kernel leaves the row as it was (the reference's bf16 mode writes its
                      * scratch there: not compared) */
            unowned_ok &= tu_bits_eq(og + i * NQ * HD, junk + i * NQ * HD, 2 * (size_t)(NQ * HD));
            unowned_ok &= tu_bits_eq(lg + i * NQ, ljunk + i * NQ, 4 * (size_t)NQ);
            memcpy(ow + i * NQ * HD, og + i * NQ * HD, 2 * (size_t)(NQ * HD));
            memcpy(lw + i * NQ, lg + i * NQ, 4 * (size_t)NQ);
            continue;
        }
        if (i % a->every) { /* not sampled: not compared */
            for (int64_t e = i * NQ * HD; e < (i + 1) * NQ * HD; e++) tol[e] = -1;
            for (int64_t e = i * NQ; e < (i + 1) * NQ; e++) tl[e] = INFINITY;
            continue;
        }
        int64_t L = keys_of(a, o, i, key);
        for (int h = 0; h < a->nq; h++) {
            const float *qi = qf + (i * NQ + h) * HD;
            int kh = h / group;
            double m = -INFINITY, esmax = 0, Z = 0, X = 0;
            for (int64_t t = 0; t < L; t++) {
                const float *kj = kf + (key[t] * NKV + kh) * HD;
                double dot = 0, ab = 0;
                for (int d = 0; d < a->hd; d++) dot += (double)qi[d] * kj[d], ab += fabs((double)qi[d] * kj[d]);
                x[t] = dot * scale;
                es[t] = gam(a->hd) * ab * scale + U * fabs(x[t]);
                if (x[t] > m) m = x[t];
                if (es[t] > esmax) esmax = es[t];
            }
            for (int64_t t = 0; t < L; t++) Z += (es[t] = exp(x[t] - m)); /* es: now the weights */
            for (int64_t t = 0; t < L; t++) es[t] /= Z, X += es[t] * fabs(x[t] - m);
            double lse = m + log(Z), c = 4 * esmax + 3 * gam((double)L) + 3 * L * U + 8 * U;
            tl[i * NQ + h] = 2 * (3 * esmax + gam((double)L) + 3 * L * U + 6 * U + U * X) + 2 * U * fabs(lse);
            for (int d = 0; d < a->hd; d++) {
                double A = 0, B = 0;
                for (int64_t t = 0; t < L; t++) {
                    double w = es[t], av = fabs((double)vf[(key[t] * NKV + kh) * HD + d]);
                    A += w * av, B += w * av * fabs(x[t] - m);
                }
                tol[(i * NQ + h) * HD + d] = U16 * A + 2 * (c * A + 2 * U * B);
            }
        }
    }
    snprintf(what, sizeof what, "attn_fwd out (%s)", a->name);
    CHECK(close16(what, og, ow, tol, nqv));
    snprintf(what, sizeof what, "attn_fwd lse (%s)", a->name);
    CHECK(close32(what, lg, lw, tl, T * NQ));
    if (!unowned_ok) fprintf(stderr, "  attn_fwd (%s): a row outside the computed sequences was written\n", a->name);
    CHECK(unowned_ok);

    /* ---- backward, from the reference's out and lse on both sides ---- */
    uint16_t *dqw = kc_dup(dq0, 2 * (size_t)nqv), *dqg = kc_dup(dq0, 2 * (size_t)nqv);
    uint16_t *dkw = kc_dup(dk0, 2 * (size_t)nkvv), *dkg = kc_dup(dk0, 2 * (size_t)nkvv);
    uint16_t *dvw = kc_dup(dv0, 2 * (size_t)nkvv), *dvg = kc_dup(dv0, 2 * (size_t)nkvv);
    r->attn_bwd(&kc_rctx, dqw, dkw, dvw, dout, oref, lref, q, k, v, a->d, a->nseq, T, a->nq, a->nkv, a->hd, a->causal);
    kc_attn_bwd(&kc_kctx, dqg, dkg, dvg, dout, oref, lref, q, k, v, a->d, a->nseq, T, a->nq, a->nkv, a->hd, a->causal);
    CHECK(kc_kctx.err == 0);
    float *of = widen(oref, nqv);
    double *Dr = calloc((size_t)(T * NQ), sizeof(double)), *eDr = calloc((size_t)(T * NQ), sizeof(double));
    for (int64_t i = 0; i < T; i++)
        for (int h = 0; h < a->nq && owner_of(a, i) >= 0; h++) {
            const float *doi = df + (i * NQ + h) * HD, *oi = of + (i * NQ + h) * HD;
            for (int d = 0; d < a->hd; d++)
                Dr[i * NQ + h] += (double)doi[d] * oi[d], eDr[i * NQ + h] += fabs((double)doi[d] * oi[d]);
            eDr[i * NQ + h] *= gam(a->hd);
        }
    double *R = malloc(sizeof(double) * (size_t)HD), *E = malloc(sizeof(double) * (size_t)HD);
    double *tk = malloc(sizeof(double) * (size_t)nkvv), *tv = malloc(sizeof(double) * (size_t)nkvv);
    /* dq of the sampled query rows: over the row's keys */
    for (int64_t i = 0; i < T; i++) {
        int o = owner_of(a, i);
        for (int64_t e = i * NQ * HD; e < (i + 1) * NQ * HD; e++) tol[e] = -1;
        if (o < 0 || i % a->every) continue;
        int64_t L = keys_of(a, o, i, key);
        for (int h = 0; h < a->nq; h++) {
            memset(R, 0, sizeof(double) * (size_t)HD), memset(E, 0, sizeof(double) * (size_t)HD);
            for (int64_t t = 0; t < L; t++) {
                pair_t pr = pair_terms(a, qf, kf, vf, df, Dr, eDr, lref, i, h, key[t], scale);
                const float *kj = kf + (key[t] * NKV + h / group) * HD;
                for (int d = 0; d < a->hd; d++) E[d] += fabs((double)kj[d]) * pr.eds, R[d] += fabs(kj[d] * pr.ds);
            }
            for (int d = 0; d < a->hd; d++) {
                int64_t e = (i * NQ + h) * HD + d;
                tol[e] = 2 * E[d] + U16 * R[d] + 2 * gam((double)L + 1) * (fabs(tu_widen(dq0[e])) + R[d]);
            }
        }
    }
    /* dk and dv of the sampled key rows: over every query row and head that sees the key */
    for (int64_t j = 0; j < T; j++)
        for (int kh = 0; kh < a->nkv; kh++) {
            double *Ek = tk + (j * NKV + kh) * HD, *Ev = tv + (j * NKV + kh) * HD;
            if (j % a->every) {
                for (int d = 0; d < a->hd; d++) Ek[d] = Ev[d] = -1;
                continue;
            }
            double *Rk = malloc(sizeof(double) * (size_t)HD), *Rv = malloc(sizeof(double) * (size_t)HD);
            memset(Rk, 0, sizeof(double) * (size_t)HD), memset(Rv, 0, sizeof(double) * (size_t)HD);
            memset(Ek, 0, sizeof(double) * (size_t)HD), memset(Ev, 0, sizeof(double) * (size_t)HD);
            double n = 1;
            for (int64_t i = 0; i < T; i++) {
                int o = owner_of(a, i);
                if (o < 0 || !sees(a, o, i, j)) continue;
                for (int g = 0; g < group; g++) {
                    int h = kh * group + g;
                    pair_t pr = pair_terms(a, qf, kf, vf, df, Dr, eDr, lref, i, h, j, scale);
                    const float *qi = qf + (i * NQ + h) * HD, *doi = df + (i * NQ + h) * HD;
                    n += 1;
                    for (int d = 0; d < a->hd; d++) {
                        double aq = fabs((double)qi[d]), ad = fabs((double)doi[d]);
                        Ek[d] += aq * pr.eds, Rk[d] += aq * fabs(pr.ds);
                        Ev[d] += ad * pr.p * pr.ep, Rv[d] += ad * pr.p;
                    }
                }
            }
            for (int d = 0; d < a->hd; d++) {
                int64_t e = (j * NKV + kh) * HD + d;
                Ek[d] = 2 * Ek[d] + U16 * Rk[d] + 2 * gam(n) * (fabs(tu_widen(dk0[e])) + Rk[d]);
                Ev[d] = 2 * Ev[d] + U16 * Rv[d] + 2 * gam(n) * (fabs(tu_widen(dv0[e])) + Rv[d]);
            }
            free(Rk), free(Rv);
        }
    snprintf(what, sizeof what, "attn_bwd dq (%s)", a->name);
    CHECK(close16(what, dqg, dqw, tol, nqv));
    snprintf(what, sizeof what, "attn_bwd dk (%s)", a->name);
    CHECK(close16(what, dkg, dkw, tk, nkvv));
    snprintf(what, sizeof what, "attn_bwd dv (%s)", a->name);
    CHECK(close16(what, dvg, dvw, tv, nkvv));

    /* each gradient alone (the others NULL) gives the same values as all three at once */
    if (T * NQ * HD < 100000) {
        for (int which = 0; which < 3; which++) {
            uint16_t *g1 = kc_dup(which == 0 ? dq0 : which == 1 ? dk0 : dv0, 2 * (size_t)(which ? nkvv : nqv));
            kc_attn_bwd(&kc_kctx, which == 0 ? g1 : NULL, which == 1 ? g1 : NULL, which == 2 ? g1 : NULL, dout, oref,
                        lref, q, k, v, a->d, a->nseq, T, a->nq, a->nkv, a->hd, a->causal);
            CHECK(tu_bits_eq(g1, which == 0 ? dqg : which == 1 ? dkg : dvg, 2 * (size_t)(which ? nkvv : nqv)));
            free(g1);
        }
    }
    CHECK(kc_kctx.err == 0);
    free(q), free(k), free(v), free(dout), free(junk), free(dq0), free(dk0), free(dv0), free(ljunk), free(ow), free(og);
    free(lw), free(lg), free(qf), free(kf), free(vf), free(df), free(tol), free(tl), free(key), free(x), free(es);
    free(oref), free(lref), free(dqw), free(dqg), free(dkw), free(dkg), free(dvw), free(dvg), free(of), free(Dr);
    free(eDr), free(R), free(E), free(tk), free(tv);
}

int main(void) {
    const acase cases[] = {
        /* two preference pairs packed with shared prompts (prompt, chosen, rejected; the answers name the prompt as
         * prefix), 3 rows of padding, GQA 4, chunks of 7 rows (the last one of 3) */
        {"pairs, shared prefix, causal, GQA 4, 7-row chunks", 45, 8, 2, 24, 1, 6,
         {{0, 11, 0, -1}, {11, 5, 11, 0}, {16, 7, 11, 0}, {23, 9, 0, -1}, {32, 4, 9, 3}, {36, 6, 9, 3}}, 7, 1},
        /* generation against a KV cache: two runs of new tokens whose prefixes are descriptors after the computed
         * ones (the cached rows); the cache rows themselves are not computed; 1-row chunks */
        {"KV cache prefixes, causal, GQA 4, 1-row chunks", 30, 4, 1, 16, 1, 2,
         {{10, 2, 10, 2}, {25, 1, 11, 3}, {0, 10, 0, -1}, {14, 11, 0, -1}}, 1, 1},
        /* vision-like tiles, not causal, no GQA */
        {"tiles, not causal, GQA 1", 39, 3, 3, 8, 0, 3, {{0, 13, 0, -1}, {13, 13, 0, -1}, {26, 13, 0, -1}}, 0, 1},
        /* answers with a prefix, not causal, GQA 4, 5-row chunks */
        {"prefix, not causal, GQA 4, 5-row chunks", 20, 4, 1, 32, 0, 3, {{0, 9, 0, -1}, {9, 6, 9, 0}, {15, 5, 9, 0}}, 5, 1},
        /* the 7B decoder's heads: a 200-token prompt, a 40-token chosen and a 60-token rejected answer, 64-row
         * chunks; every 5th query and key row checked */
        {"7B heads (32/8, hd 128), shared prefix, causal", 300, 32, 8, 128, 1, 3,
         {{0, 200, 0, -1}, {200, 40, 200, 0}, {240, 60, 200, 0}}, 64, 5},
        /* one CLIP ViT-L/336 tile: 577 tokens, 16 heads of 64, not causal, the default chunking; every 12th query
         * and key row checked */
        {"CLIP tile (16/16, hd 64, 577 tokens), not causal", 577, 16, 16, 64, 0, 1, {{0, 577, 0, -1}}, 0, 12},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        acase a = cases[c];
#if defined(__SANITIZE_ADDRESS__)
        /* under AddressSanitizer (the asan preset, -O1) the two large cases keep their token counts and head
         * dimensions with a quarter of the heads (GQA ratio kept): the full ones take minutes there */
        if (a.ntok > 100) a.nq /= 4, a.nkv /= 4;
#endif
        one_case(&a);
    }
    free(kc_kctx.kscratch);
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
