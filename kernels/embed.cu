// embed — embedding rows and the answer tokens' log-probabilities, as src/backend/cpu/cpu_embed.c in the bf16
// contract (the table, dtable, lse, logp and dlogp f32; y, logits and dlogits bf16).
//
//   embed_fwd     one block per token: y[t] = bf16(table[ids[t]])                               (bit-identical)
//   embed_bwd     dtable[ids[t]] += dy[t] where rowmask[ids[t]]: each thread owns one column and adds the tokens in
//                 order, the reference's order, so repeated ids are deterministic without float atomics
//                 (bit-identical; parallelism D threads, fine for the answer rows' tokens of a micro-batch)
//   logprob_fwd   one block per row: max (exact in any order), then the sum of expf(x - max) in fp32 — each thread
//                 sums its strided values in order, block_sum adds them in a fixed tree (block size a function of V
//                 only) — then lse = max + log(sum), logp = x[label] - lse. The reference sums in double: the bound
//                 of the difference is derived in tests/kernels/test_k_embed.c.
//   logprob_bwd   dlogits = dlogp (onehot - exp(x - lse)), overwriting, formed in fp32 and rounded once (bit-identical
//                 given the same lse)
#include "simt.h"
#include "kops.h"

enum { EMB_THREADS = 256, LP_MAX_THREADS = 1024 };

// threads per logit row: V rounded up to a warp, at most LP_MAX_THREADS (a function of V only: the tree is fixed)
static int lp_threads(int64_t V) { return (int)KMIN((V + 31) / 32 * 32, (int64_t)LP_MAX_THREADS); }

__global__ static void embed_fwd_k(bf16 *y, const float *table, const int32_t *ids, int64_t D) {
    const int64_t t = blockIdx.x;
    const float *src = table + (int64_t)ids[t] * D;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) y[t * D + j] = f2bf(src[j]);
}

__global__ static void embed_bwd_k(float *dtable, const bf16 *dy, const int32_t *ids, const uint8_t *rowmask,
                                   int64_t ntok, int64_t D) {
    const int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D) return;
    for (int64_t t = 0; t < ntok; t++) {
        const int64_t id = ids[t];
        if (rowmask && !rowmask[id]) continue;
        dtable[id * D + j] += bf2f(dy[t * D + j]);
    }
}

__global__ static void logprob_fwd_k(float *logp, float *lse, const bf16 *logits, const int32_t *labels, int64_t V) {
    __shared__ float red[32];
    const int64_t row = blockIdx.x;
    const bf16 *x = logits + row * V;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, bf2f(x[j]));
    m = block_max(m, red);
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(bf2f(x[j]) - m);
    s = block_sum(s, red);
    if (threadIdx.x == 0) {
        const float l = m + (float)log((double)s);
        lse[row] = l;
        logp[row] = bf2f(x[labels[row]]) - l;
    }
}

__global__ static void logprob_bwd_k(bf16 *dlogits, const float *dlogp, const float *lse, const bf16 *logits,
                                     const int32_t *labels, int64_t V) {
    const int64_t row = blockIdx.x, label = labels[row];
    const float d = dlogp[row], l = lse[row];
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
        float g = -d * expf(bf2f(logits[row * V + j]) - l);
        if (j == label) g += d;
        dlogits[row * V + j] = f2bf(g);
    }
}

extern "C" void kc_embed_fwd(opctx *c, void *y, const void *table, const int32_t *ids, int64_t ntok, int64_t D) {
    if (ntok > 0 && D > 0)
        KLAUNCH(embed_fwd_k, (unsigned)ntok, EMB_THREADS, 0, c, (bf16 *)y, (const float *)table, ids, D);
}

extern "C" void kc_embed_bwd(opctx *c, float *dtable, const void *dy, const int32_t *ids, const uint8_t *rowmask,
                             int64_t ntok, int64_t D) {
    if (ntok > 0 && D > 0)
        KLAUNCH(embed_bwd_k, kgrid(D, EMB_THREADS), EMB_THREADS, 0, c, dtable, (const bf16 *)dy, ids, rowmask, ntok, D);
}

extern "C" void kc_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits, const int32_t *labels, int64_t M,
                               int64_t V) {
    if (M > 0 && V > 0)
        KLAUNCH(logprob_fwd_k, (unsigned)M, lp_threads(V), 0, c, logp, lse, (const bf16 *)logits, labels, V);
}

extern "C" void kc_logprob_bwd(opctx *c, void *dlogits, const float *dlogp, const float *lse, const void *logits,
                               const int32_t *labels, int64_t M, int64_t V) {
    if (M > 0 && V > 0)
        KLAUNCH(logprob_bwd_k, (unsigned)M, lp_threads(V), 0, c, (bf16 *)dlogits, dlogp, lse, (const bf16 *)logits,
                labels, V);
}
