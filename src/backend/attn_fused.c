/* attn_fused — the fused attention's mapping onto cuDNN segments and the run-time choice (see attn_fused.h). */
#include "backend/attn_fused.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

static size_t up256(size_t b) { return (b + 255) & ~(size_t)255; }

int afz_bucket(int64_t n) {
    if (n <= AFZ_MIN_CHUNK) return AFZ_MIN_CHUNK;
    int64_t oct = AFZ_MIN_CHUNK; /* the octave [oct, 2 oct) that holds n - 1, in 8 steps of oct / 8 */
    while (oct * 2 < n) oct *= 2;
    const int64_t step = oct / 8;
    return (int)((n + step - 1) / step * step);
}

afz_layout afz_seg_bytes(int sq, int skv, int nq, int nkv, int hd, int bwd) {
    afz_layout L;
    memset(&L, 0, sizeof L);
    const size_t qb = 2 * (size_t)sq * (size_t)nq * (size_t)hd, kb = 2 * (size_t)skv * (size_t)nkv * (size_t)hd;
    size_t o = 0;
#define AFZ_TAKE(f, bytes) (L.f = o, o += up256(bytes))
    AFZ_TAKE(lens, 2 * 256); /* lq and lkv, 256 bytes apart (cuDNN's tensors are aligned) */
    AFZ_TAKE(q, qb);
    AFZ_TAKE(k, kb);
    AFZ_TAKE(v, kb);
    AFZ_TAKE(o, qb);
    AFZ_TAKE(stats, 4 * (size_t)nq * (size_t)sq);
    if (bwd) {
        AFZ_TAKE(dout, qb);
        AFZ_TAKE(dq, qb);
        AFZ_TAKE(dk, kb);
        AFZ_TAKE(dv, kb);
    }
#undef AFZ_TAKE
    L.ws = o;
    /* cuDNN's workspace, estimated (FlashAttention-2: the backward's fp32 dQ accumulator and per-row sums; the
     * forward a few per-row values); the real size is known once the graph is built, and a call whose real total
     * exceeds its budget runs attn.cu's version instead */
    L.ws_est = (bwd ? 4 * (size_t)nq * (size_t)sq * (size_t)hd + 8 * (size_t)nq * (size_t)sq
                    : 8 * (size_t)nq * (size_t)sq) + ((size_t)4 << 20);
    L.total = o + up256(L.ws_est);
    return L;
}

static int why_fail(char *why, size_t n, const char *fmt, long long a, long long b) {
    snprintf(why, n, fmt, a, b);
    return 1;
}

int afz_plan(const seq_desc *hs, int nseq, int ndesc, int64_t ntok, int nq, int nkv, int hd, int causal, int bwd,
             size_t budget, afz_seg **segs, int *nsegs, char *why, size_t why_len) {
    *segs = NULL;
    *nsegs = 0;
    if (why_len) why[0] = 0;
    if (hd % 8 || hd > AFZ_MAX_HEAD_DIM || hd < 8)
        return why_fail(why, why_len, "head dimension %lld (cuDNN: a multiple of 8, at most %lld)", hd,
                        AFZ_MAX_HEAD_DIM);
    if (nq < 1 || nkv < 1 || nq % nkv) return why_fail(why, why_len, "%lld query heads over %lld key/value heads", nq, nkv);
    if (budget < AFZ_MIN_BUDGET) budget = AFZ_MIN_BUDGET;
    /* every descriptor a computed sequence uses: inside the tokens; computed sequences disjoint */
    for (int s = 0; s < nseq; s++) {
        const seq_desc d = hs[s];
        if (d.start < 0 || d.len < 0 || (int64_t)d.start + d.len > ntok)
            return why_fail(why, why_len, "sequence %lld lies outside the %lld tokens", s, ntok);
        if (d.prefix >= 0) {
            if (d.prefix == s || d.prefix >= ndesc)
                return why_fail(why, why_len, "sequence %lld names prefix %lld", s, d.prefix);
            const seq_desc p = hs[d.prefix];
            if (p.start < 0 || p.len < 0 || (int64_t)p.start + p.len > ntok)
                return why_fail(why, why_len, "prefix %lld of sequence %lld lies outside the tokens", d.prefix, s);
        }
        for (int t = 0; t < s; t++) {
            const seq_desc e = hs[t];
            if (d.len > 0 && e.len > 0 && d.start < e.start + e.len && e.start < d.start + d.len)
                return why_fail(why, why_len, "computed sequences %lld and %lld overlap", t, s);
        }
    }
    /* the segments: per sequence, the largest chunk (halving) whose worst segment fits the budget */
    int cap = 0, n = 0;
    afz_seg *out = NULL;
    for (int s = 0; s < nseq; s++) {
        const seq_desc d = hs[s];
        if (d.len <= 0) continue;
        const int64_t alen = d.prefix >= 0 ? hs[d.prefix].len : 0, a0 = d.prefix >= 0 ? hs[d.prefix].start : 0;
        const int kvmax = afz_bucket(alen + d.len);
        int64_t ch = d.len;
        while (afz_seg_bytes(afz_bucket(ch), kvmax, nq, nkv, hd, bwd).total > budget) {
            if (ch <= AFZ_MIN_CHUNK) {
                free(out);
                return why_fail(why, why_len, "a segment of %lld query rows needs more than the %lld bytes of scratch "
                                "this call may use", ch, (long long)budget);
            }
            ch = (ch + 1) / 2;
            if (ch < AFZ_MIN_CHUNK) ch = AFZ_MIN_CHUNK;
        }
        for (int64_t r0 = 0; r0 < d.len; r0 += ch) {
            const int64_t r1 = r0 + ch < d.len ? r0 + ch : d.len;
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                afz_seg *g = realloc(out, sizeof *out * (size_t)cap);
                if (!g) {
                    free(out);
                    return why_fail(why, why_len, "out of memory for %lld segments (sequence %lld)", cap, s);
                }
                out = g;
            }
            afz_seg g;
            g.q0 = d.start + r0;
            g.lq = r1 - r0;
            g.a0 = a0;
            g.alen = alen;
            g.b0 = d.start;
            g.blen = causal ? r1 : d.len;
            g.sq = afz_bucket(g.lq);
            g.skv = afz_bucket(g.alen + g.blen);
            out[n++] = g;
        }
    }
    *segs = out;
    *nsegs = n;
    return 0;
}

/* ---- the choice ---------------------------------------------------------------------------------------------- */

static const char *const MODE_NAMES[] = {"auto", "cudnn", "kernels"};

int afz_mode_parse(const char *s, int *mode) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, MODE_NAMES[i])) {
            *mode = i;
            return ERR_OK;
        }
    return ERR_ARGS;
}

const char *afz_mode_name(int mode) { return mode >= 0 && mode < 3 ? MODE_NAMES[mode] : "?"; }

int afz_choose(int mode, int built, afz_check_fn check, void *arg, int *use, char *msg, size_t msg_len) {
    *use = 0;
    if (msg_len) msg[0] = 0;
    if (mode == AFZ_KERNELS) return ERR_OK;
    const char *what = mode == AFZ_CUDNN ? "attention cudnn" : "attention auto";
    if (!built) {
        snprintf(msg, msg_len, mode == AFZ_CUDNN ? "%s: this orpo-hpc was built without cuDNN attention (ORPO_CUDNN; "
                 "cudnn.h 9+ and cudnn_frontend.h at build time); use attention kernels or auto"
                 : "%s: this orpo-hpc was built without cuDNN attention; using the attention kernels", what);
        return mode == AFZ_CUDNN ? ERR_ARGS : ERR_OK;
    }
    char why[400];
    why[0] = 0;
    if (check(arg, why, sizeof why)) {
        snprintf(msg, msg_len, mode == AFZ_CUDNN ? "%s: the cuDNN attention's self-test on this GPU failed (%s); use "
                 "attention kernels or auto" : "%s: the cuDNN attention's self-test on this GPU failed (%s); using the "
                 "attention kernels", what, why[0] ? why : "no reason given");
        return mode == AFZ_CUDNN ? ERR_ARGS : ERR_OK;
    }
    *use = 1;
    return ERR_OK;
}

#ifdef ORPO_HAVE_CUDNN
const ops *ops_cuda_cudnn(void); /* kernels/cuda_ops.cu */
const ops *afz_ops_cuda(void) { return ops_cuda_cudnn(); }
#else
const ops *afz_ops_cuda(void) { return NULL; }
#endif

#ifdef ORPO_HAVE_CUDA_OPS
extern long kc_attn_fused_count[2]; /* kernels/attn_fused.cu (kernels/cudnn_attn.h) */
extern char kc_attn_fused_why[256];
#endif

void afz_counts(long *fused, long *fell_back, char *why, size_t why_len) {
    *fused = *fell_back = 0;
    if (why_len) why[0] = 0;
#ifdef ORPO_HAVE_CUDA_OPS
    *fused = kc_attn_fused_count[0];
    *fell_back = kc_attn_fused_count[1];
    snprintf(why, why_len, "%s", kc_attn_fused_why);
#endif
}
