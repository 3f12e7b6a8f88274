/* Memory strategies change where buffers live and what is recomputed, never a value: on the fp32 CPU backend every
 * combination of per-layer recompute, offloaded layer inputs, recomputed (not kept) logits and vision features from a
 * cache (computed image by image, as the cache is built, instead of the micro-batch's tiles at once) gives log-probs and
 * gradients bit-identical to the plain run, on the step fixture's two pairs (tests/fixtures/step/step.h5) with the
 * tiny LLaVA-NeXT, fp32 and NF4 bases, for LoRA everywhere with dropout and trainable token rows, the projector
 * trained fully, and vision LoRA. The lm_head chunk (logits_chunk) is a small 8 rows so that several chunks run.
 * A strategy that changed the numbers (a wrong dropout offset in a recomputed chunk, a stale offloaded input, a
 * missing prefetch) shows here as a difference in the last bit or more. The size table must also agree with the
 * trainer's arenas (lt_plan_ex refuses a mismatch). */
#include <string.h>

#include "backend/tensor.h"
#include "fixture_h5.h"
#include "io/err.h"
#include "model/llava_size.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "model/nf4.h"
#include "step_pairs.h"
#include "test.h"

static lt_pair pairs[2];

typedef struct result {
    float *logp, *grads;
    int64_t nrows, n;
} result;

/* the step with the strategy st; with the vision features from a cache (LS_VIS_CACHE), the cache is each pair's
 * features from a plan that runs the tower (lt_vision_features), as a vision cache file holds them */
static int run(llava_model *m, const lt_spec *sp, const ls_strategy *st, result *out) {
    llava_trainer t;
    int rc = lt_init(&t, m, sp);
    const int64_t np = (int64_t)(m->cfg.v_image / m->cfg.v_patch) * (m->cfg.v_image / m->cfg.v_patch);
    float *feat[2] = {NULL, NULL};
    if (!rc && st->vision == LS_VIS_CACHE) {
        int64_t tok = 0;
        int tiles = 0;
        for (int i = 0; i < 2; i++) tok += pairs[i].n_prefix, tiles = pairs[i].P > tiles ? pairs[i].P : tiles;
        ls_dims vd = {tok, tok, tiles, 0, 0};
        ls_strategy vs;
        ls_strategy_default(&vs, DT_F32);
        vs.forward_only = 1;
        rc = lt_plan_ex(&t, &vd, &vs);
        for (int i = 0; !rc && i < 2; i++) {
            feat[i] = malloc(sizeof(float) * (size_t)(pairs[i].P * np * m->cfg.v_hidden));
            rc = lt_vision_features(&t, pairs[i].pixels, pairs[i].P, feat[i]);
            pairs[i].features = feat[i];
        }
    }
    int64_t tok = 0, rows = 0;
    int tiles = 0;
    for (int i = 0; i < 2; i++) {
        tok += 2 * pairs[i].n_prefix + pairs[i].n_chosen + pairs[i].n_rejected;
        rows += pairs[i].n_prefix + pairs[i].n_chosen + pairs[i].n_rejected;
        tiles += 2 * pairs[i].P;
    }
    ls_dims d = {tok, rows, tiles, 0, 0};
    if (!rc) rc = lt_plan_ex(&t, &d, st);
    lt_batch b = {pairs, 2, 3, 0};
    lt_fwd fw;
    if (!rc) {
        lt_zero_grads(&t);
        rc = lt_forward(&t, &b, &fw);
    }
    if (!rc) {
        out->nrows = fw.nrows;
        out->logp = malloc(sizeof(float) * (size_t)fw.nrows);
        memcpy(out->logp, fw.logp, sizeof(float) * (size_t)fw.nrows);
        float *dlogp = malloc(sizeof(float) * (size_t)fw.nrows);
        for (int64_t i = 0; i < fw.nrows; i++) dlogp[i] = -1.0f / (float)(1 + i % 7) + (fw.role[i] & 4 ? 0.5f : 0.0f);
        rc = lt_backward(&t, dlogp);
        free(dlogp);
        out->n = t.nstore;
        out->grads = malloc(sizeof(float) * (size_t)t.nstore);
        memcpy(out->grads, t.gstore, sizeof(float) * (size_t)t.nstore);
    }
    if (rc) fprintf(stderr, "%s\n", err_msg());
    lt_free(&t);
    for (int i = 0; i < 2; i++) {
        free(feat[i]);
        pairs[i].features = NULL;
    }
    return rc;
}

static void variant(llava_model *m, const char *name, const lt_spec *sp) {
    ls_strategy plain;
    ls_strategy_default(&plain, DT_F32);
    plain.logits_chunk = 8;
    result ref;
    CHECK_EQ_INT(run(m, sp, &plain, &ref), 0);
    /* recompute, offload (needs recompute), logits recomputed, vision features from a cache (not with vision LoRA):
     * every combination */
    const int combos[][4] = {{1, 0, 1, 0}, {1, 1, 1, 0}, {0, 0, 0, 0}, {1, 0, 0, 0}, {1, 1, 0, 0},
                             {0, 0, 1, 1}, {1, 0, 1, 1}, {1, 1, 1, 1}, {0, 0, 0, 1}, {1, 0, 0, 1}, {1, 1, 0, 1}};
    for (size_t k = 0; k < sizeof combos / sizeof combos[0]; k++) {
        ls_strategy st = plain;
        st.recompute = combos[k][0];
        st.offload = combos[k][1];
        st.logits_keep = combos[k][2];
        st.vision = combos[k][3] ? LS_VIS_CACHE : LS_VIS_RUN;
        if (st.vision == LS_VIS_CACHE && sp->vision_targets) continue;
        result r;
        memset(&r, 0, sizeof r);
        CHECK_EQ_INT(run(m, sp, &st, &r), 0);
        int same = r.nrows == ref.nrows && r.n == ref.n && r.logp && r.grads &&
                   !memcmp(r.logp, ref.logp, sizeof(float) * (size_t)ref.nrows) &&
                   !memcmp(r.grads, ref.grads, sizeof(float) * (size_t)ref.n);
        printf("  %-22s recompute=%d offload=%d logits_keep=%d vision_cache=%d: %s\n", name, st.recompute,
               st.offload, st.logits_keep, st.vision == LS_VIS_CACHE, same ? "bit-identical" : "DIFFERENT");
        CHECK(same);
        free(r.logp);
        free(r.grads);
    }
    free(ref.logp);
    free(ref.grads);
}

int main(void) {
    hid_t F = fx_open(test_fixture("step/step.h5"));
    step_pairs_load(F, pairs);
    char paths[2][1024];
    step_models(paths[0], paths[1]);
    for (int b = 0; b < 2; b++) {
        llava_model m;
        CHECK_EQ_INT(mh5_load(paths[b], &m), 0);
        lt_spec sp;
        lt_spec_default(&sp);
        sp.rank = 4;
        sp.alpha = 8.0f;
        sp.dropout = 0.1f;
        sp.targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
        sp.train_token_rows = 1;
        variant(&m, b ? "nf4 lora+rows" : "fp32 lora+rows", &sp);
        if (b == 0) {
            lt_spec_default(&sp);
            sp.targets = LT_Q | LT_V;
            sp.full_projector = 1;
            variant(&m, "fp32 full projector", &sp);
            lt_spec_default(&sp);
            sp.targets = LT_Q | LT_V;
            sp.vision_targets = LTV_Q | LTV_K | LTV_V | LTV_OUT | LTV_FC1 | LTV_FC2;
            sp.vision_layers = 1;
            sp.dropout = 0.1f;
            variant(&m, "fp32 vision lora", &sp);
        }
        llava_model_free(&m);
    }
    step_pairs_free(pairs);
    H5Fclose(F);
    TEST_MAIN_END();
}
