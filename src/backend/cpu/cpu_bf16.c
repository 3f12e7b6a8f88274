/* cpu_bf16 — the CPU backend in bf16 mode (ops_cpu_bf16): the numerical contract of the CUDA kernels, written as
 * "widen, run the fp32 reference, round" (docs/training.md, "bf16 mode").
 *
 *   - Every `void *` activation, activation gradient and linear weight (linear_fwd / linear_bwd / matmul_acc `w`)
 *     holds bf16 bit patterns; every `float *` (rstd, mean, lse, logp, dlogp, dw, db, dtable), the biases (`b` of
 *     linear and layernorm), the norm weights, the embedding table, cls / pos and the pixels stay fp32.
 *   - An op widens its bf16 operands to fp32 (exact) in c->scratch, runs the fp32 reference op of cpu_*.c on them and
 *     rounds each bf16 output once, to nearest even. An output the op accumulates into (+=, every backward gradient,
 *     add_inplace, matmul_acc, scatter_add_rows) is widened too: the sum is formed in fp32 and rounded once.
 *   - Data movement (copy, zero, gather_rows, gather_rows_fill, scatter_rows) moves bf16 values unchanged.
 *   - nf4_dequant, cast, sumsq, adamw and the memory functions are the fp32 table's (they say their dtypes).
 * c->scratch grows (mem_realloc) to the largest size an op needed; c->scratch_bytes is that high-water mark, the
 * workspace a plan reserves for bf16 mode on the CPU. opctx_release frees it. */
#include <string.h>

#include "backend/cpu/cpu_mem.h"
#include "backend/cpu/cpu_ops.h"
#include "io/h5x.h" /* the bf16 conversions */
#include "io/mem.h"

typedef uint16_t bf16;

/* ---- scratch: one fp32 region per widened operand, carved from c->scratch ---------------------------------------- */

typedef struct bump {
    float *base;
    size_t off; /* floats */
} bump;

static size_t al(size_t n) { return (n + 15) & ~(size_t)15; } /* 64-byte steps */

/* room for `total` floats (the sum of al() of every region the op takes) */
static bump bump_begin(opctx *c, size_t total) {
    size_t bytes = total * sizeof(float);
    if (bytes > c->scratch_bytes) {
        c->scratch = mem_realloc(c->scratch, bytes, "the CPU bf16 mode's fp32 scratch");
        c->scratch_bytes = bytes;
    }
    return (bump){c->scratch, 0};
}

static float *room(bump *b, size_t n) {
    float *p = b->base + b->off;
    b->off += al(n);
    return p;
}

/* an fp32 copy of n bf16 values (NULL stays NULL) */
static float *wide(bump *b, const void *src, int64_t n) {
    if (!src) return NULL;
    float *p = room(b, (size_t)n);
    h5x_bf16_to_f32_n(src, p, (size_t)n);
    return p;
}

static void narrow(void *dst, const float *src, int64_t n) {
    if (dst) h5x_f32_to_bf16_n(src, dst, (size_t)n);
}

#define SZ(n) al((size_t)(n))
#define IF(p, n) ((p) ? SZ(n) : 0)

/* ---- linear ---------------------------------------------------------------------------------------------------- */

static void b_linear_fwd(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K,
                         int64_t N) {
    bump s = bump_begin(c, SZ(M * K) + SZ(N * K) + SZ(M * N));
    float *xs = wide(&s, x, M * K), *ws = wide(&s, w, N * K), *ys = room(&s, (size_t)(M * N));
    cpu_linear_fwd(c, ys, xs, ws, b, M, K, N);
    narrow(y, ys, M * N);
}

static void b_linear_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                         int64_t M, int64_t K, int64_t N) {
    const void *xu = dw ? x : NULL, *wu = dx ? w : NULL;
    bump s = bump_begin(c, IF(dx, M * K) + SZ(M * N) + IF(xu, M * K) + IF(wu, N * K));
    float *dxs = wide(&s, dx, M * K), *dys = wide(&s, dy, M * N), *xs = wide(&s, xu, M * K), *ws = wide(&s, wu, N * K);
    cpu_linear_bwd(c, dxs, dw, db, dys, xs, ws, M, K, N);
    narrow(dx, dxs, M * K);
}

static void b_matmul_acc(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N,
                         float alpha) {
    bump s = bump_begin(c, SZ(M * N) + SZ(M * K) + SZ(N * K));
    float *ys = wide(&s, y, M * N), *xs = wide(&s, x, M * K), *ws = wide(&s, w, N * K);
    cpu_matmul_acc(c, ys, xs, ws, M, K, N, alpha);
    narrow(y, ys, M * N);
}

/* ---- norms (weights and biases fp32) --------------------------------------------------------------------------- */

static void b_rmsnorm_fwd(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M, int64_t D,
                          float eps) {
    bump s = bump_begin(c, 2 * SZ(M * D));
    float *xs = wide(&s, x, M * D), *ys = room(&s, (size_t)(M * D));
    cpu_rmsnorm_fwd(c, ys, rstd, xs, w, M, D, eps);
    narrow(y, ys, M * D);
}

static void b_rmsnorm_bwd(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w,
                          const float *rstd, int64_t M, int64_t D) {
    bump s = bump_begin(c, IF(dx, M * D) + 2 * SZ(M * D));
    float *dxs = wide(&s, dx, M * D), *dys = wide(&s, dy, M * D), *xs = wide(&s, x, M * D);
    cpu_rmsnorm_bwd(c, dxs, dw, dys, xs, w, rstd, M, D);
    narrow(dx, dxs, M * D);
}

static void b_layernorm_fwd(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w, const void *b,
                            int64_t M, int64_t D, float eps) {
    bump s = bump_begin(c, 2 * SZ(M * D));
    float *xs = wide(&s, x, M * D), *ys = room(&s, (size_t)(M * D));
    cpu_layernorm_fwd(c, ys, mean, rstd, xs, w, b, M, D, eps);
    narrow(y, ys, M * D);
}

static void b_layernorm_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                            const float *mean, const float *rstd, int64_t M, int64_t D) {
    bump s = bump_begin(c, IF(dx, M * D) + 2 * SZ(M * D));
    float *dxs = wide(&s, dx, M * D), *dys = wide(&s, dy, M * D), *xs = wide(&s, x, M * D);
    cpu_layernorm_bwd(c, dxs, dw, db, dys, xs, w, mean, rstd, M, D);
    narrow(dx, dxs, M * D);
}

/* ---- rope, attention ------------------------------------------------------------------------------------------- */

static void b_rope_fwd(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    int64_t n = ntok * nhead * hd;
    bump s = bump_begin(c, SZ(n));
    float *xs = wide(&s, x, n);
    cpu_rope_fwd(c, xs, pos, ntok, nhead, hd, theta);
    narrow(x, xs, n);
}

static void b_rope_bwd(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    int64_t n = ntok * nhead * hd;
    bump s = bump_begin(c, SZ(n));
    float *xs = wide(&s, dx, n);
    cpu_rope_bwd(c, xs, pos, ntok, nhead, hd, theta);
    narrow(dx, xs, n);
}

static void b_attn_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                       const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    int64_t nqv = ntok * nq * hd, nkvv = ntok * nkv * hd;
    bump s = bump_begin(c, 2 * SZ(nqv) + 2 * SZ(nkvv));
    float *qs = wide(&s, q, nqv), *ks = wide(&s, k, nkvv), *vs = wide(&s, v, nkvv), *os = room(&s, (size_t)nqv);
    cpu_attn_fwd(c, os, lse, qs, ks, vs, seqs, nseq, ntok, nq, nkv, hd, causal);
    narrow(out, os, nqv);
}

static void b_attn_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                       const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok,
                       int nq, int nkv, int hd, int causal) {
    int64_t nqv = ntok * nq * hd, nkvv = ntok * nkv * hd;
    bump s = bump_begin(c, IF(dq, nqv) + IF(dk, nkvv) + IF(dv, nkvv) + 3 * SZ(nqv) + 2 * SZ(nkvv));
    float *dqs = wide(&s, dq, nqv), *dks = wide(&s, dk, nkvv), *dvs = wide(&s, dv, nkvv);
    float *dos = wide(&s, dout, nqv), *os = wide(&s, out, nqv), *qs = wide(&s, q, nqv);
    float *ks = wide(&s, k, nkvv), *vs = wide(&s, v, nkvv);
    cpu_attn_bwd(c, dqs, dks, dvs, dos, os, lse, qs, ks, vs, seqs, nseq, ntok, nq, nkv, hd, causal);
    narrow(dq, dqs, nqv);
    narrow(dk, dks, nkvv);
    narrow(dv, dvs, nkvv);
}

/* ---- element-wise ---------------------------------------------------------------------------------------------- */

typedef void (*unary_fn)(opctx *, void *, const void *, int64_t);
typedef void (*unary_bwd_fn)(opctx *, void *, const void *, const void *, int64_t);

static void unary(opctx *c, unary_fn f, void *y, const void *x, int64_t n) {
    bump s = bump_begin(c, 2 * SZ(n));
    float *xs = wide(&s, x, n), *ys = room(&s, (size_t)n);
    f(c, ys, xs, n);
    narrow(y, ys, n);
}

static void unary_bwd(opctx *c, unary_bwd_fn f, void *dx, const void *dy, const void *x, int64_t n) {
    bump s = bump_begin(c, 3 * SZ(n));
    float *dxs = wide(&s, dx, n), *dys = wide(&s, dy, n), *xs = wide(&s, x, n);
    f(c, dxs, dys, xs, n);
    narrow(dx, dxs, n);
}

static void b_gelu_fwd(opctx *c, void *y, const void *x, int64_t n) { unary(c, cpu_gelu_fwd, y, x, n); }
static void b_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n) {
    unary_bwd(c, cpu_gelu_bwd, dx, dy, x, n);
}
static void b_quick_gelu_fwd(opctx *c, void *y, const void *x, int64_t n) { unary(c, cpu_quick_gelu_fwd, y, x, n); }
static void b_quick_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n) {
    unary_bwd(c, cpu_quick_gelu_bwd, dx, dy, x, n);
}

static void b_swiglu_fwd(opctx *c, void *h, const void *g, const void *u, int64_t n) {
    bump s = bump_begin(c, 3 * SZ(n));
    float *gs = wide(&s, g, n), *us = wide(&s, u, n), *hs = room(&s, (size_t)n);
    cpu_swiglu_fwd(c, hs, gs, us, n);
    narrow(h, hs, n);
}

static void b_swiglu_bwd(opctx *c, void *dg, void *du, const void *dh, const void *g, const void *u, int64_t n) {
    bump s = bump_begin(c, IF(dg, n) + IF(du, n) + 3 * SZ(n));
    float *dgs = wide(&s, dg, n), *dus = wide(&s, du, n), *dhs = wide(&s, dh, n);
    float *gs = wide(&s, g, n), *us = wide(&s, u, n);
    cpu_swiglu_bwd(c, dgs, dus, dhs, gs, us, n);
    narrow(dg, dgs, n);
    narrow(du, dus, n);
}

static void b_add_inplace(opctx *c, void *y, const void *x, int64_t n) {
    bump s = bump_begin(c, 2 * SZ(n));
    float *ys = wide(&s, y, n), *xs = wide(&s, x, n);
    cpu_add_inplace(c, ys, xs, n);
    narrow(y, ys, n);
}

static void b_add(opctx *c, void *out, const void *a, const void *b, int64_t n) {
    bump s = bump_begin(c, 3 * SZ(n));
    float *as = wide(&s, a, n), *bs = wide(&s, b, n), *os = room(&s, (size_t)n);
    cpu_add(c, os, as, bs, n);
    narrow(out, os, n);
}

static void b_scale(opctx *c, void *x, int64_t n, float alpha) {
    bump s = bump_begin(c, SZ(n));
    float *xs = wide(&s, x, n);
    cpu_scale(c, xs, n, alpha);
    narrow(x, xs, n);
}

static void b_dropout(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a,
                      uint32_t b, uint64_t c0) {
    bump s = bump_begin(c, 2 * SZ(n));
    float *xs = wide(&s, x, n), *ys = room(&s, (size_t)n);
    cpu_dropout(c, ys, xs, n, p, key, a, b, c0);
    narrow(y, ys, n);
}

/* ---- embeddings and log-probabilities (tables fp32) ------------------------------------------------------------ */

static void b_embed_fwd(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D) {
    bump s = bump_begin(c, SZ(ntok * D));
    float *ys = room(&s, (size_t)(ntok * D));
    cpu_embed_fwd(c, ys, table, ids, ntok, D);
    narrow(y, ys, ntok * D);
}

static void b_embed_bwd(opctx *c, float *dtable, const void *dy, const int32_t *ids, const uint8_t *rowmask,
                        int64_t ntok, int64_t D) {
    bump s = bump_begin(c, SZ(ntok * D));
    cpu_embed_bwd(c, dtable, wide(&s, dy, ntok * D), ids, rowmask, ntok, D);
}

static void b_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels, int64_t M,
                          int64_t V) {
    bump s = bump_begin(c, SZ(M * V));
    cpu_logprob_fwd(c, logp, lse, wide(&s, logits, M * V), labels, M, V);
}

static void b_logprob_bwd(opctx *c, void *dlogits, const float *dlogp, const float *lse, const void *logits,
                          const int32_t *labels, int64_t M, int64_t V) {
    bump s = bump_begin(c, 2 * SZ(M * V));
    float *ls = wide(&s, logits, M * V), *ds = room(&s, (size_t)(M * V));
    cpu_logprob_bwd(c, ds, dlogp, lse, ls, labels, M, V);
    narrow(dlogits, ds, M * V);
}

/* ---- data movement: bf16 values moved unchanged ---------------------------------------------------------------- */

static void b_zero(opctx *c, void *x, int64_t n) {
    (void)c;
    memset(x, 0, sizeof(bf16) * (size_t)n);
}

static void b_copy(opctx *c, void *y, const void *x, int64_t n) {
    (void)c;
    memmove(y, x, sizeof(bf16) * (size_t)n);
}

static void b_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++)
        memcpy((bf16 *)dst + i * D, (const bf16 *)src + rows[i] * D, sizeof(bf16) * (size_t)D);
}

static void b_gather_rows_fill(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                               const void *fill) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++) {
        bf16 *d = (bf16 *)dst + i * D;
        if (rows[i] >= 0) memcpy(d, (const bf16 *)src + rows[i] * D, sizeof(bf16) * (size_t)D);
        else if (fill) memcpy(d, fill, sizeof(bf16) * (size_t)D);
        else memset(d, 0, sizeof(bf16) * (size_t)D);
    }
}

static void b_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    (void)c;
    for (int64_t i = 0; i < nrows; i++)
        memcpy((bf16 *)dst + rows[i] * D, (const bf16 *)src + i * D, sizeof(bf16) * (size_t)D);
}

/* dst[rows[i]] += src[i]: the touched part of dst (rows 0 .. max) widened, so that a row named twice is rounded once */
static void b_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    int64_t top = 0;
    for (int64_t i = 0; i < nrows; i++) top = rows[i] + 1 > top ? rows[i] + 1 : top;
    bump s = bump_begin(c, SZ(top * D) + SZ(nrows * D));
    float *ds = wide(&s, dst, top * D), *ss = wide(&s, src, nrows * D);
    cpu_scatter_add_rows(c, ds, ss, rows, nrows, D);
    narrow(dst, ds, top * D);
}

/* ---- vision ---------------------------------------------------------------------------------------------------- */

static void b_im2col(opctx *c, void *rows, const float *pixels, int P, int T, int p) {
    int64_t g = T / p, n = (int64_t)P * g * g * 3 * p * p;
    bump s = bump_begin(c, SZ(n));
    float *rs = room(&s, (size_t)n);
    cpu_im2col(c, rs, pixels, P, T, p);
    narrow(rows, rs, n);
}

static void b_vis_embed(opctx *c, void *h, const void *patch, const float *cls, const float *pos, int64_t ntiles,
                        int64_t np, int64_t D) {
    bump s = bump_begin(c, SZ(ntiles * np * D) + SZ(ntiles * (np + 1) * D));
    float *ps = wide(&s, patch, ntiles * np * D), *hs = room(&s, (size_t)(ntiles * (np + 1) * D));
    cpu_vis_embed(c, hs, ps, cls, pos, ntiles, np, D);
    narrow(h, hs, ntiles * (np + 1) * D);
}

static const ops g_cpu_bf16_ops = {
    .name = "cpu-bf16",
    .linear_fwd = b_linear_fwd,
    .linear_bwd = b_linear_bwd,
    .rmsnorm_fwd = b_rmsnorm_fwd,
    .rmsnorm_bwd = b_rmsnorm_bwd,
    .layernorm_fwd = b_layernorm_fwd,
    .layernorm_bwd = b_layernorm_bwd,
    .rope_fwd = b_rope_fwd,
    .rope_bwd = b_rope_bwd,
    .attn_fwd = b_attn_fwd,
    .attn_bwd = b_attn_bwd,
    .gelu_fwd = b_gelu_fwd,
    .gelu_bwd = b_gelu_bwd,
    .quick_gelu_fwd = b_quick_gelu_fwd,
    .quick_gelu_bwd = b_quick_gelu_bwd,
    .swiglu_fwd = b_swiglu_fwd,
    .swiglu_bwd = b_swiglu_bwd,
    .add_inplace = b_add_inplace,
    .embed_fwd = b_embed_fwd,
    .embed_bwd = b_embed_bwd,
    .logprob_fwd = b_logprob_fwd,
    .logprob_bwd = b_logprob_bwd,
    .matmul_acc = b_matmul_acc,
    .scale = b_scale,
    .zero = b_zero,
    .copy = b_copy,
    .dropout = b_dropout,
    .gather_rows = b_gather_rows,
    .scatter_add_rows = b_scatter_add_rows,
    .gather_rows_fill = b_gather_rows_fill,
    .scatter_rows = b_scatter_rows,
    .add = b_add,
    .nf4_dequant = cpu_nf4_dequant,
    .im2col = b_im2col,
    .vis_embed = b_vis_embed,
    .cast = cpu_cast,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
    CPU_MEM_OPS,
};

const ops *ops_cpu_bf16(void) { return &g_cpu_bf16_ops; }
