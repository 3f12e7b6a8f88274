// attn_fused — the fused attention (issue 12, 2b): attn_fwd / attn_bwd over packed sequences through cuDNN's SDPA
// (kernels/cudnn_attn.cpp), with kernels/attn.cu's version as the fallback of every call cuDNN cannot take. The CUDA
// table ops_cuda_cudnn() (kernels/cuda_ops.cu) holds these two; the run-time choice is backend/attn_fused.h's.
//
// A call: the descriptors are read to the host (a few hundred bytes, as attn.cu does), afz_plan maps each computed
// sequence onto segments (backend/attn_fused.h: queries = the sequence's rows or a chunk of them, keys = [its prefix;
// its own rows up to the chunk's end], causal aligned bottom right, lengths padded to buckets), every segment's graph
// is prepared (built once per shape, then cached), and only when all of that succeeds and the scratch fits the
// budget do the segments run, one cuDNN call each on c->stream:
//   forward   q rows, [prefix; own] k and v rows copied into the segment's scratch, the padding zeroed; cuDNN writes
//             O and Stats (lse, natural log); O's rows are copied to out, Stats transposed into lse ([ntok, nq])
//   backward  the same, plus out and dout rows and lse -> Stats; cuDNN writes dQ, dK, dV (deterministic algorithm);
//             each is ADDED to the op's gradients (dq rows; dk / dv rows of the prefix part and of the own part), in
//             bf16 (one rounding per segment: a prefix's key rows get one addition per sequence that sees it)
// Otherwise the whole call runs attn.cu's version (kc_attn_fwd / kc_attn_bwd): nothing was written before the
// decision, so a fallback never adds a gradient twice. kc_attn_fused_count counts both outcomes and
// kc_attn_fused_why keeps the latest reason (`bench step` prints them).
//
// Budget: the call's scratch may take as much as attn.cu's version of the same call would (the memory plan reserves
// that: backend/attn_scratch.h), or the kernel scratch already held, or AFZ_MIN_BUDGET, whichever is most.
//
// In the CPU executor's build (tests) the cudnn_sdpa_* functions are the plain loops at the end of this file, with
// cuDNN's contract (kernels/cudnn_attn.h), so the mapping, the copies, the transposes and the accumulation are
// checked against the CPU reference on the CPU (tests/kernels/test_k_attn_fused.c); in a CUDA build without cuDNN
// they refuse, and every call falls back.
#include <stdio.h>
#include <string.h>

#include "kgemm.h"
#include "backend/attn_scratch.h"
#include "kops.h"
#include "cudnn_attn.h"

extern "C" {
#include "backend/attn_fused.h"
long kc_attn_fused_count[2];  // calls run by cuDNN, calls that fell back to attn.cu's version
char kc_attn_fused_why[256];  // the latest fallback's reason
}

enum { AF_THREADS = 256 };

#define AF_FOR_EACH(i, n)                                                                                            \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

static unsigned af_grid(int64_t n) { return KMIN(kgrid(n, AF_THREADS), 1024u); }

__global__ static void lens_k(int32_t *lens, int32_t lq, int32_t lkv) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        lens[0] = lq;
        lens[CUDNN_SDPA_LKV] = lkv;
    }
}

// stats [nq, sq] (head-major, cuDNN's) from lse rows q0 .. q0 + lq of [ntok, nq]; padded rows 0
__global__ static void stats_in_k(float *stats, const float *lse, int64_t q0, int64_t lq, int sq, int nq) {
    AF_FOR_EACH(e, (int64_t)nq * sq) {
        const int64_t h = e / sq, r = e - h * sq;
        stats[e] = r < lq ? lse[(q0 + r) * nq + h] : 0.0f;
    }
}

// lse rows q0 .. q0 + lq from stats [nq, sq]
__global__ static void stats_out_k(float *lse, const float *stats, int64_t q0, int64_t lq, int sq, int nq) {
    AF_FOR_EACH(e, lq * nq) {
        const int64_t r = e / nq, h = e - r * nq;
        lse[(q0 + r) * nq + h] = stats[h * sq + r];
    }
}

// ---- the host side -----------------------------------------------------------------------------------------------

static void fell_back(const char *dir, const char *why) {
    kc_attn_fused_count[1]++;
    snprintf(kc_attn_fused_why, sizeof kc_attn_fused_why, "%s: %.230s", dir, why);
}

static cudnn_sdpa_shape shape_of(const afz_seg &g, int nq, int nkv, int hd, int causal) {
    cudnn_sdpa_shape s;
    s.sq = g.sq, s.skv = g.skv, s.nq = nq, s.nkv = nkv, s.hd = hd, s.causal = causal;
    return s;
}

// a call cuDNN runs: its segments (malloc'd) and the scratch every segment's layout (lay) is carved from
struct af_call {
    afz_seg *segs;
    int nsegs;
    char *base;
};

static afz_layout lay(const afz_seg &g, int nq, int nkv, int hd, int bwd, size_t ws) {
    afz_layout L = afz_seg_bytes(g.sq, g.skv, nq, nkv, hd, bwd);
    L.total = L.ws + ((ws + 255) & ~(size_t)255);
    return L;
}

// the segments of a call, every graph prepared, the scratch taken: 1 when cuDNN runs the call (or an error is already
// in the sticky error: then nothing runs), 0 to fall back to attn.cu's version (counted, with the reason)
static int af_setup(opctx *c, af_call *a, const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd,
                    int causal, int bwd, int want_dk, int want_dv) {
    const char *dir = bwd ? "backward" : "forward";
    char why[256];
    a->segs = NULL, a->nsegs = 0, a->base = NULL;
    int ndesc = 0;
    seq_desc *hs = kc_attn_host_descs(c, seqs, nseq, &ndesc);
    if (!hs) return 0;
    size_t budget = attn_layout_of(ATTN_CHUNK_ENTRIES, ntok, nq, nkv, hd, bwd, want_dk, want_dv).total;
    budget = KMAX(budget, c->kscratch_bytes);
    budget = KMAX(budget, AFZ_MIN_BUDGET);
    int rc = afz_plan(hs, nseq, ndesc, ntok, nq, nkv, hd, causal, bwd, budget, &a->segs, &a->nsegs, why, sizeof why);
    free(hs);
    if (rc) return fell_back(dir, why), 0;
    size_t need = 0;
    for (int i = 0; i < a->nsegs; i++) {
        const cudnn_sdpa_shape s = shape_of(a->segs[i], nq, nkv, hd, causal);
        size_t ws = 0;
        if (cudnn_sdpa_prepare(c, &s, bwd, &ws, why, sizeof why)) {
            char w2[256];
            snprintf(w2, sizeof w2, "sq %d, skv %d: %.200s", s.sq, s.skv, why);
            free(a->segs), a->segs = NULL;
            return fell_back(dir, w2), 0;
        }
        need = KMAX(need, lay(a->segs[i], nq, nkv, hd, bwd, ws).total);
    }
    if (need > budget) {
        snprintf(why, sizeof why, "cuDNN's workspace makes a segment need %zu bytes of scratch, over the %zu this call "
                 "may use", need, budget);
        free(a->segs), a->segs = NULL;
        return fell_back(dir, why), 0;
    }
    a->base = (char *)kscratch(c, need);
    if (!a->base) { // the sticky error is set: nothing runs
        free(a->segs), a->segs = NULL, a->nsegs = 0;
        return 1;
    }
    return 1;
}

// rows [r0, r0 + n) of x (each `w` values) into dst, then zeros up to `pad` rows
static void rows_in(opctx *c, bf16 *dst, const void *x, int64_t r0, int64_t n, int64_t pad, int64_t w) {
    if (n > 0) kc_copy(c, dst, (const bf16 *)x + r0 * w, n * w);
    if (pad > n) kc_zero(c, dst + n * w, (pad - n) * w);
}

// the segment's keys [A; B] of x ([ntok, nkv, hd]) into dst, zeros up to skv rows
static void keys_in(opctx *c, bf16 *dst, const void *x, const afz_seg &g, int64_t w) {
    if (g.alen > 0) kc_copy(c, dst, (const bf16 *)x + g.a0 * w, g.alen * w);
    rows_in(c, dst + g.alen * w, x, g.b0, g.blen, g.skv - g.alen, w);
}

// one segment's cuDNN call, staged: its workspace size (cached per shape), its layout in the scratch, the lengths,
// Q (its query rows) and K / V ([prefix; own rows]) copied in
struct af_bufs {
    afz_layout L;
    int32_t *lens;
    bf16 *Q, *K, *V;
    float *st;
};

static af_bufs stage(opctx *c, const af_call &a, const afz_seg &g, const cudnn_sdpa_shape &s, int bwd, const void *q,
                     const void *k, const void *v) {
    size_t ws = 0;
    char why[8];
    cudnn_sdpa_prepare(c, &s, bwd, &ws, why, sizeof why);
    af_bufs B;
    B.L = lay(g, s.nq, s.nkv, s.hd, bwd, ws);
    char *b = a.base;
    B.lens = (int32_t *)(b + B.L.lens);
    B.Q = (bf16 *)(b + B.L.q), B.K = (bf16 *)(b + B.L.k), B.V = (bf16 *)(b + B.L.v);
    B.st = (float *)(b + B.L.stats);
    KLAUNCH(lens_k, 1, 32, 0, c, B.lens, (int32_t)g.lq, (int32_t)(g.alen + g.blen));
    const int64_t wq = (int64_t)s.nq * s.hd, wk = (int64_t)s.nkv * s.hd;
    rows_in(c, B.Q, q, g.q0, g.lq, g.sq, wq);
    keys_in(c, B.K, k, g, wk);
    keys_in(c, B.V, v, g, wk);
    return B;
}

extern "C" void kc_attn_fused_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                                  const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    if (c->err || ntok <= 0 || nseq <= 0) return;
    af_call a;
    if (!af_setup(c, &a, seqs, nseq, ntok, nq, nkv, hd, causal, 0, 0, 0)) {
        if (!c->err) kc_attn_fwd(c, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
        return;
    }
    const int64_t wq = (int64_t)nq * hd;
    for (int i = 0; i < a.nsegs && !c->err; i++) {
        const afz_seg &g = a.segs[i];
        const cudnn_sdpa_shape s = shape_of(g, nq, nkv, hd, causal);
        const af_bufs B = stage(c, a, g, s, 0, q, k, v);
        bf16 *O = (bf16 *)(a.base + B.L.o);
        if (cudnn_sdpa_fwd(c, &s, B.lens, B.Q, B.K, B.V, O, B.st, a.base + B.L.ws)) break;
        kc_copy(c, (bf16 *)out + g.q0 * wq, O, g.lq * wq);
        KLAUNCH(stats_out_k, af_grid(g.lq * nq), AF_THREADS, 0, c, lse, (const float *)B.st, g.q0, g.lq, g.sq, nq);
    }
    free(a.segs);
    kc_attn_fused_count[0]++;
}

extern "C" void kc_attn_fused_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out,
                                  const float *lse, const void *q, const void *k, const void *v, const seq_desc *seqs,
                                  int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    if (c->err || ntok <= 0 || nseq <= 0 || !(dq || dk || dv)) return;
    af_call a;
    if (!af_setup(c, &a, seqs, nseq, ntok, nq, nkv, hd, causal, 1, dk != NULL, dv != NULL)) {
        if (!c->err) kc_attn_bwd(c, dq, dk, dv, dout, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
        return;
    }
    const int64_t wq = (int64_t)nq * hd, wk = (int64_t)nkv * hd;
    for (int i = 0; i < a.nsegs && !c->err; i++) {
        const afz_seg &g = a.segs[i];
        const cudnn_sdpa_shape s = shape_of(g, nq, nkv, hd, causal);
        const af_bufs B = stage(c, a, g, s, 1, q, k, v);
        char *b = a.base;
        bf16 *O = (bf16 *)(b + B.L.o), *DO = (bf16 *)(b + B.L.dout), *DQ = (bf16 *)(b + B.L.dq);
        bf16 *DK = (bf16 *)(b + B.L.dk), *DV = (bf16 *)(b + B.L.dv);
        rows_in(c, O, out, g.q0, g.lq, g.sq, wq);
        rows_in(c, DO, dout, g.q0, g.lq, g.sq, wq);
        KLAUNCH(stats_in_k, af_grid((int64_t)nq * g.sq), AF_THREADS, 0, c, B.st, lse, g.q0, g.lq, g.sq, nq);
        if (cudnn_sdpa_bwd(c, &s, B.lens, B.Q, B.K, B.V, O, DO, B.st, DQ, DK, DV, b + B.L.ws)) break;
        if (dq) kc_add_inplace(c, (bf16 *)dq + g.q0 * wq, DQ, g.lq * wq);
        if (dk && g.alen > 0) kc_add_inplace(c, (bf16 *)dk + g.a0 * wk, DK, g.alen * wk);
        if (dk) kc_add_inplace(c, (bf16 *)dk + g.b0 * wk, DK + g.alen * wk, g.blen * wk);
        if (dv && g.alen > 0) kc_add_inplace(c, (bf16 *)dv + g.a0 * wk, DV, g.alen * wk);
        if (dv) kc_add_inplace(c, (bf16 *)dv + g.b0 * wk, DV + g.alen * wk, g.blen * wk);
    }
    free(a.segs);
    kc_attn_fused_count[0]++;
}

// ---- cuDNN's stand-ins -------------------------------------------------------------------------------------------
#if defined(ORPO_SIMT_CPU)
// The CPU executor's build: cuDNN's contract (kernels/cudnn_attn.h) in plain fp32 loops over host memory (the
// executor's "device" memory is the host's), outputs rounded to bf16 once: padded rows and keys beyond lens are
// masked, causal bottom right, Stats the natural-log lse, dQ / dK / dV overwritten (zero on padded rows).
static float af_at(const void *x, int64_t i) { return bf2f(((const bf16 *)x)[i]); }

extern "C" int cudnn_sdpa_prepare(opctx *c, const cudnn_sdpa_shape *s, int bwd, size_t *ws, char *why,
                                  size_t why_len) {
    (void)c, (void)bwd, (void)why, (void)why_len;
    *ws = 4 * (size_t)s->sq; // a small workspace, so that its offset is exercised
    return 0;
}

// the keys query r sees: j < lkv and, causal, j <= r + lkv - lq
static int64_t af_kend(const cudnn_sdpa_shape *s, const int32_t *lens, int64_t r) {
    const int64_t lq = lens[0], lkv = lens[CUDNN_SDPA_LKV];
    return s->causal ? KMIN(lkv, r + lkv - lq + 1) : lkv;
}

extern "C" int cudnn_sdpa_fwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                              const void *v, void *o, float *stats, void *ws) {
    (void)c, (void)ws;
    const int nq = s->nq, nkv = s->nkv, hd = s->hd, grp = nq / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    float *sc = (float *)malloc(sizeof(float) * (size_t)s->skv), *acc = (float *)malloc(sizeof(float) * (size_t)hd);
    for (int64_t r = 0; r < s->sq; r++)
        for (int h = 0; h < nq; h++) {
            const int64_t qo = (r * nq + h) * hd, kh = h / grp, ke = r < lens[0] ? af_kend(s, lens, r) : 0;
            float mx = -INFINITY, l = 0.0f;
            for (int64_t j = 0; j < ke; j++) {
                float d = 0.0f;
                for (int t = 0; t < hd; t++) d += af_at(q, qo + t) * af_at(k, (j * nkv + kh) * hd + t);
                sc[j] = d * scale;
                mx = fmaxf(mx, sc[j]);
            }
            for (int t = 0; t < hd; t++) acc[t] = 0.0f;
            for (int64_t j = 0; j < ke; j++) {
                const float p = expf(sc[j] - mx);
                l += p;
                for (int t = 0; t < hd; t++) acc[t] += p * af_at(v, (j * nkv + kh) * hd + t);
            }
            for (int t = 0; t < hd; t++) ((bf16 *)o)[qo + t] = f2bf(ke > 0 ? acc[t] / l : 0.0f);
            stats[(int64_t)h * s->sq + r] = ke > 0 ? mx + logf(l) : 0.0f;
        }
    free(sc), free(acc);
    return 0;
}

extern "C" int cudnn_sdpa_bwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                              const void *v, const void *o, const void *dout, const float *stats, void *dq, void *dk,
                              void *dv, void *ws) {
    (void)c, (void)ws;
    const int nq = s->nq, nkv = s->nkv, hd = s->hd, grp = nq / nkv;
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t nqv = (int64_t)s->sq * nq * hd, nkvv = (int64_t)s->skv * nkv * hd;
    float *gq = (float *)calloc((size_t)nqv, sizeof(float)), *gk = (float *)calloc((size_t)nkvv, sizeof(float));
    float *gv = (float *)calloc((size_t)nkvv, sizeof(float));
    for (int64_t r = 0; r < KMIN((int64_t)lens[0], (int64_t)s->sq); r++)
        for (int h = 0; h < nq; h++) {
            const int64_t qo = (r * nq + h) * hd, kh = h / grp, ke = af_kend(s, lens, r);
            float D = 0.0f;
            for (int t = 0; t < hd; t++) D += af_at(dout, qo + t) * af_at(o, qo + t);
            const float lse = stats[(int64_t)h * s->sq + r];
            for (int64_t j = 0; j < ke; j++) {
                const int64_t ko = (j * nkv + kh) * hd;
                float d = 0.0f, dp = 0.0f;
                for (int t = 0; t < hd; t++) {
                    d += af_at(q, qo + t) * af_at(k, ko + t);
                    dp += af_at(dout, qo + t) * af_at(v, ko + t);
                }
                const float p = expf(d * scale - lse), ds = p * (dp - D) * scale;
                for (int t = 0; t < hd; t++) {
                    gq[qo + t] += ds * af_at(k, ko + t);
                    gk[ko + t] += ds * af_at(q, qo + t);
                    gv[ko + t] += p * af_at(dout, qo + t);
                }
            }
        }
    for (int64_t i = 0; i < nqv; i++) ((bf16 *)dq)[i] = f2bf(gq[i]);
    for (int64_t i = 0; i < nkvv; i++) ((bf16 *)dk)[i] = f2bf(gk[i]), ((bf16 *)dv)[i] = f2bf(gv[i]);
    free(gq), free(gk), free(gv);
    return 0;
}

extern "C" int cudnn_sdpa_version(void) { return 0; }

#elif !defined(ORPO_HAVE_CUDNN)
// A CUDA build without cuDNN attention (ORPO_CUDNN off or not found): every call falls back
extern "C" int cudnn_sdpa_prepare(opctx *c, const cudnn_sdpa_shape *s, int bwd, size_t *ws, char *why,
                                  size_t why_len) {
    (void)c, (void)s, (void)bwd;
    *ws = 0;
    snprintf(why, why_len, "this orpo-hpc was built without cuDNN attention");
    return 1;
}
extern "C" int cudnn_sdpa_fwd(opctx *c, const cudnn_sdpa_shape *, const int32_t *, const void *, const void *,
                              const void *, void *, float *, void *) {
    return opctx_fail(c, ERR_INTERNAL, "cuDNN attention: not built");
}
extern "C" int cudnn_sdpa_bwd(opctx *c, const cudnn_sdpa_shape *, const int32_t *, const void *, const void *,
                              const void *, const void *, const void *, const float *, void *, void *, void *, void *) {
    return opctx_fail(c, ERR_INTERNAL, "cuDNN attention: not built");
}
extern "C" int cudnn_sdpa_version(void) { return 0; }
#endif
