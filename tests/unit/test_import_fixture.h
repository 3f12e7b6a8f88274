/* test_import_fixture — helpers shared by the data tests (test_import*.c, test_loader*.c, test_dataset*.c).
 *
 *   fx_make_model(dir, vocab, image_token, with_tokenizer, out_h5)
 *        an HF directory = tests/fixtures/llava_tiny/model with its text vocab widened to `vocab` rows
 *        (embed_tokens / lm_head rows beyond 320 filled deterministically), image_token_index and pad set,
 *        plus tests/fixtures/tokenizer/tokenizer.json; imported with mh5_import (fp32) into out_h5.
 *        vocab 320 / image_token 300 is the fixture model itself (which does not fit the Mistral tokenizer: with
 *        with_tokenizer, mh5_import refuses it with ERR_DATA).
 *   fx_read_file(path, &n)          whole file, malloc'ed
 *   fx_write_file(path, buf, n)
 *   fx_expected                     tests/fixtures/data/expected.txt, parsed
 */
#ifndef ORPO_TEST_IMPORT_FIXTURE_H
#define ORPO_TEST_IMPORT_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "io/st_write.h"
#include "model/model_h5.h"
#include "test.h"

static char *fx_read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    if (buf && fread(buf, 1, (size_t)len, f) != (size_t)len) { free(buf); buf = NULL; }
    if (buf) buf[len] = '\0';
    fclose(f);
    if (n) *n = (size_t)len;
    return buf;
}

static int fx_write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* replace the first occurrence of `key` followed by a number with `key` + value */
static void fx_set_json_int(char *json, size_t cap, const char *key, long v) {
    char *p = strstr(json, key);
    if (!p) return;
    char *q = p + strlen(key);
    while (*q == ' ') q++;
    char *e = q;
    while ((*e >= '0' && *e <= '9') || *e == '-') e++;
    char tail[8192];
    snprintf(tail, sizeof tail, "%s", e);
    snprintf(q, cap - (size_t)(q - json), "%ld%s", v, tail);
}

static int fx_make_model(const char *dir, long vocab, long image_token, int with_tokenizer, const char *out_h5) {
    char path[1024];
    mkdir(dir, 0777);
    size_t n = 0;
    char *cfg = fx_read_file(test_fixture("llava_tiny/model/config.json"), &n);
    if (!cfg) return -1;
    char *big = calloc(1, n + 256);
    memcpy(big, cfg, n);
    free(cfg);
    fx_set_json_int(big, n + 256, "\"vocab_size\":", vocab);
    fx_set_json_int(big, n + 256, "\"image_token_index\":", image_token);
    fx_set_json_int(big, n + 256, "\"pad_token_id\":", image_token + 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = fx_write_file(path, big, strlen(big));
    free(big);
    if (rc) return -1;
    st_file *sf = NULL;
    if (st_open(test_fixture("llava_tiny/model/model.safetensors"), &sf)) return -1;
    stw *w = stw_new();
    for (int i = 0; i < st_count(sf); i++) {
        const st_tensor *t = st_at(sf, i);
        int wide = strstr(t->name, "embed_tokens") || strstr(t->name, "lm_head");
        if (!wide) {
            stw_add(w, t->name, st_dtype_name(t->dtype), t->ndim, t->shape, t->data);
            continue;
        }
        int64_t rows = t->shape[0], cols = t->shape[1], shape[2] = {vocab, cols};
        float *src = malloc(sizeof(float) * (size_t)(rows * cols));
        float *dst = malloc(sizeof(float) * (size_t)(vocab * cols));
        st_to_f32(sf, t, src);
        for (int64_t r = 0; r < vocab; r++)
            for (int64_t c = 0; c < cols; c++)
                dst[r * cols + c] = r < rows ? src[r * cols + c] : (float)(((r * 131 + c * 7) % 97) - 48) * 0.001f;
        stw_add(w, t->name, "F32", 2, shape, dst);
        free(src);
        free(dst);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = stw_write(w, path);
    stw_free(w);
    st_close(sf);
    if (rc) return -1;
    if (with_tokenizer) {
        char *tj = fx_read_file(test_fixture("tokenizer/tokenizer.json"), &n);
        if (!tj) return -1;
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        rc = fx_write_file(path, tj, n);
        free(tj);
        if (rc) return -1;
    }
    mh5_opts o;
    mh5_opts_default(&o);
    o.quant = MH5_QUANT_FP32;
    return mh5_import(dir, out_h5, &o);
}

/* ---- expected.txt ---- */

#define FX_MAX_ROWS 32
#define FX_MAX_IDS 512

typedef struct fx_pair {
    int row, h, w, nimg, prefix;  /* prefix: expanded length */
    int32_t chosen[FX_MAX_IDS], rejected[FX_MAX_IDS];
    int nchosen, nrejected;
} fx_pair;

typedef struct fx_expected {
    int rows, npairs;
    char skip[FX_MAX_ROWS][32]; /* reason per row, "" for accepted rows */
    fx_pair pairs[FX_MAX_ROWS];
} fx_expected;

static int fx_parse_ids(char *s, int32_t *out, int cap) {
    int n = 0;
    for (char *tokp = strtok(s, " \n"); tokp; tokp = strtok(NULL, " \n")) {
        if (tokp[0] == 'I') {
            int k = atoi(tokp + 1);
            for (int i = 0; i < k && n < cap; i++) out[n++] = 32000;
        } else if (n < cap) {
            out[n++] = (int32_t)atoi(tokp);
        }
    }
    return n;
}

static int fx_load_expected(fx_expected *e) {
    memset(e, 0, sizeof *e);
    size_t n = 0;
    char *txt = fx_read_file(test_fixture("data/expected.txt"), &n);
    if (!txt) return -1;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int a, b, c, d, f, g;
        char reason[32];
        if (sscanf(line, "rows %d", &a) == 1) e->rows = a;
        else if (sscanf(line, "skip %d %31s", &a, reason) == 2 && a < FX_MAX_ROWS) snprintf(e->skip[a], 32, "%s", reason);
        else if (sscanf(line, "pair %d row %d h %d w %d nimg %d prefix %d", &a, &b, &c, &d, &f, &g) == 6 && a < FX_MAX_ROWS) {
            fx_pair *p = &e->pairs[a];
            p->row = b; p->h = c; p->w = d; p->nimg = f; p->prefix = g;
            e->npairs = a + 1;
        } else if (!strncmp(line, "chosen ", 7) && e->npairs) {
            fx_pair *p = &e->pairs[e->npairs - 1];
            p->nchosen = fx_parse_ids(line + 7, p->chosen, FX_MAX_IDS);
        } else if (!strncmp(line, "rejected ", 9) && e->npairs) {
            fx_pair *p = &e->pairs[e->npairs - 1];
            p->nrejected = fx_parse_ids(line + 9, p->rejected, FX_MAX_IDS);
        }
    }
    free(txt);
    return 0;
}

#endif
