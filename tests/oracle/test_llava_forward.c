/* The LLaVA-NeXT forward — the trainer's (llava_train.c lt_forward, the one forward of the project, through the
 * test helper fwd_full.h) — against transformers (tests/fixtures/llava_tiny, made by
 * tools/oracle/make_llava_fixtures.py): for every image case the selected vision features (lt_peek
 * "vision_features"), the packed image features (unpad + newline, "image_rows"), the spliced input embeddings
 * ("embeddings") and the logits of every position match within max|diff| / max|ref| <= tol, and the image-token
 * count is exact. Each case is one lt_pair: prefix = all ids but the last, chosen = rejected = the last id, so with
 * nll_prompt every position followed by a text token is a target row whose logits are the trainer's own; the
 * logits of the other positions (followed by an <image> token, and the last) are computed by fwd_full.h on the
 * host from "final_hidden" and the lm_head weight (the fixture has no hidden states to compare instead), and that
 * host lm_head is itself checked against the trainer's at the target rows. Then all cases run again in ONE forward,
 * five lt_pairs in one batch (packed as separate sequences): logits must equal the one-by-one run within tol, and a
 * forward-only plan (evaluation, bench) gives the same logits bit for bit as the training plan.
 * tol (tolerance.h): the worst-case fp32 error of the forward chain for any summation order, twice (ours and
 * transformers', each in its own order) plus u for the stored reference: 2 tol_llava_fwd(cfg, L) + u, about
 * 2.6e-4 for the tiny model (L <= 120); each stage (vision features, image features, embeddings) is checked
 * against the same bound of the whole chain, which bounds its shorter chain too. The packed run is the same
 * chain in our own code with other row counts (so other kernel blocking): the same 2 tol_llava_fwd bound. The host
 * lm_head (double sums) against the trainer's (fp32) is one dot product of length D: the same bound covers it.
 * Was 1e-4 (and 1e-6 packed): below the worst case of a summation order that OpenBLAS may legally pick. */
#include <string.h>

#include "fixture_h5.h"
#include "fwd_full.h"
#include "io/err.h"
#include "model/llava_params.h"
#include "test.h"
#include "tolerance.h"

static double TOL; /* set per case from the model and the sequence length */

static const char *cases[] = {"square", "wide", "tall", "tiny", "odd"};
#define NCASES 5

static float *logits_of[NCASES], *pix_of[NCASES];
static int32_t *ids_of[NCASES];
static lt_pair pair_of[NCASES];
static int64_t len_of[NCASES];

static void check(const char *what, const char *cs, const float *a, const float *ref, size_t n) {
    double e = fx_relerr(a, ref, n);
    printf("  %-6s %-16s rel err %.2e (tol %.1e)\n", cs, what, e, TOL);
    CHECK(e <= TOL);
}

static float *peek(llava_trainer *t, const char *what, int64_t cap, int64_t *rows) {
    float *x = malloc(sizeof(float) * (size_t)cap);
    int rc = lt_peek(t, what, x, cap, rows, NULL);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    return x;
}

int main(void) {
    llava_model m;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", test_fixture("llava_tiny/model"));
    int rc = llava_model_load_hf(dir, &m);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) TEST_MAIN_END();
    char line[512];
    llava_config_describe(&m.cfg, line, sizeof line);
    printf("%s\n", line);
    const llava_config *cfg = &m.cfg;
    hid_t F = fx_open(test_fixture("llava_tiny/forward.h5"));
    const int64_t D = cfg->t_hidden, V = cfg->vocab;
    const int64_t np = (int64_t)(cfg->v_image / cfg->v_patch) * (cfg->v_image / cfg->v_patch);

    /* the pairs first: one plan with room for all five in one batch */
    int64_t total = 0;
    int tiles = 0;
    for (int ci = 0; ci < NCASES; ci++) {
        char p[128];
        size_t npx, nsz, nid;
        snprintf(p, sizeof p, "%s/pixel_values", cases[ci]);
        pix_of[ci] = fx_f32(F, p, &npx);
        snprintf(p, sizeof p, "%s/image_size", cases[ci]);
        int32_t *hw = fx_i32(F, p, &nsz);
        snprintf(p, sizeof p, "%s/input_ids", cases[ci]);
        ids_of[ci] = fx_i32(F, p, &nid);
        len_of[ci] = (int64_t)nid;
        int P = (int)(npx / (3 * (size_t)cfg->v_image * cfg->v_image));
        pair_of[ci] = ff_pair(ids_of[ci], len_of[ci], pix_of[ci], P, hw[0], hw[1]);
        total += len_of[ci];
        tiles += P;
        free(hw);
    }
    llava_trainer t;
    rc = ff_init(&t, &m, total, tiles, NCASES, 0);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) TEST_MAIN_END();

    for (int ci = 0; ci < NCASES; ci++) {
        const char *cs = cases[ci];
        const lt_pair *pr = &pair_of[ci];
        const int64_t L = len_of[ci];
        TOL = 2 * tol_llava_fwd(cfg, L) + TOL_U;
        char p[128];
        size_t nsel, nfeat, nemb, nlog;
        snprintf(p, sizeof p, "%s/vision_selected", cs);
        float *sel_ref = fx_f32(F, p, &nsel);
        snprintf(p, sizeof p, "%s/image_features", cs);
        float *feat_ref = fx_f32(F, p, &nfeat);
        snprintf(p, sizeof p, "%s/inputs_embeds", cs);
        float *emb_ref = fx_f32(F, p, &nemb);
        snprintf(p, sizeof p, "%s/logits", cs);
        float *log_ref = fx_f32(F, p, &nlog);

        /* one image token too few: a clear error, not garbage */
        int32_t *fewer = malloc(sizeof(int32_t) * (size_t)L);
        int64_t nf = 0, dropped = 0;
        for (int64_t i = 0; i < L; i++)
            if (ids_of[ci][i] != cfg->image_token || dropped++) fewer[nf++] = ids_of[ci][i];
        lt_pair bad = ff_pair(fewer, nf, pr->pixels, pr->P, pr->h, pr->w);
        float *logits = malloc(sizeof(float) * (size_t)(L * V));
        CHECK_EQ_INT(ff_logits(&t, &bad, 1, logits, NULL, NULL), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "<image> tokens but the images give");
        free(fewer);

        double herr = 1;
        int64_t hrows = 0, rows = 0;
        rc = ff_logits(&t, pr, 1, logits, &herr, &hrows);
        if (rc) fprintf(stderr, "%s\n", err_msg());
        CHECK_EQ_INT(rc, 0);

        float *sel = peek(&t, "vision_features", (int64_t)nsel, &rows);
        CHECK_EQ_INT(rows, pr->P * np);
        check("vision features", cs, sel, sel_ref, nsel);

        float *feat = peek(&t, "image_rows", (int64_t)nfeat, &rows);
        CHECK_EQ_INT(rows, (int64_t)(nfeat / (size_t)D));
        CHECK_EQ_INT(rows, anyres_num_image_tokens(&cfg->anyres, pr->h, pr->w));
        check("image features", cs, feat, feat_ref, nfeat);

        float *x = peek(&t, "embeddings", (L + 1) * D, &rows);
        CHECK_EQ_INT(rows, L + 1); /* the sequence, then the rejected copy of its last token */
        check("input embeddings", cs, x, emb_ref, nemb);

        CHECK_EQ_INT((int64_t)nlog, L * V);
        check("logits", cs, logits, log_ref, nlog);
        printf("  %-6s %lld of %lld positions' logits from the host lm_head; host vs trainer at the target rows "
               "%.2e\n", cs, (long long)hrows, (long long)L, herr);
        CHECK(hrows < L);
        CHECK(herr <= TOL);

        logits_of[ci] = logits;
        free(sel_ref); free(feat_ref); free(emb_ref); free(log_ref);
        free(sel); free(feat); free(x);
    }

    /* all five sequences in one forward: five pairs of one batch, packed flat */
    float *logits = malloc(sizeof(float) * (size_t)(total * V));
    float *logits_fo = malloc(sizeof(float) * (size_t)(total * V));
    rc = ff_logits(&t, pair_of, NCASES, logits, NULL, NULL);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    int64_t off = 0;
    for (int ci = 0; ci < NCASES; ci++) {
        double e = fx_relerr(logits + off * V, logits_of[ci], (size_t)(len_of[ci] * V));
        printf("  packed %-6s rel err vs one-by-one %.2e\n", cases[ci], e);
        CHECK(e <= 2 * tol_llava_fwd(cfg, len_of[ci]) + TOL_U);
        off += len_of[ci];
    }
    /* the same batch in a forward-only plan (no backward buffers): the same ops in the same order */
    lt_free(&t);
    rc = ff_init(&t, &m, total, tiles, NCASES, 1);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(ff_logits(&t, pair_of, NCASES, logits_fo, NULL, NULL), 0);
    CHECK(!memcmp(logits, logits_fo, sizeof(float) * (size_t)(total * V)));
    int64_t cap = total * D, rows = 0;
    float *x = malloc(sizeof(float) * (size_t)cap);
    CHECK_EQ_INT(lt_peek(&t, "embeddings", x, cap, &rows, NULL), ERR_ARGS); /* not kept in a forward-only plan */
    printf("  packed, forward-only plan: logits %s the training plan's\n",
           memcmp(logits, logits_fo, sizeof(float) * (size_t)(total * V)) ? "DIFFER from" : "bit-identical to");
    for (int ci = 0; ci < NCASES; ci++) {
        free(logits_of[ci]); free(ids_of[ci]); free(pix_of[ci]);
    }
    free(logits); free(logits_fo); free(x);
    lt_free(&t);
    H5Fclose(F);
    llava_model_free(&m);
    TEST_MAIN_END();
}
