/* Unit test: make-demo (src/demo). Writes the demo into a temp dir and checks that
 *   - the model directory parses, imports to model.h5 (mh5_import, NF4 and fp32) and runs the trainer's forward on a
 *     demo example (real PNG -> anyres -> template ids): logits finite, fp32 import == HF-directory load,
 *     NF4 close to fp32;
 *   - the tokenizer loads from the written tokenizer.json; every question/answer round-trips
 *     (decode(encode(s)) == s) with one token per word and punctuation mark; the vocabulary equals the model's;
 *   - the initialisation: scaled (default) and HF's N(0, 0.02^2), measured on the loaded weights;
 *   - every PNG decodes (img_decode) to exactly the drawn pixels; the answers are true / hallucinated as
 *     claimed, checked on the pixels (colour of the big shape, number of shapes, existence: an "absent" object's
 *     colour is nowhere in the image, a "present" one's is there; the answer is the capitalised colour and the
 *     verdict, the rejected answer the other verdict); the task mix (default shares; --mix honoured; bad --mix
 *     refused);
 *   - the Parquet file reads back with the pq_ reader, RLAIF-V columns and types, the same rows as pairs.jsonl
 *     and the PNG bytes of the image files;
 *   - two runs with the same seed give byte-identical files, another seed gives other files.
 * ORPO_DEMO_DUMP=path writes the fp32 logits of pair 1 (all positions) for a by-hand comparison with HF. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/tensor.h"
#include "data/anyres.h"
#include "data/image.h"
#include "data/template.h"
#include "data/tok.h"
#include "demo/demo.h"
#include "fwd_full.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "io/parquet.h"
#include "model/model_h5.h"
#include "test.h"

#define NPAIRS 600 /* the test's data set (the default is 6000) */

typedef struct {
    char image[64], question[128], chosen[256], rejected[256];
} row;

static row rows[NPAIRS];
static int nrows;
static char dir_a[700], dir_b[700], dir_c[700];

static const char *jstr(const cJSON *o, const char *k) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static void load_jsonl(const char *dir) {
    char path[900], *buf = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/data/pairs.jsonl", dir);
    CHECK_EQ_INT(fs_read_all(path, &buf, &n), 0);
    if (!buf) return;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && nrows < NPAIRS; line = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(line);
        CHECK(o != NULL);
        if (!o) continue;
        CHECK_EQ_INT(cJSON_GetArraySize(o), 4);
        row *r = &rows[nrows++];
        snprintf(r->image, sizeof r->image, "%s", jstr(o, "image"));
        snprintf(r->question, sizeof r->question, "%s", jstr(o, "question"));
        snprintf(r->chosen, sizeof r->chosen, "%s", jstr(o, "chosen"));
        snprintf(r->rejected, sizeof r->rejected, "%s", jstr(o, "rejected"));
        cJSON_Delete(o);
    }
    free(buf);
    CHECK_EQ_INT(nrows, NPAIRS);
}

/* words and punctuation marks of a text: what one-token-per-word means */
static int count_units(const char *s) {
    int n = 0;
    while (*s) {
        if (*s == ' ') { s++; continue; }
        if (isalpha((unsigned char)*s) || *s == '[' || *s == '/' || *s == ']') {
            while (isalpha((unsigned char)*s) || *s == '[' || *s == '/' || *s == ']') s++;
        } else {
            s++;
        }
        n++;
    }
    return n;
}

static void test_tokenizer(const char *dir) {
    char path[900];
    snprintf(path, sizeof path, "%s/model/tokenizer.json", dir);
    tok *t = NULL;
    CHECK_EQ_INT(tok_load_file(path, &t), 0);
    if (!t) { fprintf(stderr, "%s\n", err_msg()); return; }
    llava_config cfg;
    snprintf(path, sizeof path, "%s/model/config.json", dir);
    CHECK_EQ_INT(llava_config_from_hf(path, &cfg), 0);
    CHECK_EQ_INT(tok_vocab_size(t), cfg.vocab);
    CHECK_EQ_INT(tok_piece_id(t, "<image>", 7), cfg.image_token);
    CHECK_EQ_INT(tok_piece_id(t, "<pad>", 5), cfg.pad_token);
    CHECK_EQ_INT(tok_bos_id(t), 1);
    CHECK_EQ_INT(tok_eos_id(t), 2);
    CHECK_EQ_INT(tok_unk_id(t), 0);
    CHECK_EQ_INT(tok_piece_id(t, "<0x0A>", 6), 13);
    int bad_rt = 0, bad_len = 0, maxlen = 0;
    for (int i = 0; i < nrows; i++) {
        const char *texts[3] = {rows[i].question, rows[i].chosen, rows[i].rejected};
        for (int k = 0; k < 3; k++) {
            tok_ids ids = {0};
            CHECK_EQ_INT(tok_encode(t, texts[k], strlen(texts[k]), 0, &ids), 0);
            char *s = NULL;
            size_t n = 0;
            CHECK_EQ_INT(tok_decode(t, ids.v, ids.n, 0, &s, &n), 0);
            if (!s || strcmp(s, texts[k])) bad_rt++;
            if ((int)ids.n != count_units(texts[k])) {
                if (bad_len++ < 3) fprintf(stderr, "not one token per word: \"%s\" (%zu ids)\n", texts[k], ids.n);
            }
            if ((int)ids.n > maxlen) maxlen = (int)ids.n;
            for (size_t j = 0; j < ids.n; j++)
                if (ids.v[j] == 0 || (ids.v[j] >= 3 && ids.v[j] < 259)) bad_len++; /* no <unk>, no byte fallback */
            free(s);
            tok_ids_free(&ids);
        }
    }
    CHECK_EQ_INT(bad_rt, 0);
    CHECK_EQ_INT(bad_len, 0);
    CHECK(maxlen > 3 && maxlen <= 24);
    /* the chat template: <s> ▁[INST] ▁ <image>... ▁ \n What ▁color ... ▁[/INST] ▁The ... </s> */
    tpl_seq seq;
    memset(&seq, 0, sizeof seq);
    CHECK_EQ_INT(tpl_encode(t, "What color is the big shape?", "The big shape is red.", 5, &seq), 0);
    const char *expect[] = {"<s>", "\xE2\x96\x81[INST]", "\xE2\x96\x81", "<image>", "<image>", "<image>", "<image>",
                            "<image>", "\xE2\x96\x81", "<0x0A>", "What", "\xE2\x96\x81" "color",
                            "\xE2\x96\x81" "is", "\xE2\x96\x81" "the", "\xE2\x96\x81" "big",
                            "\xE2\x96\x81" "shape", "?", "\xE2\x96\x81[/INST]", "\xE2\x96\x81The",
                            "\xE2\x96\x81" "big", "\xE2\x96\x81" "shape", "\xE2\x96\x81" "is",
                            "\xE2\x96\x81" "red", ".", "</s>"};
    int ne = (int)(sizeof expect / sizeof expect[0]);
    CHECK_EQ_INT(seq.ids.n, ne);
    for (int i = 0; i < ne && i < (int)seq.ids.n; i++) CHECK_EQ_INT(seq.ids.v[i], tok_piece_id(t, expect[i], strlen(expect[i])));
    CHECK_EQ_INT(seq.answer_start, 18);
    tpl_free(&seq);
    tok_free(t);
}

static int read_file(const char *dir, const char *rel, char **buf, size_t *n) {
    char path[900];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return fs_read_all(path, buf, n);
}

static int colour_of(const char *word) {
    for (int c = 0; c < DEMO_NCOLOURS; c++)
        if (!strcmp(word, demo_colour_name(c))) return c;
    return -1;
}

/* last word before the final '.' */
static void last_word(const char *s, char *w, size_t cap) {
    const char *e = s + strlen(s);
    if (e > s && e[-1] == '.') e--;
    const char *b = e;
    while (b > s && b[-1] != ' ') b--;
    snprintf(w, cap, "%.*s", (int)(e - b), b);
}

static void test_images(const char *dir) {
    int bad_px = 0, checked = 0, bad_truth = 0, exist_yes = 0, exist_n = 0;
    int grids[4][4] = {{0}};
    img_config ic;
    img_config_llava16(&ic);
    char cfgp[900];
    snprintf(cfgp, sizeof cfgp, "%s/model/config.json", dir);
    llava_config cfg;
    CHECK_EQ_INT(llava_config_from_hf(cfgp, &cfg), 0);
    for (int i = 0; i < nrows; i++) {
        char rel[100], *buf = NULL;
        size_t n = 0;
        snprintf(rel, sizeof rel, "data/%s", rows[i].image);
        CHECK_EQ_INT(read_file(dir, rel, &buf, &n), 0);
        img_rgb im = {0};
        int rc = img_decode(buf, n, rel, i, &im);
        free(buf);
        CHECK_EQ_INT(rc, 0);
        if (rc) continue;
        demo_scene s;
        demo_scene_make(1, i, &s);
        uint8_t *px = NULL;
        CHECK_EQ_INT(demo_scene_draw(&s, &px), 0);
        if (im.w != s.w || im.h != s.h || memcmp(im.px, px, (size_t)s.w * s.h * 3)) bad_px++;
        free(px);
        int gr, gc;
        if (!anyres_grid(&cfg.anyres, im.h, im.w, &gr, &gc) && gr < 4 && gc < 4) grids[gr][gc]++;
        /* pixels per palette colour */
        int64_t cnt[DEMO_NCOLOURS] = {0};
        for (int64_t p = 0; p < (int64_t)im.w * im.h; p++)
            for (int c = 0; c < DEMO_NCOLOURS; c++) {
                uint8_t rgb[3];
                demo_colour_rgb(c, rgb);
                if (!memcmp(im.px + 3 * p, rgb, 3)) cnt[c]++;
            }
        int present = 0, top = 0;
        for (int c = 0; c < DEMO_NCOLOURS; c++) {
            present += cnt[c] > 0;
            if (cnt[c] > cnt[top]) top = c;
        }
        const row *r = &rows[i];
        char wc[32], wr[32];
        last_word(r->chosen, wc, sizeof wc);
        last_word(r->rejected, wr, sizeof wr);
        if (!strncmp(r->question, "What color is the", 17)) { /* the big shape's colour, from the pixels */
            checked++;
            if (colour_of(wc) != top || colour_of(wr) < 0 || colour_of(wr) == top) bad_truth++;
        } else if (!strcmp(r->question, "How many shapes are there?")) {
            static const char *num[4] = {"", "one", "two", "three"};
            checked++;
            if (!strstr(r->chosen, num[present]) || strstr(r->rejected, num[present])) bad_truth++;
        } else if (!strncmp(r->question, "Is there a", 10)) {
            char art[8], cw[32], sw[32];
            sscanf(r->question + 9, "%7s %31s %31[a-z]", art, cw, sw);
            int c = colour_of(cw), yes = strstr(r->chosen, " present.") != NULL;
            checked++;
            exist_yes += yes;
            exist_n++;
            /* yes: that colour is there; no: that colour is nowhere in the image (the hallucinated object) */
            if (c < 0 || (yes ? cnt[c] == 0 : cnt[c] != 0)) bad_truth++;
            /* the asked colour, capitalised, then the verdict; the rejected answer the other verdict */
            char want_c[40], want_r[40];
            snprintf(want_c, sizeof want_c, "%c%s %s.", cw[0] - 'a' + 'A', cw + 1, yes ? "present" : "absent");
            snprintf(want_r, sizeof want_r, "%c%s %s.", cw[0] - 'a' + 'A', cw + 1, yes ? "absent" : "present");
            if (strcmp(r->chosen, want_c) || strcmp(r->rejected, want_r)) bad_truth++;
            if (strcmp(art, cw[0] == 'o' ? "an" : "a")) bad_truth++; /* "an orange", "a red" */
        } else if (!strcmp(r->question, "Describe the image.")) {
            /* "A big red shape and a small blue shape on a ...": every colour of the image once, the big (commonest)
             * one first and the only "big"; no outline named (docs/demo.md, "Why a description names no outline") */
            checked++;
            int seen = 0, k = 0, bad = 0;
            char size[8], cw[32];
            for (const char *q = r->chosen; (q = strstr(q, " shape")) != NULL; q++) {
                const char *e = q;
                while (e > r->chosen && e[-1] != ' ') e--; /* the colour word before " shape" */
                snprintf(cw, sizeof cw, "%.*s", (int)(q - e), e);
                const char *b = e - 1;
                while (b > r->chosen && b[-1] != ' ') b--; /* the size word before it */
                snprintf(size, sizeof size, "%.*s", (int)(e - 1 - b), b);
                int c = colour_of(cw);
                if (c < 0 || cnt[c] == 0 || (seen >> c & 1) || strcmp(size, k ? "small" : "big") || (!k && c != top))
                    bad = 1;
                if (c >= 0) seen |= 1 << c;
                k++;
            }
            if (k != present || strstr(r->chosen, "circle") || strstr(r->chosen, "square") || strstr(r->chosen, "triangle"))
                bad = 1;
            bad_truth += bad;
        }
        if (!strcmp(r->chosen, r->rejected)) bad_truth++;
        img_free(&im);
    }
    CHECK_EQ_INT(bad_px, 0);
    CHECK_EQ_INT(bad_truth, 0);
    CHECK(checked > nrows / 2);
    CHECK(exist_yes > 0 && exist_yes < exist_n); /* both verdicts */
    /* anyres picks several grids: 1x2, 2x1, 2x2, 1x3, 3x1 */
    CHECK(grids[1][2] > 0 && grids[2][1] > 0 && grids[2][2] > 0 && grids[1][3] > 0 && grids[3][1] > 0);
}

/* the kinds of the rows: default shares (34/6/4/4/36/16 %), and --mix honoured */
static void test_mix(void) {
    int n[6] = {0};
    for (int i = 0; i < nrows; i++) {
        const char *q = rows[i].question;
        int k = !strncmp(q, "What color", 10) ? 0 : !strncmp(q, "What shape", 10) ? 1 : !strncmp(q, "How many", 8) ? 2
              : !strncmp(q, "Where", 5) ? 3 : !strncmp(q, "Is there", 8) ? 4 : !strncmp(q, "Describe", 8) ? 5 : -1;
        CHECK(k >= 0);
        if (k >= 0) n[k]++;
    }
    static const double share[6] = {0.34, 0.06, 0.04, 0.04, 0.36, 0.16};
    for (int k = 0; k < 6; k++) CHECK_NEAR((double)n[k] / nrows, share[k], 0.05);
    for (int k = 0; k < 6; k++) CHECK(n[k] > 0); /* every kind is present */
    demo_opts o;
    demo_opts_default(&o);
    CHECK_EQ_INT(demo_mix_parse("0,0,1,0,0,0", o.mix), 0);
    int only_count = 1;
    for (int i = 0; i < 50; i++) {
        demo_scene s;
        demo_pair p;
        demo_scene_make(o.seed, i, &s);
        demo_pair_make(&s, &o, i, &p);
        only_count &= p.kind == DEMO_Q_COUNT && !strcmp(p.question, "How many shapes are there?");
    }
    CHECK(only_count);
    int mix[DEMO_NQ] = {7, 7, 7, 7, 7, 7};
    CHECK_EQ_INT(demo_mix_parse("1,2,3", mix), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "--mix 1,2,3");
    CHECK_EQ_INT(demo_mix_parse("0,0,0,0,0,0", mix), ERR_ARGS);
    CHECK_EQ_INT(demo_mix_parse("1,2,3,4,5,-6", mix), ERR_ARGS);
    CHECK_EQ_INT(demo_mix_parse("1,2,3,4,5,6,7", mix), ERR_ARGS);
    CHECK_EQ_INT(demo_mix_parse("1,2,3,4,5,6x", mix), ERR_ARGS);
    CHECK_EQ_INT(mix[0], 7); /* untouched on error */
    CHECK_EQ_INT(demo_mix_parse("1,2,3,4,5,6", mix), 0);
    CHECK_EQ_INT(mix[5], 6);
}

/* sample standard deviation of n floats */
static double stdev(const float *x, int64_t n) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) s += x[i], ss += (double)x[i] * x[i];
    return sqrt(ss / n - (s / n) * (s / n));
}

/* the weights of the default (scaled) init as loaded, and of --init hf */
static void test_init(const char *dir) {
    char hf[900];
    snprintf(hf, sizeof hf, "%s/model", dir);
    llava_model m;
    CHECK_EQ_INT(llava_model_load_hf(hf, &m), 0);
    const dec_layer *d = &m.w.dec[0];
    CHECK_EQ_INT(d->q.dtype, DT_F32);
    CHECK_NEAR(stdev(d->q.w, d->q.out * d->q.in), 1.0 / sqrt(128.0), 0.004);     /* 1/sqrt(fan_in) */
    CHECK_NEAR(stdev(d->down.w, d->down.out * d->down.in), 1.0 / 16.0, 0.003);   /* fan_in 256 */
    CHECK_NEAR(stdev(m.w.embed, (int64_t)m.cfg.vocab * 128), 1.0, 0.02);
    CHECK_NEAR(stdev(m.w.vis[0].fc1.w, 256 * 64), 1.0 / 8.0, 0.004);            /* fan_in 64 */
    CHECK_NEAR(stdev(m.w.vis[0].fc2.w, 64 * 256), 0.1 / 16.0, 0.0003);          /* residual branch: 0.1x */
    CHECK_NEAR(stdev(m.w.vis[1].o.w, 64 * 64), 0.1 / 8.0, 0.0006);
    llava_model_free(&m);
    char sub[960];
    snprintf(sub, sizeof sub, "%s/hf-init", test_tmpdir());
    demo_opts o;
    demo_opts_default(&o);
    o.pairs = 2;
    o.init = DEMO_INIT_HF;
    CHECK_EQ_INT(demo_make(sub, &o), 0);
    snprintf(hf, sizeof hf, "%s/model", sub);
    CHECK_EQ_INT(llava_model_load_hf(hf, &m), 0);
    CHECK_NEAR(stdev(m.w.dec[0].q.w, m.w.dec[0].q.out * m.w.dec[0].q.in), 0.02, 0.001);
    CHECK_NEAR(stdev(m.w.embed, (int64_t)m.cfg.vocab * 128), 0.02, 0.001);
    CHECK_NEAR(stdev(m.w.vis[0].fc2.w, 64 * 256), 0.02, 0.001);
    llava_model_free(&m);
    o.init = 7;
    CHECK_EQ_INT(demo_make(sub, &o), ERR_ARGS);
    demo_opts_default(&o);
    o.mix[2] = -1;
    CHECK_EQ_INT(demo_make(sub, &o), ERR_ARGS);
}

/* --init built: the constructed vision tower sees the colours of a tile. One 56 x 56 tile, white, with a red square in
 * its upper left (28 x 28) and a blue rectangle (14 x 28) at the bottom right, goes through the C tower; every patch's
 * features say red and blue are there (DEMO_VF_PRESENT + colour ~ 1), nothing else (~ 0), and two colours
 * (DEMO_VF_COUNT ~ 2); a tile with nothing but white says none. */
static void test_built(void) {
    char sub[960], hf[990];
    snprintf(sub, sizeof sub, "%s/built-init", test_tmpdir());
    demo_opts o;
    demo_opts_default(&o);
    o.pairs = 2;
    o.init = DEMO_INIT_BUILT;
    CHECK_EQ_INT(demo_make(sub, &o), 0);
    snprintf(hf, sizeof hf, "%s/model", sub);
    llava_model m;
    CHECK_EQ_INT(llava_model_load_hf(hf, &m), 0);
    const int T = m.cfg.v_image, np = (T / m.cfg.v_patch) * (T / m.cfg.v_patch);
    const int64_t Dv = m.cfg.v_hidden;
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073}, std[3] = {0.26862954, 0.26130258, 0.27577711};
    float *pix = malloc(sizeof(float) * 3 * (size_t)(T * T)), *feat = malloc(sizeof(float) * (size_t)(np * Dv));
    llava_trainer tr;
    CHECK_EQ_INT(ff_init(&tr, &m, 8, 1, 1, 1), 0);
    for (int blank = 0; blank < 2; blank++) {
        for (int y = 0; y < T; y++)
            for (int x = 0; x < T; x++) {
                uint8_t rgb[3] = {255, 255, 255};
                if (!blank && y < 28 && x < 28) demo_colour_rgb(DEMO_RED, rgb);
                if (!blank && y >= 42 && x >= 28) demo_colour_rgb(DEMO_BLUE, rgb);
                for (int c = 0; c < 3; c++) pix[(c * T + y) * T + x] = (float)((rgb[c] / 255.0 - mean[c]) / std[c]);
            }
        int rc = lt_vision_features(&tr, pix, 1, feat);
        if (rc) fprintf(stderr, "%s\n", err_msg());
        CHECK_EQ_INT(rc, 0);
        double worst = 0;
        for (int p = 0; p < np; p++) {
            const float *f = feat + p * Dv;
            for (int c = 0; c < DEMO_NCOLOURS; c++) {
                int there = !blank && (c == DEMO_RED || c == DEMO_BLUE);
                worst = fmax(worst, fabs(f[DEMO_VF_PRESENT + c] - there));
            }
            worst = fmax(worst, fabs(f[DEMO_VF_COUNT] - (blank ? 0 : 2)));
        }
        printf("built tower, %s tile: presence and count within %.3f of the truth on all %d patches\n",
               blank ? "white" : "red + blue", worst, np);
        CHECK(worst < 0.1);
    }
    lt_free(&tr);
    free(pix);
    free(feat);
    llava_model_free(&m);
}

static void test_parquet(const char *dir) {
    char path[900];
    snprintf(path, sizeof path, "%s/data/rlaif-v-demo.parquet", dir);
    pq_file *pq = NULL;
    CHECK_EQ_INT(pq_open(path, &pq), 0);
    if (!pq) { fprintf(stderr, "%s\n", err_msg()); return; }
    static const char *cols[] = {"ds_name", "image.bytes", "image.path", "question", "chosen", "rejected",
                                 "origin_dataset", "origin_split", "idx", "image_path"};
    CHECK_EQ_INT(pq_num_columns(pq), 10);
    CHECK_EQ_INT(pq_num_rows(pq), nrows);
    CHECK_EQ_INT(pq_num_row_groups(pq), (nrows + 99) / 100);
    for (int c = 0; c < 10; c++) {
        const pq_column_info *ci = pq_column(pq, c);
        CHECK_EQ_STR(ci->path, cols[c]);
        CHECK_EQ_INT(ci->type, PQ_BYTE_ARRAY);
        CHECK_EQ_INT(ci->max_def, c == 1 || c == 2 ? 2 : 1);
        CHECK_EQ_INT(ci->logical_type, c == 1 ? 0 : 1); /* image.bytes is binary, the rest strings */
    }
    int bad = 0;
    int64_t r0 = 0;
    for (int g = 0; g < pq_num_row_groups(pq); g++) {
        pq_values v[10];
        memset(v, 0, sizeof v);
        for (int c = 0; c < 10; c++) CHECK_EQ_INT(pq_read_column(pq, g, c, &v[c]), 0);
        for (int64_t k = 0; k < v[0].n && r0 + k < nrows; k++) {
            const row *r = &rows[r0 + k];
            const char *want[10] = {"orpo-demo", NULL, NULL, r->question, r->chosen, r->rejected, "orpo-hpc-shapes",
                                    NULL, NULL, r->image};
            for (int c = 0; c < 10; c++) {
                if (c == 2) { bad += !v[c].is_null[k]; continue; }
                if (v[c].is_null[k]) { bad++; continue; }
                if (want[c] && (v[c].len[k] != strlen(want[c]) || memcmp(v[c].ptr[k], want[c], v[c].len[k]))) bad++;
            }
            char idx[32];
            snprintf(idx, sizeof idx, "demo_%06lld", (long long)(r0 + k + 1));
            if (v[8].len[k] != strlen(idx) || memcmp(v[8].ptr[k], idx, v[8].len[k])) bad++;
            cJSON *split = cJSON_ParseWithLength((const char *)v[7].ptr[k], v[7].len[k]);
            if (!split || !cJSON_IsString(cJSON_GetObjectItem(split, "type"))) bad++;
            cJSON_Delete(split);
            char rel[100], *buf = NULL;
            size_t n = 0;
            snprintf(rel, sizeof rel, "data/%s", r->image);
            if (read_file(dir, rel, &buf, &n) || n != v[1].len[k] || memcmp(buf, v[1].ptr[k], n)) bad++;
            free(buf);
        }
        r0 += v[0].n;
        for (int c = 0; c < 10; c++) pq_values_free(&v[c]);
    }
    CHECK_EQ_INT(r0, nrows);
    CHECK_EQ_INT(bad, 0);
    pq_close(pq);
}

/* logits of every position of pair i (question + chosen), or NULL: the trainer's forward (tests/fwd_full.h) */
static float *forward(llava_model *m, const char *dir, int i, int64_t *L_out) {
    const llava_config *cfg = &m->cfg;
    char rel[100], path[900], *buf = NULL;
    size_t n = 0;
    snprintf(rel, sizeof rel, "data/%s", rows[i].image);
    if (read_file(dir, rel, &buf, &n)) return NULL;
    img_rgb im = {0};
    int rc = img_decode(buf, n, rel, i, &im);
    free(buf);
    if (rc) return NULL;
    img_config ic;
    img_config_llava16(&ic);
    ic.grid = cfg->anyres;
    int P = anyres_num_patches(&cfg->anyres, im.h, im.w), np_ = 0;
    const int T = cfg->v_image;
    float *pix = malloc(sizeof(float) * (size_t)P * 3 * T * T);
    CHECK_EQ_INT(img_preprocess(&im, &ic, pix, P, &np_), 0);
    CHECK_EQ_INT(np_, P);
    int64_t n_img = anyres_num_image_tokens(&cfg->anyres, im.h, im.w);
    snprintf(path, sizeof path, "%s/model/tokenizer.json", dir);
    tok *t = NULL;
    tpl_seq seq;
    memset(&seq, 0, sizeof seq);
    CHECK_EQ_INT(tok_load_file(path, &t), 0);
    CHECK_EQ_INT(tpl_encode(t, rows[i].question, rows[i].chosen, (int32_t)n_img, &seq), 0);
    tok_free(t);
    const int64_t L = (int64_t)seq.ids.n;
    float *logits = malloc(sizeof(float) * (size_t)(L * cfg->vocab));
    lt_pair pr = ff_pair(seq.ids.v, L, pix, P, im.h, im.w);
    llava_trainer tr;
    rc = ff_init(&tr, m, L, P, 1, 1);
    if (!rc) rc = ff_logits(&tr, &pr, 1, logits, NULL, NULL);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    int64_t cap = n_img * cfg->t_hidden, got = -1;
    float *feat = malloc(sizeof(float) * (size_t)cap);
    CHECK_EQ_INT(rc ? rc : lt_peek(&tr, "image_rows", feat, cap, &got, NULL), 0);
    CHECK_EQ_INT(got, n_img); /* the packed image rows fill the template's <image> tokens */
    lt_free(&tr);
    free(pix); free(feat);
    img_free(&im);
    tpl_free(&seq);
    *L_out = L;
    return logits;
}

static void test_model(const char *dir) {
    char hf[900], h5a[900], h5b[900];
    snprintf(hf, sizeof hf, "%s/model", dir);
    snprintf(h5a, sizeof h5a, "%s/model_nf4.h5", dir);
    snprintf(h5b, sizeof h5b, "%s/model_fp32.h5", dir);
    mh5_opts mo;
    mh5_opts_default(&mo);
    int rc = mh5_import(hf, h5a, &mo);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    mo.quant = MH5_QUANT_FP32;
    CHECK_EQ_INT(mh5_import(hf, h5b, &mo), 0);
    llava_model mhf, mq, mf;
    CHECK_EQ_INT(llava_model_load_hf(hf, &mhf), 0);
    CHECK_EQ_INT(mh5_load(h5a, &mq), 0);
    CHECK_EQ_INT(mh5_load(h5b, &mf), 0);
    CHECK_EQ_INT(mhf.cfg.vocab, mq.cfg.vocab);
    CHECK_EQ_INT(mhf.cfg.t_kv_heads, 2);
    CHECK_EQ_INT(mhf.cfg.v_run_layers, 3);
    CHECK_EQ_INT(mhf.cfg.anyres.n_pinpoints, 5);
    int64_t L1 = 0, L2 = 0, L3 = 0;
    float *a = forward(&mhf, dir, 0, &L1), *b = forward(&mf, dir, 0, &L2), *c = forward(&mq, dir, 0, &L3);
    CHECK(a && b && c && L1 == L2 && L1 == L3 && L1 > 60);
    if (a && b && c && L1 == L2 && L1 == L3) {
        size_t n = (size_t)L1 * (size_t)mhf.cfg.vocab;
        int finite = 1;
        double dfp = 0, dq = 0, amax = 0, aa = 0, cc = 0, ac = 0;
        for (size_t k = 0; k < n; k++) {
            finite &= isfinite(a[k]) && isfinite(c[k]);
            dfp = fmax(dfp, fabs((double)a[k] - b[k]));
            dq = fmax(dq, fabs((double)a[k] - c[k]));
            amax = fmax(amax, fabs((double)a[k]));
            aa += (double)a[k] * a[k], cc += (double)c[k] * c[k], ac += (double)a[k] * c[k];
        }
        double cosine = ac / sqrt(aa * cc);
        CHECK(finite);
        CHECK(amax > 0.05); /* not all zero: the random init reaches the logits */
        CHECK_NEAR(dfp, 0, 1e-6);
        CHECK(dq > 0);          /* NF4 really quantized the decoder */
        CHECK(cosine > 0.95);   /* ... and stays close to the fp32 model */
        printf("demo forward: %lld positions, max |logit| %.3f, NF4 vs fp32: max diff %.4f, cosine %.4f\n",
               (long long)L1, amax, dq, cosine);
        const char *dump = getenv("ORPO_DEMO_DUMP");
        if (dump) {
            FILE *fp = fopen(dump, "wb");
            if (fp) {
                fwrite(a, sizeof(float), n, fp);
                fclose(fp);
            }
        }
    }
    free(a); free(b); free(c);
    llava_model_free(&mhf);
    llava_model_free(&mq);
    llava_model_free(&mf);
}

/* every file under dir (recursively), relative paths, sorted by readdir order of a fresh scan */
static int same_tree(const char *a, const char *b, const char *sub, int *nfiles) {
    char pa[900], pb[900];
    snprintf(pa, sizeof pa, "%s/%s", a, sub);
    DIR *d = opendir(pa);
    if (!d) return 0;
    int same = 1;
    struct dirent *e;
    while ((e = readdir(d)) && same) {
        if (e->d_name[0] == '.') continue;
        char rel[900];
        snprintf(rel, sizeof rel, "%s/%s", sub, e->d_name);
        snprintf(pa, sizeof pa, "%s/%s", a, rel);
        snprintf(pb, sizeof pb, "%s/%s", b, rel);
        if (fs_is_dir(pa)) {
            same = same_tree(a, b, rel, nfiles);
            continue;
        }
        char *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        if (fs_read_all(pa, &x, &nx) || fs_read_all(pb, &y, &ny) || nx != ny || memcmp(x, y, nx)) {
            fprintf(stderr, "differs: %s\n", rel);
            same = 0;
        }
        (*nfiles)++;
        free(x);
        free(y);
    }
    closedir(d);
    return same;
}

static int files_equal(const char *a, const char *b, const char *rel) {
    char pa[900], pb[900], *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    snprintf(pa, sizeof pa, "%s/%s", a, rel);
    snprintf(pb, sizeof pb, "%s/%s", b, rel);
    int eq = !fs_read_all(pa, &x, &nx) && !fs_read_all(pb, &y, &ny) && nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return eq;
}

static void test_determinism(void) {
    demo_opts o;
    demo_opts_default(&o);
    o.pairs = NPAIRS;
    double t0 = log_now();
    CHECK_EQ_INT(demo_make(dir_b, &o), 0);
    printf("make-demo (%d pairs, this build): %.2f s\n", o.pairs, log_now() - t0);
    int nfiles = 0;
    CHECK(same_tree(dir_a, dir_b, "model", &nfiles));
    CHECK(same_tree(dir_a, dir_b, "data", &nfiles));
    CHECK_EQ_INT(nfiles, 8 + 2 + NPAIRS); /* 8 model files, pairs.jsonl, the parquet file, the images */
    o.seed = 2;
    o.pairs = 20;
    CHECK_EQ_INT(demo_make(dir_c, &o), 0);
    CHECK(!files_equal(dir_a, dir_c, "model/model.safetensors"));
    CHECK(files_equal(dir_a, dir_c, "model/tokenizer.json")); /* the vocabulary does not depend on the seed */
    CHECK(!files_equal(dir_a, dir_c, "data/pairs.jsonl"));
}

static void test_errors(void) {
    demo_opts o;
    demo_opts_default(&o);
    o.pairs = 0;
    CHECK_EQ_INT(demo_make(dir_c, &o), ERR_ARGS);
    /* an output path under a regular file cannot be created */
    char f[900], sub[960];
    snprintf(f, sizeof f, "%s/plainfile", test_tmpdir());
    FILE *fp = fopen(f, "wb");
    if (fp) fclose(fp);
    snprintf(sub, sizeof sub, "%s/demo", f);
    demo_opts_default(&o);
    int rc = demo_make(sub, &o);
    CHECK(rc == ERR_IO || rc == ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "plainfile");
}

int main(void) {
    snprintf(dir_a, sizeof dir_a, "%s/a", test_tmpdir());
    snprintf(dir_b, sizeof dir_b, "%s/b", test_tmpdir());
    snprintf(dir_c, sizeof dir_c, "%s/c", test_tmpdir());
    demo_opts o;
    demo_opts_default(&o);
    CHECK_EQ_INT(o.pairs, 6000);
    CHECK_EQ_INT(o.init, DEMO_INIT_SCALED);
    o.pairs = NPAIRS;
    int rc = demo_make(dir_a, &o);
    if (rc) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(rc, 0);
    if (rc) TEST_MAIN_END();
    load_jsonl(dir_a);
    test_tokenizer(dir_a);
    test_images(dir_a);
    test_mix();
    test_init(dir_a);
    test_built();
    test_parquet(dir_a);
    test_model(dir_a);
    test_determinism();
    test_errors();
    TEST_MAIN_END();
}
