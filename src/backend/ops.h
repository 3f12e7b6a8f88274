/* ops — the op table the model code is written against. Each op exists twice: a readable fp32
 * reference in src/backend/cpu/ and a CUDA kernel in kernels/; tests run both on the same inputs.
 *
 * Conventions
 *   - Pointers are device pointers of the backend (host memory for the CPU). Activations have the
 *     context's activation dtype (f32 on the CPU, bf16 on CUDA); statistics saved for backward
 *     (rstd, mean, lse) are always f32. Shapes are passed explicitly; rows are contiguous.
 *   - Linear weights are [out, in] (PyTorch layout): y = x W^T + b.
 *   - Backward ops ACCUMULATE (+=) into every gradient they write, so that contributions from
 *     several paths (residuals, shared prefixes, micro-batches) add up; any gradient pointer may
 *     be NULL when it is not needed.
 *   - Packed sequences: tokens of many sequences lie flat in [ntok, ...]; seq_desc says where each
 *     sequence starts, how long it is, the position of its first token and which earlier sequence
 *     (if any) it sees in full before itself (prefix sharing: a chosen and a rejected answer both
 *     name their shared prompt+image sequence as prefix).
 *
 *   linear_fwd / linear_bwd        y = x W^T (+ b); dx += dy W, dW += dy^T x, db += sum dy
 *   rmsnorm_fwd / rmsnorm_bwd      y = x * rsqrt(mean(x^2) + eps) * w     (Mistral)
 *   layernorm_fwd / layernorm_bwd  y = (x - mean) * rsqrt(var + eps) * w + b  (CLIP)
 *   rope_fwd / rope_bwd            split-half rotary embedding at given positions, in place
 *   attn_fwd / attn_bwd            GQA softmax attention over packed sequences (causal or not)
 *   gelu_fwd / gelu_bwd            exact erf GELU (projector)
 *   quick_gelu_fwd / _bwd          x * sigmoid(1.702 x) (CLIP MLP)
 *   swiglu_fwd / swiglu_bwd        h = silu(gate) * up (Mistral MLP)
 *   add_inplace                    y += x
 *   embed_fwd / embed_bwd          rows of a table by id; dtable[id] += dy (only rows with a flag)
 *   logprob_fwd / logprob_bwd      log-softmax of logits at one label per row; dlogits from dlogp
 *   matmul_acc                     y += alpha x W^T (LoRA's up-projection into the base output)
 *   scale / zero / copy            x *= alpha;  x = 0;  y = x
 *   dropout                        y = x * keep / (1 - p), keep from the counter RNG at (key, a, b, c0 + i):
 *                                  the same call with the same counters is its own backward
 *   gather_rows / scatter_add_rows dst[i] = src[rows[i]];  dst[rows[i]] += src[i]
 */
#ifndef ORPO_OPS_H
#define ORPO_OPS_H

#include <stdint.h>

typedef struct opctx {
    int device;      /* DEVICE_CPU or DEVICE_CUDA */
    int act_dtype;   /* DT_F32 on the CPU, DT_BF16 on CUDA */
    int threads;     /* CPU threads for BLAS */
    void *stream;    /* cudaStream_t (CUDA) */
    void *blas;      /* cublasLtHandle_t (CUDA) */
} opctx;

/* the largest attention head dimension the ops take (the CPU reference keeps one head's accumulator on the stack);
 * llava_config refuses a model with larger heads */
#define OPS_ATTN_MAX_HEAD_DIM 512

typedef struct seq_desc {
    int32_t start;   /* first token in the packed buffer */
    int32_t len;     /* number of tokens */
    int32_t pos0;    /* RoPE position of the first token */
    int32_t prefix;  /* index of a sequence every token of this one attends to in full, or -1. It may name a
                      * descriptor after the nseq computed ones: its keys are seen, no output is computed for it
                      * (generation: the KV cache of a prompt, llava_train.c lt_generate) */
} seq_desc;

typedef struct ops {
    const char *name;

    void (*linear_fwd)(opctx *c, void *y, const void *x, const void *w, const void *b,
                       int64_t M, int64_t K, int64_t N);
    void (*linear_bwd)(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x,
                       const void *w, int64_t M, int64_t K, int64_t N);

    void (*rmsnorm_fwd)(opctx *c, void *y, float *rstd, const void *x, const void *w, int64_t M,
                        int64_t D, float eps);
    void (*rmsnorm_bwd)(opctx *c, void *dx, float *dw, const void *dy, const void *x, const void *w,
                        const float *rstd, int64_t M, int64_t D);

    void (*layernorm_fwd)(opctx *c, void *y, float *mean, float *rstd, const void *x, const void *w,
                          const void *b, int64_t M, int64_t D, float eps);
    void (*layernorm_bwd)(opctx *c, void *dx, float *dw, float *db, const void *dy, const void *x,
                          const void *w, const float *mean, const float *rstd, int64_t M, int64_t D);

    /* x: [ntok, nhead * hd], rotated in place at positions pos[ntok] */
    void (*rope_fwd)(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);
    void (*rope_bwd)(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta);

    /* q: [ntok, nq*hd], k/v: [ntok, nkv*hd], out: [ntok, nq*hd], lse: [ntok, nq] (f32) */
    void (*attn_fwd)(opctx *c, void *out, float *lse, const void *q, const void *k, const void *v,
                     const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal);
    void (*attn_bwd)(opctx *c, void *dq, void *dk, void *dv, const void *dout, const void *out,
                     const float *lse, const void *q, const void *k, const void *v,
                     const seq_desc *seqs, int nseq, int64_t ntok, int nq, int nkv, int hd, int causal);

    void (*gelu_fwd)(opctx *c, void *y, const void *x, int64_t n);
    void (*gelu_bwd)(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
    void (*quick_gelu_fwd)(opctx *c, void *y, const void *x, int64_t n);
    void (*quick_gelu_bwd)(opctx *c, void *dx, const void *dy, const void *x, int64_t n);
    void (*swiglu_fwd)(opctx *c, void *h, const void *gate, const void *up, int64_t n);
    void (*swiglu_bwd)(opctx *c, void *dgate, void *dup, const void *dh, const void *gate,
                       const void *up, int64_t n);

    void (*add_inplace)(opctx *c, void *y, const void *x, int64_t n);

    /* y[i] = table[ids[i]] for i < ntok; backward adds dy rows into dtable where rowmask[id] != 0 */
    void (*embed_fwd)(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D);
    void (*embed_bwd)(opctx *c, float *dtable, const void *dy, const int32_t *ids,
                      const uint8_t *rowmask, int64_t ntok, int64_t D);

    /* logits: [M, V]; logp[i] = log_softmax(logits[i])[label[i]]; lse saved (f32).
     * backward: dlogits[i] = dlogp[i] * (onehot(label[i]) - softmax(logits[i])) (overwrites) */
    void (*logprob_fwd)(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels,
                        int64_t M, int64_t V);
    void (*logprob_bwd)(opctx *c, void *dlogits, const float *dlogp, const float *lse,
                        const void *logits, const int32_t *labels, int64_t M, int64_t V);

    void (*matmul_acc)(opctx *c, void *y, const void *x, const void *w, int64_t M, int64_t K, int64_t N, float alpha);
    void (*scale)(opctx *c, void *x, int64_t n, float alpha);
    void (*zero)(opctx *c, void *x, int64_t n);
    void (*copy)(opctx *c, void *y, const void *x, int64_t n);
    void (*dropout)(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a,
                    uint32_t b, uint64_t c0);
    void (*gather_rows)(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
    void (*scatter_add_rows)(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
} ops;

/* The fp32 CPU reference (src/backend/cpu). */
const ops *ops_cpu(void);

#endif
