/* export --peft and import-adapter against PEFT 0.21.2 + transformers 5.25 (tests/fixtures/export from
 * tools/oracle/make_export_fixtures.py) on the tiny LLaVA-NeXT, fp32:
 *   - the same known state exported by orpo-hpc gives PEFT's save_pretrained files: the same tensor names,
 *     shapes, dtypes and bytes (fp32, and bf16 with --dtype bf16), the same adapter_config.json keys and values;
 *   - transformers + PEFT with that adapter loaded (PeftModel.from_pretrained) give the log-softmax of their
 *     fp32 logits; orpo-hpc's forward gives the same log-prob at every target row within 2 tol_llava_logp + u
 *     relative (tests/oracle/tolerance.h: both fp32 forwards' worst-case error, any summation order);
 *   - export -> import gives bit-identical trainable tensors (both key layouts); a bf16 adapter imports as
 *     the bf16-rounded values;
 *   - --merged: sharded bf16 with an index; every adapted weight = bf16(W + scale B A) within 1 ulp, projector
 *     bias and token rows exact; imported back by orpo-hpc, its forward without adapters equals base + LoRA
 *     within the first-order effect of rounding every weight to bf16 (tol_llava_wround) plus both fp32 forwards'
 *     error (the bf16 rounding of the base alone is printed for scale);
 *   - a checkpoint is found (latest, step number) and read into the job's trainer;
 *   - mismatches of rank, alpha, targets and shapes are refused with ERR_ARGS / ERR_DATA naming the tensor. */
#include <cjson/cJSON.h>
#include <string.h>

#include "fixture_h5.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "job/job_export.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "step_pairs.h"
#include "test.h"
#include "tolerance.h"
#include "train/ckpt.h"

static hid_t S, STEP;
static lt_pair pairs[2];
static const char *TMP;
static int64_t g_ntok; /* tokens of the test batch: a bound on any attention length L in the tolerances */
static uint16_t bf16(float x);

static void spec_of(const char *variant, lt_spec *sp) {
    lt_spec_default(sp);
    sp->rank = 4;
    sp->alpha = 8.0f;
    if (!strcmp(variant, "lora")) {
        sp->dropout = 0.05f;
        sp->targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
    } else {
        sp->rslora = 1;
        sp->targets = LT_Q | LT_V;
        sp->vision_targets = LTV_Q | LTV_K | LTV_V | LTV_OUT | LTV_FC1 | LTV_FC2;
        sp->vision_layers = 1;
        sp->full_projector = 1;
        sp->train_token_rows = 1;
    }
}

static void set_state(llava_trainer *t, const char *variant) {
    for (int i = 0; i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        char p[300];
        size_t n;
        snprintf(p, sizeof p, "%s/%s", variant, ti->name);
        float *v = fx_f32(S, p, &n);
        CHECK_EQ_INT(n, ti->numel);
        memcpy(ti->data, v, sizeof(float) * n);
        free(v);
    }
}

/* the same tensors (names, dtypes, shapes, bytes) and the same config keys and values */
static void compare_dirs(const char *mine, const char *ref) {
    char a[1200], b[1200];
    snprintf(a, sizeof a, "%s/adapter_model.safetensors", mine);
    snprintf(b, sizeof b, "%s/adapter_model.safetensors", ref);
    st_file *fa = NULL, *fb = NULL;
    CHECK_EQ_INT(st_open(a, &fa), 0);
    CHECK_EQ_INT(st_open(b, &fb), 0);
    if (!fa || !fb) return;
    CHECK_EQ_INT(st_count(fa), st_count(fb));
    int differ = 0;
    for (int i = 0; i < st_count(fb); i++) {
        const st_tensor *r = st_at(fb, i), *m = st_find(fa, r->name);
        if (!m) {
            printf("    missing %s\n", r->name);
            differ++;
            continue;
        }
        int same = m->dtype == r->dtype && m->ndim == r->ndim && m->nbytes == r->nbytes;
        for (int k = 0; same && k < r->ndim; k++) same = m->shape[k] == r->shape[k];
        if (same) same = !memcmp(m->data, r->data, r->nbytes);
        if (!same) printf("    differs: %s\n", r->name);
        differ += !same;
    }
    CHECK_EQ_STR(st_meta_get(fa, "format") ? st_meta_get(fa, "format") : "", "pt");
    printf("  %s: %d tensors, %d differ from PEFT's (names, dtype, shape, bytes)\n", ref, st_count(fb), differ);
    CHECK_EQ_INT(differ, 0);
    st_close(fa);
    st_close(fb);
    char *ta, *tb;
    size_t na, nb;
    snprintf(a, sizeof a, "%s/adapter_config.json", mine);
    snprintf(b, sizeof b, "%s/adapter_config.json", ref);
    CHECK_EQ_INT(fs_read_all(a, &ta, &na), 0);
    CHECK_EQ_INT(fs_read_all(b, &tb, &nb), 0);
    cJSON *ca = cJSON_Parse(ta), *cb = cJSON_Parse(tb);
    CHECK(ca && cb);
    int nkeys = 0, bad = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cb) {
        nkeys++;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(ca, e->string);
        if (!m) printf("    config key %s missing\n", e->string), bad++;
        else if (strcmp(e->string, "base_model_name_or_path") && !cJSON_Compare(m, e, 1))
            printf("    config %s: %s vs %s\n", e->string, cJSON_PrintUnformatted(m), cJSON_PrintUnformatted(e)), bad++;
    }
    cJSON_ArrayForEach(e, ca) if (!cJSON_GetObjectItemCaseSensitive(cb, e->string)) printf("    extra key %s\n", e->string), bad++;
    printf("  %s: %d config keys, %d differ\n", ref, nkeys, bad);
    CHECK_EQ_INT(bad, 0);
    cJSON_Delete(ca);
    cJSON_Delete(cb);
    free(ta);
    free(tb);
}

/* orpo-hpc's forward (eval, fp32) vs transformers + PEFT with the saved adapter: log-prob of every target row */
static void compare_logp(llava_trainer *t, const char *variant) {
    CHECK_EQ_INT(lt_plan(t, 512, 16, 512), 0);
    lt_batch bt = {pairs, 2, 1, 1};
    lt_fwd fw;
    int rc = lt_forward(t, &bt, &fw);
    if (rc) printf("%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    g_ntok = fw.ntok;
    int64_t row = 0;
    double worst = 0, scale = 0;
    int image = 300;
    for (int i = 0; i < 2; i++) {
        char p[128];
        size_t nc, nr;
        snprintf(p, sizeof p, "%s/logp/pair%d_chosen", variant, i);
        float *lc = fx_f32(S, p, &nc);
        snprintf(p, sizeof p, "%s/logp/pair%d_rejected", variant, i);
        float *lr = fx_f32(S, p, &nr);
        int32_t np = pairs[i].n_prefix;
        /* rows of pair i in packing order: prompt text tokens, chosen answer, rejected answer */
        int64_t want = 0;
        for (int32_t j = 1; j < np; j++) want += pairs[i].prefix[j] != image;
        want += pairs[i].n_chosen + pairs[i].n_rejected;
        int64_t k = 0;
        for (int32_t j = 1; j < np + pairs[i].n_chosen + pairs[i].n_rejected; j++) {
            double ref;
            if (j < np) {
                if (pairs[i].prefix[j] == image) continue;
                ref = lc[j - 1];
            } else if (j < np + pairs[i].n_chosen) {
                ref = lc[j - 1];
            } else {
                ref = lr[np + (j - np - pairs[i].n_chosen) - 1];
            }
            CHECK_EQ_INT(fw.pair[row + k], i);
            double e = fabs(fw.logp[row + k] - ref);
            if (e > worst) worst = e;
            if (fabs(ref) > scale) scale = fabs(ref);
            k++;
        }
        CHECK_EQ_INT(k, want);
        row += k;
        free(lc);
        free(lr);
    }
    CHECK_EQ_INT(row, fw.nrows);
    printf("  %s: %lld target rows, max |log-prob diff| %.2e, relative to max |log-prob| %.2e\n", variant,
           (long long)row, worst, worst / scale);
    /* each implementation within tol_llava_logp of exact (transformers + PEFT and ours, each in its own order), the
     * reference stored in fp32: 2 tol_llava_logp + u relative to the log-prob scale (tests/oracle/tolerance.h) */
    double tol = 2 * tol_llava_logp(&t->m->cfg, g_ntok) + TOL_U;
    CHECK(worst / scale <= tol);
}

/* log-probs of every target row of the test pairs (eval forward); malloc'ed */
static float *forward_logp(llava_trainer *t, int64_t *n) {
    CHECK_EQ_INT(lt_plan(t, 512, 16, 512), 0);
    lt_batch bt = {pairs, 2, 1, 1};
    lt_fwd fw;
    int rc = lt_forward(t, &bt, &fw);
    if (rc) printf("%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    g_ntok = fw.ntok;
    float *v = malloc(sizeof(float) * (size_t)(fw.nrows + 1));
    memcpy(v, fw.logp, sizeof(float) * (size_t)fw.nrows);
    *n = fw.nrows;
    return v;
}

/* --merged: imported back by orpo-hpc, its forward without adapters equals the base + LoRA forward within bf16
 * rounding; sharded (small shards), with an index; every merged weight is bf16(W + scale B A) within 1 ulp */
static void check_merged(llava_trainer *t, const char *variant, const char *model_path) {
    char dir[1024], h5[1100];
    snprintf(dir, sizeof dir, "%s/merged_%s", TMP, variant);
    CHECK_EQ_INT(jx_write_merged(t, model_path, 150000, dir), 0);
    char ix[1100];
    snprintf(ix, sizeof ix, "%s/model.safetensors.index.json", dir);
    st_index *index = NULL;
    CHECK_EQ_INT(st_index_open(ix, &index), 0);
    int nshards = index ? st_index_nshards(index) : 0;
    CHECK(nshards > 1);
    /* every weight with an adapter, recomputed here: bf16(W + scale B A) within 1 ulp (fp32 sum order);
     * the fully trained projector and the token rows: exactly bf16 of the trained values */
    static const char *dm[LT_DEC_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    static const char *vm[LT_VIS_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                             "self_attn.out_proj", "mlp.fc1", "mlp.fc2"};
    llava_weights *w = &t->m->w;
    const llava_config *c = &t->m->cfg;
    int worst_ulp = 0, checked = 0;
    for (int k = 0; k < c->t_layers * LT_DEC_MODULES + c->v_run_layers * LT_VIS_MODULES + 5; k++) {
        const lora_ad *ad = NULL;
        const lin_w *lw = NULL;
        char wname[200];
        int kk = k;
        if (kk < c->t_layers * LT_DEC_MODULES) {
            int l = kk / LT_DEC_MODULES, mi = kk % LT_DEC_MODULES;
            lin_w *d[LT_DEC_MODULES] = {&w->dec[l].q, &w->dec[l].k, &w->dec[l].v, &w->dec[l].o, &w->dec[l].gate,
                                        &w->dec[l].up, &w->dec[l].down};
            ad = &t->dec[kk];
            lw = d[mi];
            snprintf(wname, sizeof wname, "language_model.model.layers.%d.%s.weight", l, dm[mi]);
        } else if ((kk -= c->t_layers * LT_DEC_MODULES) < c->v_run_layers * LT_VIS_MODULES) {
            int l = kk / LT_VIS_MODULES, mi = kk % LT_VIS_MODULES;
            lin_w *v[LT_VIS_MODULES] = {&w->vis[l].q, &w->vis[l].k, &w->vis[l].v, &w->vis[l].o, &w->vis[l].fc1,
                                        &w->vis[l].fc2};
            ad = &t->vis[kk];
            lw = v[mi];
            snprintf(wname, sizeof wname, "vision_tower.vision_model.encoder.layers.%d.%s.weight", l, vm[mi]);
        } else {
            kk -= c->v_run_layers * LT_VIS_MODULES;
            if (kk < 2) {
                ad = &t->proj[kk];
                lw = kk ? &w->proj2 : &w->proj1;
                snprintf(wname, sizeof wname, "multi_modal_projector.linear_%d.weight", kk + 1);
            } else if (kk == 2) {
                ad = &t->head;
                lw = &w->lm_head;
                snprintf(wname, sizeof wname, "language_model.lm_head.weight");
            } else if (kk == 3) {
                snprintf(wname, sizeof wname, "language_model.model.embed_tokens.weight");
            } else {
                snprintf(wname, sizeof wname, "multi_modal_projector.linear_1.bias");
            }
        }
        char shard[1300];
        snprintf(shard, sizeof shard, "%s/%s", dir, index ? st_index_shard(index, wname) : "");
        st_file *f = NULL;
        if (st_open(shard, &f)) { CHECK(0); err_clear(); continue; }
        const st_tensor *st = st_find(f, wname);
        CHECK(st && st->dtype == ST_BF16);
        float *got = st ? malloc(sizeof(float) * (size_t)st->numel) : NULL;
        if (st) st_to_f32(f, st, got);
        if (st && ad && ad->A) {
            const float *W = lw->w;
            for (int64_t o = 0; o < ad->out; o++)
                for (int64_t i = 0; i < ad->in; i++) {
                    double acc = 0;
                    for (int r = 0; r < ad->r; r++) acc += (double)ad->B[o * ad->r + r] * ad->A[(int64_t)r * ad->in + i];
                    uint16_t a = bf16((float)((double)W[o * ad->in + i] + (double)ad->scale * acc)), b;
                    uint32_t u;
                    memcpy(&u, &got[o * ad->in + i], 4);
                    b = (uint16_t)(u >> 16);
                    worst_ulp = abs((int)a - (int)b) > worst_ulp ? abs((int)a - (int)b) : worst_ulp;
                }
            checked++;
        } else if (st && !ad && kk == 3) { /* token rows */
            for (int j = 0; j < t->n_tok_rows; j++)
                for (int64_t i = 0; i < c->t_hidden; i++) {
                    uint32_t u = (uint32_t)bf16(t->tok_rows[(int64_t)j * c->t_hidden + i]) << 16;
                    float want;
                    memcpy(&want, &u, 4);
                    CHECK(got[(int64_t)t->tok_ids[j] * c->t_hidden + i] == want);
                }
            checked += t->n_tok_rows > 0;
        } else if (st && !ad && kk == 4) { /* projector bias (trained fully, or the base) */
            for (int64_t i = 0; i < st->numel; i++) {
                uint32_t u = (uint32_t)bf16(w->proj1.b[i]) << 16;
                float want;
                memcpy(&want, &u, 4);
                CHECK(got[i] == want);
            }
            checked++;
        }
        free(got);
        st_close(f);
    }
    printf("  %s merged: %d shards; %d adapted weights = bf16(W + s B A) within %d ulp; projector bias and token "
           "rows exact\n", variant, nshards, checked, worst_ulp);
    CHECK(worst_ulp <= 1);
    st_index_close(index);
    /* orpo-hpc reads it back (fp32) and its plain forward matches base + LoRA */
    snprintf(h5, sizeof h5, "%s.h5", dir);
    mh5_opts o;
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    int rc = mh5_import(dir, h5, &o);
    if (rc) printf("%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    llava_model mm;
    CHECK_EQ_INT(mh5_load(h5, &mm), 0);
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = 0;
    llava_trainer plain;
    CHECK_EQ_INT(lt_init(&plain, &mm, &sp), 0);
    int64_t na, nb;
    float *a = forward_logp(t, &na), *b = forward_logp(&plain, &nb);
    CHECK_EQ_INT(na, nb);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < na && na == nb; i++) {
        worst = fmax(worst, fabs(a[i] - b[i]));
        scale = fmax(scale, fabs(a[i]));
    }
    free(a);
    free(b);
    lt_free(&plain);
    llava_model_free(&mm);
    /* what bf16 rounding alone does: the base without adapters, exported merged and read back, vs the base */
    llava_trainer b0, b1;
    CHECK_EQ_INT(lt_init(&b0, t->m, &sp), 0);
    snprintf(dir, sizeof dir, "%s/merged_%s_base", TMP, variant);
    CHECK_EQ_INT(jx_write_merged(&b0, model_path, 1 << 30, dir), 0);
    snprintf(h5, sizeof h5, "%s.h5", dir);
    CHECK_EQ_INT(mh5_import(dir, h5, &o), 0);
    CHECK_EQ_INT(mh5_load(h5, &mm), 0);
    CHECK_EQ_INT(lt_init(&b1, &mm, &sp), 0);
    a = forward_logp(&b0, &na);
    b = forward_logp(&b1, &nb);
    double base_err = 0;
    for (int64_t i = 0; i < na && na == nb; i++) base_err = fmax(base_err, fabs(a[i] - b[i]));
    printf("  %s merged: orpo-hpc forward of the merged bf16 model vs base + LoRA (fp32): max |log-prob diff| %.2e "
           "(%.2e relative); bf16 rounding of the base alone: %.2e\n", variant, worst, worst / scale, base_err);
    /* the merged model holds bf16(W + s B A) for every weight (checked above to 1 bf16 ulp): its log-probs differ from
     * the fp32 base + LoRA by the rounding of every weight to bf16 (u = 2^-9), counted once per weight-carrying op of
     * the chain and doubled for the log-softmax (tolerance.h: tol_llava_wround, tol_llava_logp), plus both fp32
     * forwards' own error. This end-to-end bound is loose by construction; the merge itself is checked per weight. */
    const llava_config *cf = &t->m->cfg;
    double tol = 2 * tol_llava_wround(cf, 1.0 / 512.0) + 2 * tol_llava_logp(cf, g_ntok) + TOL_U;
    printf("  %s merged: bound %.2e relative\n", variant, tol);
    CHECK(worst / scale <= tol);
    free(a);
    free(b);
    lt_free(&b0);
    lt_free(&b1);
    llava_model_free(&mm);
}

static int same_bits(llava_trainer *a, llava_trainer *b) {
    if (a->nstore != b->nstore) return 0;
    return !memcmp(a->store, b->store, sizeof(float) * (size_t)a->nstore);
}

static uint16_t bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static void run_variant(const char *variant, llava_model *m, const char *model_path) {
    lt_spec sp;
    spec_of(variant, &sp);
    llava_trainer t, u;
    CHECK_EQ_INT(lt_init(&t, m, &sp), 0);
    set_state(&t, variant);
    char dir[1024], ref[1024];
    jx_opts o = {0, JX_LAYOUT_CURRENT, "llava_tiny", "# card\n"};
    snprintf(dir, sizeof dir, "%s/%s", TMP, variant);
    CHECK_EQ_INT(jx_write_peft(&t, &o, dir), 0);
    snprintf(ref, sizeof ref, "%s/%s/peft", test_fixture("export"), variant);
    compare_dirs(dir, ref);
    /* round trip: export -> import is bit-identical, in both key layouts */
    CHECK_EQ_INT(lt_init(&u, m, &sp), 0);
    CHECK_EQ_INT(jx_read_peft(&u, dir), 0);
    CHECK(same_bits(&t, &u));
    lt_free(&u);
    char leg[1100];
    snprintf(leg, sizeof leg, "%s_legacy", dir);
    o.layout = JX_LAYOUT_LEGACY;
    CHECK_EQ_INT(jx_write_peft(&t, &o, leg), 0);
    CHECK_EQ_INT(lt_init(&u, m, &sp), 0);
    CHECK_EQ_INT(jx_read_peft(&u, leg), 0);
    CHECK(same_bits(&t, &u));
    printf("  %s: export -> import bit-identical (%lld values; current and legacy key layouts)\n", variant,
           (long long)t.nstore);
    lt_free(&u);
    /* PEFT's own files import too, to the same values */
    CHECK_EQ_INT(lt_init(&u, m, &sp), 0);
    CHECK_EQ_INT(jx_read_peft(&u, ref), 0);
    CHECK(same_bits(&t, &u));
    lt_free(&u);
    if (!strcmp(variant, "lora")) {
        char b16[1100];
        snprintf(b16, sizeof b16, "%s_bf16", dir);
        o.layout = JX_LAYOUT_CURRENT;
        o.bf16 = 1;
        CHECK_EQ_INT(jx_write_peft(&t, &o, b16), 0);
        snprintf(ref, sizeof ref, "%s/%s/peft_bf16", test_fixture("export"), variant);
        compare_dirs(b16, ref);
        CHECK_EQ_INT(lt_init(&u, m, &sp), 0);
        CHECK_EQ_INT(jx_read_peft(&u, b16), 0);
        int ok = 1;
        for (int64_t i = 0; i < t.nstore && ok; i++) {
            uint32_t w = (uint32_t)bf16(t.store[i]) << 16;
            float f;
            memcpy(&f, &w, 4);
            ok = f == u.store[i];
        }
        CHECK(ok);
        lt_free(&u);
    }
    compare_logp(&t, variant);
    check_merged(&t, variant, model_path);
    lt_free(&t);
}

/* the importer's refusals */
static void check_errors(llava_model *m) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/lora/peft", test_fixture("export"));
    lt_spec sp;
    llava_trainer t;
    struct { const char *what; int rank; float alpha; unsigned drop_targets; int code; const char *needle; } cases[] = {
        {"rank", 8, 8.0f, 0, ERR_ARGS, "rank r=4"},
        {"alpha", 4, 16.0f, 0, ERR_ARGS, "lora_alpha 8"},
        {"lm_head not a job target", 4, 8.0f, LT_LM_HEAD, ERR_ARGS, "base_model.model.lm_head.lora_A.weight"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        spec_of("lora", &sp);
        sp.rank = cases[i].rank;
        sp.alpha = cases[i].alpha;
        sp.targets &= ~cases[i].drop_targets;
        CHECK_EQ_INT(lt_init(&t, m, &sp), 0);
        memset(t.store, 0x5a, sizeof(float) * (size_t)t.nstore);
        int rc = jx_read_peft(&t, dir);
        printf("  refused (%s): exit %d: %s\n", cases[i].what, rc, err_msg());
        CHECK_EQ_INT(rc, cases[i].code);
        CHECK(strstr(err_msg(), cases[i].needle) != NULL);
        CHECK(t.store[0] == t.store[t.nstore - 1]); /* nothing was written into the trainer */
        err_clear();
        lt_free(&t);
    }
    /* a job target the adapter lacks */
    spec_of("full", &sp);
    sp.targets |= LT_K;
    snprintf(dir, sizeof dir, "%s/full/peft", test_fixture("export"));
    CHECK_EQ_INT(lt_init(&t, m, &sp), 0);
    int rc = jx_read_peft(&t, dir);
    printf("  refused (k_proj missing): exit %d: %s\n", rc, err_msg());
    CHECK_EQ_INT(rc, ERR_ARGS);
    CHECK(strstr(err_msg(), "base_model.model.model.language_model.layers.0.self_attn.k_proj.lora_A.weight") != NULL);
    err_clear();
    lt_free(&t);
    /* a tensor of the wrong shape (another base model): copy PEFT's file with one tensor cut in half */
    char src[1200], bad[1024], path[1200];
    snprintf(src, sizeof src, "%s/lora/peft/adapter_model.safetensors", test_fixture("export"));
    snprintf(bad, sizeof bad, "%s/badshape", TMP);
    CHECK_EQ_INT(fs_mkdirs(bad), 0);
    st_file *f = NULL;
    CHECK_EQ_INT(st_open(src, &f), 0);
    stw *w = stw_new();
    const char *victim = "base_model.model.model.language_model.layers.1.mlp.up_proj.lora_A.weight";
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *s = st_at(f, i);
        int64_t shape[2] = {s->shape[0], s->shape[1]};
        if (!strcmp(s->name, victim)) shape[1] /= 2;
        stw_add(w, s->name, "F32", s->ndim, shape, s->data);
    }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", bad);
    CHECK_EQ_INT(stw_write(w, path), 0);
    stw_free(w);
    st_close(f);
    char *cfg;
    size_t n;
    snprintf(src, sizeof src, "%s/lora/peft/adapter_config.json", test_fixture("export"));
    CHECK_EQ_INT(fs_read_all(src, &cfg, &n), 0);
    snprintf(path, sizeof path, "%s/adapter_config.json", bad);
    FILE *fp = fopen(path, "w");
    fwrite(cfg, 1, n, fp);
    fclose(fp);
    free(cfg);
    spec_of("lora", &sp);
    CHECK_EQ_INT(lt_init(&t, m, &sp), 0);
    rc = jx_read_peft(&t, bad);
    printf("  refused (shape): exit %d: %s\n", rc, err_msg());
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK(strstr(err_msg(), victim) != NULL);
    CHECK(strstr(err_msg(), "shape [4, 32]") && strstr(err_msg(), "expect [4, 64]"));
    err_clear();
    lt_free(&t);
}

/* the CLI's route: job -> model -> trainer -> newest checkpoint / a step number */
static void check_checkpoint(const char *model_path) {
    char out[1024], yaml[4096];
    snprintf(out, sizeof out, "%s/run", TMP);
    snprintf(yaml, sizeof yaml,
             "job:\n  name: exp\n  output_dir: %s\nmodel:\n  path: %s\nlora:\n  rank: 4\n  alpha: 8\n  use_rslora: true\n"
             "  targets: [q_proj, v_proj, vision:q_proj, vision:k_proj, vision:v_proj, vision:out_proj, vision:fc1, vision:fc2]\n"
             "  vision_layers: 1\n  train_new_token_embeddings: true\n"
             "data:\n  path: %s/none.h5\ntrain:\n  full_modules: [mm_projector]\n",
             out, model_path, TMP);
    job_config j;
    job_report rep;
    job_report_init(&rep);
    int rc = job_load_string(yaml, strlen(yaml), "exp.yaml", NULL, 0, 0, &j, &rep);
    job_report_print(&rep, stdout);
    job_report_free(&rep);
    CHECK_EQ_INT(rc, 0);
    if (rc) return;
    jx_job x;
    CHECK_EQ_INT(jx_open(&j, &x), 0);
    set_state(&x.t, "full");
    /* a checkpoint as the trainer writes it: the state at step 7, zeros at step 3 */
    int nt = lt_tensor_count(&x.t);
    ckpt_tensor *ck = calloc((size_t)nt * 3, sizeof *ck);
    char (*names)[CKPT_MAX_NAME] = calloc((size_t)nt, sizeof *names);
    float *zero = calloc((size_t)x.t.nstore * 2 + 1, sizeof(float));
    float *copy = malloc(sizeof(float) * (size_t)x.t.nstore);
    memcpy(copy, x.t.store, sizeof(float) * (size_t)x.t.nstore);
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&x.t, i);
        snprintf(names[i], CKPT_MAX_NAME, "%s", ti->name);
        for (char *c = names[i]; *c; c++)
            if (*c == '/') *c = ':';
        for (int k = 0; k < 3; k++)
            ck[k * nt + i] = (ckpt_tensor){names[i], ti->group, k ? zero + (k - 1) * x.t.nstore + off : ti->data,
                                           ti->numel, ti->ndim, {ti->shape[0], ti->shape[1]}};
        off += ti->numel;
    }
    ckpt_state s;
    memset(&s, 0, sizeof s);
    s.params = ck;
    s.adam_m = ck + nt;
    s.adam_v = ck + 2 * nt;
    s.ntensors = nt;
    s.step = 7;
    CHECK_EQ_INT(ckpt_write(out, &s), 0);
    memset(x.t.store, 0, sizeof(float) * (size_t)x.t.nstore);
    s.step = 3;
    CHECK_EQ_INT(ckpt_write(out, &s), 0);
    char path[1200];
    int64_t step = -1;
    CHECK_EQ_INT(jx_load_checkpoint(&x, NULL, path, sizeof path, &step), 0);
    CHECK_EQ_INT(step, 7);
    CHECK(!memcmp(copy, x.t.store, sizeof(float) * (size_t)x.t.nstore));
    CHECK_EQ_INT(jx_load_checkpoint(&x, "3", path, sizeof path, &step), 0);
    CHECK_EQ_INT(step, 3);
    CHECK(x.t.store[0] == 0.0f);
    char none[1200];
    CHECK_EQ_INT(jx_load_checkpoint(&x, "5", none, sizeof none, &step), ERR_ARGS);
    err_clear();
    char *card = NULL;
    CHECK_EQ_INT(jx_model_card(&j, path, 3, &card), 0);
    if (getenv("EXPORT_DEBUG")) fputs(card, stdout);
    CHECK(card && strstr(card, "library_name: peft") && strstr(card, "| LoRA rank / alpha / dropout | 4 / 8 / 0.05 |"));
    free(card);
    printf("  checkpoint route: latest = step 7 read bit-identical, --checkpoint 3 read, 5 refused\n");
    free(ck);
    free(names);
    free(zero);
    free(copy);
    jx_close(&x);
    job_free(&j);
}

int main(void) {
    TMP = test_tmpdir();
    S = fx_open(test_fixture("export/state.h5"));
    STEP = fx_open(test_fixture("step/step.h5"));
    step_pairs_load(STEP, pairs);
    char fp32[1024];
    snprintf(fp32, sizeof fp32, "%s/fp32.h5", TMP);
    mh5_opts o;
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    CHECK_EQ_INT(mh5_import(test_fixture("llava_tiny/model"), fp32, &o), 0);
    llava_model m;
    CHECK_EQ_INT(mh5_load(fp32, &m), 0);
    run_variant("lora", &m, fp32);
    run_variant("full", &m, fp32);
    check_errors(&m);
    llava_model_free(&m);
    check_checkpoint(fp32);
    step_pairs_free(pairs);
    H5Fclose(S);
    H5Fclose(STEP);
    TEST_MAIN_END();
}
