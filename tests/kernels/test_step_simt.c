/* test_step_simt — the trainer's step on a device backend without a GPU: ops_simt() (the CUDA kernels run by the CPU
 * executor, with host memory behind the device memory interface: host_mem 0, so the trainer uploads the frozen
 * weights once and reaches every trainable value, gradient and moment through upload / download as on a GPU)
 * against the CPU bf16 mode (ops_cpu_bf16, host_mem 1: the model's arrays read in place) on the step fixture's tiny
 * model (tests/fixtures/step, tests/oracle/step_pairs.h): forward log-probs, ORPO loss, every gradient, the clipped
 * norm and the parameters after one AdamW step, and 6 greedy generated tokens, for
 *   lora_fp32     LoRA on every decoder linear, the projector and lm_head, dropout 0.1, the trainable token rows
 *                 (a <pad> put into each prompt's text, so that one of them gets a gradient);
 *   fullproj_fp32 the fully trained projector with vision LoRA on the last layer, per-layer recompute;
 *   lora_nf4      the NF4 base, LoRA on q, v and lm_head, recompute with the layer inputs offloaded to host
 *                 memory (copy_async / fences), logits in chunks of 4 rows recomputed in backward.
 * It also checks that the kernels ran (simt_launches), that the model read the uploaded copies during the run and
 * reads its own arrays again after lt_free, and the fp32 device ops (kernels/f32.cu) against ops_cpu().
 *
 * Tolerances. While kernels/simt/TEMP_fallbacks.cpp is linked (it defines simt_temp_fallbacks), the kernel families
 * not yet merged call ops_cpu_bf16 itself, and the rest (act.cu, f32.cu) evaluate the reference's expressions in
 * its order: everything must be bit-identical (0). A weight uploaded in bf16 is the per-use cast's value (both
 * round to nearest even once). With the real kernels of every family (after the merge, simt_temp_fallbacks absent)
 * reductions run in other orders (fixed trees: norms, softmax, log-sum-exp, GEMM accumulation), so activations may
 * differ by a bf16 ulp here and there, and the bounds are test_bf16.c's statistical ones for bf16 rounding noise
 * (u = 2^-8, random-walk growth over the tiny model's chain): the loss within 2e-3 relative, every gradient tensor
 * at cosine >= 0.999; after one AdamW step every parameter within 2 lr + 1e-6 of the reference's (step 1 moves a
 * value by lr |m^| / (sqrt(v^) + eps) <= lr whatever the gradient, so two runs differ by at most 2 lr; decay is the
 * same on both); the generated tokens are then not compared (a near-tie may flip). */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_mem.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "kcheck.h"
#include "simt/simt_guard.h"
#include "kops_f32.h"
#include "model/llava_size.h"
#include "oracle/step_pairs.h"
#include "train/adamw.h"

extern const int simt_temp_fallbacks __attribute__((weak));

static int exact; /* 1: bit-identical expected (the fallbacks are linked) */
static lt_pair pairs[2];

typedef struct run_out {
    float *logp;             /* forward log-probs */
    int64_t nrows;
    double loss, gnorm;
    float *grad, *param;     /* every trainable value's gradient (before clipping) and value after AdamW */
    int64_t n;
    int32_t gen[2 * 6], ngen[2];
    int64_t ntensors, *numel;
} run_out;

/* deterministic values in [-scale, scale) */
static void fill(float *x, int64_t n, uint64_t *s, float scale) {
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = scale * ((float)(*s >> 40) / (float)(1ull << 24) * 2.0f - 1.0f);
    }
}

typedef struct variant {
    const char *name;
    int nf4;
    void (*spec)(lt_spec *);
    void (*strat)(ls_strategy *);
} variant;

static void spec_lora(lt_spec *s) {
    s->targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
    s->dropout = 0.1f;
    s->train_token_rows = 1;
}
static void spec_fullproj(lt_spec *s) {
    s->targets = LT_Q | LT_V;
    s->full_projector = 1;
    s->vision_targets = LTV_Q | LTV_K | LTV_V | LTV_OUT | LTV_FC1 | LTV_FC2;
    s->vision_layers = 1;
    s->grad_ckpt = 1;
}
static void spec_nf4(lt_spec *s) {
    s->targets = LT_Q | LT_V | LT_LM_HEAD;
    s->grad_ckpt = 1;
}
static void strat_recompute(ls_strategy *st) { st->recompute = 1; }
static void strat_offload(ls_strategy *st) {
    st->recompute = 1;
    st->offload = 1;
    st->logits_keep = 0;
    st->logits_chunk = 4;
}

/* one step of variant v on table o (NULL: the CPU bf16 mode) */
static void run(llava_model *m, const variant *v, const ops *o, run_out *r) {
    memset(r, 0, sizeof *r);
    lt_spec sp;
    lt_spec_default(&sp);
    sp.rank = 4;
    sp.alpha = 8.0f;
    sp.act_dtype = DT_BF16;
    v->spec(&sp);
    sp.ops = o;
    llava_model keep = *m;
    const dec_layer dec0 = m->w.dec[0];
    llava_trainer t;
    int rc = lt_init(&t, m, &sp);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    ls_dims d = {512, 512, 16, 2, 6};
    ls_strategy st;
    ls_strategy_default(&st, DT_BF16);
    if (v->strat) v->strat(&st);
    rc = lt_plan_ex(&t, &d, &st);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (o) { /* a device: the model reads the uploaded copies */
        CHECK(m->w.embed != keep.w.embed && m->w.lm_head.w != keep.w.lm_head.w && m->w.vis != NULL);
        CHECK(m->w.dec[0].in_norm != dec0.in_norm && m->w.patch_w != keep.w.patch_w);
    } else {
        CHECK(m->w.embed == keep.w.embed && m->w.dec[0].q.w == dec0.q.w);
    }
    /* initial values: the same pseudo-random ones on both, through the table's upload */
    r->n = t.nstore;
    float *init = malloc(sizeof(float) * (size_t)r->n);
    uint64_t s = 0x5eedull;
    fill(init, r->n, &s, 0.05f);
    t.of->upload(&t.ctx, t.store, init, sizeof(float) * (size_t)r->n);
    free(init);
    /* forward, ORPO, backward */
    orpo_metrics mt;
    rc = step_grads_logp(&t, pairs, 3, &mt, &r->logp, &r->nrows);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    r->loss = mt.loss;
    r->grad = malloc(sizeof(float) * (size_t)r->n);
    t.of->download(&t.ctx, r->grad, t.gstore, sizeof(float) * (size_t)r->n);
    r->ntensors = lt_tensor_count(&t);
    r->numel = malloc(sizeof(int64_t) * (size_t)r->ntensors);
    for (int i = 0; i < r->ntensors; i++) r->numel[i] = lt_tensor(&t, i)->numel;
    /* one AdamW step with clipping on the trainer's fp32 table, the moments in its memory */
    adamw_opt opt;
    adamw_init(&opt);
    CHECK_EQ_INT(adamw_bind(&opt, t.of, &t.ctx), 0);
    float *mom = t.of->mem_alloc(&t.ctx, sizeof(float) * 2 * (size_t)r->n, MEM_DEVICE, "test: moments");
    adamw_tensor *at = calloc((size_t)r->ntensors, sizeof *at);
    int64_t off = 0;
    for (int i = 0; i < r->ntensors; i++) {
        const lt_tensor_info *ti = lt_tensor(&t, i);
        at[i] = (adamw_tensor){ti->name, ti->data, ti->grad, mom + off, mom + r->n + off, ti->numel};
        off += ti->numel;
    }
    adamw_group g = {"all", 1e-3, 0.01, at, r->ntensors};
    r->gnorm = adamw_clip(&opt, &g, 1, 0.5);
    CHECK_EQ_INT(adamw_step(&opt, &g, 1, 1.0), 0);
    r->param = malloc(sizeof(float) * (size_t)r->n);
    t.of->download(&t.ctx, r->param, t.store, sizeof(float) * (size_t)r->n);
    CHECK_EQ_INT(t.of->sync(&t.ctx), 0);
    /* greedy generation of the two prompts (KV cache, logits downloaded) */
    lt_gen_opts go;
    lt_gen_opts_default(&go);
    go.max_new = 6;
    rc = lt_generate(&t, pairs, 2, &go, NULL, r->gen, r->ngen);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    t.of->mem_free(&t.ctx, mom, MEM_DEVICE);
    adamw_release(&opt);
    free(at);
    lt_free(&t);
    /* the model's own arrays again */
    CHECK(m->w.embed == keep.w.embed && m->w.lm_head.w == keep.w.lm_head.w && m->w.patch_w == keep.w.patch_w);
    CHECK(m->w.dec[0].q.w == dec0.q.w && m->w.dec[0].q.dtype == dec0.q.dtype && m->w.proj1.w == keep.w.proj1.w);
}

static void run_free(run_out *r) {
    free(r->logp);
    free(r->grad);
    free(r->param);
    free(r->numel);
}

static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    if (aa == 0 && bb == 0) return 1.0;
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

static void compare(const variant *v, const run_out *k, const run_out *c) {
    CHECK_EQ_INT(k->nrows, c->nrows);
    CHECK_EQ_INT(k->n, c->n);
    if (k->nrows != c->nrows || k->n != c->n) return;
    if (exact) {
        CHECK(!memcmp(k->logp, c->logp, sizeof(float) * (size_t)k->nrows));
        CHECK(k->loss == c->loss);
        CHECK(k->gnorm == c->gnorm);
        int64_t bad = 0;
        for (int64_t i = 0; i < k->n; i++) bad += memcmp(&k->grad[i], &c->grad[i], 4) != 0;
        CHECK_EQ_INT(bad, 0);
        bad = 0;
        for (int64_t i = 0; i < k->n; i++) bad += memcmp(&k->param[i], &c->param[i], 4) != 0;
        CHECK_EQ_INT(bad, 0);
        CHECK(!memcmp(k->ngen, c->ngen, sizeof k->ngen) && !memcmp(k->gen, c->gen, sizeof k->gen));
        printf("  %-14s compared bit for bit: %lld log-probs, loss %.9g, |g| %.9g, %lld gradients and parameters, %d + %d "
               "generated tokens\n", v->name, (long long)k->nrows, k->loss, k->gnorm, (long long)k->n, k->ngen[0],
               k->ngen[1]);
        return;
    }
    double rel = fabs(k->loss - c->loss) / fabs(c->loss), worst = 1.0, dp = 0;
    int64_t off = 0;
    for (int i = 0; i < k->ntensors; i++) {
        double cs = cosine(k->grad + off, c->grad + off, k->numel[i]);
        if (cs < worst) worst = cs;
        off += k->numel[i];
    }
    for (int64_t i = 0; i < k->n; i++) dp = fmax(dp, fabs((double)k->param[i] - c->param[i]));
    printf("  %-14s loss rel diff %.1e (<= 2e-3), worst gradient cosine %.6f (>= 0.999), max parameter diff %.2e "
           "(<= 2 lr + 1e-6)\n", v->name, rel, worst, dp);
    CHECK(rel <= 2e-3);
    CHECK(worst >= 0.999);
    CHECK(dp <= 2e-3 + 1e-6);
}

/* the fp32 device ops (kernels/f32.cu) against ops_cpu(), bit for bit, with repeated rows in scatter_add_rows */
static void f32_ops(void) {
    const ops *f = ops_simt()->f32, *r = ops_cpu();
    CHECK(f != NULL && f->scale == kf_scale && f->adamw != NULL && f->linear_fwd == NULL);
    uint64_t s = 7;
    const int64_t R = 37, D = 29, n = R * D, NI = 53;
    float *src = kc_f32(n, &s, 1.0f), *a = kc_f32(n, &s, 1.0f), *b = kc_dup(a, sizeof(float) * n);
    int64_t rows[53];
    for (int i = 0; i < NI; i++) rows[i] = (i * 7 + 3) % R; /* 53 > 37: rows repeat */
    float *src2 = kc_f32(NI * D, &s, 1.0f);
    long before = simt_launches();
    f->scatter_add_rows(&kc_kctx, a, src2, rows, NI, D);
    r->scatter_add_rows(&kc_rctx, b, src2, rows, NI, D);
    CHECK(!memcmp(a, b, sizeof(float) * n));
    f->scale(&kc_kctx, a, n, 0.37f);
    r->scale(&kc_rctx, b, n, 0.37f);
    CHECK(!memcmp(a, b, sizeof(float) * n));
    f->add_inplace(&kc_kctx, a, src, n);
    r->add_inplace(&kc_rctx, b, src, n);
    CHECK(!memcmp(a, b, sizeof(float) * n));
    f->scatter_rows(&kc_kctx, a, src2, rows, 20, D); /* rows 0..19 of the list are distinct */
    r->scatter_rows(&kc_rctx, b, src2, rows, 20, D);
    CHECK(!memcmp(a, b, sizeof(float) * n));
    f->gather_rows(&kc_kctx, src2, a, rows, NI, D);
    float *g2 = kc_dup(src2, sizeof(float) * NI * D);
    r->gather_rows(&kc_rctx, g2, b, rows, NI, D);
    CHECK(!memcmp(src2, g2, sizeof(float) * NI * D));
    f->copy(&kc_kctx, a, src, n);
    CHECK(!memcmp(a, src, sizeof(float) * n));
    f->zero(&kc_kctx, a, n);
    r->zero(&kc_rctx, b, n);
    CHECK(!memcmp(a, b, sizeof(float) * n));
    KC_RAN(before);
    free(src), free(a), free(b), free(src2), free(g2);
}

int main(void) {
    exact = &simt_temp_fallbacks != NULL;
    simt_guard(1); /* ops_simt's device memory: inaccessible to host code (simt_guard.h) */
    printf("  mode: %s\n", exact ? "TEMP_fallbacks linked: bit-identical" : "every kernel family: bounded");
    f32_ops();
    hid_t F = fx_open(test_fixture("step/step.h5"));
    step_pairs_load(F, pairs);
    char fp32[1024], nf4[1024];
    step_models(fp32, nf4);
    static const variant vs[] = {{"lora_fp32", 0, spec_lora, NULL},
                                 {"fullproj_fp32", 0, spec_fullproj, strat_recompute},
                                 {"lora_nf4", 1, spec_nf4, strat_offload}};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        llava_model m;
        CHECK_EQ_INT(mh5_load(vs[i].nf4 ? nf4 : fp32, &m), 0);
        if (i == 0) /* a <pad> in each prompt's text: a trainable embedding row with a gradient (lora_fp32) */
            for (int p = 0; p < 2; p++) {
                CHECK(pairs[p].n_prefix > 2 && pairs[p].prefix[1] != m.cfg.image_token);
                ((int32_t *)pairs[p].prefix)[1] = m.cfg.pad_token;
            }
        run_out k, c;
        long before = simt_launches();
        run(&m, &vs[i], ops_simt(), &k);
        KC_RAN(before);
        run(&m, &vs[i], NULL, &c);
        compare(&vs[i], &k, &c);
        run_free(&k);
        run_free(&c);
        llava_model_free(&m);
    }
    step_pairs_free(pairs);
    H5Fclose(F);
    TEST_MAIN_END();
}
