/* test_trainer_simt — the trainer (src/train/trainer.c: set-up, optimiser steps with grad_accum, the step's gradient
 * sum, clipping, AdamW, checkpoints, resume, validation) on a device backend without a GPU: ops_simt() (the CUDA
 * kernels run by the CPU executor behind the device memory interface: the trainer reaches values, gradients and
 * moments only through the table) against the CPU bf16 mode, on the demo (make-demo --pairs 12, imported as
 * tests/demo_inputs.sh does; 2 pairs per micro-batch, grad_accum 2, 3 steps, a checkpoint every 2 steps):
 *   A  CPU bf16 mode, 3 steps;
 *   B  ops_simt, 3 steps: every trainable value after step 3 and the validation accuracy equal A's;
 *   C  ops_simt restored from A's checkpoint of step 2 (written on the CPU, read through the device upload), then
 *      step 3: equal to A's (a resume across backends is bit-identical);
 *   D  the CPU bf16 mode restored from B's checkpoint of step 2 (written through the device download): equal too.
 * Tolerance 0 while kernels/simt/TEMP_fallbacks.cpp is linked (test_step_simt.c says why). With every kernel family
 * merged (simt_temp_fallbacks absent) the two backends differ by rounding (test_step_simt.c bounds one step), so
 * here C and D must only run (a checkpoint moves across backends), and E, ops_simt restored from B's own step 2,
 * must equal B bit for bit (a backend resumes itself exactly). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "io/err.h"
#include "kops.h"
#include "simt/simt_guard.h"
#include "test.h"
#include "io/fsutil.h"
#include "train/metrics.h"
#include "train/trainer.h"

extern const int simt_temp_fallbacks __attribute__((weak));

static char dir[1024], model[1200], data[1200];

static void config(tr_config *c, const char *out, const ops *o) {
    memset(c, 0, sizeof *c);
    lt_spec_default(&c->spec);
    c->spec.rank = 4;
    c->spec.alpha = 8.0f;
    c->spec.targets = LT_Q | LT_V | LT_PROJ | LT_LM_HEAD;
    c->spec.train_token_rows = 1;
    c->spec.act_dtype = DT_BF16;
    c->spec.ops = o;
    c->name = "simt";
    c->model_path = model;
    c->data_path = data;
    c->output_dir = out;
    c->device = TR_DEVICE_CPU;
    c->threads = 1;
    c->epochs = 1;
    c->max_steps = 3;
    c->micro_batch_pairs = 2;
    c->grad_accum = 2;
    c->warmup_steps = 1;
    c->lr = 2e-3;
    c->weight_decay = 0.01;
    c->max_grad_norm = 0.5;
    c->orpo_beta = 0.1;
    c->cosine = 1;
    c->nll_all = 1;
    c->seed = 1;
    c->ckpt_every = 2;
    c->eval_max_pairs = 3;
    c->job_hash = 0x5157;
    c->job_yaml = "test: simt\n";
}

/* every trainable value of a trainer, on the host (through its table) */
static float *values(trainer *t, int64_t *n) {
    llava_trainer *lt = tr_lt(t);
    *n = lt->nstore;
    float *v = malloc(sizeof(float) * (size_t)(*n ? *n : 1));
    lt->of->download(&lt->ctx, v, lt->store, sizeof(float) * (size_t)*n);
    CHECK_EQ_INT(lt->of->sync(&lt->ctx), 0);
    return v;
}

/* a run: open, optionally restore `from`, train to step 3; its values and accuracy */
static float *run(const char *name, const ops *o, const char *from, int64_t *n, double *acc) {
    char out[1300];
    snprintf(out, sizeof out, "%s/%s", dir, name);
    tr_config c;
    config(&c, out, o);
    trainer *t = NULL;
    int rc = tr_open(&c, TR_TRAIN, &t);
    if (rc) fprintf(stderr, "%s: %s\n", name, err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) exit(1);
    CHECK(!tr_lt(t)->o->host_mem == (o != NULL));
    if (from) {
        tr_restored got;
        rc = tr_restore(t, from, 1, &got);
        if (rc) fprintf(stderr, "%s: %s\n", name, err_msg());
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(got.step, 2);
        free(got.job_yaml);
    }
    met_log *m = NULL;
    CHECK_EQ_INT(fs_mkdirs(out), 0);
    CHECK_EQ_INT(met_open(out, from ? 2 : 0, &m), 0);
    tr_summary s;
    rc = tr_train(t, m, &s);
    CHECK_EQ_INT(met_close(m, NULL), 0);
    if (rc) fprintf(stderr, "%s: %s\n", name, err_msg());
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(tr_step(t), 3);
    *acc = s.acc_after;
    float *v = values(t, n);
    tr_close(t);
    return v;
}

static void same(const char *what, const float *a, const float *b, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], 4) != 0;
    if (bad) fprintf(stderr, "  %s: %lld of %lld values differ\n", what, (long long)bad, (long long)n);
    CHECK_EQ_INT(bad, 0);
}

int main(void) {
    const char *bin = getenv("ORPO_BIN");
    if (!bin) {
        printf("ORPO_BIN not set: skipped\n");
        return 77;
    }
    simt_guard(1); /* ops_simt's device memory: inaccessible to host code (simt_guard.h) */
    const int exact = &simt_temp_fallbacks != NULL;
    snprintf(dir, sizeof dir, "%s", test_tmpdir());
    snprintf(model, sizeof model, "%s/model.h5", dir);
    snprintf(data, sizeof data, "%s/data.h5", dir);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' make-demo --out '%s/demo' --pairs 12 >/dev/null 2>&1 && '%s' import-model --from "
             "'%s/demo/model' --out '%s' >/dev/null 2>&1 && '%s' import-data --parquet '%s/demo/data/rlaif-v-demo.parquet' "
             "--model '%s' --out '%s' --val-fraction 0.25 --seed 1 >/dev/null 2>&1", bin, dir, bin, dir, model, bin, dir,
             model, data);
    CHECK_EQ_INT(system(cmd), 0);
    int64_t na, nb, nc, nd;
    double aa, ab, ac, ad;
    float *a = run("A", NULL, NULL, &na, &aa);
    float *b = run("B", ops_simt(), NULL, &nb, &ab);
    char ck[1400];
    snprintf(ck, sizeof ck, "%s/A/checkpoints/step-00000002.h5", dir);
    float *c = run("C", ops_simt(), ck, &nc, &ac);
    snprintf(ck, sizeof ck, "%s/B/checkpoints/step-00000002.h5", dir);
    float *d = run("D", NULL, ck, &nd, &ad);
    CHECK(na == nb && na == nc && na == nd && na > 0);
    if (na == nb && na == nc && na == nd) {
        if (exact) {
            same("B (simt) vs A (cpu bf16)", b, a, na);
            same("C (simt from A's step 2) vs A", c, a, na);
            same("D (cpu bf16 from B's step 2) vs A", d, a, na);
            CHECK(ab == aa && ac == aa && ad == aa);
        } else { /* each backend resumes itself bit for bit: E, ops_simt from B's own step 2, against B */
            int64_t ne;
            double ae;
            float *e = run("E", ops_simt(), ck, &ne, &ae);
            CHECK_EQ_INT(ne, nb);
            if (ne == nb) same("E (simt from B's step 2) vs B (simt)", e, b, nb);
            CHECK(ae == ab);
            free(e);
        }
    }
    printf("  %lld trainable values after 3 steps; validation accuracy A %.3f B %.3f C %.3f D %.3f (%s)\n",
           (long long)na, aa, ab, ac, ad, exact ? "bit-identical expected" : "resumes bit-identical expected");
    free(a), free(b), free(c), free(d);
    TEST_MAIN_END();
}
