// kops — the CUDA backend's ops: one function per op of backend/ops.h with the op's signature and meaning, bf16
// activations (DT_BF16), in kernels/<family>.cu beside the CPU reference's src/backend/cpu/cpu_<family>.c. The same
// source runs on the CPU through kernels/simt/simt_cpu.h, where tests/kernels checks each against ops_cpu_bf16().
//
//   ops_cuda()     the CUDA table: these ops, cudaMalloc'd memory, the compute and copy streams (kernels/cuda_ops.cu)
//   ops_simt()     the same kernels run by the CPU executor, with host memory (the SIMT build only: tests)
//   simt_launches() kernels the CPU executor has run
#ifndef ORPO_KERNELS_KOPS_H
#define ORPO_KERNELS_KOPS_H

#ifdef ORPO_SIMT_NAMES
#include "simt/simt_names.h" /* the CPU executor's build: names of its own */
#endif

#include "backend/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

const ops *ops_cuda(void);
const ops *ops_simt(void);
/* kernels launched so far by the CPU executor (the SIMT build; tests check that a kernel really ran) */
long simt_launches(void);

/* act.cu: element-wise activations and residual adds */
void kc_gelu_fwd(opctx *c, void *y, const void *x, int64_t n);
void kc_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
void kc_quick_gelu_fwd(opctx *c, void *y, const void *x, int64_t n);
void kc_quick_gelu_bwd(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
void kc_swiglu_fwd(opctx *c, void *h, const void *g, const void *u, int64_t n);
void kc_swiglu_bwd(opctx *c, void *dg, void *du, const void *dh, const void *g, const void *u, int64_t n);
void kc_add_inplace(opctx *c, void *y, const void *x, int64_t n);
void kc_add(opctx *c, void *out, const void *a, const void *b, int64_t n);

/* misc.cu: data movement, scaling, dropout, casts */
void kc_scale(opctx *c, void *x, int64_t n, float alpha);
void kc_zero(opctx *c, void *x, int64_t n);
void kc_copy(opctx *c, void *y, const void *x, int64_t n);
void kc_dropout(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a, uint32_t b,
                uint64_t c0);
void kc_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void kc_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void kc_gather_rows_fill(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                         const void *fill);
void kc_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void kc_cast(opctx *c, void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);

/* rope.cu: rotary embedding */
void kc_rope_fwd(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);
void kc_rope_bwd(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);

/* vision.cu: CLIP patch rows and embeddings */
void kc_im2col(opctx *c, void *rows, const float *pixels, int P, int T, int p);
void kc_vis_embed(opctx *c, void *h, const void *patch, const float *cls, const float *pos, int64_t ntiles,
                  int64_t np, int64_t D);

/* nf4.cu: NF4 dequantisation */
void kc_nf4_dequant(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                    const float *absmax2, float offset, int64_t n, int bs, int bs2);

/* norm.cu: RMSNorm and LayerNorm */
void kc_rmsnorm_fwd(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M, int64_t D, float eps);
void kc_rmsnorm_bwd(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w, const float *rstd,
                    int64_t M, int64_t D);
void kc_layernorm_fwd(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w, const void *b,
                      int64_t M, int64_t D, float eps);
void kc_layernorm_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                      const float *mean, const float *rstd, int64_t M, int64_t D);

/* embed.cu: embedding rows and answer log-probabilities */
void kc_embed_fwd(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D);
void kc_embed_bwd(opctx *c, float *dtable, const void *dy, const int32_t *ids, const uint8_t *rowmask, int64_t ntok,
                  int64_t D);
void kc_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels, int64_t M, int64_t V);
void kc_logprob_bwd(opctx *c, void *dlogits, const float *dlogp, const float *lse, const void *logits,
                    const int32_t *labels, int64_t M, int64_t V);

/* optim.cu: AdamW and the squared norm */
void kc_sumsq(opctx *c, double *out, const float *x, int64_t n);
void kc_adamw(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd, float w1,
              float b2, float w2, float bc2, float eps, float neg_step);

/* linear.cu: linear layers and LoRA up-projection (cuBLASLt) */
void kc_linear_fwd(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K, int64_t N);
void kc_linear_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w, int64_t M,
                   int64_t K, int64_t N);
void kc_matmul_acc(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N, float alpha);

/* attn.cu: attention */
/* the most score entries (heads x query rows x keys) one query chunk may hold; tests lower it to force chunks */
extern int64_t kc_attn_chunk_entries;
/* the packed-sequence descriptors (device memory) on the host: the nseq computed ones and every prefix they name
 * (*ndesc of them, when asked); malloc'd, NULL with the sticky error set on failure */
seq_desc *kc_attn_host_descs(opctx *c, const seq_desc *seqs, int nseq, int *ndesc);
void kc_attn_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v, const seq_desc *seqs,
                 int nseq, int64_t ntok, int nq, int nkv, int hd, int causal);
void kc_attn_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                 const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok, int nq,
                 int nkv, int hd, int causal);

#ifdef __cplusplus
}
#endif

#endif
