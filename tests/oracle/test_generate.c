/* Greedy generation against transformers' generate(do_sample=False) (tests/fixtures/generate, made by
 * tools/oracle/make_generate_fixtures.py on the tiny random model of tests/fixtures/llava_tiny/model): for three
 * images of different shapes, the 40 new tokens of lt_generate (KV cache) equal transformers' token for token,
 * one prompt at a time and all three in one batch. Then sampling: the same seed gives the same tokens alone and in
 * a batch (the stream is the prompt's, not its place in the batch); another seed other tokens.
 *
 * Near-ties. A greedy comparison is meaningful only while the top-2 logits of every step are further apart than
 * the error both implementations may make. Per step, every logit of ours differs from transformers' by at most
 * E = (2 tol_llava_fwd(cfg, L) + u) max|ref logits| (tolerance.h, docs/testing.md: the worst-case fp32 error of
 * the forward chain for any summation order, ours and theirs, plus u for storing the reference; L = prompt + new
 * tokens bounds every attention length, and the cached keys and values are the same products as in a full
 * forward). If ref[top1] - ref[top2] > 2E then ours[top1] > ref[top1] - E > ref[j] + E >= ours[j] for every other
 * j, so the argmax is the same; by induction over the steps (same token fed back) the sequences agree. The test
 * asserts that margin at every step of every case (the fixture picked cases with margins >= 0.005 max|logit|,
 * about 8x the bound), so a failure of the token comparison is a real difference, not rounding. */
#include <math.h>
#include <string.h>

#include "fixture_h5.h"
#include "io/err.h"
#include "model/llava_params.h"
#include "model/llava_train.h"
#include "test.h"
#include "tolerance.h"

static const char *cases[] = {"square", "wide", "tall"};
#define NCASES 3

int main(void) {
    llava_model m;
    int rc = llava_model_load_hf(test_fixture("llava_tiny/model"), &m);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) TEST_MAIN_END();
    const llava_config *cfg = &m.cfg;
    hid_t F = fx_open(test_fixture("generate/generate.h5"));
    const int NEW = (int)fx_attr_d(F, "/", "max_new_tokens");
    lt_spec sp;
    lt_spec_default(&sp);
    sp.targets = 0; /* the base model, as transformers has it */
    llava_trainer t;
    CHECK_EQ_INT(lt_init(&t, &m, &sp), 0);
    CHECK_EQ_INT(lt_plan(&t, 512, 3 * 5, 64), 0);

    lt_pair p[NCASES];
    int32_t *ref[NCASES];
    memset(p, 0, sizeof p);
    for (int ci = 0; ci < NCASES; ci++) {
        char path[128];
        size_t n, nv;
        snprintf(path, sizeof path, "%s/pixel_values", cases[ci]);
        p[ci].pixels = fx_f32(F, path, &n);
        p[ci].P = (int)(n / (3 * (size_t)cfg->v_image * cfg->v_image));
        snprintf(path, sizeof path, "%s/image_size", cases[ci]);
        int32_t *hw = fx_i32(F, path, &n);
        p[ci].h = hw[0];
        p[ci].w = hw[1];
        free(hw);
        snprintf(path, sizeof path, "%s/input_ids", cases[ci]);
        p[ci].prefix = fx_i32(F, path, &n);
        p[ci].n_prefix = (int32_t)n;
        snprintf(path, sizeof path, "%s/generated", cases[ci]);
        ref[ci] = fx_i32(F, path, &n);
        CHECK_EQ_INT((int)n, NEW);
        /* the margin of every step against its bound */
        snprintf(path, sizeof path, "%s/logits", cases[ci]);
        float *lg = fx_f32(F, path, &nv);
        CHECK_EQ_INT((int)(nv / (size_t)cfg->vocab), NEW);
        double E0 = 2 * tol_llava_fwd(cfg, p[ci].n_prefix + NEW) + TOL_U, worst = INFINITY;
        for (int s = 0; s < NEW; s++) {
            const float *row = lg + (int64_t)s * cfg->vocab;
            double top1 = -INFINITY, top2 = -INFINITY, amax = 0;
            for (int v = 0; v < cfg->vocab; v++) {
                if (row[v] > top1) top2 = top1, top1 = row[v];
                else if (row[v] > top2) top2 = row[v];
                if (fabs(row[v]) > amax) amax = fabs(row[v]);
            }
            double ratio = (top1 - top2) / (2 * E0 * amax);
            if (ratio < worst) worst = ratio;
        }
        printf("  %-6s prompt %d tokens, %d tiles: smallest top-2 margin / (2E) = %.1f\n", cases[ci], p[ci].n_prefix,
               p[ci].P, worst);
        CHECK(worst > 1.0);
        free(lg);
    }

    lt_gen_opts g;
    lt_gen_opts_default(&g);
    g.max_new = NEW;
    g.eos = cfg->eos;
    int32_t *out = calloc((size_t)NCASES * NEW, sizeof(int32_t)), n_out[NCASES];
    /* greedy, one prompt at a time */
    for (int ci = 0; ci < NCASES; ci++) {
        rc = lt_generate(&t, &p[ci], 1, &g, NULL, out, n_out);
        if (rc) fprintf(stderr, "%s\n", err_msg());
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(n_out[0], NEW);
        int same = 0;
        while (same < NEW && out[same] == ref[ci][same]) same++;
        printf("  %-6s greedy alone: %d of %d tokens equal transformers'\n", cases[ci], same, NEW);
        CHECK_EQ_INT(same, NEW);
    }
    /* greedy, the three prompts in one batch */
    rc = lt_generate(&t, p, NCASES, &g, NULL, out, n_out);
    CHECK_EQ_INT(rc, 0);
    for (int ci = 0; ci < NCASES; ci++) {
        CHECK_EQ_INT(n_out[ci], NEW);
        int same = 0;
        while (same < NEW && out[(int64_t)ci * NEW + same] == ref[ci][same]) same++;
        printf("  %-6s greedy in a batch of %d: %d of %d tokens equal\n", cases[ci], NCASES, same, NEW);
        CHECK_EQ_INT(same, NEW);
    }
    /* sampling: reproducible from the seed, independent of the batch; another seed differs */
    g.temperature = 1.0f;
    g.top_p = 0.9f;
    g.seed = 7;
    uint32_t streams[NCASES] = {100, 101, 102};
    int32_t *batch = calloc((size_t)NCASES * NEW, sizeof(int32_t)), one[64], n_one;
    CHECK_EQ_INT(lt_generate(&t, p, NCASES, &g, streams, batch, n_out), 0);
    CHECK_EQ_INT(lt_generate(&t, &p[1], 1, &g, &streams[1], one, &n_one), 0);
    CHECK_EQ_INT(n_one, n_out[1]);
    CHECK(memcmp(one, batch + NEW, sizeof(int32_t) * (size_t)n_one) == 0);
    int differs_greedy = memcmp(batch + NEW, ref[1], sizeof(int32_t) * (size_t)(n_one < NEW ? n_one : NEW)) != 0;
    CHECK(differs_greedy);
    g.seed = 8;
    int32_t other[64], n_other;
    CHECK_EQ_INT(lt_generate(&t, &p[1], 1, &g, &streams[1], other, &n_other), 0);
    CHECK(n_other != n_one || memcmp(one, other, sizeof(int32_t) * (size_t)n_one) != 0);
    printf("  sampling (T 1, top-p 0.9): seed 7 alone = in a batch (%d tokens); seed 8 differs\n", n_one);

    for (int ci = 0; ci < NCASES; ci++) {
        free((void *)p[ci].pixels);
        free((void *)p[ci].prefix);
        free(ref[ci]);
    }
    free(out);
    free(batch);
    H5Fclose(F);
    lt_free(&t);
    llava_model_free(&m);
    TEST_MAIN_END();
}
