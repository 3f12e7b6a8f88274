/* step_pairs — the two preference pairs of tests/fixtures/step/step.h5 (tools/oracle/make_step_fixtures.py) as
 * trainer input, for the oracle tests that run the tiny model on them (test_step, test_export).
 *
 *   step_pairs_load(F, pairs)   pair0/, pair1/: pixel_values (56x56 tiles), image_size, prefix, chosen, rejected
 *   step_pairs_free(pairs)      the arrays step_pairs_load allocated
 *   step_set_init(F, t, grp)    every trainable tensor of t from grp/init/<name> (the oracle's initial values)
 *   step_models(fp32, nf4)      the tiny model (tests/fixtures/llava_tiny) imported as fp32 and as NF4 (CPU flavour)
 *                               into the test's temporary directory; their paths (1024 bytes each)
 *   step_grads(t, pairs, step, &m)  one micro-batch of the two pairs: forward, ORPO (beta 0.1, NLL over prompt and
 *                               answer, as the fixture), backward into t's gradients (zeroed first); the metrics
 *   step_grads_logp(t, pairs, step, &m, &logp, &nrows)   the same, and a malloc'd copy of the per-row log-probs
 */
#ifndef ORPO_STEP_PAIRS_H
#define ORPO_STEP_PAIRS_H

#include "fixture_h5.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "model/nf4.h"
#include "test.h"
#include "train/orpo.h"

static inline void step_pairs_load(hid_t F, lt_pair pairs[2]) {
    for (int i = 0; i < 2; i++) {
        char p[64];
        size_t n;
        snprintf(p, sizeof p, "pair%d/pixel_values", i);
        pairs[i].pixels = fx_f32(F, p, &n);
        pairs[i].P = (int)(n / (3 * 56 * 56));
        snprintf(p, sizeof p, "pair%d/image_size", i);
        int32_t *hw = fx_i32(F, p, &n);
        pairs[i].h = hw[0];
        pairs[i].w = hw[1];
        free(hw);
        snprintf(p, sizeof p, "pair%d/prefix", i);
        pairs[i].prefix = fx_i32(F, p, &n);
        pairs[i].n_prefix = (int32_t)n;
        snprintf(p, sizeof p, "pair%d/chosen", i);
        pairs[i].chosen = fx_i32(F, p, &n);
        pairs[i].n_chosen = (int32_t)n;
        snprintf(p, sizeof p, "pair%d/rejected", i);
        pairs[i].rejected = fx_i32(F, p, &n);
        pairs[i].n_rejected = (int32_t)n;
    }
}

static inline void step_pairs_free(lt_pair pairs[2]) {
    for (int i = 0; i < 2; i++) {
        free((void *)pairs[i].pixels);
        free((void *)pairs[i].prefix);
        free((void *)pairs[i].chosen);
        free((void *)pairs[i].rejected);
    }
}

static inline void step_set_init(hid_t F, llava_trainer *t, const char *grp) {
    for (int i = 0; i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        char p[300];
        size_t n;
        snprintf(p, sizeof p, "%s/init/%s", grp, ti->name);
        float *v = fx_f32(F, p, &n);
        CHECK_EQ_INT(n, ti->numel);
        memcpy(ti->data, v, sizeof(float) * n);
        free(v);
    }
}

static inline void step_models(char fp32[1024], char nf4[1024]) {
    const char *tmp = test_tmpdir();
    snprintf(fp32, 1024, "%s/fp32.h5", tmp);
    snprintf(nf4, 1024, "%s/nf4.h5", tmp);
    mh5_opts o;
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    CHECK_EQ_INT(mh5_import(test_fixture("llava_tiny/model"), fp32, &o), 0);
    mh5_opts_default(&o);
    o.nf4_flavor = NF4_FLAVOR_CPU;
    CHECK_EQ_INT(mh5_import(test_fixture("llava_tiny/model"), nf4, &o), 0);
}

/* step_grads, and (logp non-NULL) a malloc'd copy of the forward's per-row log-probs, *nrows of them */
static inline int step_grads_logp(llava_trainer *t, const lt_pair *pairs, uint32_t step, orpo_metrics *m,
                                  float **logp, int64_t *nrows) {
    lt_batch b = {pairs, 2, step, 0};
    lt_fwd fw;
    lt_zero_grads(t);
    int rc = lt_forward(t, &b, &fw);
    if (rc) return rc;
    if (logp) {
        *nrows = fw.nrows;
        *logp = malloc(sizeof(float) * (size_t)(fw.nrows ? fw.nrows : 1));
        memcpy(*logp, fw.logp, sizeof(float) * (size_t)fw.nrows);
    }
    int64_t nll = 0;
    for (int64_t i = 0; i < fw.nrows; i++) nll += (fw.role[i] & ORPO_TOK_NLL) != 0;
    orpo_config oc = {0.1, ORPO_NLL_ALL};
    orpo_norm norm = {2, nll};
    orpo_batch ob = {fw.nrows, fw.logp, fw.role, fw.pair, 2};
    orpo_accum acc;
    orpo_accum_init(&acc);
    float *dlogp = malloc(sizeof(float) * (size_t)fw.nrows);
    rc = orpo_tokens(&oc, &ob, &norm, &acc, dlogp);
    if (!rc) rc = orpo_finish(&acc, &norm, m);
    if (!rc) rc = lt_backward(t, dlogp);
    free(dlogp);
    return rc;
}

static inline int step_grads(llava_trainer *t, const lt_pair *pairs, uint32_t step, orpo_metrics *m) {
    return step_grads_logp(t, pairs, step, m, NULL, NULL);
}

#endif
