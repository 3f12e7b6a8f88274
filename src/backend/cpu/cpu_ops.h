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

#endif
