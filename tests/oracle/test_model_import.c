/* import-model: HF directory -> model.h5 -> CPU forward, against transformers.
 *   (the forward is the trainer's, lt_forward in a forward-only plan, through tests/fwd_full.h)
 *   - fp32 import: logits match transformers within max|diff|/max|ref| <= 2 tol_llava_fwd + u for every image
 *     case (tolerance.h: the worst-case fp32 error of the forward chain in any summation order, ours and the
 *     oracle's; about 2.6e-4 for the tiny model; was 1e-4, below that worst case)
 *   - nf4 import (bitsandbytes CPU flavor, decoder linears) + bf16 rest: logits match transformers run
 *     with the same bitsandbytes-dequantized weights within the same bound; NF4 bytes travel unchanged
 *   - the same weights under other checkpoint layouts (transformers 5 names, sharded with an index;
 *     llava-hf 4.x names with vision_model; fp16 and bf16 sources) import to the same tensors
 *   - a missing shard, a shape mismatch and an unknown architecture fail with ERR_DATA naming the
 *     shard / tensor / key, and leave no output (an existing output file is untouched) */
#include <string.h>
#include <sys/stat.h>

#include "fixture_h5.h"
#include "fwd_full.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "model/model_h5.h"
#include "model/nf4.h"
#include "backend/tensor.h"
#include "test.h"
#include "tolerance.h"


static const char *cases[] = {"square", "wide", "tall", "tiny", "odd"};

/* logits of every position for one fixture case: the trainer's forward (fwd_full.h: target rows from its lm_head,
 * the positions followed by an <image> token and the last from the host lm_head on its final hidden states) */
static float *run_case(llava_model *m, hid_t F, const char *cs, size_t *nlog) {
    const llava_config *cfg = &m->cfg;
    char p[128];
    size_t npx, nsz, nid;
    snprintf(p, sizeof p, "%s/pixel_values", cs);
    float *pix = fx_f32(F, p, &npx);
    snprintf(p, sizeof p, "%s/image_size", cs);
    int32_t *hw = fx_i32(F, p, &nsz);
    snprintf(p, sizeof p, "%s/input_ids", cs);
    int32_t *ids = fx_i32(F, p, &nid);
    const int64_t L = (int64_t)nid;
    int P = (int)(npx / (3 * (size_t)cfg->v_image * cfg->v_image));
    lt_pair pr = ff_pair(ids, L, pix, P, hw[0], hw[1]);
    llava_trainer t;
    *nlog = (size_t)(L * cfg->vocab);
    float *logits = malloc(sizeof(float) * *nlog);
    int rc = ff_init(&t, m, L, P, 1, 1);
    if (!rc) rc = ff_logits(&t, &pr, 1, logits, NULL, NULL);
    if (rc) fprintf(stderr, "%s: %s\n", cs, err_msg());
    CHECK_EQ_INT(rc, 0);
    lt_free(&t);
    free(pix); free(hw); free(ids);
    return logits;
}

static void check_logits(const char *path, const char *which, hid_t F) {
    llava_model m;
    int rc = mh5_load(path, &m);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) return;
    for (int ci = 0; ci < 5; ci++) {
        size_t n, nref;
        float *lg = run_case(&m, F, cases[ci], &n);
        char p[128];
        snprintf(p, sizeof p, "%s/%s", cases[ci], which);
        float *ref = fx_f32(F, p, &nref);
        CHECK_EQ_INT(n, nref);
        double e = fx_relerr(lg, ref, n);
        /* the forward chain, twice (ours and transformers', each in its own summation order) + u for the stored
         * reference (tolerance.h); the NF4 case runs both sides on the same dequantized weights, so the same bound */
        double tol = 2 * tol_llava_fwd(&m.cfg, (int64_t)(n / (size_t)m.cfg.vocab)) + TOL_U;
        printf("  %-24s %-6s %-10s rel err %.2e (tol %.1e)\n", fs_basename(path), cases[ci], which, e, tol);
        CHECK(e <= tol);
        free(lg);
        free(ref);
    }
    llava_model_free(&m);
}

/* copy the fixture checkpoint with renamed tensors (and a dtype), optionally in two shards + index */
static void write_layout(const char *src_dir, const char *dst_dir, int v5_names, const char *dtype, int shards) {
    char path[4096], cfg_src[4096], cfg_dst[4096];
    mkdir(dst_dir, 0777);
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", src_dir);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/config.json", dst_dir);
    char *buf; size_t n;
    fs_read_all(cfg_src, &buf, &n);
    FILE *f = fopen(cfg_dst, "wb"); fwrite(buf, 1, n, f); fclose(f); free(buf);
    snprintf(path, sizeof path, "%s/model.safetensors", src_dir);
    st_file *sf;
    if (st_open(path, &sf)) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    stw *w[2] = {stw_new(), stw_new()};
    char index[65536];
    int ilen = snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
    for (int i = 0; i < st_count(sf); i++) {
        const st_tensor *t = st_at(sf, i);
        char name[256];
        if (v5_names) { /* transformers 5 in-memory names */
            if (!strncmp(t->name, "language_model.lm_head.", 23)) snprintf(name, sizeof name, "lm_head.%s", t->name + 23);
            else if (!strncmp(t->name, "language_model.model.", 21)) snprintf(name, sizeof name, "model.language_model.%s", t->name + 21);
            else snprintf(name, sizeof name, "model.%s", t->name);
        } else { /* llava-hf 4.x names: vision_tower.vision_model.* */
            if (!strncmp(t->name, "vision_tower.", 13) && strncmp(t->name, "vision_tower.vision_model.", 26)) snprintf(name, sizeof name, "vision_tower.vision_model.%s", t->name + 13);
            else snprintf(name, sizeof name, "%s", t->name);
        }
        float *x = malloc(sizeof(float) * (size_t)t->numel);
        st_to_f32(sf, t, x);
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)t->numel);
        const void *data = x;
        if (!strcmp(dtype, "F16")) { h5x_f32_to_f16_n(x, h, (size_t)t->numel); data = h; }
        if (!strcmp(dtype, "BF16")) { h5x_f32_to_bf16_n(x, h, (size_t)t->numel); data = h; }
        int s = shards > 1 ? i % 2 : 0;
        stw_add(w[s], name, dtype, t->ndim, t->shape, data);
        ilen += snprintf(index + ilen, sizeof index - (size_t)ilen, "%s\"%s\": \"model-%05d-of-00002.safetensors\"",
                         i ? ", " : "", name, s + 1);
        free(x); free(h);
    }
    st_close(sf);
    if (shards > 1) {
        for (int s = 0; s < 2; s++) {
            snprintf(path, sizeof path, "%s/model-%05d-of-00002.safetensors", dst_dir, s + 1);
            CHECK_EQ_INT(stw_write(w[s], path), 0);
        }
        snprintf(index + ilen, sizeof index - (size_t)ilen, "}}");
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dst_dir);
        f = fopen(path, "wb"); fputs(index, f); fclose(f);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dst_dir);
        CHECK_EQ_INT(stw_write(w[0], path), 0);
    }
    stw_free(w[0]);
    stw_free(w[1]);
}

/* every params dataset of a and b holds the same bytes */
static int same_params(const char *a, const char *b) {
    llava_model ma, mb;
    if (mh5_load(a, &ma) || mh5_load(b, &mb)) { fprintf(stderr, "%s\n", err_msg()); return 0; }
    int same = ma.arena_floats == mb.arena_floats && ma.qbytes == mb.qbytes &&
               !memcmp(ma.arena, mb.arena, sizeof(float) * ma.arena_floats) &&
               !memcmp(ma.qarena, mb.qarena, ma.qbytes);
    llava_model_free(&ma);
    llava_model_free(&mb);
    return same;
}

/* The same tiny model as the original LLaVA repo would hold it: liuhaotian names, an llava_mistral config with
 * (width, height) pinpoints, and no <image>/<pad> rows (vocabulary 300). */
static void write_liuhaotian(const char *src_dir, const char *dst_dir) {
    char path[2048];
    mkdir(dst_dir, 0777);
    snprintf(path, sizeof path, "%s/config.json", dst_dir);
    FILE *f = fopen(path, "wb");
    fputs("{\"architectures\": [\"LlavaMistralForCausalLM\"], \"model_type\": \"llava_mistral\",\n"
          " \"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": 4,\n"
          " \"num_key_value_heads\": 2, \"head_dim\": 16, \"vocab_size\": 300, \"rms_norm_eps\": 1e-05,\n"
          " \"rope_theta\": 1000000.0, \"sliding_window\": null, \"hidden_act\": \"silu\",\n"
          " \"mm_projector_type\": \"mlp2x_gelu\", \"mm_vision_select_layer\": -2, \"mm_vision_select_feature\": \"patch\",\n"
          " \"mm_patch_merge_type\": \"spatial_unpad\", \"image_aspect_ratio\": \"anyres\", \"mm_hidden_size\": 32,\n"
          " \"mm_vision_tower\": \"tiny-clip-56\",\n"
          " \"vision_config\": {\"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 3,\n"
          "   \"num_attention_heads\": 2, \"image_size\": 56, \"patch_size\": 14, \"layer_norm_eps\": 1e-05},\n"
          " \"image_grid_pinpoints\": [[112, 56], [56, 112], [112, 112], [168, 56], [56, 168]]}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/model.safetensors", src_dir);
    st_file *sf;
    if (st_open(path, &sf)) { fprintf(stderr, "%s\n", err_msg()); exit(1); }
    stw *w = stw_new();
    for (int i = 0; i < st_count(sf); i++) {
        const st_tensor *t = st_at(sf, i);
        char name[256];
        int64_t shape[8];
        memcpy(shape, t->shape, sizeof shape);
        if (!strncmp(t->name, "language_model.lm_head.", 23)) snprintf(name, sizeof name, "lm_head.%s", t->name + 23);
        else if (!strncmp(t->name, "language_model.model.", 21)) snprintf(name, sizeof name, "model.%s", t->name + 21);
        else if (!strncmp(t->name, "vision_tower.", 13)) snprintf(name, sizeof name, "model.vision_tower.vision_tower.vision_model.%s", t->name + 13);
        else if (!strncmp(t->name, "multi_modal_projector.linear_1.", 31)) snprintf(name, sizeof name, "model.mm_projector.0.%s", t->name + 31);
        else if (!strncmp(t->name, "multi_modal_projector.linear_2.", 31)) snprintf(name, sizeof name, "model.mm_projector.2.%s", t->name + 31);
        else snprintf(name, sizeof name, "model.%s", t->name); /* image_newline */
        if (strstr(name, "embed_tokens") || strstr(name, "lm_head")) shape[0] = 300;
        stw_add(w, name, "F32", t->ndim, shape, t->data);
    }
    st_close(sf);
    snprintf(path, sizeof path, "%s/model.safetensors", dst_dir);
    CHECK_EQ_INT(stw_write(w, path), 0);
    stw_free(w);
}

/* every parameter of a equals b's; for embed/lm_head only the first `rows` rows */
static int same_params_rows(const char *a, const char *b, int64_t rows) {
    llava_model ma, mb;
    if (mh5_load(a, &ma) || mh5_load(b, &mb)) { fprintf(stderr, "%s\n", err_msg()); return 0; }
    llava_param *pa, *pb;
    int na, nb, same = 1;
    llava_params_build(&ma.cfg, &ma.w, &pa, &na);
    llava_params_build(&mb.cfg, &mb.w, &pb, &nb);
    same = na == nb && !memcmp(&ma.cfg.anyres, &mb.cfg.anyres, sizeof ma.cfg.anyres) && ma.cfg.image_token == mb.cfg.image_token;
    for (int i = 0; same && i < na; i++) {
        int64_t n = pa[i].numel;
        if (strstr(pa[i].name, "embed_tokens") || strstr(pa[i].name, "lm_head")) n = rows * pa[i].shape[1];
        same = !memcmp(*pa[i].slot, *pb[i].slot, sizeof(float) * (size_t)n);
        if (!same) fprintf(stderr, "differs: %s\n", pa[i].name);
    }
    free(pa); free(pb);
    llava_model_free(&ma);
    llava_model_free(&mb);
    return same;
}

static void expect_fail(const char *dir, const char *out, const char *needle) {
    mh5_opts o;
    mh5_opts_default(&o);
    int rc = mh5_import(dir, out, &o);
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK_CONTAINS(err_msg(), needle);
}

int main(void) {
    const char *tmp = test_tmpdir();
    char src[1024], out[2048], out2[2048], dir[2048];
    snprintf(src, sizeof src, "%s", test_fixture("llava_tiny/model"));
    hid_t F = fx_open(test_fixture("llava_tiny/forward.h5"));
    mh5_opts o;

    /* fp32 import */
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    snprintf(out, sizeof out, "%s/model_fp32.h5", tmp);
    int rc = mh5_import(src, out, &o);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    check_logits(out, "logits", F);

    /* nf4 import, bitsandbytes CPU flavor, against HF with the same dequantized weights */
    mh5_opts_default(&o);
    o.nf4_flavor = NF4_FLAVOR_CPU;
    snprintf(out2, sizeof out2, "%s/model_nf4.h5", tmp);
    CHECK_EQ_INT(mh5_import(src, out2, &o), 0);
    check_logits(out2, "logits_nf4", F);
    {
        llava_model m;
        CHECK_EQ_INT(mh5_load(out2, &m), 0);
        CHECK_EQ_INT(m.w.dec[0].q.dtype, DT_NF4);
        CHECK_EQ_INT(m.w.lm_head.dtype, DT_F32); /* lm_head stays bf16 on disk, fp32 in memory */
        CHECK_EQ_INT(m.w.vis[0].q.dtype, DT_F32);
        llava_model_free(&m);
    }

    /* other layouts give the same tensors */
    snprintf(dir, sizeof dir, "%s/v5_sharded", tmp);
    write_layout(src, dir, 1, "F32", 2);
    snprintf(out2, sizeof out2, "%s/v5.h5", tmp);
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    rc = mh5_import(dir, out2, &o);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    CHECK(same_params(out, out2));
    snprintf(dir, sizeof dir, "%s/legacy", tmp);
    write_layout(src, dir, 0, "F32", 1);
    CHECK_EQ_INT(mh5_import(dir, out2, &o), 0);
    CHECK(same_params(out, out2));
    /* the original liuhaotian layout: same tensors; <image>/<pad> rows added at 300/301 */
    snprintf(dir, sizeof dir, "%s/liuhaotian", tmp);
    write_liuhaotian(src, dir);
    snprintf(out2, sizeof out2, "%s/liuhaotian.h5", tmp);
    rc = mh5_import(dir, out2, &o);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    CHECK(same_params_rows(out, out2, 300));
    {
        llava_model m;
        CHECK_EQ_INT(mh5_load(out2, &m), 0);
        CHECK_EQ_INT(m.cfg.vocab, 302);
        CHECK_EQ_INT(m.cfg.image_token, 300);
        CHECK_EQ_INT(m.cfg.anyres.pinpoints[0][0], 56); /* (width 112, height 56) became (height, width) */
        CHECK_EQ_INT(m.cfg.anyres.pinpoints[0][1], 112);
        llava_model_free(&m);
    }

    /* bf16 and fp16 sources: the nf4 import equals the nf4 import of an fp32 file holding the same values */
    const char *dts[2] = {"BF16", "F16"};
    for (int k = 0; k < 2; k++) {
        char hdir[2048], fdir[2560], a[2560], b[2560];
        snprintf(hdir, sizeof hdir, "%s/src_%s", tmp, dts[k]);
        snprintf(fdir, sizeof fdir, "%s/src_%s_as_f32", tmp, dts[k]);
        write_layout(src, hdir, 0, dts[k], 1);
        write_layout(hdir, fdir, 0, "F32", 1);
        mh5_opts_default(&o);
        snprintf(a, sizeof a, "%s/from_%s.h5", tmp, dts[k]);
        snprintf(b, sizeof b, "%s/from_%s_as_f32.h5", tmp, dts[k]);
        CHECK_EQ_INT(mh5_import(hdir, a, &o), 0);
        CHECK_EQ_INT(mh5_import(fdir, b, &o), 0);
        CHECK(same_params(a, b));
    }

    /* failures: nothing at --out, an existing file untouched */
    snprintf(out2, sizeof out2, "%s/keep.h5", tmp);
    FILE *keep = fopen(out2, "wb"); fputs("precious", keep); fclose(keep);
    snprintf(dir, sizeof dir, "%s/v5_sharded/model-00002-of-00002.safetensors", tmp);
    remove(dir);
    snprintf(dir, sizeof dir, "%s/v5_sharded", tmp);
    expect_fail(dir, out2, "model-00002-of-00002.safetensors");
    char *kb; size_t kn;
    fs_read_all(out2, &kb, &kn);
    CHECK(kn == 8 && !memcmp(kb, "precious", 8));
    free(kb);

    snprintf(dir, sizeof dir, "%s/badshape", tmp);
    write_layout(src, dir, 0, "F32", 1);
    { /* replace the checkpoint by one whose k_proj of layer 1 has a wrong shape */
        char p[2048];
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        st_file *sf; st_open(p, &sf);
        stw *w = stw_new();
        for (int i = 0; i < st_count(sf); i++) {
            const st_tensor *t = st_at(sf, i);
            int64_t shape[8];
            memcpy(shape, t->shape, sizeof shape);
            if (!strcmp(t->name, "language_model.model.layers.1.self_attn.k_proj.weight")) shape[0] = 16, shape[1] = 128;
            stw_add(w, t->name, "F32", t->ndim, shape, t->data);
        }
        st_close(sf);
        stw_write(w, p);
        stw_free(w);
    }
    snprintf(out, sizeof out, "%s/never.h5", tmp);
    expect_fail(dir, out, "language_model.model.layers.1.self_attn.k_proj.weight: shape [16,128], expected [32,64]");
    CHECK(!fs_exists(out));

    snprintf(dir, sizeof dir, "%s/unknown_arch", tmp);
    write_layout(src, dir, 0, "F32", 1);
    {
        char p[2048];
        snprintf(p, sizeof p, "%s/config.json", dir);
        FILE *f = fopen(p, "wb");
        fputs("{\"model_type\": \"llava_onevision\", \"vision_config\": {}, \"text_config\": {}}", f);
        fclose(f);
    }
    expect_fail(dir, out, "model_type: unsupported value \"llava_onevision\", expected \"llava_next\"");
    CHECK(!fs_exists(out));

    H5Fclose(F);
    TEST_MAIN_END();
}
