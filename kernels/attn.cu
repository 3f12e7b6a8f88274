// attn — softmax attention over packed sequences with GQA and prefix sharing, forward and backward, as
// src/backend/cpu/cpu_attn.c: the materialised version (issue 12, 2a). Query rows are taken in chunks of R rows; for a
// chunk every head's scores against all ntok keys are one strided-batched GEMM (a batch entry per KV head: its
// `group` query heads' rows stacked), masked and normalised in fp32 by one block per (head, row), then multiplied
// with V by a second batched GEMM. The mask is the reference's: a query at local index t of sequence s sees every
// token of s's prefix sequence (any descriptor, also one after the nseq computed ones: a KV cache) and the tokens of
// s up to t (causal) or all of s; query head h reads KV head h / (nq / nkv); scale = 1/sqrt(hd). Rows outside the
// computed sequences are not written. The descriptors are read on the device only (they are device memory).
//
// Numerics (bf16 in and out, fp32 inside; the GEMMs' operands are bf16):
//   forward   scores S = q k^T in fp32; m = max_j S scale; e_j = exp(S_j scale - m) (fp32), l = sum e_j (fp32);
//             P = bf16(e_j) for the P V product (fp32 accumulation); out = bf16((P V) / l), lse = m + log(l)
//   backward  D = dout . out; p = exp(S scale - lse); dS = p (dout v^T - D) scale (fp32), both rounded to bf16 for
//             dq += dS k, dk += dS^T q, dv += p^T dout; dq is read, added and rounded once per chunk (each query row
//             lies in one chunk); dk and dv are summed in fp32 scratch over all chunks and rounded once at the end
// so the output differs from the reference's by the bf16 rounding of P and dS (relative 2^-9 per term) besides the
// fp32 order: tests/kernels/test_k_attn.c derives the bound.
//
// Scratch (kscratch; backend/attn_scratch.h), with P = ntok rounded up to 16, H = nq, R = rows per chunk =
// clamp(E / (H P), 1, ntok), E = kc_attn_chunk_entries (2^23), each part rounded up to 256 bytes:
//   forward   4 ntok (row owners) + 2 H R hd (q rows) + 4 H R P (scores) + 2 H R P (P) + 4 H R hd (P V) + 2 * 4 H R
//   backward  4 ntok + 2 * 2 H R hd (q, dout rows) + 2 * 4 H R P (scores, dout v^T) + 2 * 2 H R P (P, dS)
//             + 4 H R hd (dS k) + 4 ntok nkv hd for each of dk, dv that is wanted (fp32 sums)
// i.e. at most about 6 E = 48 MiB (forward) and 12 E = 96 MiB + 8 ntok nkv hd (backward) beyond a few rows.
// Cost: each chunk scores only its key window (key_window: the keys its rows' sequences and their prefixes span; the
// descriptors are read to the host once per call, a synchronisation of a few hundred bytes): a packed batch of
// answers sharing prompts, or of image tiles, costs what its sequences cost, not ntok^2. About 20 bytes per score
// entry of memory traffic forward, 40 backward. The fused path (issue 12, 2b) would be the fast one.
#include "kgemm.h"
#include "backend/attn_scratch.h"
#include "kops.h"

// score entries per chunk, all heads (tests lower it to run several chunks)
extern "C" {
int64_t kc_attn_chunk_entries = ATTN_CHUNK_ENTRIES;
}

enum { ATTN_EW_THREADS = 256 };

#define FOR_EACH(i, n)                                                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

static unsigned ew_grid(int64_t n) { return KMIN(kgrid(n, ATTN_EW_THREADS), 1024u); }

// threads of a per-row block: about 16 keys per thread, 32 .. 256
static int row_threads(int64_t ntok) {
    int64_t t = (ntok / 16 + 31) / 32 * 32;
    return (int)KMAX((int64_t)32, KMIN(t, (int64_t)256));
}

// the layout: backend/attn_scratch.h (the memory plan reserves the same bytes)
static attn_layout layout_of(int64_t ntok, int nq, int nkv, int hd, int bwd, int want_dk, int want_dv) {
    return attn_layout_of(kc_attn_chunk_entries, ntok, nq, nkv, hd, bwd, want_dk, want_dv);
}

// ---- kernels ------------------------------------------------------------------------------------------------------

// owner[i]: the computed sequence token i belongs to (the last one naming it), or -1
__global__ static void owner_k(int *owner, const seq_desc *seqs, int nseq, int64_t ntok) {
    FOR_EACH(i, ntok) {
        int o = -1;
        for (int s = 0; s < nseq; s++)
            if (i >= seqs[s].start && i < (int64_t)seqs[s].start + seqs[s].len) o = s;
        owner[i] = o;
    }
}

// rows i0 .. i0 + qc of x [ntok, nq, hd] as [nq, qc, hd] (each KV head's query heads one after another)
__global__ static void gather_k(bf16 *dst, const bf16 *x, int64_t i0, int64_t qc, int nq, int hd) {
    const int64_t per_head = qc * hd;
    FOR_EACH(e, (int64_t)nq * per_head) {
        int64_t h = e / per_head, rem = e - h * per_head, r = rem / hd, d = rem - r * hd;
        dst[e] = x[((i0 + r) * nq + h) * hd + d];
    }
}

struct key_ranges {
    int64_t a0, a1, b0, b1; // [a0, a1) prefix keys, [b0, b1) own keys
};

__device__ static __forceinline__ key_ranges keys_of(const seq_desc *seqs, int s, int64_t i, int causal) {
    key_ranges r;
    const seq_desc sd = seqs[s];
    r.a0 = r.a1 = 0;
    if (sd.prefix >= 0) {
        r.a0 = seqs[sd.prefix].start;
        r.a1 = r.a0 + seqs[sd.prefix].len;
    }
    r.b0 = sd.start;
    r.b1 = causal ? i + 1 : (int64_t)sd.start + sd.len;
    return r;
}

__device__ static __forceinline__ bool sees(const key_ranges &r, int64_t j) {
    return (j >= r.a0 && j < r.a1) || (j >= r.b0 && j < r.b1);
}

// one block per (head, row) of the chunk: the row's masked softmax numerators e_j = exp(S_j scale - m) as bf16 P,
// its max m and sum l (fp32); a row outside the computed sequences gets P = 0
__global__ static void softmax_fwd_k(bf16 *P, float *mo, float *lo, const float *S, const int *owner,
                                     const seq_desc *seqs, int64_t i0, int64_t qc, int64_t k0, int64_t nk,
                                     int64_t pitch, float scale, int causal) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x, i = i0 + row % qc;
    const float *s = S + row * pitch;
    bf16 *p = P + row * pitch;
    const int o = owner[i];
    if (o < 0) { // the same for the whole block
        for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) p[j] = f2bf(0.0f);
        if (threadIdx.x == 0) mo[row] = 0.0f, lo[row] = 1.0f;
        return;
    }
    const key_ranges kr = keys_of(seqs, o, i, causal);
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x)
        if (sees(kr, k0 + j)) mx = fmaxf(mx, s[j] * scale);
    mx = block_max(mx, red);
    float l = 0.0f;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        float e = sees(kr, k0 + j) ? expf(s[j] * scale - mx) : 0.0f;
        l += e;
        p[j] = f2bf(e);
    }
    l = block_sum(l, red);
    if (threadIdx.x == 0) mo[row] = mx, lo[row] = l;
}

// out = bf16(O / l) and lse = m + log(l) for the chunk's rows that belong to a computed sequence
__global__ static void finish_fwd_k(bf16 *out, float *lse, const float *O, const float *mo, const float *lo,
                                    const int *owner, int64_t i0, int64_t qc, int nq, int hd) {
    const int64_t per_row = (int64_t)nq * hd;
    FOR_EACH(e, qc * per_row) {
        int64_t r = e / per_row, rem = e - r * per_row, h = rem / hd, d = rem - h * hd, i = i0 + r;
        if (owner[i] < 0) continue;
        int64_t row = h * qc + r;
        out[i * per_row + rem] = f2bf(O[row * hd + d] / lo[row]);
        if (d == 0) lse[i * nq + h] = mo[row] + logf(lo[row]);
    }
}

// one block per (head, row): D = dout . out, p = exp(S scale - lse), dS = p (dP - D) scale; P and dS as bf16
__global__ static void softmax_bwd_k(bf16 *P, bf16 *dS, const float *S, const float *dP, const float *lse,
                                     const bf16 *dout, const bf16 *out, const int *owner, const seq_desc *seqs,
                                     int64_t i0, int64_t qc, int64_t k0, int64_t nk, int64_t pitch, int nq, int hd,
                                     float scale, int causal) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x, h = row / qc, i = i0 + row % qc;
    bf16 *p = P + row * pitch, *ds = dS + row * pitch;
    const int o = owner[i];
    if (o < 0) {
        for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) p[j] = ds[j] = f2bf(0.0f);
        return;
    }
    const bf16 *doi = dout + (i * nq + h) * hd, *oi = out + (i * nq + h) * hd;
    float d = 0.0f;
    for (int t = threadIdx.x; t < hd; t += blockDim.x) d += bf2f(doi[t]) * bf2f(oi[t]);
    d = block_sum(d, red);
    const float li = lse[i * nq + h];
    const key_ranges kr = keys_of(seqs, o, i, causal);
    const float *s = S + row * pitch, *dp = dP + row * pitch;
    for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
        float pv = 0.0f, dv = 0.0f;
        if (sees(kr, k0 + j)) {
            pv = expf(s[j] * scale - li);
            dv = pv * (dp[j] - d) * scale;
        }
        p[j] = f2bf(pv);
        ds[j] = f2bf(dv);
    }
}

// dq = bf16(dq + G) for the chunk's rows that belong to a computed sequence (G: [nq, qc, hd] fp32)
__global__ static void add_rows_k(bf16 *dq, const float *G, const int *owner, int64_t i0, int64_t qc, int nq, int hd) {
    const int64_t per_row = (int64_t)nq * hd;
    FOR_EACH(e, qc * per_row) {
        int64_t r = e / per_row, rem = e - r * per_row, h = rem / hd, d = rem - h * hd, i = i0 + r;
        if (owner[i] < 0) continue;
        bf16 *x = dq + i * per_row + rem;
        *x = f2bf(bf2f(*x) + G[(h * qc + r) * hd + d]);
    }
}

__global__ static void widen_k(float *y, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) y[i] = bf2f(x[i]);
}

__global__ static void narrow_k(bf16 *y, const float *x, int64_t n) {
    FOR_EACH(i, n) y[i] = f2bf(x[i]);
}

// ---- the ops ------------------------------------------------------------------------------------------------------

static int attn_args_ok(opctx *c, int nq, int nkv, int hd) {
    if (nq >= 1 && nkv >= 1 && nq % nkv == 0 && hd >= 1 && hd <= OPS_ATTN_MAX_HEAD_DIM) return 1;
    opctx_fail(c, ERR_INTERNAL, "attention: %d query heads, %d key/value heads, head dimension %d (expected the "
               "query heads a multiple of the key/value heads, the head dimension 1..%d)", nq, nkv, hd,
               OPS_ATTN_MAX_HEAD_DIM);
    return 0;
}

// S[kh] = X[kh] Y_kh^T for every KV head kh: X the chunk's gathered rows [nq, qc, hd] (a KV head's query heads
// stacked: group qc rows), Y [ntok, nkv, hd] (k or v); S rows pitch apart
static void scores(opctx *c, float *S, const bf16 *X, const void *Y, int64_t qc, int64_t ntok, int64_t pitch, int nkv,
                   int group, int hd) {
    kgemm_args g = {};
    g.tb = 1, g.m = group * qc, g.n = ntok, g.k = hd, g.alpha = 1.0f;
    g.A = X, g.lda = hd, g.sa = group * qc * hd;
    g.B = Y, g.ldb = (int64_t)nkv * hd, g.sb = hd;
    g.C = S, g.cdt = KG_F32, g.ldc = pitch, g.sc = group * qc * pitch, g.batch = nkv;
    kgemm(c, g);
}

// O[kh] = A[kh] Y_kh: A [nq, qc, pitch] bf16 (P or dS), Y [ntok, nkv, hd] (v or k); O [nq, qc, hd] fp32
static void times_keys(opctx *c, float *O, const bf16 *A, const void *Y, int64_t qc, int64_t ntok, int64_t pitch,
                       int nkv, int group, int hd) {
    kgemm_args g = {};
    g.m = group * qc, g.n = hd, g.k = ntok, g.alpha = 1.0f;
    g.A = A, g.lda = pitch, g.sa = group * qc * pitch;
    g.B = Y, g.ldb = (int64_t)nkv * hd, g.sb = hd;
    g.C = O, g.cdt = KG_F32, g.ldc = hd, g.sc = group * qc * hd, g.batch = nkv;
    kgemm(c, g);
}

// Acc_kh += A[kh]^T X[kh]: A [nq, qc, pitch] bf16 (dS or P), X [nq, qc, hd] (q or dout rows); Acc [ntok, nkv, hd] f32
static void keys_acc(opctx *c, float *Acc, const bf16 *A, const bf16 *X, int64_t qc, int64_t ntok, int64_t pitch,
                     int nkv, int group, int hd) {
    kgemm_args g = {};
    g.ta = 1, g.m = ntok, g.n = hd, g.k = group * qc, g.alpha = 1.0f;
    g.A = A, g.lda = pitch, g.sa = group * qc * pitch;
    g.B = X, g.ldb = hd, g.sb = group * qc * hd;
    g.beta = 1.0f, g.C = Acc, g.cdt = KG_F32, g.ldc = (int64_t)nkv * hd, g.sc = hd, g.batch = nkv;
    kgemm(c, g);
}

// the descriptors on the host (they are device memory): the nseq computed ones and every prefix they name (a KV
// cache's lie beyond nseq), their number in *ndesc when asked; NULL with the sticky error set when they cannot be
// read. Also the fused attention's (attn_fused.cu)
extern "C" seq_desc *kc_attn_host_descs(opctx *c, const seq_desc *seqs, int nseq, int *ndesc) {
    seq_desc *h = (seq_desc *)malloc(sizeof *h * (size_t)nseq);
    if (!h) return opctx_fail(c, ERR_IO, "attention: out of memory for %d descriptors", nseq), (seq_desc *)NULL;
    if (kget(c, h, seqs, sizeof *h * (size_t)nseq)) return free(h), (seq_desc *)NULL;
    int need = nseq;
    for (int s = 0; s < nseq; s++)
        if (h[s].prefix >= need) need = h[s].prefix + 1;
    if (need > nseq) {
        seq_desc *g = (seq_desc *)realloc(h, sizeof *h * (size_t)need);
        if (!g) return free(h), opctx_fail(c, ERR_IO, "attention: out of memory for %d descriptors", need), (seq_desc *)NULL;
        h = g;
        if (kget(c, h + nseq, seqs + nseq, sizeof *h * (size_t)(need - nseq))) return free(h), (seq_desc *)NULL;
    }
    if (ndesc) *ndesc = need;
    return h;
}

// [*k0, *k1): the keys rows i0 .. i0 + qc - 1 may see, spanning every computed sequence among them (its own keys, up
// to the chunk's last row when causal, and its prefix's); empty when no row of the chunk is computed. A chunk of one
// answer then scores its prompt and itself, not the whole packed batch
static void key_window(const seq_desc *hs, int nseq, int64_t i0, int64_t qc, int causal, int64_t *k0, int64_t *k1) {
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int s = 0; s < nseq; s++) {
        const int64_t a = hs[s].start, b = a + hs[s].len;
        if (b <= i0 || a >= i0 + qc) continue;
        int64_t l = a, h = causal ? KMIN(b, i0 + qc) : b;
        if (hs[s].prefix >= 0) {
            const seq_desc p = hs[hs[s].prefix];
            l = KMIN(l, (int64_t)p.start);
            h = KMAX(h, (int64_t)p.start + p.len);
        }
        lo = KMIN(lo, l);
        hi = KMAX(hi, h);
    }
    *k0 = hi > lo ? lo : 0;
    *k1 = hi > lo ? hi : 0;
}

extern "C" void kc_attn_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                            const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    if (c->err || ntok <= 0 || nseq <= 0 || !attn_args_ok(c, nq, nkv, hd)) return;
    const attn_layout L = layout_of(ntok, nq, nkv, hd, 0, 0, 0);
    char *base = (char *)kscratch(c, L.total);
    if (!base) return;
    int *owner = (int *)(base + L.owner);
    bf16 *Q = (bf16 *)(base + L.q), *P = (bf16 *)(base + L.p);
    float *S = (float *)(base + L.s), *O = (float *)(base + L.o), *mo = (float *)(base + L.m), *lo = (float *)(base + L.l);
    const int group = nq / nkv, rt = row_threads(ntok);
    const float scale = 1.0f / sqrtf((float)hd);
    seq_desc *hs = kc_attn_host_descs(c, seqs, nseq, NULL);
    if (!hs) return;
    KLAUNCH(owner_k, ew_grid(ntok), ATTN_EW_THREADS, 0, c, owner, seqs, nseq, ntok);
    for (int64_t i0 = 0; i0 < ntok; i0 += L.rows) {
        const int64_t qc = KMIN(L.rows, ntok - i0);
        int64_t k0, k1;
        key_window(hs, nseq, i0, qc, causal, &k0, &k1);
        if (k1 <= k0) continue; /* no row of the chunk is computed: none is written */
        const int64_t nk = k1 - k0, kv0 = k0 * nkv * hd;
        KLAUNCH(gather_k, ew_grid(nq * qc * hd), ATTN_EW_THREADS, 0, c, Q, (const bf16 *)q, i0, qc, nq, hd);
        scores(c, S, Q, (const bf16 *)k + kv0, qc, nk, L.pitch, nkv, group, hd);
        KLAUNCH(softmax_fwd_k, (unsigned)(nq * qc), rt, 0, c, P, mo, lo, (const float *)S, (const int *)owner, seqs,
                i0, qc, k0, nk, L.pitch, scale, causal);
        times_keys(c, O, P, (const bf16 *)v + kv0, qc, nk, L.pitch, nkv, group, hd);
        KLAUNCH(finish_fwd_k, ew_grid(nq * qc * hd), ATTN_EW_THREADS, 0, c, (bf16 *)out, lse, (const float *)O,
                (const float *)mo, (const float *)lo, (const int *)owner, i0, qc, nq, hd);
    }
    free(hs);
}

extern "C" void kc_attn_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out,
                            const float *lse, const void *q, const void *k, const void *v, const seq_desc *seqs,
                            int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    if (c->err || ntok <= 0 || nseq <= 0 || !(dq || dk || dv) || !attn_args_ok(c, nq, nkv, hd)) return;
    const attn_layout L = layout_of(ntok, nq, nkv, hd, 1, dk != NULL, dv != NULL);
    char *base = (char *)kscratch(c, L.total);
    if (!base) return;
    int *owner = (int *)(base + L.owner);
    bf16 *Q = (bf16 *)(base + L.q), *DO = (bf16 *)(base + L.dout), *P = (bf16 *)(base + L.p);
    bf16 *DS = (bf16 *)(base + L.ds);
    float *S = (float *)(base + L.s), *DP = (float *)(base + L.dp), *G = (float *)(base + L.o);
    float *DK = (float *)(base + L.dk), *DV = (float *)(base + L.dv);
    const int group = nq / nkv, rt = row_threads(ntok);
    const int64_t nkvv = ntok * nkv * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    seq_desc *hs = kc_attn_host_descs(c, seqs, nseq, NULL);
    if (!hs) return;
    KLAUNCH(owner_k, ew_grid(ntok), ATTN_EW_THREADS, 0, c, owner, seqs, nseq, ntok);
    if (dk) KLAUNCH(widen_k, ew_grid(nkvv), ATTN_EW_THREADS, 0, c, DK, (const bf16 *)dk, nkvv);
    if (dv) KLAUNCH(widen_k, ew_grid(nkvv), ATTN_EW_THREADS, 0, c, DV, (const bf16 *)dv, nkvv);
    for (int64_t i0 = 0; i0 < ntok; i0 += L.rows) {
        const int64_t qc = KMIN(L.rows, ntok - i0);
        int64_t k0, k1;
        key_window(hs, nseq, i0, qc, causal, &k0, &k1);
        if (k1 <= k0) continue; /* no row of the chunk is computed: no gradient comes from it */
        const int64_t nk = k1 - k0, kv0 = k0 * nkv * hd;
        KLAUNCH(gather_k, ew_grid(nq * qc * hd), ATTN_EW_THREADS, 0, c, Q, (const bf16 *)q, i0, qc, nq, hd);
        KLAUNCH(gather_k, ew_grid(nq * qc * hd), ATTN_EW_THREADS, 0, c, DO, (const bf16 *)dout, i0, qc, nq, hd);
        scores(c, S, Q, (const bf16 *)k + kv0, qc, nk, L.pitch, nkv, group, hd);
        scores(c, DP, DO, (const bf16 *)v + kv0, qc, nk, L.pitch, nkv, group, hd);
        KLAUNCH(softmax_bwd_k, (unsigned)(nq * qc), rt, 0, c, P, DS, (const float *)S, (const float *)DP, lse,
                (const bf16 *)dout, (const bf16 *)out, (const int *)owner, seqs, i0, qc, k0, nk, L.pitch, nq, hd,
                scale, causal);
        if (dq) {
            times_keys(c, G, DS, (const bf16 *)k + kv0, qc, nk, L.pitch, nkv, group, hd);
            KLAUNCH(add_rows_k, ew_grid(nq * qc * hd), ATTN_EW_THREADS, 0, c, (bf16 *)dq, (const float *)G,
                    (const int *)owner, i0, qc, nq, hd);
        }
        if (dk) keys_acc(c, DK + kv0, DS, Q, qc, nk, L.pitch, nkv, group, hd);
        if (dv) keys_acc(c, DV + kv0, P, DO, qc, nk, L.pitch, nkv, group, hd);
    }
    free(hs);
    if (dk) KLAUNCH(narrow_k, ew_grid(nkvv), ATTN_EW_THREADS, 0, c, (bf16 *)dk, (const float *)DK, nkvv);
    if (dv) KLAUNCH(narrow_k, ew_grid(nkvv), ATTN_EW_THREADS, 0, c, (bf16 *)dv, (const float *)DV, nkvv);
}
