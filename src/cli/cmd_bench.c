/* orpo-hpc bench: timings of whole pieces, printed for docs/performance.md (never asserted by tests).
 *
 *   bench forward --model DIR|model.h5 [--image HxW] [--text N] [--iters N]
 *       the trainer's forward (lt_forward, evaluation, a forward-only plan; the base model) of one pair: BOS, the
 *       image tokens and N text tokens as the prompt, answers of one token: vision tower, projector, pack,
 *       decoder, lm_head on the text positions. Prints ms per forward, tokens/s (packed tokens) and images/s.
 *   bench step --model DIR|model.h5 [--image HxW] [--pairs N] [--prompt N] [--answer N] [--iters N] [--ranks N]
 *       (--model demo: the demo model of `make demo`, demo/model)
 *       one training micro-batch (forward, backward; LoRA on every decoder linear, projector, lm_head) with the
 *       prompt+image prefix shared by both answers and with a copy per answer; prints both and the speed-up.
 *       --ranks N (N > 1): N MPI ranks (started by mpirun: the command starts `mpirun -np N` itself when no
 *       launcher did), one micro-batch each; after each backward the ranks add their gradients as the trainer does
 *       (dist_fold_*: the flat gradient buffer and the 13 loss sums, after a barrier so that the time is the
 *       sum's, not the ranks' imbalance). Prints the bytes summed per round and the time of the sum beside the
 *       step time, with its share of the step (rank 0's times; docs/parallel.md, Cost). --values N sums N values
 *       instead of the model's trainable ones (the size of a bigger model's LoRA: 42 M for LLaVA-NeXT-7B, rank 16
 *       on every decoder linear). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/attn_fused.h"
#include "backend/devctx.h"
#include "backend/device.h"
#include "backend/tensor.h"
#include "cli/cli.h"
#include "demo/demo.h"
#include "dist/dist.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "io/mem.h"
#include "job/job.h"
#include "job/job_plan.h"
#include "model/llava_size.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "train/adamw.h"
#include "train/orpo.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((rng_state * 2685821657736338717ull) >> 40) / (float)(1 << 23) - 1.0f;
}

/* "--model demo" names the demo model that `make demo` (make-demo --out demo) writes */
static int load_model(const char *model, llava_model *m) {
    if (!strcmp(model, "demo")) {
        if (fs_is_dir("demo/model")) return llava_model_load_hf("demo/model", m);
        return err_set(ERR_ARGS, "--model demo: no demo/model here; run `make demo` or `orpo-hpc make-demo --out demo` first");
    }
    return fs_is_dir(model) ? llava_model_load_hf(model, m) : mh5_load(model, m);
}

static int bench_forward(int argc, char **argv) {
    const char *model = NULL;
    int h = 480, w = 640, ntext = 64, iters = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--model") && v) { model = v; i++; }
        else if (!strcmp(argv[i], "--image") && v && sscanf(v, "%dx%d", &h, &w) == 2) i++;
        else if (!strcmp(argv[i], "--text") && v) { ntext = atoi(v); i++; }
        else if (!strcmp(argv[i], "--iters") && v) { iters = atoi(v); i++; }
        else return err_set(ERR_ARGS, "bench forward: unexpected argument '%s'", argv[i]), cli_fail();
    }
    if (!model) return err_set(ERR_ARGS, "bench forward: --model DIR|model.h5 is required"), cli_fail();
    if (h < 1 || w < 1 || ntext < 1 || iters < 1) return err_set(ERR_ARGS, "bench forward: sizes and counts must be >= 1"), cli_fail();
    llava_model m;
    if (load_model(model, &m)) return cli_fail();
    const llava_config *c = &m.cfg;
    int P = anyres_num_patches(&c->anyres, h, w);
    int64_t nimg = anyres_num_image_tokens(&c->anyres, h, w), npre = 1 + nimg + ntext;
    if (npre > INT32_MAX - 2)
        return err_set(ERR_ARGS, "bench forward: a prompt of %lld tokens exceeds %d", (long long)npre, INT32_MAX - 2),
               cli_fail();
    size_t npx = (size_t)P * 3 * (size_t)c->v_image * (size_t)c->v_image;
    float *pix = mem_alloc(sizeof(float) * npx, "bench: pixels");
    for (size_t i = 0; i < npx; i++) pix[i] = frand();
    int32_t *pre = mem_alloc(sizeof(int32_t) * (size_t)npre, "bench: token ids");
    for (int64_t i = 0; i < npre; i++) pre[i] = i < 1 ? c->bos : (i <= nimg ? c->image_token : (int32_t)(3 + i % 50));
    const int32_t eos = c->eos;
    lt_pair pair = {pix, P, h, w, pre, (int32_t)npre, &eos, &eos, 1, 1, NULL}; /* answers of one token */
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = 0; /* the model's own forward */
    ls_dims dims = {npre + 2, npre + 2, P, 0, 0};
    ls_strategy st;
    ls_strategy_default(&st, sp.act_dtype);
    st.forward_only = 1;
    llava_trainer t;
    if (lt_init(&t, &m, &sp) || lt_plan_ex(&t, &dims, &st)) return cli_fail();
    char desc[512];
    llava_config_describe(c, desc, sizeof desc);
    printf("model: %s\n%s\nimage %dx%d -> %d tiles, %lld image tokens; %d text tokens; prompt %lld + answers of 1 token: "
           "%lld packed tokens\n", model, desc, h, w, P, (long long)nimg, ntext, (long long)npre, (long long)(npre + 2));
    double best = 1e30, sum = 0;
    for (int it = 0; it <= iters; it++) { /* iteration 0 warms up */
        lt_batch bt = {&pair, 1, 0, 1};
        lt_fwd fw;
        double t0 = log_now();
        if (lt_forward(&t, &bt, &fw)) return cli_fail();
        double dt = log_now() - t0;
        if (it == 0) continue;
        sum += dt;
        if (dt < best) best = dt;
    }
    printf("forward: best %.2f ms, mean %.2f ms over %d runs; %.0f tokens/s, %.2f images/s (best)\n", 1e3 * best,
           1e3 * sum / iters, iters, (double)(npre + 2) / best, 1.0 / best);
    free(pix); free(pre);
    lt_free(&t);
    llava_model_free(&m);
    return 0;
}

/* bench step --ranks N: the N ranks from mpirun. With no launcher, this command runs itself again as
 * `mpirun -np N THIS-PROGRAM bench step ...` (does not return then); argv starts at "step". */
/* an error of bench step: printed; with several ranks the others are told and the job ends (dist_close) */
static int bench_fail(dist *d) {
    int rc = cli_fail();
    dist_close(d, err_code());
    return rc;
}

static int bench_ranks_open(int ranks, int argc, char **argv, dist **d) {
    *d = NULL;
    if (ranks <= 1) return ERR_OK;
    dist_env_info e;
    dist_env(&e);
    if (e.world == 1 && !strcmp(e.source, "none")) {
        char self[4096], nps[16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0) return err_set(ERR_IO, "bench step --ranks %d: cannot find this program (/proc/self/exe)", ranks);
        self[n] = 0;
        snprintf(nps, sizeof nps, "%d", ranks);
        char **v = mem_alloc(sizeof(char *) * (size_t)(argc + 6), "bench: mpirun arguments");
        int k = 0;
        v[k++] = "mpirun";
        v[k++] = "-np";
        v[k++] = nps;
        v[k++] = self;
        v[k++] = "bench";
        for (int i = 0; i < argc; i++) v[k++] = argv[i];
        v[k] = NULL;
        fflush(stdout);
        execvp("mpirun", v);
        free(v);
        return err_set(ERR_ARGS, "bench step --ranks %d: cannot start mpirun (apt-get install openmpi-bin); or start the "
                       "ranks yourself: mpirun -np %d orpo-hpc bench step ... --ranks %d", ranks, ranks, ranks);
    }
    if (e.world != ranks)
        return err_set(ERR_ARGS, "bench step --ranks %d: the launcher (%s) started %d ranks", ranks, e.source, e.world);
    dist_opts o = {DIST_MPI, 300, NULL, 0};
    return dist_open(&o, d);
}

/* bench step: one ORPO micro-batch (forward, loss, backward) with and without prefix sharing */
static int bench_step(int argc, char **argv) {
    const char *model = NULL;
    int h = 480, w = 640, npairs = 2, prompt = 24, answer = 32, iters = 3, ranks = 1;
    int64_t values = 0; /* --values: the size of the summed buffer (0: the model's trainable values) */
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--model") && v) { model = v; i++; }
        else if (!strcmp(argv[i], "--image") && v && sscanf(v, "%dx%d", &h, &w) == 2) i++;
        else if (!strcmp(argv[i], "--ranks") && v) { ranks = atoi(v); i++; }
        else if (!strcmp(argv[i], "--values") && v) { values = atoll(v); i++; }
        else if (!strcmp(argv[i], "--pairs") && v) { npairs = atoi(v); i++; }
        else if (!strcmp(argv[i], "--prompt") && v) { prompt = atoi(v); i++; }
        else if (!strcmp(argv[i], "--answer") && v) { answer = atoi(v); i++; }
        else if (!strcmp(argv[i], "--iters") && v) { iters = atoi(v); i++; }
        else return err_set(ERR_ARGS, "bench step: unexpected argument '%s'", argv[i]), cli_fail();
    }
    if (!model) return err_set(ERR_ARGS, "bench step: --model DIR|model.h5 is required"), cli_fail();
    if (npairs < 1 || npairs > 64 || prompt < 2 || answer < 1 || iters < 1 || ranks < 1 || ranks > 1024 || values < 0 ||
        values > ((int64_t)1 << 34))
        return err_set(ERR_ARGS, "bench step: --pairs 1..64, --prompt >= 2, --answer >= 1, --iters >= 1, --ranks 1..1024, "
                       "--values 0..2^34"), cli_fail();
    if (values > 0 && ranks < 2) return err_set(ERR_ARGS, "bench step: --values needs --ranks N (N >= 2)"), cli_fail();
    dist *d = NULL;
    if (bench_ranks_open(ranks, argc, argv, &d)) return cli_fail();
    if (dist_rank(d) > 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 prints */
        return err_set(ERR_IO, "bench step: cannot open /dev/null"), bench_fail(d);
    llava_model m;
    if (load_model(model, &m)) return bench_fail(d);
    const llava_config *c = &m.cfg;
    int P = anyres_num_patches(&c->anyres, h, w);
    int64_t nimg = anyres_num_image_tokens(&c->anyres, h, w), npre = nimg + prompt;
    size_t npx = (size_t)P * 3 * (size_t)c->v_image * (size_t)c->v_image;
    float *pix = mem_alloc(sizeof(float) * npx, "bench: pixels");
    for (size_t i = 0; i < npx; i++) pix[i] = frand();
    int32_t *pre = mem_alloc(sizeof(int32_t) * (size_t)npre, "bench: prompt tokens");
    int32_t *ans = mem_alloc(sizeof(int32_t) * (size_t)(2 * answer), "bench: answer tokens");
    pre[0] = c->bos;
    for (int64_t i = 1; i < npre; i++) pre[i] = i <= nimg ? c->image_token : (int32_t)(3 + i % 50);
    for (int i = 0; i < 2 * answer; i++) ans[i] = (int32_t)(5 + (i * 7) % 40);
    ans[answer - 1] = ans[2 * answer - 1] = c->eos;
    lt_pair *pairs = mem_alloc(sizeof(lt_pair) * (size_t)npairs, "bench: pairs");
    for (int i = 0; i < npairs; i++)
        pairs[i] = (lt_pair){pix, P, h, w, pre, (int32_t)npre, ans, ans + answer, answer, answer, NULL};
    char desc[512];
    llava_config_describe(c, desc, sizeof desc);
    printf("model: %s\n%s\n%d pairs/micro-batch: image %dx%d (%d tiles, %lld image tokens), prompt %lld, answers %d+%d\n",
           model, desc, npairs, h, w, P, (long long)nimg, (long long)npre, answer, answer);
    double best[2] = {0, 0};
    int64_t toks[2] = {0, 0};
    for (int share = 1; share >= 0; share--) {
        lt_spec sp;
        lt_spec_default(&sp);
        sp.targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
        sp.share_prefix = share;
        llava_trainer t;
        if (lt_init(&t, &m, &sp) || lt_plan(&t, (int64_t)npairs * (2 * npre + 2 * answer), 2 * npairs * P,
                                            (int64_t)npairs * (npre + 2 * answer)))
            return bench_fail(d);
        float *dlogp = mem_alloc(sizeof(float) * (size_t)npairs * (size_t)(npre + 2 * answer), "bench: gradients");
        /* --ranks: the trainer's sums after a round's backward (src/train/trainer.c train_step) */
        int64_t nsum = values > 0 ? values : t.nstore;
        float *gsum = d ? mem_alloc(sizeof(float) * (size_t)nsum, "bench: gradient sum") : NULL;
        float *gmine = d && values > 0 ? mem_calloc((size_t)nsum, sizeof(float), "bench: --values gradient") : NULL;
        double sums[ORPO_ACCUM_N + 1], mine[ORPO_ACCUM_N + 1] = {0};
        double b = 1e30, fbest = 1e30, fmean = 0;
        for (int it = 0; it <= iters; it++) {
            lt_batch bt = {pairs, npairs, (uint32_t)it, 0};
            lt_fwd fw;
            double t0 = log_now();
            lt_zero_grads(&t);
            if (lt_forward(&t, &bt, &fw)) return bench_fail(d);
            for (int64_t r = 0; r < fw.nrows; r++) dlogp[r] = -1.0f / (float)fw.nrows;
            if (lt_backward(&t, dlogp)) return bench_fail(d);
            double dt = log_now() - t0;
            toks[share] = fw.ntok;
            if (it > 0 && dt < b) b = dt;
            if (d) { /* a barrier first: the time of the sum, not the wait for the slowest rank's backward */
                memset(gsum, 0, sizeof(float) * (size_t)nsum);
                memset(sums, 0, sizeof sums);
                if (dist_barrier(d, "bench: the end of the backward")) return bench_fail(d);
                double f0 = log_now();
                if (dist_fold_f32(d, gsum, gmine ? gmine : t.gstore, nsum, 1, "bench: the gradient sum") ||
                    dist_fold_f64(d, sums, mine, ORPO_ACCUM_N + 1, 1, "bench: the loss sums"))
                    return bench_fail(d);
                double ft = log_now() - f0;
                if (it > 0 && ft < fbest) fbest = ft;
                if (it > 0) fmean += ft / iters;
            }
        }
        best[share] = b;
        printf("%-22s step %.1f ms (best of %d), %.2f pairs/s, %.0f tokens/s (%lld packed tokens)\n",
               share ? "prefix shared:" : "prefix per answer:", 1e3 * b, iters, npairs / b, (double)toks[share] / b,
               (long long)toks[share]);
        if (d) {
            double bytes = 4.0 * (double)nsum + 8.0 * (ORPO_ACCUM_N + 1);
            printf("  all-reduce, %d ranks: %.2f MB (%lld gradient values%s + %d sums) per round, %.1f ms best / %.1f ms "
                   "mean; step %.1f ms = forward+backward %.1f + sum %.1f: the sum is %.1f%% of the step\n",
                   ranks, bytes / 1e6, (long long)nsum, gmine ? " (--values)" : "", ORPO_ACCUM_N + 1, 1e3 * fbest, 1e3 * fmean,
                   1e3 * (b + fbest), 1e3 * b, 1e3 * fbest, 100.0 * fbest / (b + fbest));
        }
        free(gsum);
        free(gmine);
        free(dlogp);
        lt_free(&t);
    }
    printf("speed-up from prefix sharing: %.2fx\n", best[0] / best[1]);
    if (d)
        printf("per optimiser step: one such sum per round of micro-batches (train.grad_accum rounds); not overlapped "
               "with the backward: every rank waits for the sum after its round's backward (docs/parallel.md, Cost)\n");
    free(pix); free(pre); free(ans); free(pairs);
    llava_model_free(&m);
    dist_close(d, ERR_OK);
    return 0;
}

/* bench generate: greedy decoding with the KV cache, prefill and per-token speed, batches of 1 and --batch prompts */
static int bench_generate(int argc, char **argv) {
    const char *model = NULL;
    int h = 480, w = 640, prompt = 24, new_tokens = 64, batch = 8, iters = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--model") && v) { model = v; i++; }
        else if (!strcmp(argv[i], "--image") && v && sscanf(v, "%dx%d", &h, &w) == 2) i++;
        else if (!strcmp(argv[i], "--prompt") && v) { prompt = atoi(v); i++; }
        else if (!strcmp(argv[i], "--new") && v) { new_tokens = atoi(v); i++; }
        else if (!strcmp(argv[i], "--batch") && v) { batch = atoi(v); i++; }
        else if (!strcmp(argv[i], "--iters") && v) { iters = atoi(v); i++; }
        else return err_set(ERR_ARGS, "bench generate: unexpected argument '%s'", argv[i]), cli_fail();
    }
    if (!model) return err_set(ERR_ARGS, "bench generate: --model DIR|model.h5 is required"), cli_fail();
    if (prompt < 2 || new_tokens < 1 || batch < 1 || batch > 64 || iters < 1)
        return err_set(ERR_ARGS, "bench generate: --prompt >= 2, --new >= 1, --batch 1..64, --iters >= 1"), cli_fail();
    llava_model m;
    if (load_model(model, &m)) return cli_fail();
    const llava_config *c = &m.cfg;
    int P = anyres_num_patches(&c->anyres, h, w);
    int64_t nimg = anyres_num_image_tokens(&c->anyres, h, w), npre = nimg + prompt;
    size_t npx = (size_t)P * 3 * (size_t)c->v_image * (size_t)c->v_image;
    float *pix = mem_alloc(sizeof(float) * npx, "bench: pixels");
    for (size_t i = 0; i < npx; i++) pix[i] = frand();
    int32_t *pre = mem_alloc(sizeof(int32_t) * (size_t)npre, "bench: prompt tokens");
    pre[0] = c->bos;
    for (int64_t i = 1; i < npre; i++) pre[i] = i <= nimg ? c->image_token : (int32_t)(3 + i % 50);
    lt_pair *pairs = mem_alloc(sizeof(lt_pair) * (size_t)batch, "bench: prompts");
    for (int i = 0; i < batch; i++) pairs[i] = (lt_pair){pix, P, h, w, pre, (int32_t)npre, NULL, NULL, 0, 0, NULL};
    char desc[512];
    llava_config_describe(c, desc, sizeof desc);
    printf("model: %s\n%s\nimage %dx%d (%d tiles, %lld image tokens), prompt %lld tokens, %d new tokens (no EOS)\n",
           model, desc, h, w, P, (long long)nimg, (long long)npre, new_tokens);
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_LM_HEAD; /* LoRA as in training */
    llava_trainer t;
    if (lt_init(&t, &m, &sp) || lt_plan(&t, (int64_t)batch * npre, batch * P, batch)) return cli_fail();
    int32_t *out = mem_alloc(sizeof(int32_t) * (size_t)batch * (size_t)new_tokens, "bench: tokens");
    int32_t *nout = mem_alloc(sizeof(int32_t) * (size_t)batch, "bench: tokens");
    lt_gen_opts g;
    lt_gen_opts_default(&g);
    g.eos = -1;
    int sizes[2] = {1, batch};
    for (int k = 0; k < (batch > 1 ? 2 : 1); k++) {
        double best_pre = 1e30, best = 1e30;
        for (int it = 0; it <= iters; it++) {
            g.max_new = 1; /* the prefill and the first token */
            double t0 = log_now();
            if (lt_generate(&t, pairs, sizes[k], &g, NULL, out, nout)) return cli_fail();
            double t1 = log_now();
            g.max_new = new_tokens;
            if (lt_generate(&t, pairs, sizes[k], &g, NULL, out, nout)) return cli_fail();
            double t2 = log_now();
            if (it > 0 && t1 - t0 < best_pre) best_pre = t1 - t0;
            if (it > 0 && t2 - t1 < best) best = t2 - t1;
        }
        double dec = best - best_pre;
        printf("batch %2d: prefill %.1f ms; %d new tokens in %.1f ms: %.0f new tokens/s overall, %.0f tokens/s "
               "decoding after the prefill (best of %d)\n", sizes[k], 1e3 * best_pre, new_tokens, 1e3 * best,
               sizes[k] * new_tokens / best, dec > 0 ? sizes[k] * (new_tokens - 1) / dec : 0.0, iters);
    }
    free(out); free(nout); free(pix); free(pre); free(pairs);
    lt_free(&t);
    llava_model_free(&m);
    return 0;
}

/* ---- bench step --shape: a model shape with random weights, on the job's device, beside the plan ----------------- */

#define GIB (1024.0 * 1024.0 * 1024.0)

/* the config.json of a named shape (or the path given); demo: written to a temporary file (*tmp, removed after) */
static int shape_config(const char *shape, char *path, size_t n, int *tmp) {
    *tmp = 0;
    if (!strcmp(shape, "llava-v1.6-mistral-7b") || !strcmp(shape, "llava16-mistral7b")) {
        snprintf(path, n, "%s/tests/fixtures/llava16_mistral7b/config.json", ORPO_SOURCE_DIR);
        if (!fs_exists(path))
            return err_set(ERR_IO, "--shape %s: %s is not there (the source tree this orpo-hpc was built from); pass "
                           "the model's config.json instead: --shape DIR/config.json", shape, path);
        return ERR_OK;
    }
    if (!strcmp(shape, "demo")) {
        char *tj = NULL, *cj = NULL;
        size_t tn = 0;
        demo_tok_info info;
        int rc = demo_tok_json(&tj, &tn, &info);
        free(tj);
        if (!rc) rc = demo_model_config_json(&info, &cj);
        if (rc) return rc;
        const char *td = getenv("TMPDIR");
        snprintf(path, n, "%s/orpo-bench-demo-%ld.json", td && *td ? td : "/tmp", (long)getpid());
        FILE *f = fopen(path, "w");
        size_t len = strlen(cj);
        int ok = f && fwrite(cj, 1, len, f) == len;
        if (f && fclose(f)) ok = 0;
        free(cj);
        if (!ok) return err_set(ERR_IO, "--shape demo: cannot write %s", path);
        *tmp = 1;
        return ERR_OK;
    }
    if (!fs_exists(shape))
        return err_set(ERR_ARGS, "--shape %s: expected llava-v1.6-mistral-7b, demo or a config.json", shape);
    snprintf(path, n, "%s", shape);
    return ERR_OK;
}

/* parameters of the model (a guard against running a 7B model on the CPU) */
static double shape_params(const llava_config *c) {
    double D = c->t_hidden, Q = (double)c->t_heads * c->t_head_dim, KV = (double)c->t_kv_heads * c->t_head_dim;
    double dec = (double)c->t_layers * (D * (2 * Q + 2 * KV) + 3 * D * c->t_inter);
    double vis = (double)c->v_run_layers * (4.0 * c->v_hidden * c->v_hidden + 2.0 * c->v_hidden * c->v_inter);
    return dec + vis + 2.0 * c->vocab * D;
}

/* the GPU table's entry whose name the device's name contains (the longest), for the plan's estimate */
static const char *shape_gpu_name(const char *devname) {
    int n = 0;
    const jp_gpu *g = jp_gpus(&n);
    char have[160], want[64];
    size_t k = 0;
    for (const char *s = devname; *s && k + 1 < sizeof have; s++)
        if (*s != ' ' && *s != '-' && *s != '_') have[k++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
    have[k] = 0;
    const char *best = NULL;
    size_t bl = 0;
    for (int i = 0; i < n; i++) {
        k = 0;
        for (const char *s = g[i].name; *s && k + 1 < sizeof want; s++)
            if (*s != ' ' && *s != '-' && *s != '_') want[k++] = (char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
        want[k] = 0;
        if (strstr(have, want) && k > bl) best = g[i].name, bl = k;
    }
    return best;
}

/* MERGE: the trainer on CUDA. lt_spec has no device yet and lt_init takes the CPU table (llava_train.c); when the
 * trainer gets its device (the CUDA context from devctx_open), set it here and drop the refusal. */
/* --attention on a GPU (backend/attn_fused.h): cuDNN's fused attention when built and its self-test on this GPU
 * passes (auto), or asked for (cudnn: refused otherwise), or the kernels'; one line says which and why */
static int bench_attention(int mode, const device_info *dev, lt_spec *sp) {
    if (dev->kind != DEVICE_CUDA) {
        if (mode == AFZ_CUDNN)
            return err_set(ERR_ARGS, "bench step --attention cudnn: cuDNN attention runs on a GPU; this bench runs on "
                           "the CPU (use --attention auto or kernels, or --device cuda)");
        return ERR_OK;
    }
    opctx sc;
    char why[600], msg[700];
    int use = 0, open = mode != AFZ_KERNELS && afz_ops_cuda() != NULL;
    if (open && devctx_open(DEVICE_CUDA, dev->index, &sc, why, sizeof why)) {
        devctx_close(DEVICE_CUDA, &sc);
        return err_set(ERR_ARGS, "bench step --attention %s: GPU %d: %s", afz_mode_name(mode), dev->index, why);
    }
    int rc = afz_choose(mode, afz_ops_cuda() != NULL, afz_check_gpu, &sc, &use, msg, sizeof msg);
    if (open) devctx_close(DEVICE_CUDA, &sc);
    if (rc) return err_set(ERR_ARGS, "bench step --%s", msg);
    if (msg[0]) printf("--%s\n", msg);
    if (use) sp->ops = afz_ops_cuda();
    printf("attention: %s (--attention %s)\n", use ? "cudnn (cuDNN's fused attention; calls it cannot take run the "
           "kernels)" : "kernels (the materialised attention kernels)", afz_mode_name(mode));
    return ERR_OK;
}

static int bench_shape(int argc, char **argv) {
    const char *shape = NULL, *want = "auto", *attn = NULL;
    int h = 672, w = 672, npairs = 2, prompt = 39, answer = 129, iters = 3, warmup = 1, random = 0;
    double gb = 0;
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--shape") && v) { shape = v; i++; }
        else if (!strcmp(argv[i], "--random-weights")) random = 1;
        else if (!strcmp(argv[i], "--image") && v && sscanf(v, "%dx%d", &h, &w) == 2) i++;
        else if (!strcmp(argv[i], "--pairs") && v) { npairs = atoi(v); i++; }
        else if (!strcmp(argv[i], "--prompt") && v) { prompt = atoi(v); i++; }
        else if (!strcmp(argv[i], "--answer") && v) { answer = atoi(v); i++; }
        else if (!strcmp(argv[i], "--iters") && v) { iters = atoi(v); i++; }
        else if (!strcmp(argv[i], "--warmup") && v) { warmup = atoi(v); i++; }
        else if (!strcmp(argv[i], "--gpu-memory-gb") && v) { gb = atof(v); i++; }
        else if (!strcmp(argv[i], "--device") && v) { want = v; i++; }
        else if (!strcmp(argv[i], "--attention") && v) { attn = v; i++; }
        else {
            job_free_overrides(ov, nov);
            return err_set(ERR_ARGS, "bench step --shape: unexpected argument '%s'", argv[i]), cli_fail();
        }
    }
    int rc = ERR_OK, amode = AFZ_AUTO;
    if (attn && afz_mode_parse(attn, &amode))
        rc = err_set(ERR_ARGS, "bench step --attention %s: expected auto, cudnn or kernels", attn);
    else if (!random) rc = err_set(ERR_ARGS, "bench step --shape %s: needs --random-weights (a shape has no checkpoint; "
                              "bench step --model DIR|model.h5 runs real weights)", shape);
    else if (npairs < 1 || npairs > 64 || prompt < 3 || answer < 1 || iters < 1 || warmup < 0 || gb < 0 || h < 1 || w < 1)
        rc = err_set(ERR_ARGS, "bench step --shape: --pairs 1..64, --prompt >= 3, --answer >= 1, --iters >= 1, "
                     "--warmup >= 0, --gpu-memory-gb >= 0, --image HxW");
    if (rc) {
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    char cfgpath[4200];
    int tmp = 0;
    llava_config cfg;
    device_info dev;
    if ((rc = shape_config(shape, cfgpath, sizeof cfgpath, &tmp)) || (rc = llava_config_from_hf(cfgpath, &cfg)) ||
        (rc = device_select(want, &dev))) {
        if (tmp) unlink(cfgpath);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    double params = shape_params(&cfg);
    if (dev.kind == DEVICE_CPU && params > 1e9) {
        char why[256] = "";
        int n = 0;
        cudev_count(&n, why, sizeof why);
        if (tmp) unlink(cfgpath);
        job_free_overrides(ov, nov);
        return err_set(ERR_ARGS, "bench step --shape %s: a %.1f B-parameter model needs a GPU (runtime device %s: %s); "
                       "on the CPU use a small shape (--shape demo)", shape, params / 1e9,
                       !strcmp(want, "auto") ? "auto -> cpu" : want, n ? "cpu asked for" : why), cli_fail();
    }
    if (dev.kind == DEVICE_CUDA && gb == 0) gb = (double)dev.mem_total / GIB; /* unconstrained: the whole GPU */
    /* the job: the reference set-up of jobs/llava16-mistral7b-8gb.yaml (QLoRA r 8, its targets, checkpointing) */
    char yaml[6000];
    snprintf(yaml, sizeof yaml,
             "job:\n  name: bench-shape\nmodel:\n  path: %s\n  quantization: nf4\n  quant_scope: decoder\n"
             "lora:\n  rank: 8\n  alpha: 16\n  dropout: 0.05\n"
             "  targets: [q_proj, k_proj, v_proj, mm_projector, gate_proj, up_proj, lm_head]\n"
             "  train_new_token_embeddings: true\n"
             "data:\n  path: /nonexistent/orpo-bench-shape-has-no-data.h5\n" /* the plan's assumed pair instead */
             "train:\n  micro_batch_pairs: %d\n  gradient_checkpointing: true\n"
             "runtime:\n  device: %s\n",
             cfgpath, npairs, dev.kind == DEVICE_CUDA ? "cuda" : "cpu");
    job_config job;
    job_report rep;
    job_report_init(&rep);
    rc = job_load_string(yaml, strlen(yaml), "bench-shape.yaml", ov, nov, 0, &job, &rep);
    if (rc) {
        job_report_print(&rep, stderr);
        job_report_free(&rep);
        if (tmp) unlink(cfgpath);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    job_report_free(&rep);
    jp_opts po;
    jp_opts_default(&po);
    po.gpu_memory_gb = gb;
    po.gpu = dev.kind == DEVICE_CUDA ? shape_gpu_name(dev.name) : NULL;
    po.image_h = h, po.image_w = w, po.pairs = npairs, po.prompt = prompt, po.answer = answer;
    jp_plan plan;
    rc = jp_make(&job, &po, &plan);
    if (tmp) unlink(cfgpath);
    if (rc) {
        job_free(&job);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    char line[1024], desc[512], ddesc[256];
    jp_summary(&plan, line, sizeof line);
    llava_config_describe(&cfg, desc, sizeof desc);
    device_describe(&dev, ddesc, sizeof ddesc);
    printf("shape: %s, random weights (decoder linears NF4), %.2f B parameters; device %s\n%s\n%s\n", shape,
           params / 1e9, ddesc, desc, line);
    if (!plan.fits) printf("plan: nothing fits the budget; running the smallest configuration\n");
    llava_model m;
    llava_trainer t;
    lt_spec sp = plan.spec;
    if (!attn) amode = job.runtime.attention; /* --set runtime.attention=..., else auto */
    if ((rc = bench_attention(amode, &dev, &sp))) {
        jp_free(&plan);
        job_free(&job);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    double t0 = log_now();
    sp.device = dev.kind; /* the trainer on the bench's device */
    if ((rc = llava_model_random(&cfg, plan.wts.linear_dtype == DT_NF4, 1, &m))) {
        jp_free(&plan);
        job_free(&job);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    if ((rc = lt_init(&t, &m, &sp)) || (rc = lt_plan_ex(&t, &plan.dims, &plan.st))) {
        llava_model_free(&m);
        jp_free(&plan);
        job_free(&job);
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    double t_setup = log_now() - t0;
    /* the pairs: BOS, <image> (expanded), prompt text; answers of `answer` ids ending in </s> */
    int P = anyres_num_patches(&cfg.anyres, h, w);
    int64_t nimg = anyres_num_image_tokens(&cfg.anyres, h, w), npre = prompt - 1 + nimg;
    size_t npx = (size_t)P * 3 * (size_t)cfg.v_image * (size_t)cfg.v_image;
    float *pix = mem_alloc(sizeof(float) * npx, "bench: pixels");
    for (size_t i = 0; i < npx; i++) pix[i] = frand();
    int32_t *pre = mem_alloc(sizeof(int32_t) * (size_t)npre, "bench: prompt tokens");
    int32_t *ans = mem_alloc(sizeof(int32_t) * (size_t)(2 * answer), "bench: answer tokens");
    pre[0] = cfg.bos;
    for (int64_t i = 1; i < npre; i++) pre[i] = i <= nimg ? cfg.image_token : (int32_t)(3 + i % 50);
    for (int i = 0; i < 2 * answer; i++) ans[i] = (int32_t)(5 + (i * 7) % 40);
    ans[answer - 1] = ans[2 * answer - 1] = cfg.eos;
    size_t fbytes = 0;
    uint8_t *feat = lt_feature_buffer(&t, &fbytes); /* a plan with the vision features from a cache */
    size_t per = fbytes / (size_t)npairs;
    if (feat) /* small random features in the activation dtype (bf16 patterns of ~0.01 or fp32) */
        for (size_t i = 0; i + 1 < fbytes; i += 2) feat[i] = (uint8_t)(rng_state >> 56), feat[i + 1] = 0x3c, frand();
    lt_pair *pairs = mem_alloc(sizeof(lt_pair) * (size_t)npairs, "bench: pairs");
    for (int i = 0; i < npairs; i++)
        pairs[i] = (lt_pair){pix, P, h, w, pre, (int32_t)npre, ans, ans + answer, answer, answer,
                             feat ? feat + (size_t)i * per : NULL};
    printf("%d pairs/micro-batch: image %dx%d (%d tiles, %lld image tokens), prefix %lld tokens, answers %d+%d; "
           "model and plan set up in %.1f s\n", npairs, h, w, P, (long long)nimg, (long long)npre, answer, answer, t_setup);
    float *dlogp = mem_alloc(sizeof(float) * (size_t)npairs * (size_t)(npre + 2 * answer), "bench: gradients");
    /* the optimiser as the trainer runs it (src/train/trainer.c): the step's gradient and the AdamW moments on the
     * device, fp32; one group (lr 2e-4, weight decay 0.01), clipping at 1 */
    const ops *fo = t.of; /* the backend's fp32 table (on a GPU: its device ops on fp32 arrays) */
    const size_t gbytes = sizeof(float) * (size_t)(t.nstore ? t.nstore : 1);
    float *gsum = fo->mem_alloc(&t.ctx, gbytes, MEM_DEVICE, "bench: the step's gradient");
    float *mom = fo->mem_alloc(&t.ctx, 2 * gbytes, MEM_DEVICE, "bench: AdamW moments");
    int nt = lt_tensor_count(&t);
    adamw_tensor *at = mem_calloc((size_t)(nt ? nt : 1), sizeof *at, "bench: optimiser tensors");
    adamw_opt opt;
    adamw_init(&opt);
    if (!gsum || !mom || (rc = fo->sync(&t.ctx)) || (rc = adamw_bind(&opt, fo, &t.ctx))) rc = rc ? rc : ERR_IO;
    int64_t off = 0;
    for (int i = 0; !rc && i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&t, i);
        at[i] = (adamw_tensor){ti->name, ti->data, gsum + off, mom + off, mom + t.nstore + off, ti->numel};
        off += ti->numel;
    }
    if (!rc) {
        fo->memset(&t.ctx, mom, 0, 2 * gbytes);
        rc = fo->sync(&t.ctx);
    }
    adamw_group grp = {"all", 2e-4, 0.01, at, nt};
    double best = 1e30, sum = 0;
    int64_t toks = 0;
    long nf0 = 0, nb0 = 0;
    char awhy[256];
    afz_counts(&nf0, &nb0, awhy, sizeof awhy); /* the attention self-test's calls are not the step's */
    for (int it = 0; !rc && it < warmup + iters; it++) {
        lt_batch bt = {pairs, npairs, (uint32_t)it, 0};
        lt_fwd fw;
        double s0 = log_now();
        lt_zero_grads(&t);
        if ((rc = lt_forward(&t, &bt, &fw))) break;
        for (int64_t r = 0; r < fw.nrows; r++) dlogp[r] = -1.0f / (float)fw.nrows;
        if ((rc = lt_backward(&t, dlogp))) break;
        fo->copy(&t.ctx, gsum, t.gstore, t.nstore);
        adamw_clip(&opt, &grp, 1, 1.0);
        if ((rc = adamw_step(&opt, &grp, 1, 1.0)) || (rc = t.o->sync(&t.ctx))) break;
        double dt = log_now() - s0;
        toks = fw.ntok;
        if (it < warmup) continue;
        sum += dt;
        if (dt < best) best = dt;
    }
    if (!rc) {
        printf("step (forward, backward and AdamW update of one micro-batch, prefix shared): best %.1f ms, mean "
               "%.1f ms over %d steps after %d warm-up; %.2f pairs/s, %.0f tokens/s (%lld packed tokens)\n",
               1e3 * best, 1e3 * sum / iters, iters, warmup, npairs / best, (double)toks / best, (long long)toks);
        size_t live = 0, hw = 0;
        t.o->mem_stats(&t.ctx, MEM_DEVICE, &live, &hw);
        /* the CPU model holds the weights outside the backend (host arrays); a GPU backend allocates them */
        size_t wts = dev.kind == DEVICE_CPU ? sizeof(float) * m.arena_floats + m.qbytes : 0;
        if (wts && plan.st.vision == LS_VIS_CACHE) wts -= llava_model_tower_bytes(&m); /* never read by this run */
        /* the kernels' scratch (attention; kgemm.h kscratch) grows outside the backend's allocations and stays; the
         * library workspace is one of the backend's (ctx_open); the context reserve is the plan's, not measured */
        size_t res = plan.st.ctx_reserve, ks = t.ctx.kscratch_bytes, meas = hw + wts + res + ks;
        printf("peak device memory: measured %.3f GiB (backend high-water %.3f GiB", meas / GIB, hw / GIB);
        if (ks) printf(" + kernel scratch %.3f GiB", ks / GIB);
        if (wts) printf(" + weights held by the model %.3f GiB", wts / GIB);
        if (res) printf(" + the plan's context reserve %.3f GiB, not measured", res / GIB);
        printf("); the plan predicted %.3f GiB: measured/plan %.3f (%zu / %zu bytes); budget %.2f GiB (%s)\n",
               plan.peak / GIB, (double)meas / (double)plan.peak, meas, plan.peak, plan.budget / GIB, plan.budget_from);
        long nf = 0, nb = 0;
        afz_counts(&nf, &nb, awhy, sizeof awhy);
        if (sp.ops && sp.ops == afz_ops_cuda())
            printf("attention calls: %ld by cuDNN, %ld by the kernels (calls cuDNN could not take%s%s)\n", nf - nf0,
                   nb - nb0,
                   awhy[0] ? "; the latest: " : "", awhy);
        if (plan.has_estimate)
            printf("plan's roofline estimate on the %s: %.1f ms, %.2f pairs/s\n", plan.gpu ? plan.gpu->name : "GPU",
                   1e3 * plan.est.time_s, plan.est.pairs_per_s);
    }
    adamw_release(&opt);
    if (gsum) fo->mem_free(&t.ctx, gsum, MEM_DEVICE);
    if (mom) fo->mem_free(&t.ctx, mom, MEM_DEVICE);
    free(at); free(dlogp); free(pix); free(pre); free(ans); free(pairs);
    lt_free(&t);
    llava_model_free(&m);
    jp_free(&plan);
    job_free(&job);
    job_free_overrides(ov, nov);
    return rc ? cli_fail() : 0;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "generate")) return bench_generate(argc - 1, argv + 1);
    if (argc < 2) return err_set(ERR_ARGS, "bench: which benchmark? forward or step (import-data prints its own pairs/s)"), cli_fail();
    if (!strcmp(argv[1], "forward")) return bench_forward(argc - 1, argv + 1);
    if (!strcmp(argv[1], "step")) {
        for (int i = 2; i < argc; i++)
            if (!strcmp(argv[i], "--shape")) return bench_shape(argc - 1, argv + 1);
        return bench_step(argc - 1, argv + 1);
    }
    return err_set(ERR_ARGS, "bench: unknown benchmark '%s' (forward, step; import-data prints its own pairs/s)", argv[1]),
           cli_fail();
}
