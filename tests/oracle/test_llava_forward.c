/* The LLaVA-NeXT CPU forward against transformers (tests/fixtures/llava_tiny, made by
 * tools/oracle/make_llava_fixtures.py): for every image case the selected vision features, the packed
 * image features (unpad + newline), the spliced input embeddings and the logits of every position
 * match within max|diff| / max|ref| <= tol, and the image-token count is exact. Then all cases run
 * again packed into ONE buffer as separate sequences: logits must equal the one-by-one run within tol.
 * tol (tolerance.h): the worst-case fp32 error of the forward chain for any summation order, twice (ours and
 * transformers', each in its own order) plus u for the stored reference: 2 tol_llava_fwd(cfg, L) + u, about
 * 2.6e-4 for the tiny model (L <= 120); each stage (vision features, image features, embeddings) is checked
 * against the same bound of the whole chain, which bounds its shorter chain too. The packed run is the same
 * chain in our own code with other row counts (so other kernel blocking): the same 2 tol_llava_fwd bound.
 * Was 1e-4 (and 1e-6 packed): below the worst case of a summation order that OpenBLAS may legally pick. */
#include <string.h>

#include "fixture_h5.h"
#include "io/err.h"
#include "model/llava_params.h"
#include "test.h"
#include "tolerance.h"

static double TOL; /* set in main from the model and the longest sequence */

static const char *cases[] = {"square", "wide", "tall", "tiny", "odd"};
#define NCASES 5

static float *logits_of[NCASES];
static int32_t *ids_of[NCASES];
static float *img_of[NCASES];
static int64_t len_of[NCASES], nimg_of[NCASES];

static void check(const char *what, const char *cs, const float *a, const float *ref, size_t n) {
    double e = fx_relerr(a, ref, n);
    printf("  %-6s %-16s rel err %.2e (tol %.1e)\n", cs, what, e, TOL);
    CHECK(e <= TOL);
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
    const ops *o = ops_cpu();
    opctx ctx;
    memset(&ctx, 0, sizeof ctx);
    hid_t F = fx_open(test_fixture("llava_tiny/forward.h5"));
    const int64_t D = cfg->t_hidden, V = cfg->vocab;
    const int64_t np = (int64_t)(cfg->v_image / cfg->v_patch) * (cfg->v_image / cfg->v_patch);
    size_t wsz = llava_ws_size(cfg, 512, 16);
    void *ws = malloc(wsz);

    for (int ci = 0; ci < NCASES; ci++) {
        const char *cs = cases[ci];
        char p[128];
        snprintf(p, sizeof p, "%s/input_ids", cs);
        TOL = 2 * tol_llava_fwd(cfg, (int64_t)fx_numel(F, p)) + TOL_U;
        size_t npx, nsz, nid, nsel, nfeat, nemb, nlog;
        snprintf(p, sizeof p, "%s/pixel_values", cs);
        float *pix = fx_f32(F, p, &npx);
        snprintf(p, sizeof p, "%s/image_size", cs);
        int32_t *hw = fx_i32(F, p, &nsz);
        snprintf(p, sizeof p, "%s/input_ids", cs);
        int32_t *ids = fx_i32(F, p, &nid);
        snprintf(p, sizeof p, "%s/vision_selected", cs);
        float *sel_ref = fx_f32(F, p, &nsel);
        snprintf(p, sizeof p, "%s/image_features", cs);
        float *feat_ref = fx_f32(F, p, &nfeat);
        snprintf(p, sizeof p, "%s/inputs_embeds", cs);
        float *emb_ref = fx_f32(F, p, &nemb);
        snprintf(p, sizeof p, "%s/logits", cs);
        float *log_ref = fx_f32(F, p, &nlog);
        int P = (int)(npx / (3 * (size_t)cfg->v_image * cfg->v_image));

        float *sel = malloc(sizeof(float) * nsel);
        llava_vision_forward(o, &ctx, cfg, &m.w, pix, P, sel, ws);
        check("vision features", cs, sel, sel_ref, nsel);

        float *proj = malloc(sizeof(float) * (size_t)(P * np * D));
        llava_project(o, &ctx, cfg, &m.w, sel, P * np, proj, ws);
        int64_t n_img = llava_pack_image(cfg, &m.w, proj, P, hw[0], hw[1], NULL);
        CHECK_EQ_INT(n_img, (int64_t)(nfeat / (size_t)D));
        CHECK_EQ_INT(n_img, anyres_num_image_tokens(&cfg->anyres, hw[0], hw[1]));
        float *feat = malloc(sizeof(float) * (size_t)(n_img > 0 ? n_img : 1) * (size_t)D);
        llava_pack_image(cfg, &m.w, proj, P, hw[0], hw[1], feat);
        check("image features", cs, feat, feat_ref, nfeat);

        int64_t L = (int64_t)nid;
        float *x = malloc(sizeof(float) * (size_t)(L * D));
        CHECK_EQ_INT(llava_embed(o, &ctx, cfg, &m.w, ids, L, feat, n_img, x), 0);
        check("input embeddings", cs, x, emb_ref, nemb);
        /* one image token too few: a clear error, not garbage */
        CHECK_EQ_INT(llava_embed(o, &ctx, cfg, &m.w, ids, L, feat, n_img - 1, x), ERR_DATA);
        CHECK_EQ_INT(llava_embed(o, &ctx, cfg, &m.w, ids, L, feat, n_img, x), 0);

        int32_t *pos = malloc(sizeof(int32_t) * (size_t)L);
        int64_t *rows = malloc(sizeof(int64_t) * (size_t)L);
        for (int64_t i = 0; i < L; i++) { pos[i] = (int32_t)i; rows[i] = i; }
        seq_desc sd = {0, (int32_t)L, 0, -1};
        llava_decoder_forward(o, &ctx, cfg, &m.w, x, pos, &sd, 1, L, ws);
        float *logits = malloc(sizeof(float) * (size_t)(L * V));
        llava_lm_head(o, &ctx, cfg, &m.w, x, rows, L, logits, ws);
        check("logits", cs, logits, log_ref, nlog);

        logits_of[ci] = logits;
        ids_of[ci] = ids;
        img_of[ci] = feat;
        len_of[ci] = L;
        nimg_of[ci] = n_img;
        free(pix); free(hw); free(sel_ref); free(feat_ref); free(emb_ref); free(log_ref);
        free(sel); free(proj); free(x); free(pos); free(rows);
    }

    /* all five sequences packed flat into one buffer */
    int64_t total = 0, totimg = 0;
    for (int ci = 0; ci < NCASES; ci++) { total += len_of[ci]; totimg += nimg_of[ci]; }
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)total), *pos = malloc(sizeof(int32_t) * (size_t)total);
    float *img = malloc(sizeof(float) * (size_t)(totimg * D)), *x = malloc(sizeof(float) * (size_t)(total * D));
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)total);
    seq_desc sd[NCASES];
    int64_t off = 0, ioff = 0;
    for (int ci = 0; ci < NCASES; ci++) {
        memcpy(ids + off, ids_of[ci], sizeof(int32_t) * (size_t)len_of[ci]);
        memcpy(img + ioff * D, img_of[ci], sizeof(float) * (size_t)(nimg_of[ci] * D));
        for (int64_t i = 0; i < len_of[ci]; i++) { pos[off + i] = (int32_t)i; rows[off + i] = off + i; }
        sd[ci] = (seq_desc){(int32_t)off, (int32_t)len_of[ci], 0, -1};
        off += len_of[ci];
        ioff += nimg_of[ci];
    }
    CHECK_EQ_INT(llava_embed(o, &ctx, cfg, &m.w, ids, total, img, totimg, x), 0);
    free(ws);
    ws = malloc(llava_ws_size(cfg, total, 16));
    llava_decoder_forward(o, &ctx, cfg, &m.w, x, pos, sd, NCASES, total, ws);
    float *logits = malloc(sizeof(float) * (size_t)(total * V));
    llava_lm_head(o, &ctx, cfg, &m.w, x, rows, total, logits, ws);
    off = 0;
    for (int ci = 0; ci < NCASES; ci++) {
        double e = fx_relerr(logits + off * V, logits_of[ci], (size_t)(len_of[ci] * V));
        printf("  packed %-6s rel err vs one-by-one %.2e\n", cases[ci], e);
        CHECK(e <= 2 * tol_llava_fwd(cfg, len_of[ci]) + TOL_U);
        off += len_of[ci];
        free(logits_of[ci]); free(ids_of[ci]); free(img_of[ci]);
    }
    free(ids); free(pos); free(img); free(x); free(rows); free(logits); free(ws);
    H5Fclose(F);
    llava_model_free(&m);
    TEST_MAIN_END();
}
