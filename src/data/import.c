/* import — Parquet / JSONL -> data.h5; see import.h and docs/data.md. */
#include "data/import.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/anyres.h"
#include "data/image.h"
#include "data/template.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"
#include "io/parquet.h"
#include "backend/rng.h"

void imp_opts_default(imp_opts *o) {
    memset(o, 0, sizeof *o);
    o->val_fraction = 0.1;
    o->seed = 42;
}

/* ---- the model's tokenizer ---------------------------------------------------------------- */

int imp_check_tokenizer(const char *label, int32_t vocab, int32_t image_token, const tok *t) {
    int32_t tv = tok_vocab_size(t), ti = tok_piece_id(t, "<image>", 7);
    if (ti != image_token)
        return err_set(ERR_DATA,
                       "%s: the tokenizer's <image> id is %d, the model's image_token_index is %d: the tokenizer and "
                       "the weights do not belong together",
                       label, ti, image_token);
    if (tv > vocab)
        return err_set(ERR_DATA,
                       "%s: the tokenizer has ids up to %d, the model's vocab_size is %d (every token id must be < "
                       "vocab_size): the tokenizer and the weights do not belong together",
                       label, tv - 1, vocab);
    if (tok_bos_id(t) < 0 || tok_eos_id(t) < 0)
        return err_set(ERR_DATA, "%s: the tokenizer has no <s> or </s>", label);
    return ERR_OK;
}

/* ---- one row ------------------------------------------------------------------------------- */

typedef struct row {
    const char *q, *c, *r;     /* NUL-terminated; NULL = null value */
    const uint8_t *img;        /* NULL = no image */
    size_t img_len;
    int img_reason;            /* skip reason when img is NULL */
    int32_t src_file, src_group;
    int64_t src_row, ordinal;
} row;

typedef struct importer {
    const imp_opts *o;
    const ds_model_ref *ref;
    const tok *t;
    ds_writer *w;
    imp_report *rep;
    rng_key_t split_key;
    const char *const *names; /* source file names */
    progress pg;
    int done; /* max_pairs reached */
} importer;

static int blank(const char *s) {
    if (!s) return 1;
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

static void where(const importer *im, const row *r, char *buf, size_t cap) {
    if (r->src_group >= 0)
        snprintf(buf, cap, "%s row group %d row %lld", im->names[r->src_file], r->src_group, (long long)r->src_row);
    else
        snprintf(buf, cap, "%s line %lld", im->names[r->src_file], (long long)r->src_row);
}

/* count a skipped row; why (may be NULL) is said after its place: "x.parquet row group 0 row 3 (truncated)" */
static void skip_why(importer *im, const row *r, int reason, const char *why) {
    int64_t k = im->rep->meta.skipped[reason]++;
    char loc[600], ex[sizeof im->rep->examples[0][0]];
    where(im, r, loc, sizeof loc);
    int n = why ? snprintf(ex, sizeof ex, "%s (%s)", loc, why) : snprintf(ex, sizeof ex, "%s", loc);
    if (n >= (int)sizeof ex) memcpy(ex + sizeof ex - 4, "...", 4); /* a long path: cut, visibly */
    if (k < IMP_EXAMPLES) memcpy(im->rep->examples[reason][k], ex, sizeof ex);
    log_debug("skipped (%s): %s", ds_skip_name(reason), ex);
}

static void skip(importer *im, const row *r, int reason) { skip_why(im, r, reason, NULL); }

#define IMP_WARN_MAX 20 /* skipped rows said one by one (log_warn); the rest only at ORPO_LOG=debug */

/* 1 while skipped rows are still said one by one (log_warn); says once when they stop being */
static int may_warn(imp_report *rep) {
    if (rep->n_warned == IMP_WARN_MAX) log_warn("further skipped rows are only counted (ORPO_LOG=debug lists each)");
    return rep->n_warned++ < IMP_WARN_MAX;
}

/* an image the decoder refused: counted per decoder reason, and said with the decoder's message */
static void skip_image(importer *im, const row *r, int kind, const char *msg) {
    imp_report *rep = im->rep;
    if (kind <= IMG_FAIL_NONE || kind >= IMG_FAIL_N) kind = IMG_FAIL_DECODE;
    rep->image_fail[kind]++;
    skip_why(im, r, DS_SKIP_IMAGE_CORRUPT, img_failure_name(kind));
    if (may_warn(rep)) log_warn("skipped %s", msg);
    else log_debug("skipped %s", msg);
}

/* Checks, decodes, tokenizes and writes one row; returns a fatal status only (skips are counted). */
static int do_row(importer *im, const row *r) {
    ds_meta *m = &im->rep->meta;
    m->rows_seen++;
    if (!r->img) return skip(im, r, r->img_reason), ERR_OK;
    if (blank(r->q)) return skip(im, r, DS_SKIP_QUESTION_EMPTY), ERR_OK;
    if (blank(r->c) || blank(r->r)) return skip(im, r, DS_SKIP_ANSWER_EMPTY), ERR_OK;
    if (!strcmp(r->c, r->r)) return skip(im, r, DS_SKIP_SAME_ANSWERS), ERR_OK;
    img_rgb px;
    memset(&px, 0, sizeof px);
    char loc[600];
    where(im, r, loc, sizeof loc);
    int rc = img_decode(r->img, r->img_len, loc, -1, &px); /* "x.parquet row group 0 row 3: truncated JPEG: ..." */
    if (rc == ERR_DATA) {
        skip_image(im, r, img_last_failure(), err_msg());
        err_clear();
        return ERR_OK;
    }
    if (rc) return rc; /* out of memory is not the image's fault */
    int32_t h = px.h, w = px.w;
    img_free(&px);
    int64_t n_img = anyres_num_image_tokens(&im->ref->anyres, h, w);
    if (n_img <= 0 || n_img > INT32_MAX) {
        char msg[800];
        snprintf(msg, sizeof msg, "%s: image of %dx%d (HxW) pixels: the model's image grid gives %lld image tokens",
                 loc, h, w, (long long)n_img);
        err_clear();
        skip_image(im, r, IMG_FAIL_SIZE, msg);
        return ERR_OK;
    }
    tpl_seq sc, sr;
    rc = tpl_encode(im->t, r->q, r->c, 1, &sc);
    if (rc == ERR_OK) {
        rc = tpl_encode(im->t, r->q, r->r, 1, &sr);
        if (rc) tpl_free(&sc);
    }
    if (rc == ERR_ARGS) {
        err_clear();
        return skip(im, r, DS_SKIP_IMAGE_TAG), ERR_OK;
    }
    if (rc) return err_push("%s", loc);
    size_t plen = sc.answer_start;
    int reason = -1;
    if (sr.answer_start != plen || memcmp(sc.ids.v, sr.ids.v, sizeof(int32_t) * plen) ||
        sc.image_start >= plen || plen >= sc.ids.n || plen >= sr.ids.n)
        reason = DS_SKIP_BOUNDARY;
    for (size_t i = 0; reason < 0 && !rc && i < sc.ids.n + sr.ids.n; i++) {
        int32_t id = i < sc.ids.n ? sc.ids.v[i] : sr.ids.v[i - sc.ids.n];
        if (id < 0 || id >= im->ref->vocab) {
            rc = err_set(ERR_DATA, "%s: token id %d outside the model's vocabulary (%d)", loc, id, im->ref->vocab);
        }
    }
    size_t clen = sc.ids.n - plen, rlen = sr.ids.n - plen;
    int64_t total = (int64_t)plen - 1 + n_img + (int64_t)(clen > rlen ? clen : rlen);
    if (!rc && reason < 0 && im->o->max_tokens > 0 && total > im->o->max_tokens) reason = DS_SKIP_TOO_LONG;
    if (!rc && reason >= 0) skip(im, r, reason);
    if (!rc && reason < 0) {
        ds_pair p;
        memset(&p, 0, sizeof p);
        p.prefix_len = (int32_t)plen;
        p.chosen_len = (int32_t)clen;
        p.rejected_len = (int32_t)rlen;
        p.image_pos = (int32_t)sc.image_start;
        p.height = h;
        p.width = w;
        p.n_image_tokens = (int32_t)n_img;
        p.source_file = r->src_file;
        p.source_group = r->src_group;
        p.source_row = r->src_row;
        p.split = rng_uniform_d(im->split_key, 0, 0, (uint64_t)r->ordinal) < im->o->val_fraction ? DS_VAL : DS_TRAIN;
        rc = ds_add_pair(im->w, &p, sc.ids.v, sc.ids.v + plen, sr.ids.v + plen, r->img, r->img_len);
        if (!rc) {
            m->n_pairs++;
            if (p.split == DS_VAL) m->n_val++;
            else m->n_train++;
            if ((int64_t)plen > m->max_prefix_len) m->max_prefix_len = (int64_t)plen;
            if ((int64_t)clen > m->max_answer_len) m->max_answer_len = (int64_t)clen;
            if ((int64_t)rlen > m->max_answer_len) m->max_answer_len = (int64_t)rlen;
            if (n_img > m->max_n_image_tokens) m->max_n_image_tokens = n_img;
            if (im->o->max_pairs > 0 && m->n_pairs >= im->o->max_pairs) im->done = 1;
        }
    }
    tpl_free(&sc);
    tpl_free(&sr);
    return rc;
}

/* ---- Parquet -------------------------------------------------------------------------------- */

typedef struct pq_cols {
    int q, c, r, img;
} pq_cols;

static int find_string_col(pq_file *pq, const char *name, int *col) {
    *col = pq_find_column(pq, name);
    if (*col < 0)
        return err_set(ERR_DATA, "%s: no column '%s' (expected the RLAIF-V columns question, chosen, rejected, image)",
                       pq_path(pq), name);
    const pq_column_info *ci = pq_column(pq, *col);
    if (ci->type != PQ_BYTE_ARRAY || !ci->readable)
        return err_set(ERR_DATA, "%s: column '%s' is %s%s, expected a BYTE_ARRAY (string/binary) column",
                       pq_path(pq), name, pq_type_name(ci->type), ci->readable ? "" : " (unsupported layout)");
    return ERR_OK;
}

static int pq_columns(pq_file *pq, pq_cols *c) {
    int rc = find_string_col(pq, "question", &c->q);
    if (!rc) rc = find_string_col(pq, "chosen", &c->c);
    if (!rc) rc = find_string_col(pq, "rejected", &c->r);
    if (!rc) rc = find_string_col(pq, pq_find_column(pq, "image.bytes") >= 0 ? "image.bytes" : "image", &c->img);
    return rc;
}

/* NUL-terminated copy of a byte-array value; NULL for null */
static char *dup_val(const pq_values *v, int64_t i) {
    if (v->is_null[i]) return NULL;
    char *s = mem_alloc((size_t)v->len[i] + 1, "a Parquet text value");
    memcpy(s, v->ptr[i], v->len[i]);
    s[v->len[i]] = '\0';
    return s;
}

static int import_row_group(importer *im, pq_file *pq, const pq_cols *c, int file, int rg, int64_t *row_in_file) {
    pq_values vq, vc, vr, vi;
    memset(&vq, 0, sizeof vq);
    memset(&vc, 0, sizeof vc);
    memset(&vr, 0, sizeof vr);
    memset(&vi, 0, sizeof vi);
    int rc = pq_read_column(pq, rg, c->q, &vq);
    if (!rc) rc = pq_read_column(pq, rg, c->c, &vc);
    if (!rc) rc = pq_read_column(pq, rg, c->r, &vr);
    if (!rc) rc = pq_read_column(pq, rg, c->img, &vi);
    int64_t n = pq_row_group_rows(pq, rg);
    if (!rc && (vq.n != n || vc.n != n || vr.n != n || vi.n != n))
        rc = err_set(ERR_DATA, "%s: row group %d: columns hold %lld/%lld/%lld/%lld rows, expected %lld", pq_path(pq), rg,
                     (long long)vq.n, (long long)vc.n, (long long)vr.n, (long long)vi.n, (long long)n);
    for (int64_t i = 0; !rc && !im->done && i < n; i++) {
        row r;
        memset(&r, 0, sizeof r);
        char *q = dup_val(&vq, i), *ch = dup_val(&vc, i), *rj = dup_val(&vr, i);
        r.q = q;
        r.c = ch;
        r.r = rj;
        r.img = vi.is_null[i] ? NULL : vi.ptr[i];
        r.img_len = vi.is_null[i] ? 0 : vi.len[i];
        r.img_reason = DS_SKIP_IMAGE_NULL;
        r.src_file = file;
        r.src_group = rg;
        r.src_row = *row_in_file + i;
        r.ordinal = im->rep->meta.rows_seen;
        rc = do_row(im, &r);
        free(q);
        free(ch);
        free(rj);
        if (im->o->progress) progress_update(&im->pg, (uint64_t)im->rep->meta.rows_seen);
    }
    *row_in_file += n;
    pq_values_free(&vq);
    pq_values_free(&vc);
    pq_values_free(&vr);
    pq_values_free(&vi);
    return rc;
}

static int import_parquet(importer *im) {
    const imp_opts *o = im->o;
    pq_file **pqs = mem_calloc((size_t)o->n_parquet, sizeof *pqs, "the Parquet file list");
    pq_cols *cols = mem_calloc((size_t)o->n_parquet, sizeof *cols, "the Parquet file list");
    int rc = ERR_OK;
    int64_t total = 0;
    for (int i = 0; !rc && i < o->n_parquet; i++) { /* check every file before the long run */
        rc = pq_open(o->parquet[i], &pqs[i]);
        if (!rc) rc = pq_columns(pqs[i], &cols[i]);
        if (!rc) total += pq_num_rows(pqs[i]);
        if (!rc && ds_add_source(im->w, o->parquet[i]) < 0) rc = err_code();
    }
    if (!rc && o->progress) progress_begin(&im->pg, "rows", (uint64_t)total);
    for (int i = 0; !rc && !im->done && i < o->n_parquet; i++) {
        int64_t row_in_file = 0;
        for (int g = 0; !rc && !im->done && g < pq_num_row_groups(pqs[i]); g++)
            rc = import_row_group(im, pqs[i], &cols[i], i, g, &row_in_file);
    }
    for (int i = 0; i < o->n_parquet; i++) pq_close(pqs[i]);
    free(pqs);
    free(cols);
    return rc;
}

/* ---- JSONL ---------------------------------------------------------------------------------- */

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNull(v)) return "null";
    return "not a value";
}

/* The string of a field, NULL for JSON null. The first problem (missing, not a string or null) goes to why
 * (when why is still empty). */
static const char *jstr(const cJSON *o, const char *k, char *why, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (v && cJSON_IsString(v)) return v->valuestring;
    if (v && cJSON_IsNull(v)) return NULL;
    if (!why[0]) {
        if (!v) snprintf(why, cap, "field '%s' is missing", k);
        else snprintf(why, cap, "field '%s' is %s, expected a string or null", k, json_type_name(v));
    }
    return NULL;
}

static int import_jsonl(importer *im) {
    const imp_opts *o = im->o;
    if (!fs_is_dir(o->images_dir))
        return err_set(ERR_IO, "--images %s: no such directory", o->images_dir);
    FILE *fp = fopen(o->jsonl, "rb");
    if (!fp) return err_set(ERR_IO, "%s: cannot open: %s", o->jsonl, fs_errno_msg(errno));
    int rc = ds_add_source(im->w, o->jsonl) < 0 ? err_code() : ERR_OK;
    if (!rc && o->progress) progress_begin(&im->pg, "rows", 0);
    char *line = NULL, path[4096];
    size_t cap = 0;
    ssize_t len;
    int64_t lineno = 0;
    while (!rc && !im->done && (len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        if (blank(line)) continue;
        row r;
        memset(&r, 0, sizeof r);
        r.src_file = 0;
        r.src_group = -1;
        r.src_row = lineno;
        r.ordinal = im->rep->meta.rows_seen;
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(line, (size_t)len, &end, 0);
        char why[200] = "";
        const char *imgp = NULL;
        if (!j) { /* where the parser stopped: line:column (bytes, 1-based) */
            long col = end && end >= line && end <= line + len ? (long)(end - line) + 1 : 1;
            snprintf(why, sizeof why, "invalid JSON at column %ld", col);
        } else if (!cJSON_IsObject(j)) {
            snprintf(why, sizeof why, "%s, expected an object", json_type_name(j));
        } else {
            imgp = jstr(j, "image", why, sizeof why);
            r.q = jstr(j, "question", why, sizeof why);
            r.c = jstr(j, "chosen", why, sizeof why);
            r.r = jstr(j, "rejected", why, sizeof why);
        }
        if (why[0]) {
            im->rep->meta.rows_seen++;
            skip_why(im, &r, DS_SKIP_MALFORMED, why);
            if (may_warn(im->rep))
                log_warn("skipped %s line %lld: %s (expected one JSON object per line with the fields image, "
                         "question, chosen, rejected: strings or null)", o->jsonl, (long long)lineno, why);
            cJSON_Delete(j);
            continue;
        }
        char *bytes = NULL;
        size_t nbytes = 0;
        r.img_reason = DS_SKIP_IMAGE_NULL;
        if (imgp) {
            r.img_reason = DS_SKIP_IMAGE_MISSING;
            if (fs_join(path, sizeof path, o->images_dir, imgp) == ERR_OK && fs_read_all(path, &bytes, &nbytes) == ERR_OK) {
                r.img = (const uint8_t *)bytes;
                r.img_len = nbytes;
            } else if (may_warn(im->rep)) {
                log_warn("skipped %s line %lld: image '%s': %s", o->jsonl, (long long)lineno, imgp, err_msg());
            }
            err_clear();
        }
        rc = do_row(im, &r);
        free(bytes);
        cJSON_Delete(j);
        if (im->o->progress) progress_update(&im->pg, (uint64_t)im->rep->meta.rows_seen);
    }
    if (!rc && ferror(fp)) rc = err_set(ERR_IO, "%s: read error after line %lld", o->jsonl, (long long)lineno);
    free(line);
    fclose(fp);
    return rc;
}

/* ---- driver --------------------------------------------------------------------------------- */

int imp_run(const imp_opts *o, const ds_model_ref *ref, const tok *t, imp_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (!o->out) return err_set(ERR_ARGS, "import-data: no output file");
    if ((o->n_parquet > 0) == (o->jsonl != NULL))
        return err_set(ERR_ARGS, "import-data: give either --parquet FILE... or --jsonl FILE --images DIR");
    if (o->jsonl && !o->images_dir) return err_set(ERR_ARGS, "import-data: --jsonl needs --images DIR");
    if (!(o->val_fraction >= 0.0 && o->val_fraction <= 1.0))
        return err_set(ERR_ARGS, "import-data: --val-fraction %g: expected a number in [0, 1]", o->val_fraction);
    if (o->max_pairs < 0 || o->max_tokens < 0)
        return err_set(ERR_ARGS, "import-data: --max-pairs and --max-tokens must be >= 0");
    double t0 = log_now();
    importer im;
    memset(&im, 0, sizeof im);
    im.o = o;
    im.ref = ref;
    im.t = t;
    im.rep = rep;
    im.split_key = rng_key(o->seed, DS_RNG_SPLIT);
    im.names = o->jsonl ? &o->jsonl : o->parquet;
    ds_meta *m = &rep->meta;
    m->model = *ref;
    snprintf(m->model_path, sizeof m->model_path, "%s", o->model_path ? o->model_path : "");
    m->seed = o->seed;
    m->val_fraction = o->val_fraction;
    m->max_tokens = o->max_tokens;
    m->max_pairs = o->max_pairs;
    int rc = ds_create(o->out, m, &im.w);
    if (rc) return rc;
    rc = o->jsonl ? import_jsonl(&im) : import_parquet(&im);
    if (!rc && o->progress) progress_end(&im.pg);
    if (!rc && m->n_pairs == 0) {
        char counts[1024];
        imp_skip_summary(rep, counts, sizeof counts);
        rc = err_set(ERR_DATA, "import-data: no usable pairs in %lld rows (every row was skipped: %s); nothing written",
                     (long long)m->rows_seen, m->rows_seen ? counts : "no rows");
    }
    if (rc) {
        ds_abort(im.w);
        return rc;
    }
    rc = ds_finish(im.w, m);
    if (rc) return rc;
    rep->seconds = log_now() - t0;
    return ERR_OK;
}

size_t imp_skip_summary(const imp_report *rep, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int r = 0; r < DS_SKIP_N && n < cap; r++) {
        if (!rep->meta.skipped[r]) continue;
        n += (size_t)snprintf(buf + n, cap - n, "%s%s %lld", n ? ", " : "", ds_skip_name(r),
                              (long long)rep->meta.skipped[r]);
        if (r != DS_SKIP_IMAGE_CORRUPT) continue;
        const char *sep = " (";
        for (int k = 1; k < IMG_FAIL_N && n < cap; k++) {
            if (!rep->image_fail[k]) continue;
            n += (size_t)snprintf(buf + n, cap - n, "%s%s %lld", sep, img_failure_name(k), (long long)rep->image_fail[k]);
            sep = ", ";
        }
        if (*sep == ',' && n < cap) n += (size_t)snprintf(buf + n, cap - n, ")");
    }
    return n < cap ? n : cap - 1;
}

void imp_report_print(const imp_report *rep) {
    const ds_meta *m = &rep->meta;
    int64_t nskip = 0;
    for (int r = 0; r < DS_SKIP_N; r++) nskip += m->skipped[r];
    log_info("import-data: %lld rows read, %lld pairs written (%lld train, %lld val), %lld skipped, %.1f s, %.1f pairs/s",
             (long long)m->rows_seen, (long long)m->n_pairs, (long long)m->n_train, (long long)m->n_val,
             (long long)nskip, rep->seconds, rep->seconds > 0 ? (double)m->n_pairs / rep->seconds : 0.0);
    for (int r = 0; r < DS_SKIP_N; r++) {
        if (!m->skipped[r]) continue;
        char ex[IMP_EXAMPLES * 170];
        size_t n = 0;
        ex[0] = '\0';
        for (int k = 0; k < IMP_EXAMPLES && k < m->skipped[r]; k++)
            n += (size_t)snprintf(ex + n, sizeof ex - n, "%s%s", k ? "; " : "", rep->examples[r][k]);
        log_info("  skipped %-18s %6lld  (e.g. %s%s)", ds_skip_name(r), (long long)m->skipped[r], ex,
                 m->skipped[r] > IMP_EXAMPLES ? "; ..." : "");
        if (r == DS_SKIP_IMAGE_CORRUPT) /* the decoder's reasons */
            for (int k = 1; k < IMG_FAIL_N; k++)
                if (rep->image_fail[k])
                    log_info("    %-24s %6lld", img_failure_name(k), (long long)rep->image_fail[k]);
    }
}
