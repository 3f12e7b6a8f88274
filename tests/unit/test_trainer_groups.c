/* Unit test: the trainer's tensor layout and optimiser groups (src/model/llava_train.c), on the tiny fixture model.
 * For every combination of what can be trained (decoder LoRA, projector LoRA or the full projector, lm_head LoRA,
 * vision LoRA on one or all layers, the new token rows):
 *   - every tensor is in its documented group (docs/jobs.md, train.lr_groups): decoder and lm_head LoRA in lora,
 *     vision:* LoRA in vision_lora, the projector's LoRA A/B and its full weights in mm_projector, the token rows
 *     in token_embeddings;
 *   - the tensors of each group are consecutive, in one contiguous piece of the store (the trainer makes one
 *     AdamW group per run of tensors of the same group; a group in two runs was "not contiguous", exit 1);
 *   - a real step runs: forward and backward on a synthetic image pair, finite gradients, every group gets some;
 *   - one AdamW step with the groups built as the trainer builds them and mm_projector at lr 0 leaves exactly the
 *     mm_projector tensors unchanged while every other group moves (lr_groups.mm_projector reaches the
 *     projector's adapters). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/anyres.h"
#include "io/err.h"
#include "model/llava_params.h"
#include "model/llava_train.h"
#include "test.h"
#include "train/adamw.h"

static llava_model M;
static float *pixels;
static int P, H = 56, W = 100;
static int32_t prefix[512], chosen[4], rejected[5];
static int n_prefix;

static uint64_t rs = 0x2545F4914F6CDD1Dull;
static float frand(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 40) / 16777216.0) - 0.5f;
}

/* one image pair: BOS, text, the image's <image> rows, text (with <pad>, a trainable row); short answers */
static void make_pair(void) {
    const llava_config *c = &M.cfg;
    int rows = 0, cols = 0;
    CHECK_EQ_INT(anyres_grid(&c->anyres, H, W, &rows, &cols), 0);
    P = 1 + rows * cols;
    size_t n = (size_t)P * 3 * (size_t)c->v_image * (size_t)c->v_image;
    pixels = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) pixels[i] = frand();
    int64_t nimg = llava_pack_index(c, P, H, W, NULL);
    CHECK(nimg > 0 && nimg < 400);
    prefix[n_prefix++] = c->bos;
    for (int i = 0; i < 4; i++) prefix[n_prefix++] = 10 + i;
    for (int64_t i = 0; i < nimg; i++) prefix[n_prefix++] = c->image_token;
    prefix[n_prefix++] = c->pad_token;
    for (int i = 0; i < 3; i++) prefix[n_prefix++] = 20 + i;
    int32_t ch[4] = {40, 41, 42, c->eos}, rj[5] = {50, 51, 52, 53, c->eos};
    memcpy(chosen, ch, sizeof ch);
    memcpy(rejected, rj, sizeof rj);
}

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static const char *expected_group(const char *name) {
    if (starts(name, "lora/language_model.")) return "lora";
    if (starts(name, "lora/vision_tower.")) return "vision_lora";
    if (starts(name, "lora/multi_modal_projector.")) return "mm_projector";
    if (starts(name, "multi_modal_projector.")) return "mm_projector";
    if (starts(name, "language_model.model.embed_tokens.")) return "token_embeddings";
    return "?";
}

static double group_lr(const char *g) { return !strcmp(g, "mm_projector") ? 0.0 : 1e-3; }

static void check_combo(const lt_spec *sp, const char *label) {
    llava_trainer t;
    int rc = lt_init(&t, &M, sp);
    if (rc) printf("  %s: lt_init: %s\n", label, err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) return;
    const int nt = lt_tensor_count(&t);
    CHECK(nt > 0);
    /* groups as documented, each one run of consecutive tensors over consecutive memory */
    const char *seen[8];
    int nseen = 0, bad_group = 0, split = 0;
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&t, i);
        if (strcmp(ti->group, expected_group(ti->name))) {
            printf("  %s: tensor %s in group %s, expected %s\n", label, ti->name, ti->group, expected_group(ti->name));
            bad_group++;
        }
        CHECK(ti->data == t.store + off && ti->grad == t.gstore + off);
        off += ti->numel;
        if (nseen && !strcmp(seen[nseen - 1], ti->group)) continue;
        for (int k = 0; k < nseen; k++)
            if (!strcmp(seen[k], ti->group)) {
                printf("  %s: group %s is split (again at tensor %s)\n", label, ti->group, ti->name);
                split++;
            }
        if (nseen < 8) seen[nseen++] = ti->group;
    }
    CHECK_EQ_INT(off, t.nstore);
    CHECK_EQ_INT(bad_group, 0);
    CHECK_EQ_INT(split, 0);

    /* a real step: forward + backward */
    CHECK_EQ_INT(lt_plan(&t, 1024, 2 * P, 1024), 0);
    for (int i = 0; i < nt; i++) { /* B != 0, so that every A gets a gradient too */
        const lt_tensor_info *ti = lt_tensor(&t, i);
        if (strstr(ti->name, "/B"))
            for (int64_t k = 0; k < ti->numel; k++) ti->data[k] = 0.05f * frand();
    }
    lt_pair pr = {pixels, P, H, W, prefix, n_prefix, chosen, rejected, 4, 5, NULL};
    lt_batch b = {&pr, 1, 1, 0};
    lt_fwd fw;
    lt_zero_grads(&t);
    rc = lt_forward(&t, &b, &fw);
    if (rc) printf("  %s: lt_forward: %s\n", label, err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        lt_free(&t);
        return;
    }
    CHECK(fw.nrows > 0);
    float *dlogp = malloc(sizeof(float) * (size_t)fw.nrows);
    for (int64_t i = 0; i < fw.nrows; i++) dlogp[i] = (fw.role[i] & LT_ROLE_REJECTED ? 0.5f : -1.0f) / (float)fw.nrows;
    CHECK_EQ_INT(lt_backward(&t, dlogp), 0);
    free(dlogp);
    int finite = 1;
    for (int64_t k = 0; k < t.nstore; k++) finite &= isfinite(t.gstore[k]) != 0;
    CHECK(finite);

    /* AdamW as the trainer sets it up: one group per run, its lr by name; mm_projector at lr 0 */
    adamw_tensor *at = calloc((size_t)nt, sizeof *at);
    float *mom = calloc((size_t)(2 * t.nstore), sizeof(float));
    float *before = malloc(sizeof(float) * (size_t)t.nstore);
    memcpy(before, t.store, sizeof(float) * (size_t)t.nstore);
    adamw_group g[8];
    int ng = 0;
    off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&t, i);
        at[i] = (adamw_tensor){ti->name, ti->data, ti->grad, mom + off, mom + t.nstore + off, ti->numel};
        off += ti->numel;
        if (ng == 0 || strcmp(g[ng - 1].name, ti->group)) {
            CHECK(adamw_group_index(g, ng, ti->group) < 0);
            if (ng == 8) break;
            g[ng++] = (adamw_group){ti->group, group_lr(ti->group), 0.01, &at[i], 0};
        }
        g[ng - 1].nt++;
    }
    adamw_opt opt;
    adamw_init(&opt);
    CHECK_EQ_INT(adamw_step(&opt, g, ng, 1.0), 0);
    for (int k = 0; k < ng; k++) {
        int64_t moved = 0, had_grad = 0;
        for (int j = 0; j < g[k].nt; j++) {
            const adamw_tensor *x = &g[k].t[j];
            const float *old = before + (x->param - t.store);
            for (int64_t e = 0; e < x->n; e++) {
                moved += x->param[e] != old[e];
                had_grad += x->grad[e] != 0.0f;
            }
        }
        if (!strcmp(g[k].name, "mm_projector")) {
            if (moved) printf("  %s: %lld values of group mm_projector moved at lr 0\n", label, (long long)moved);
            CHECK_EQ_INT(moved, 0);
        } else {
            if (!had_grad || !moved) printf("  %s: group %s: %lld gradients, %lld moved\n", label, g[k].name,
                                            (long long)had_grad, (long long)moved);
            CHECK(had_grad > 0);
            CHECK(moved > 0);
        }
    }
    free(at);
    free(mom);
    free(before);
    lt_free(&t);
}

int main(void) {
    int rc = llava_model_load_hf(test_fixture("llava_tiny/model"), &M);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) TEST_MAIN_END();
    make_pair();
    int ncombo = 0;
    /* decoder {none, q+v}, projector {none, LoRA, full}, lm_head, vision {none, fc1 of the last layer, all of
     * every layer}, token rows */
    for (int dec = 0; dec < 2; dec++)
        for (int proj = 0; proj < 3; proj++)
            for (int head = 0; head < 2; head++)
                for (int vis = 0; vis < 3; vis++)
                    for (int tok = 0; tok < 2; tok++) {
                        if (!dec && !proj && !head && !vis && !tok) continue;
                        lt_spec sp;
                        lt_spec_default(&sp);
                        sp.rank = 4;
                        sp.alpha = 8.0f;
                        sp.targets = (dec ? LT_Q | LT_V : 0) | (proj == 1 ? LT_PROJ : 0) | (head ? LT_LM_HEAD : 0);
                        sp.full_projector = proj == 2;
                        sp.vision_targets = vis == 1 ? LTV_FC1 : vis == 2 ? 0x3fu : 0;
                        sp.vision_layers = vis == 1 ? 1 : 0;
                        sp.train_token_rows = tok;
                        char label[160];
                        snprintf(label, sizeof label, "decoder=%d projector=%s lm_head=%d vision=%s tokens=%d", dec,
                                 proj == 0 ? "-" : proj == 1 ? "lora" : "full", head,
                                 vis == 0 ? "-" : vis == 1 ? "fc1/last" : "all", tok);
                        check_combo(&sp, label);
                        ncombo++;
                    }
    printf("%d combinations of targets\n", ncombo);
    llava_model_free(&M);
    free(pixels);
    TEST_MAIN_END();
}
