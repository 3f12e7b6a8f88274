// TEMP_fallbacks — TEMPORARY, SIMT build only; THE LEAD DELETES THIS FILE (and its line in CMakeLists.txt) WHEN
// norm.cu, embed.cu, optim.cu, linear.cu and attn.cu are merged (misc.cu, rope.cu, vision.cu and nf4.cu are: their
// fallbacks are gone).
// Until then each kc_* of those families calls the CPU bf16 mode's op (ops_cpu_bf16()->x), so that ops_simt() links
// and the trainer's step runs on it (tests/kernels/test_step_simt.c). Never part of the CUDA build.
extern "C" {
#include "backend/ops.h"
}
#include "kops.h"

#include "simt/simt_guard.h"

// the CPU op runs on device memory: the guard (simt_guard.h) opens it for the call
struct open_scope {
    open_scope() { simt_guard_enter(); }
    ~open_scope() { simt_guard_leave(); }
};
#define R (open_scope(), ops_cpu_bf16())

extern "C" {
void kc_rmsnorm_fwd(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M, int64_t D, float eps) {
    R->rmsnorm_fwd(c, y, rstd, x, w, M, D, eps);
}
void kc_rmsnorm_bwd(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w, const float *rstd,
                    int64_t M, int64_t D) {
    R->rmsnorm_bwd(c, dx, dw, dy, x, w, rstd, M, D);
}
void kc_layernorm_fwd(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w, const void *b,
                      int64_t M, int64_t D, float eps) {
    R->layernorm_fwd(c, y, mean, rstd, x, w, b, M, D, eps);
}
void kc_layernorm_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w,
                      const float *mean, const float *rstd, int64_t M, int64_t D) {
    R->layernorm_bwd(c, dx, dw, db, dy, x, w, mean, rstd, M, D);
}
void kc_embed_fwd(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D) {
    R->embed_fwd(c, y, table, ids, ntok, D);
}
void kc_embed_bwd(opctx *c, float *dtable, const void *dy, const int32_t *ids, const uint8_t *rowmask, int64_t ntok,
                  int64_t D) {
    R->embed_bwd(c, dtable, dy, ids, rowmask, ntok, D);
}
void kc_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels, int64_t M,
                    int64_t V) {
    R->logprob_fwd(c, logp, lse, logits, labels, M, V);
}
void kc_logprob_bwd(opctx *c, void *dlogits, const float *dlogp, const float *lse, const void *logits,
                    const int32_t *labels, int64_t M, int64_t V) {
    R->logprob_bwd(c, dlogits, dlogp, lse, logits, labels, M, V);
}
void kc_sumsq(opctx *c, double *out, const float *x, int64_t n) { R->sumsq(c, out, x, n); }
void kc_adamw(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd, float w1,
              float b2, float w2, float bc2, float eps, float neg_step) {
    R->adamw(c, p, g, m, v, n, decay, has_wd, w1, b2, w2, bc2, eps, neg_step);
}
void kc_linear_fwd(opctx *c, void *y, const void *x, const void *w, const void *b, int64_t M, int64_t K, int64_t N) {
    R->linear_fwd(c, y, x, w, b, M, K, N);
}
void kc_linear_bwd(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x, const void *w, int64_t M,
                   int64_t K, int64_t N) {
    R->linear_bwd(c, dx, dw, db, dy, x, w, M, K, N);
}
void kc_matmul_acc(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N, float alpha) {
    R->matmul_acc(c, y, x, w, M, K, N, alpha);
}
void kc_attn_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v, const seq_desc *seqs,
                 int nseq, int64_t ntok, int nq, int nkv, int hd, int causal) {
    R->attn_fwd(c, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
}
void kc_attn_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                 const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok, int nq,
                 int nkv, int hd, int causal) {
    R->attn_bwd(c, dq, dk, dv, dout, out, lse, q, k, v, seqs, nseq, ntok, nq, nkv, hd, causal);
}
}

// tests/kernels/test_step_simt.c expects bit-identical results while this file is linked
extern "C" const int simt_temp_fallbacks = 1;
