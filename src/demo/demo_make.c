/* demo_make — `orpo-hpc make-demo`: DIR/model (HF LLaVA-NeXT directory) and DIR/data (PNG images,
 * pairs.jsonl, rlaif-v-demo.parquet). Small files go through the atomic writer; the images are plain
 * writes (they are regenerated identically by a rerun). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "demo/demo.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "io/mem.h"
#include "io/pq_write.h"

#define DEMO_RG_ROWS 100 /* rows per Parquet row group, as HF datasets 2.13-4.0 wrote image data sets */

/* The default task mix, in percent: colour of the big shape, shape, count, position, existence, description.
 * Colour, existence (the absent object has a colour that is nowhere in the image) and description
 * (hallucinated objects have such colours too) are answered by which colours the image holds, which the
 * tiny model learns within the demo's two CPU minutes; shape, count and position need spatial reasoning that
 * it mostly does not learn in that time, so they are present but rare. Colour is learnt long before the end,
 * so some of its share went to existence and shape, the kinds the hallucination benchmark found wrong most often
 * (docs/demo.md). */
static const int default_mix[DEMO_NQ] = {34, 6, 4, 4, 36, 16};

void demo_opts_default(demo_opts *o) {
    o->seed = 1;
    o->pairs = 6000;
    o->init = DEMO_INIT_SCALED;
    memcpy(o->mix, default_mix, sizeof o->mix);
}

int demo_mix_parse(const char *text, int mix[DEMO_NQ]) {
    int v[DEMO_NQ], total = 0;
    const char *s = text;
    for (int k = 0; k < DEMO_NQ; k++) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > 1000000 || (k < DEMO_NQ - 1 ? *end != ',' : *end != '\0'))
            return err_set(ERR_ARGS, "make-demo: --mix %s: expected %d comma-separated integers 0..1000000 "
                           "(color,shape,count,position,existence,description), at character %d",
                           text, DEMO_NQ, (int)(end - text) + 1);
        v[k] = (int)x;
        total += v[k];
        s = end + 1;
    }
    if (total < 1) return err_set(ERR_ARGS, "make-demo: --mix %s: the weights add up to 0", text);
    memcpy(mix, v, sizeof v);
    return ERR_OK;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} mbuf;

static void mb_put(mbuf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        b->p = mem_realloc(b->p, cap, "a demo image or text file");
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void png_sink(void *ctx, void *data, int size) { mb_put(ctx, data, (size_t)size); }

/* a JSON string literal */
static void mb_json_str(mbuf *b, const char *s) {
    mb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            mb_put(b, e, 2);
        } else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            mb_put(b, e, 6);
        } else {
            mb_put(b, s, 1);
        }
    }
    mb_put(b, "\"", 1);
}

static void mb_str(mbuf *b, const char *s) { mb_put(b, s, strlen(s)); }

static int write_plain(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return err_set(ERR_IO, "%s: cannot create: %s", path, fs_errno_msg(errno));
    size_t k = fwrite(p, 1, n, fp);
    int e = errno;
    if (fclose(fp) != 0 || k != n) {
        if (k == n) e = errno;
        remove(path);
        return err_set(ERR_IO, "%s: write failed: %s", path, fs_errno_msg(e));
    }
    return ERR_OK;
}

enum { P_DS, P_IMG_BYTES, P_IMG_PATH, P_Q, P_CHOSEN, P_REJECTED, P_ODS, P_OSPLIT, P_IDX, P_IMAGE_PATH };

static int parquet_schema(pqw *w) {
    int rc;
    if ((rc = pqw_add_column(w, "ds_name", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_group(w, "image", 1)) ||
        (rc = pqw_add_column(w, "image.bytes", PQ_BYTE_ARRAY, 1, PQW_ANNOT_NONE)) ||
        (rc = pqw_add_column(w, "image.path", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "question", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "chosen", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "rejected", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "origin_dataset", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "origin_split", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "idx", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "image_path", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)))
        return rc;
    return ERR_OK;
}

static const char *kind_type(int kind) {
    return kind == DEMO_Q_DESCRIBE ? "detailed_description" : "question_answering";
}

/* A make-demo over an earlier, larger one: remove its images beyond the new pair count (only the NNNNNN.png names
 * make-demo writes; the others are overwritten), so that DIR/data/images holds exactly this data set's images. */
static int remove_stale_images(const char *img_dir, int64_t pairs) {
    DIR *d = opendir(img_dir);
    if (!d) return ERR_OK;
    struct dirent *e;
    int64_t removed = 0;
    int rc = ERR_OK;
    while ((e = readdir(d)) != NULL && !rc) {
        long long k = 0;
        int used = 0;
        if (strlen(e->d_name) != 10 || sscanf(e->d_name, "%6lld.png%n", &k, &used) != 1 || used != 10 || k <= pairs)
            continue;
        char path[4096];
        if ((rc = fs_join(path, sizeof path, img_dir, e->d_name))) break;
        if (unlink(path) && errno != ENOENT) rc = err_set(ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
        else removed++;
    }
    closedir(d);
    if (!rc && removed) log_info("make-demo: removed %lld images of an earlier demo in %s", (long long)removed, img_dir);
    return rc;
}

static int make_data(const char *data_dir, const demo_opts *o) {
    char img_dir[4096], path[4096];
    int rc = fs_join(img_dir, sizeof img_dir, data_dir, "images");
    if (!rc) rc = fs_mkdirs(img_dir);
    if (!rc) rc = remove_stale_images(img_dir, o->pairs);
    if (rc) return rc;
    pqw_opts po;
    pqw_opts_default(&po);
    po.codec = PQW_SNAPPY;
    po.row_group_rows = DEMO_RG_ROWS;
    po.created_by = "orpo-hpc make-demo";
    pqw *w = NULL;
    if ((rc = fs_join(path, sizeof path, data_dir, "rlaif-v-demo.parquet")) || (rc = pqw_open(path, &po, &w)))
        return rc;
    if ((rc = parquet_schema(w))) {
        pqw_abort(w);
        return rc;
    }
    mbuf jsonl = {0}, png = {0};
    int kinds[DEMO_NQ] = {0};
    for (int64_t i = 0; i < o->pairs && !rc; i++) {
        demo_scene s;
        demo_pair p;
        demo_scene_make(o->seed, i, &s);
        demo_pair_make(&s, o, i, &p);
        kinds[p.kind]++;
        uint8_t *px = NULL;
        if ((rc = demo_scene_draw(&s, &px))) break;
        png.n = 0;
        int ok = stbi_write_png_to_func(png_sink, &png, s.w, s.h, 3, px, s.w * 3);
        free(px);
        if (!ok) {
            rc = err_set(ERR_INTERNAL, "demo: PNG encoding of image %lld failed", (long long)(i + 1));
            break;
        }
        char rel[64], name[32], idx[32], split[160];
        snprintf(name, sizeof name, "%06lld.png", (long long)(i + 1));
        snprintf(rel, sizeof rel, "images/%s", name);
        snprintf(idx, sizeof idx, "demo_%06lld", (long long)(i + 1));
        snprintf(split, sizeof split, "{\"model\": \"demo-rules\", \"feedback_model\": \"demo-rules\", \"type\": \"%s\"}",
                 kind_type(p.kind));
        if ((rc = fs_join(path, sizeof path, data_dir, rel)) || (rc = write_plain(path, png.p, png.n))) break;
        mb_str(&jsonl, "{\"image\": ");
        mb_json_str(&jsonl, rel);
        mb_str(&jsonl, ", \"question\": ");
        mb_json_str(&jsonl, p.question);
        mb_str(&jsonl, ", \"chosen\": ");
        mb_json_str(&jsonl, p.chosen);
        mb_str(&jsonl, ", \"rejected\": ");
        mb_json_str(&jsonl, p.rejected);
        mb_str(&jsonl, "}\n");
        if ((rc = pqw_set_str(w, P_DS, "orpo-demo")) || (rc = pqw_set_bytes(w, P_IMG_BYTES, png.p, png.n)) ||
            (rc = pqw_set_null(w, P_IMG_PATH, 1)) || (rc = pqw_set_str(w, P_Q, p.question)) ||
            (rc = pqw_set_str(w, P_CHOSEN, p.chosen)) || (rc = pqw_set_str(w, P_REJECTED, p.rejected)) ||
            (rc = pqw_set_str(w, P_ODS, "orpo-hpc-shapes")) || (rc = pqw_set_str(w, P_OSPLIT, split)) ||
            (rc = pqw_set_str(w, P_IDX, idx)) || (rc = pqw_set_str(w, P_IMAGE_PATH, rel)) ||
            (rc = pqw_end_row(w)))
            break;
    }
    free(png.p);
    if (rc) {
        pqw_abort(w);
    } else {
        rc = pqw_close(w);
    }
    if (!rc && !(rc = fs_join(path, sizeof path, data_dir, "pairs.jsonl"))) rc = atomic_write_file(path, jsonl.p, jsonl.n);
    free(jsonl.p);
    if (!rc)
        log_info("data: %d pairs (color %d, shape %d, count %d, position %d, existence %d, description %d)", o->pairs,
                 kinds[DEMO_Q_COLOUR], kinds[DEMO_Q_SHAPE], kinds[DEMO_Q_COUNT], kinds[DEMO_Q_POSITION],
                 kinds[DEMO_Q_EXIST], kinds[DEMO_Q_DESCRIBE]);
    return rc;
}

int demo_make(const char *out_dir, const demo_opts *o) {
    if (o->pairs < 1 || o->pairs > 1000000)
        return err_set(ERR_ARGS, "make-demo: --pairs %d: expected 1..1000000", o->pairs);
    int total = 0;
    for (int k = 0; k < DEMO_NQ; k++) {
        if (o->mix[k] < 0 || o->mix[k] > 1000000)
            return err_set(ERR_ARGS, "make-demo: task weight %d of the mix is %d: expected 0..1000000", k + 1, o->mix[k]);
        total += o->mix[k];
    }
    if (total < 1) return err_set(ERR_ARGS, "make-demo: the task weights of the mix add up to 0");
    if (o->init != DEMO_INIT_SCALED && o->init != DEMO_INIT_HF && o->init != DEMO_INIT_BUILT)
        return err_set(ERR_ARGS, "make-demo: init %d: expected DEMO_INIT_BUILT, DEMO_INIT_SCALED or DEMO_INIT_HF", o->init);
    char model_dir[4096], data_dir[4096];
    int rc;
    if ((rc = fs_join(model_dir, sizeof model_dir, out_dir, "model")) ||
        (rc = fs_join(data_dir, sizeof data_dir, out_dir, "data")) || (rc = fs_mkdirs(model_dir)) ||
        (rc = fs_mkdirs(data_dir)))
        return rc;
    demo_tok_info info;
    if ((rc = demo_tok_write(model_dir, &info))) return err_push("make-demo: %s", model_dir);
    if ((rc = demo_model_write(model_dir, o->seed, o->init, &info))) return err_push("make-demo: %s", model_dir);
    log_info("model: %s (vocabulary %d, <image> = %d, %d merges)", model_dir, info.vocab, info.image_token,
             info.n_merges);
    if ((rc = make_data(data_dir, o))) return err_push("make-demo: %s", data_dir);
    return ERR_OK;
}
