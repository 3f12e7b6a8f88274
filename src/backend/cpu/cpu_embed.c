/* cpu_embed — embedding lookup and the per-label log-probability (log-softmax + gather). */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h"

void cpu_embed_fwd(opctx *c, void *y_, const void *table_, const int32_t *ids, int64_t ntok, int64_t D) {
    (void)c;
    float *y = y_;
    const float *table = table_;
    for (int64_t i = 0; i < ntok; i++) memcpy(y + i * D, table + (int64_t)ids[i] * D, sizeof(float) * (size_t)D);
}

void cpu_embed_bwd(opctx *c, float *dtable, const void *dy_, const int32_t *ids, const uint8_t *rowmask,
                   int64_t ntok, int64_t D) {
    (void)c;
    const float *dy = dy_;
    for (int64_t i = 0; i < ntok; i++) {
        if (rowmask && !rowmask[ids[i]]) continue;
        float *row = dtable + (int64_t)ids[i] * D;
        for (int64_t j = 0; j < D; j++) row[j] += dy[i * D + j];
    }
}

void cpu_logprob_fwd(opctx *c, float *logp, float *lse, const void *logits_, const int32_t *labels,
                     int64_t M, int64_t V) {
    (void)c;
    const float *logits = logits_;
    for (int64_t i = 0; i < M; i++) {
        const float *x = logits + i * V;
        float m = -INFINITY;
        for (int64_t j = 0; j < V; j++) m = x[j] > m ? x[j] : m;
        double s = 0.0;
        for (int64_t j = 0; j < V; j++) s += expf(x[j] - m);
        lse[i] = m + (float)log(s);
        logp[i] = x[labels[i]] - lse[i];
    }
}

void cpu_logprob_bwd(opctx *c, void *dlogits_, const float *dlogp, const float *lse, const void *logits_,
                     const int32_t *labels, int64_t M, int64_t V) {
    (void)c;
    float *dl = dlogits_;
    const float *logits = logits_;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < V; j++) dl[i * V + j] = -dlogp[i] * expf(logits[i * V + j] - lse[i]);
        dl[i * V + labels[i]] += dlogp[i];
    }
}
