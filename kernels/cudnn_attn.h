// cudnn_attn — cuDNN's fused scaled-dot-product attention (FlashAttention-2), forward and backward, for one segment
// of kernels/attn_fused.cu (backend/attn_fused.h): b = 1, bf16 Q [1, nq, sq, hd], K/V [1, nkv, skv, hd] stored
// token-major (row r of Q is nq * hd values, head after head: our packed layout), O like Q, Stats [1, nq, sq, 1] fp32
// head-major (stats[h * sq + r]), a padding mask with the valid lengths lens[0] = lq (query rows) and lens[64] = lkv
// (key rows; device int32, 256 bytes apart), a causal mask aligned bottom right when `causal` (query i sees keys
// j <= i + lkv - lq), scale 1 / sqrt(hd). Stats is cuDNN's natural-log log-sum-exp of the scaled scores,
// max_j (s_ij scale) + ln sum_j exp(s_ij scale - max): the lse of kernels/attn.cu and the CPU reference. The backward
// overwrites dQ, dK, dV (the caller adds them into the op's gradients) and runs cuDNN's deterministic algorithm.
//
//   cudnn_sdpa_prepare(c, &shape, bwd, &ws, why, n)  the graph of this shape (built once, then cached); 0 and its
//                       workspace bytes, or nonzero with `why` when cuDNN cannot run it here (no cuDNN 9 at run
//                       time, an older GPU, a shape its engines refuse): the caller runs attn.cu's version
//   cudnn_sdpa_fwd / cudnn_sdpa_bwd   run a prepared shape on c->stream; 0, or the context's sticky error set
//   cudnn_sdpa_version()              cudnnGetVersion() of the loaded library (0 in a build without cuDNN)
// kernels/cudnn_attn.cpp implements them with the cuDNN frontend (ORPO_HAVE_CUDNN); in the CPU executor's build
// (tests) kernels/attn_fused.cu has a plain-loop stand-in with the same contract.
//
// kernels/attn_fused.cu, the ops built on them (the signatures and meaning of backend/ops.h attn_fwd / attn_bwd):
//   kc_attn_fused_fwd / kc_attn_fused_bwd   through cuDNN where it can take the call, else kc_attn_fwd / _bwd
//   kc_attn_fused_count[2]                  calls run by cuDNN, calls that fell back (since the start)
//   kc_attn_fused_why                       the latest fallback's reason ("" when none)
#ifndef ORPO_KERNELS_CUDNN_ATTN_H
#define ORPO_KERNELS_CUDNN_ATTN_H

#ifdef ORPO_SIMT_NAMES
#include "simt/simt_names.h" // the CPU executor's build: names of its own
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/ops.h"

typedef struct cudnn_sdpa_shape {
    int sq, skv, nq, nkv, hd, causal;
} cudnn_sdpa_shape;

// the int32 offset of lkv after lq in the lens buffer (256 bytes)
#define CUDNN_SDPA_LKV 64

int cudnn_sdpa_prepare(opctx *c, const cudnn_sdpa_shape *s, int bwd, size_t *ws, char *why, size_t why_len);
int cudnn_sdpa_fwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                   const void *v, void *o, float *stats, void *ws);
int cudnn_sdpa_bwd(opctx *c, const cudnn_sdpa_shape *s, const int32_t *lens, const void *q, const void *k,
                   const void *v, const void *o, const void *dout, const float *stats, void *dq, void *dk, void *dv,
                   void *ws);
int cudnn_sdpa_version(void);

void kc_attn_fused_fwd(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                       const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal);
void kc_attn_fused_bwd(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,
                       const void *q, const void *k, const void *v, const seq_desc *seqs, int nseq, int64_t ntok,
                       int nq, int nkv, int hd, int causal);
extern long kc_attn_fused_count[2];
extern char kc_attn_fused_why[256];

#ifdef __cplusplus
}
#endif

#endif
