/* fwd_full — test helper: the trainer's forward (model/llava_train.c, the one forward of the project) on whole
 * sequences, giving the logits of EVERY position as transformers' forward returns them, for the tests that compare
 * a forward with a reference (tests/oracle/test_llava_forward.c, test_model_import.c, tests/unit/test_demo.c).
 *
 *   ff_pair(ids, L, pixels, P, h, w)       the lt_pair of one sequence of L ids: prefix ids[0..L-2], chosen =
 *                                          rejected = ids[L-1]. With the prefix shared (lt_spec_default) the pair
 *                                          packs as prefix, chosen, rejected, so its first L packed tokens are the
 *                                          sequence itself; with nll_prompt every position whose next token is text
 *                                          is a target row.
 *   ff_init(&t, m, tokens, tiles, n, forward_only)  lt_init of the base model (no LoRA, as transformers has it) and
 *                                          lt_plan_ex with ls_strategy_default (fp32, logits kept) for n pairs of
 *                                          tokens ids and tiles image tiles in all; forward_only: no backward buffers
 *                                          (then no "embeddings" to peek)
 *   ff_logits(&t, pairs, n, logits, &host_err, &host_rows)   lt_forward of the n pairs in ONE batch (eval) and the
 *                                          logits [sum L, V] of every position of every pair, pair after pair. The
 *                                          target rows' logits are the trainer's own (lt_peek "logits" at
 *                                          "row_positions"); the other positions (those followed by an <image> token,
 *                                          and each sequence's last) are not rows of the trainer's lm_head, so their
 *                                          logits are computed here from lt_peek "final_hidden" and the lm_head
 *                                          weight (lin_f32), summed in double. host_err: max |host - trainer| /
 *                                          max |trainer| over the target rows, where both exist (checks the host
 *                                          path); host_rows: how many positions came from the host. Returns
 *                                          lt_forward's error code (ERR_OK).
 */
#ifndef ORPO_TEST_FWD_FULL_H
#define ORPO_TEST_FWD_FULL_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "model/llava_size.h"
#include "model/llava_train.h"

static inline lt_pair ff_pair(const int32_t *ids, int64_t L, const float *pixels, int P, int h, int w) {
    lt_pair p;
    memset(&p, 0, sizeof p);
    p.pixels = pixels;
    p.P = P;
    p.h = h;
    p.w = w;
    p.prefix = ids;
    p.n_prefix = (int32_t)(L - 1);
    p.chosen = p.rejected = ids + L - 1;
    p.n_chosen = p.n_rejected = 1;
    return p;
}

static inline int ff_init(llava_trainer *t, llava_model *m, int64_t tokens, int tiles, int n, int forward_only) {
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = 0; /* the base model */
    int rc = lt_init(t, m, &sp);
    if (rc) return rc;
    ls_dims d = {tokens + n, tokens + n, tiles, 0, 0}; /* + the rejected copy of each last token; rows <= tokens + 1 */
    ls_strategy st;
    ls_strategy_default(&st, sp.act_dtype);
    st.logits_keep = 1;
    st.forward_only = forward_only;
    return lt_plan_ex(t, &d, &st);
}

static inline int ff_logits(llava_trainer *t, const lt_pair *pairs, int n, float *logits, double *host_err,
                            int64_t *host_rows) {
    const llava_config *c = &t->m->cfg;
    const int64_t D = c->t_hidden, V = c->vocab;
    lt_batch b = {pairs, n, 0, 1};
    lt_fwd fw;
    int rc = lt_forward(t, &b, &fw);
    if (rc) return rc;
    int64_t ntok = fw.ntok, nrows = fw.nrows, got = 0;
    float *hid = malloc(sizeof(float) * (size_t)(ntok * D)), *lg = malloc(sizeof(float) * (size_t)(nrows * V));
    float *rp = malloc(sizeof(float) * (size_t)nrows), *scr = malloc(sizeof(float) * (size_t)(V * D));
    int64_t *dst = malloc(sizeof(int64_t) * (size_t)ntok);
    char *done = NULL;
    if ((rc = lt_peek(t, "final_hidden", hid, ntok * D, &got, NULL)) ||
        (rc = lt_peek(t, "logits", lg, nrows * V, &got, NULL)) ||
        (rc = lt_peek(t, "row_positions", rp, nrows, &got, NULL)))
        goto out;
    /* packed token -> output row: pair i is prefix, chosen, rejected; its first L tokens are the sequence */
    int64_t base = 0, total = 0;
    for (int64_t k = 0; k < ntok; k++) dst[k] = -1;
    for (int i = 0; i < n; i++) {
        const lt_pair *p = &pairs[i];
        for (int64_t j = 0; j < p->n_prefix + p->n_chosen; j++) dst[base + j] = total + j;
        base += p->n_prefix + p->n_chosen + p->n_rejected;
        total += p->n_prefix + p->n_chosen;
    }
    if (base != ntok) {
        rc = err_set(ERR_INTERNAL, "fwd_full: %lld packed tokens, expected %lld (prefix shared)", (long long)ntok,
                     (long long)base);
        goto out;
    }
    done = calloc((size_t)total, 1);
    for (int64_t r = 0; r < nrows; r++) {
        int64_t q = (int64_t)rp[r];
        if (q < 0 || q >= ntok || dst[q] < 0) continue;
        memcpy(logits + dst[q] * V, lg + r * V, sizeof(float) * (size_t)V);
        done[dst[q]] = 1;
    }
    const lin_w *head = &t->m->w.lm_head;
    const float *W = lin_f32(head, scr);
    double dmax = 0, amax = 0;
    int64_t nhost = 0;
    for (int64_t k = 0; k < ntok; k++) {
        if (dst[k] < 0) continue;
        float *row = logits + dst[k] * V;
        for (int64_t v = 0; v < V; v++) {
            double s = head->b ? head->b[v] : 0.0;
            for (int64_t e = 0; e < D; e++) s += (double)hid[k * D + e] * W[v * D + e];
            if (done[dst[k]]) {
                dmax = fmax(dmax, fabs(s - row[v]));
                amax = fmax(amax, fabs((double)row[v]));
            } else
                row[v] = (float)s;
        }
        nhost += !done[dst[k]];
    }
    if (host_err) *host_err = amax > 0 ? dmax / amax : dmax;
    if (host_rows) *host_rows = nhost;
out:
    free(hid); free(lg); free(rp); free(scr); free(dst); free(done);
    return rc;
}

#endif
