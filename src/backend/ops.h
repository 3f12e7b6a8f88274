/* ops — the op table the model code is written against. Each op exists twice: a readable fp32
 * reference in src/backend/cpu/ and a CUDA kernel in kernels/; tests run both on the same inputs.
 *
 * Conventions
 *   - Pointers are device pointers of the backend (host memory for the CPU), but dropout's `key` (two words on the
 *     host, passed by value to the kernel). Activations (`void *`) have the
 *     table's activation dtype (ops_cpu: f32; ops_cpu_bf16 and CUDA: bf16), and so do the weights `w` of
 *     linear_fwd / linear_bwd / matmul_acc and the fill row of gather_rows_fill; biases, norm weights, embedding
 *     tables, cls / pos and pixels stay f32, as does every `float *` (statistics saved for backward: rstd, mean,
 *     lse; logp / dlogp; weight gradients dw, db, dtable). docs/training.md "bf16 mode" says where bf16 rounds.
 *     Shapes are passed explicitly; rows are contiguous.
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
 *   gather_rows_fill               dst[i] = rows[i] >= 0 ? src[rows[i]] : fill (one row of D values; NULL: zeros)
 *                                  (image-feature splicing, CLS drop)
 *   scatter_rows                   dst[rows[i]] = src[i]   (image rows into the embeddings, embedding-row updates)
 *   add                            out = a + b   (residual add fused with the copy)
 *   nf4_dequant                    bitsandbytes NF4 (double-quantised absmax) -> f32 or bf16 (round to nearest even)
 *   im2col                         tiles [P, 3, T, T] (f32) -> patch rows [P * np, 3 * p * p] in (channel, ky, kx) order
 *   vis_embed                      CLIP embeddings: per tile, row 0 = cls + pos[0], row 1 + i = patch[i] + pos[1 + i]
 *   cast                           dtype conversion (f32 <-> bf16; bf16 by round to nearest even)
 *   sumsq                          *out += sum x^2 over n f32 values, accumulated in double in index order, continuing
 *                                  the running sum in *out (calls in a row equal one loop; out is backend memory)
 *   adamw                          torch.optim.AdamW's single-tensor update of one fp32 tensor (train/adamw.c)
 *
 * Memory (each backend's own; the model, LoRA, ORPO and optimizer code touch memory only through these):
 *   mem_alloc / mem_free           an arena of `bytes`, MEM_DEVICE or MEM_HOST (pinned on CUDA); NULL and the
 *                                  sticky error set (naming `what`) when it cannot be had
 *   upload / download              host <-> device, blocking
 *   copy_async                     host <-> device on the copy stream (MEM_H2D / MEM_D2H), ordered on that stream
 *   copy_fence / copy_wait         a point on the copy stream; the compute stream waits for it (the CPU: no-ops,
 *                                  every copy is complete when it returns)
 *   memset                         bytes of device memory
 *   mem_stats                      live and high-water bytes of the backend's allocations at a placement
 *   sync                           wait for all work; returns the sticky error (ERR_OK when none): kernels and
 *                                  copies return nothing, a failure sets c->err / c->errmsg once (the first wins)
 */
#ifndef ORPO_OPS_H
#define ORPO_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct opctx {
    int device;      /* DEVICE_CPU or DEVICE_CUDA */
    int act_dtype;   /* DT_F32 or DT_BF16 (the CPU: runtime.precision), DT_BF16 on CUDA */
    int threads;     /* CPU threads for BLAS */
    void *stream;    /* cudaStream_t (CUDA) */
    void *blas;      /* cublasLtHandle_t (CUDA) */
    void *copy_stream; /* cudaStream_t of asynchronous copies (CUDA) */
    int err;         /* sticky error (ERR_*): the first failure of an op or a copy; read by ops->sync */
    char errmsg[256];
    void *scratch;   /* backend scratch (CPU bf16 mode: fp32 copies of bf16 operands), owned by the backend;
                      * opctx_release frees it */
    size_t scratch_bytes; /* its size: the largest any op has needed so far (a plan reserves it) */
    void *blas_ws;   /* the cuBLASLt workspace (CUDA: device memory of blas_ws_bytes, set by the context's open) */
    size_t blas_ws_bytes;
    void *backend;   /* the backend's own context state (CUDA: the copy fences' events), owned by ctx_close */
    void *kscratch;  /* the kernels' scratch (kernels/kgemm.h kscratch(): CUDA device memory, cudaMallocAsync on
                      * c->stream; the SIMT build: malloc), grown to the largest request; freed by ctx_close (CUDA)
                      * or opctx_release */
    size_t kscratch_bytes;
} opctx;

enum { MEM_DEVICE = 0, MEM_HOST = 1 };

/* the cap on a library workspace (cuBLASLt): what the CUDA context allocates and the plan reserves (ws.library) */
#define OPS_BLAS_WS_CAP ((size_t)32 << 20)
enum { MEM_H2D = 0, MEM_D2H = 1 };

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
    void (*gather_rows_fill)(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                             const void *fill);
    void (*scatter_rows)(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
    void (*add)(opctx *c, void *out, const void *a, const void *b, int64_t n);
    /* n values (a multiple of 2), blocks of bs values (absmax[i] = qabsmax-code * absmax2[i / bs2] + offset) */
    void (*nf4_dequant)(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                        const float *absmax2, float offset, int64_t n, int bs, int bs2);
    void (*im2col)(opctx *c, void *rows, const float *pixels, int P, int T, int p);
    void (*vis_embed)(opctx *c, void *h, const void *patch, const float *cls, const float *pos, int64_t ntiles,
                      int64_t np, int64_t D);
    void (*cast)(opctx *c, void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n);
    void (*sumsq)(opctx *c, double *out, const float *x, int64_t n);
    /* p = p * decay (when wd != 0); m += w1 (g - m); v = v b2 + w2 g^2; p += neg_step * m / (sqrt(v) / bc2 + eps),
     * every value f32 as train/adamw.c computes it */
    void (*adamw)(opctx *c, float *p, const float *g, float *m, float *v, int64_t n, float decay, int has_wd,
                  float w1, float b2, float w2, float bc2, float eps, float neg_step);

    void *(*mem_alloc)(opctx *c, size_t bytes, int where, const char *what);
    void (*mem_free)(opctx *c, void *p, int where);
    void (*upload)(opctx *c, void *dst, const void *src, size_t bytes);
    void (*download)(opctx *c, void *dst, const void *src, size_t bytes);
    void (*copy_async)(opctx *c, void *dst, const void *src, size_t bytes, int dir);
    uint64_t (*copy_fence)(opctx *c);
    void (*copy_wait)(opctx *c, uint64_t fence);
    void (*memset)(opctx *c, void *p, int value, size_t bytes);
    int (*sync)(opctx *c);
    /* bytes of this backend's memory now allocated at a placement, and the most ever at once (the plan's check) */
    void (*mem_stats)(opctx *c, int where, size_t *live, size_t *peak);

    /* the context of this backend: ctx_open makes what its ops need in c (CUDA: the compute and copy streams, the
     * cuBLASLt handle and its capped workspace; it refuses a GPU older than sm_80); ctx_close frees it. NULL where
     * the backend needs nothing (the CPU) */
    int (*ctx_open)(opctx *c);
    void (*ctx_close)(opctx *c);
    /* the same backend's table for fp32 arrays (masters, gradients, moments, the embedding table): scale, zero,
     * copy, gather_rows, scatter_rows, scatter_add_rows, add_inplace on floats, with sumsq, adamw, cast,
     * nf4_dequant and the same memory; a device's fp32 table has no other op (NULL). NULL: ops_cpu() (the CPU tables) */
    const struct ops *f32;
    /* 1: MEM_DEVICE memory is the host's own and the model's host arrays are read in place (the CPU tables); 0: a
     * device, whose frozen weights the trainer uploads once (llava_train.c) */
    int host_mem;
} ops;

/* The fp32 CPU reference (src/backend/cpu). */
const ops *ops_cpu(void);
/* The CPU backend in bf16 mode: bf16 operands widened to fp32, the fp32 reference run, each output rounded to bf16
 * (nearest even) where the CUDA kernels round it (docs/training.md, "bf16 mode") */
const ops *ops_cpu_bf16(void);
/* The table of a device (DEVICE_CPU, DEVICE_CUDA) and activation dtype (DT_F32, DT_BF16); NULL when this binary
 * has no such backend (CUDA: bf16 only, kernels/cuda_ops.cu ops_cuda) */
const ops *ops_for(int device, int act_dtype);

/* Record a failure in the context's sticky error (the first one wins: a later call changes nothing); returns c->err.
 * Backends call it where an op or a copy fails; ops->sync reports it. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
int opctx_fail(opctx *c, int code, const char *fmt, ...);
/* Free what a backend keeps in the context (the CPU bf16 mode's scratch); the context stays usable */
void opctx_release(opctx *c);

#endif
