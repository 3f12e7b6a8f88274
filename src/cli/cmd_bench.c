/* orpo-hpc bench: timings of whole pieces, printed for docs/performance.md (never asserted by tests).
 *
 *   bench forward --model DIR|model.h5 [--image HxW] [--text N] [--iters N]
 *       the trainer's forward (lt_forward, evaluation, a forward-only plan; the base model) of one pair: BOS, the
 *       image tokens and N text tokens as the prompt, answers of one token: vision tower, projector, pack,
 *       decoder, lm_head on the text positions. Prints ms per forward, tokens/s (packed tokens) and images/s.
 *   bench step --model DIR|model.h5 [--image HxW] [--pairs N] [--prompt N] [--answer N] [--iters N]
 *       (--model demo: the demo model of `make demo`, demo/model)
 *       one training micro-batch (forward, backward; LoRA on every decoder linear, projector, lm_head) with the
 *       prompt+image prefix shared by both answers and with a copy per answer; prints both and the speed-up. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "io/mem.h"
#include "model/llava_size.h"
#include "model/llava_train.h"
#include "model/model_h5.h"

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
    lt_pair pair = {pix, P, h, w, pre, (int32_t)npre, &eos, &eos, 1, 1}; /* answers of one token */
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

/* bench step: one ORPO micro-batch (forward, loss, backward) with and without prefix sharing */
static int bench_step(int argc, char **argv) {
    const char *model = NULL;
    int h = 480, w = 640, npairs = 2, prompt = 24, answer = 32, iters = 3;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--model") && v) { model = v; i++; }
        else if (!strcmp(argv[i], "--image") && v && sscanf(v, "%dx%d", &h, &w) == 2) i++;
        else if (!strcmp(argv[i], "--pairs") && v) { npairs = atoi(v); i++; }
        else if (!strcmp(argv[i], "--prompt") && v) { prompt = atoi(v); i++; }
        else if (!strcmp(argv[i], "--answer") && v) { answer = atoi(v); i++; }
        else if (!strcmp(argv[i], "--iters") && v) { iters = atoi(v); i++; }
        else return err_set(ERR_ARGS, "bench step: unexpected argument '%s'", argv[i]), cli_fail();
    }
    if (!model) return err_set(ERR_ARGS, "bench step: --model DIR|model.h5 is required"), cli_fail();
    if (npairs < 1 || npairs > 64 || prompt < 2 || answer < 1 || iters < 1)
        return err_set(ERR_ARGS, "bench step: --pairs 1..64, --prompt >= 2, --answer >= 1, --iters >= 1"), cli_fail();
    llava_model m;
    if (load_model(model, &m)) return cli_fail();
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
        pairs[i] = (lt_pair){pix, P, h, w, pre, (int32_t)npre, ans, ans + answer, answer, answer};
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
            return cli_fail();
        float *dlogp = mem_alloc(sizeof(float) * (size_t)npairs * (size_t)(npre + 2 * answer), "bench: gradients");
        double b = 1e30;
        for (int it = 0; it <= iters; it++) {
            lt_batch bt = {pairs, npairs, (uint32_t)it, 0};
            lt_fwd fw;
            double t0 = log_now();
            lt_zero_grads(&t);
            if (lt_forward(&t, &bt, &fw)) return cli_fail();
            for (int64_t r = 0; r < fw.nrows; r++) dlogp[r] = -1.0f / (float)fw.nrows;
            if (lt_backward(&t, dlogp)) return cli_fail();
            double dt = log_now() - t0;
            toks[share] = fw.ntok;
            if (it > 0 && dt < b) b = dt;
        }
        best[share] = b;
        printf("%-22s step %.1f ms (best of %d), %.2f pairs/s, %.0f tokens/s (%lld packed tokens)\n",
               share ? "prefix shared:" : "prefix per answer:", 1e3 * b, iters, npairs / b, (double)toks[share] / b,
               (long long)toks[share]);
        free(dlogp);
        lt_free(&t);
    }
    printf("speed-up from prefix sharing: %.2fx\n", best[0] / best[1]);
    free(pix); free(pre); free(ans); free(pairs);
    llava_model_free(&m);
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
    for (int i = 0; i < batch; i++) pairs[i] = (lt_pair){pix, P, h, w, pre, (int32_t)npre, NULL, NULL, 0, 0};
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

int cmd_bench(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "generate")) return bench_generate(argc - 1, argv + 1);
    if (argc < 2) return err_set(ERR_ARGS, "bench: which benchmark? forward or step (import-data prints its own pairs/s)"), cli_fail();
    if (!strcmp(argv[1], "forward")) return bench_forward(argc - 1, argv + 1);
    if (!strcmp(argv[1], "step")) return bench_step(argc - 1, argv + 1);
    return err_set(ERR_ARGS, "bench: unknown benchmark '%s' (forward, step; import-data prints its own pairs/s)", argv[1]),
           cli_fail();
}
