/* cpu_ops — the fp32 CPU reference of every op in backend/ops.h (one function per op and direction).
 * The table itself is ops_cpu() in cpu_ops.c; see ops.h for the meaning of each op. */
#ifndef ORPO_CPU_OPS_H
#define ORPO_CPU_OPS_H

#include "backend/ops.h"

void cpu_linear_fwd(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K, int64_t N);
void cpu_linear_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                    int64_t M, int64_t K, int64_t N);
void cpu_rmsnorm_fwd(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M, int64_t D, float eps);
void cpu_rmsnorm_bwd(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w,
                     const float *rstd, int64_t M, int64_t D);
void cpu_layernorm_fwd(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w, const void *b,
                       int64_t M, int64_t D, float eps);
void cpu_layernorm_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                       const float *mean, const float *rstd, int64_t M, int64_t D);
void cpu_rope_fwd(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);
void cpu_rope_bwd(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);
void cpu_attn_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v, const seq_desc *seqs,
                  int nseq, int64_t ntok, int nq, int nkv, int hd, int causal);
void cpu_attn_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                  const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok,
                  int nq, int nkv, int hd, int causal);
void cpu_gelu_fwd(opctx *c, void *y, const void *x, int64_t n);
void cpu_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
void cpu_quick_gelu_fwd(opctx *c, void *y, const void *x, int64_t n);
void cpu_quick_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
void cpu_swiglu_fwd(opctx *c, void *h, const void *g, const void *u, int64_t n);
void cpu_swiglu_bwd(opctx *c, void *dg, void *du, const void *dh, const void *g, const void *u, int64_t n);
void cpu_add_inplace(opctx *c, void *y, const void *x, int64_t n);
void cpu_embed_fwd(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D);
void cpu_embed_bwd(opctx *c, float *dtable, const void *dy, const int32_t *ids, const uint8_t *rowmask,
                   int64_t ntok, int64_t D);
void cpu_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels, int64_t M,
                     int64_t V);
void cpu_logprob_bwd(opctx *c, void *dlogits, const float *dlogp, const float *lse, const void *logits,
                     const int32_t *labels, int64_t M, int64_t V);

void cpu_matmul_acc(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N, float alpha);
void cpu_scale(opctx *c, void *x, int64_t n, float alpha);
void cpu_zero(opctx *c, void *x, int64_t n);
void cpu_copy(opctx *c, void *y, const void *x, int64_t n);
void cpu_dropout(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a, uint32_t b,
                 uint64_t c0);
void cpu_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void cpu_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void cpu_gather_rows_fill(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                          const void *fill);
void cpu_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void cpu_add(opctx *c, void *out, const void *a, const void *b, int64_t n);
void cpu_nf4_dequant(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                     const float *absmax2, float offset, int64_t n, int bs, int bs2);
void cpu_im2col(opctx *c, void *rows, const float *pixels, int P, int T, int p);
void cpu_vis_embed(opctx *c, void *h, const void *patch, const float *cls, const float *pos, int64_t ntiles,
                   int64_t np, int64_t D);
void cpu_cast(opctx *c, void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);
void cpu_sumsq(opctx *c, double *out, const float *x, int64_t n);
void cpu_adamw(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd, float w1,
               float b2, float w2, float bc2, float eps, float neg_step);

/* NF4 helpers of cpu_nf4.c, also used by model/nf4.c (one implementation):
 *   cpu_nf4_absmax(q, a2, off, b, bs2)                  absmax of block b (dynamic_map[q[b]] * a2[b / bs2] + off)
 *   cpu_nf4_dequant_range(out, dt, packed, q, a2, off, bs, bs2, e0, e1)  elements [e0, e1) into out[0 .. e1 - e0),
 *                                                       dt DT_F32 or DT_BF16 (nearest even) */
float cpu_nf4_absmax(const uint8_t *qabsmax, const float *absmax2, float offset, int64_t b, int bs2);
void cpu_nf4_dequant_range(void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                           const float *absmax2, float offset, int bs, int bs2, int64_t e0, int64_t e1);

#endif
