/* dataset — data.h5 writer and reader; see dataset.h and docs/data.md. */
#include "data/dataset.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/content_hash.h"
#include "io/interrupt.h"
#include "io/log.h"
#include "io/mem.h"
#include "io/err.h"
#include "io/h5x.h"

#define PAIR_BUF 1024              /* pairs buffered before an append */
#define TOK_BUF (1 << 18)          /* token ids buffered (1 MiB) */
#define IMG_BUF (16 << 20)         /* image bytes buffered (16 MiB; one larger image is written alone) */
#define OFF_BUF 4096               /* image offsets buffered */

static const char *const skip_names[DS_SKIP_N] = {
    "image_null", "image_missing", "image_corrupt", "question_empty", "answer_empty",
    "same_answers", "too_long", "image_tag_in_text", "template_boundary", "malformed_line"};

const char *ds_skip_name(int reason) {
    return reason >= 0 && reason < DS_SKIP_N ? skip_names[reason] : "unknown";
}

/* ---- the compound type of /pairs -------------------------------------------------------- */

typedef struct field {
    const char *name;
    size_t off;
    int kind; /* 8: int64, 4: int32, 1: uint8 */
} field;

#define F(n, k) {#n, offsetof(ds_pair, n), k}
static const field fields[] = {
    F(prefix_off, 8), F(prefix_len, 4), F(image_pos, 4), F(chosen_off, 8), F(chosen_len, 4),
    F(rejected_off, 8), F(rejected_len, 4), F(image, 8), F(height, 4), F(width, 4),
    F(n_image_tokens, 4), F(split, 1), F(source_file, 4), F(source_group, 4), F(source_row, 8)};
#undef F
#define NFIELDS ((int)(sizeof fields / sizeof fields[0]))

static hid_t native_of(int kind) {
    return kind == 8 ? H5T_NATIVE_INT64 : kind == 4 ? H5T_NATIVE_INT32 : H5T_NATIVE_UINT8;
}

/* memory type: the C struct */
static hid_t pair_mem_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(ds_pair));
    for (int i = 0; i < NFIELDS; i++) H5Tinsert(t, fields[i].name, fields[i].off, native_of(fields[i].kind));
    return t;
}

/* file type: packed little-endian, fields in the documented order */
static hid_t pair_file_type(void) {
    size_t size = 0;
    for (int i = 0; i < NFIELDS; i++) size += (size_t)fields[i].kind;
    hid_t t = H5Tcreate(H5T_COMPOUND, size);
    size_t off = 0;
    for (int i = 0; i < NFIELDS; i++) {
        int k = fields[i].kind;
        H5Tinsert(t, fields[i].name, off, k == 8 ? H5T_STD_I64LE : k == 4 ? H5T_STD_I32LE : H5T_STD_U8LE);
        off += (size_t)k;
    }
    return t;
}

/* ---- model check ------------------------------------------------------------------------ */

static void fmt_pinpoints(const anyres_config *a, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < a->n_pinpoints && n + 24 < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s(%d,%d)", i ? "," : "", a->pinpoints[i][0], a->pinpoints[i][1]);
}

int ds_check_model(const ds_meta *meta, const ds_model_ref *ref, const char *data_path) {
    const ds_model_ref *d = &meta->model;
    if (d->tok_hash != ref->tok_hash)
        return err_set(ERR_DATA,
                       "%s: made with tokenizer hash %016" PRIx64 " (%s), but the model's tokenizer hash is %016" PRIx64
                       " (%s): re-import the data with --model of this model",
                       data_path, d->tok_hash, d->tok_kind, ref->tok_hash, ref->tok_kind);
    if (d->image_token != ref->image_token || d->vocab != ref->vocab)
        return err_set(ERR_DATA, "%s: made for image_token_id %d, vocab_size %d; the model has %d, %d", data_path,
                       d->image_token, d->vocab, ref->image_token, ref->vocab);
    int same = d->anyres.tile == ref->anyres.tile && d->anyres.patch == ref->anyres.patch &&
               d->anyres.n_pinpoints == ref->anyres.n_pinpoints;
    for (int i = 0; same && i < d->anyres.n_pinpoints; i++)
        same = d->anyres.pinpoints[i][0] == ref->anyres.pinpoints[i][0] &&
               d->anyres.pinpoints[i][1] == ref->anyres.pinpoints[i][1];
    if (!same) {
        char a[512], b[512];
        fmt_pinpoints(&d->anyres, a, sizeof a);
        fmt_pinpoints(&ref->anyres, b, sizeof b);
        return err_set(ERR_DATA,
                       "%s: made for image tile %d, patch %d, pinpoints %s; the model has tile %d, patch %d, pinpoints "
                       "%s (image token counts differ): re-import the data",
                       data_path, d->anyres.tile, d->anyres.patch, a, ref->anyres.tile, ref->anyres.patch, b);
    }
    return ERR_OK;
}

/* ---- attributes ------------------------------------------------------------------------- */

static int write_attrs(hid_t f, const ds_meta *m) {
    char hex[32];
    snprintf(hex, sizeof hex, "%016" PRIx64, m->model.tok_hash);
    int64_t pp[2 * ANYRES_MAX_PINPOINTS];
    for (int i = 0; i < m->model.anyres.n_pinpoints; i++) {
        pp[2 * i] = m->model.anyres.pinpoints[i][0];
        pp[2 * i + 1] = m->model.anyres.pinpoints[i][1];
    }
    int rc = h5x_set_format(f, DS_FORMAT, DS_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, "/", "created_by", "orpo-hpc " ORPO_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, "/", "token_layout", "prefix+chosen+rejected; one <image> placeholder per prefix");
    if (!rc) rc = h5x_attr_set_str(f, "/", "tokenizer_hash", hex);
    if (!rc) rc = h5x_attr_set_str(f, "/", "tokenizer_kind", m->model.tok_kind);
    if (!rc) rc = h5x_attr_set_str(f, "/", "model_path", m->model_path);
    struct { const char *k; int64_t v; } iv[] = {
        {"vocab_size", m->model.vocab}, {"image_token_id", m->model.image_token}, {"bos_token_id", m->model.bos},
        {"eos_token_id", m->model.eos}, {"image_tile", m->model.anyres.tile}, {"image_patch", m->model.anyres.patch},
        {"seed", (int64_t)m->seed}, {"max_tokens", m->max_tokens}, {"max_pairs", m->max_pairs},
        {"rows_seen", m->rows_seen}, {"n_pairs", m->n_pairs}, {"n_train", m->n_train}, {"n_val", m->n_val},
        {"n_images", m->n_images}, {"n_tokens", m->n_tokens}, {"n_image_bytes", m->n_image_bytes},
        {"max_prefix_len", m->max_prefix_len}, {"max_answer_len", m->max_answer_len},
        {"max_n_image_tokens", m->max_n_image_tokens}};
    for (size_t i = 0; !rc && i < sizeof iv / sizeof iv[0]; i++) rc = h5x_attr_set_i64(f, "/", iv[i].k, iv[i].v);
    if (!rc) rc = h5x_attr_set_f64(f, "/", "val_fraction", m->val_fraction);
    if (!rc) rc = h5x_attr_set_i64s(f, "/", "image_pinpoints", pp, 2 * m->model.anyres.n_pinpoints);
    for (int r = 0; !rc && r < DS_SKIP_N; r++) {
        char k[64];
        snprintf(k, sizeof k, "skipped_%s", skip_names[r]);
        rc = h5x_attr_set_i64(f, "/", k, m->skipped[r]);
    }
    return rc;
}

static int read_attrs(hid_t f, const char *path, ds_meta *m) {
    memset(m, 0, sizeof *m);
    char *s = NULL;
    int rc = h5x_attr_get_str(f, "/", "tokenizer_hash", &s);
    if (!rc) {
        char *end = NULL;
        m->model.tok_hash = strtoull(s, &end, 16);
        if (strlen(s) != 16 || !end || *end)
            rc = err_set(ERR_DATA, "%s: attribute tokenizer_hash '%s': expected 16 hex digits", path, s);
    }
    free(s);
    s = NULL;
    if (!rc && !(rc = h5x_attr_get_str(f, "/", "tokenizer_kind", &s)))
        snprintf(m->model.tok_kind, sizeof m->model.tok_kind, "%s", s);
    free(s);
    s = NULL;
    if (!rc && h5x_attr_exists(f, "/", "model_path") && !(rc = h5x_attr_get_str(f, "/", "model_path", &s)))
        snprintf(m->model_path, sizeof m->model_path, "%s", s);
    free(s);
    int64_t vocab = 0, img = 0, bos = 0, eos = 0, tile = 0, patch = 0, seed = 0;
    struct { const char *k; int64_t *v; } iv[] = {
        {"vocab_size", &vocab}, {"image_token_id", &img}, {"bos_token_id", &bos}, {"eos_token_id", &eos},
        {"image_tile", &tile}, {"image_patch", &patch}, {"seed", &seed}, {"max_tokens", &m->max_tokens},
        {"max_pairs", &m->max_pairs}, {"rows_seen", &m->rows_seen}, {"n_pairs", &m->n_pairs},
        {"n_train", &m->n_train}, {"n_val", &m->n_val}, {"n_images", &m->n_images}, {"n_tokens", &m->n_tokens},
        {"n_image_bytes", &m->n_image_bytes}, {"max_prefix_len", &m->max_prefix_len},
        {"max_answer_len", &m->max_answer_len}, {"max_n_image_tokens", &m->max_n_image_tokens}};
    for (size_t i = 0; !rc && i < sizeof iv / sizeof iv[0]; i++) rc = h5x_attr_get_i64(f, "/", iv[i].k, iv[i].v);
    if (!rc) rc = h5x_attr_get_f64(f, "/", "val_fraction", &m->val_fraction);
    int64_t pp[2 * ANYRES_MAX_PINPOINTS];
    int npp = 0;
    if (!rc) rc = h5x_attr_get_i64s(f, "/", "image_pinpoints", pp, 2 * ANYRES_MAX_PINPOINTS, &npp);
    for (int r = 0; !rc && r < DS_SKIP_N; r++) {
        char k[64];
        snprintf(k, sizeof k, "skipped_%s", skip_names[r]);
        rc = h5x_attr_get_i64(f, "/", k, &m->skipped[r]);
    }
    if (rc) return err_push("%s: data.h5 attributes", path);
    if (npp % 2 || npp == 0)
        return err_set(ERR_DATA, "%s: attribute image_pinpoints has %d values, expected pairs (height, width)", path, npp);
    m->model.vocab = (int32_t)vocab;
    m->model.image_token = (int32_t)img;
    m->model.bos = (int32_t)bos;
    m->model.eos = (int32_t)eos;
    m->model.anyres.tile = (int)tile;
    m->model.anyres.patch = (int)patch;
    m->model.anyres.n_pinpoints = npp / 2;
    for (int i = 0; i < npp / 2; i++) {
        m->model.anyres.pinpoints[i][0] = (int)pp[2 * i];
        m->model.anyres.pinpoints[i][1] = (int)pp[2 * i + 1];
    }
    m->seed = (uint64_t)seed;
    if (anyres_config_check(&m->model.anyres)) {
        err_push("%s: image_tile/image_patch/image_pinpoints", path);
        return err_recode(ERR_DATA);
    }
    if (vocab <= 0 || img < 0 || img >= vocab)
        return err_set(ERR_DATA, "%s: vocab_size %lld, image_token_id %lld: expected 0 <= image_token_id < vocab_size",
                       path, (long long)vocab, (long long)img);
    return ERR_OK;
}

/* ---- writer ----------------------------------------------------------------------------- */

struct ds_writer {
    atomic_file af;
    hid_t f, mtype;
    ds_pair *pairs;
    int npairs;
    int32_t *toks;
    int64_t ntoks;
    uint8_t *img;
    size_t nimg;
    int64_t *offs;
    int noffs;
    int64_t tok_total, img_total, n_images, n_pairs;
    uint8_t *last; /* the previous image (dedupe) */
    size_t last_len, last_cap;
    char **sources;
    int nsources;
};

static int flush(ds_writer *w) {
    int rc = ERR_OK;
    if (w->ntoks && !(rc = h5x_append(w->f, "tokens", H5X_I32, w->ntoks, w->toks))) w->ntoks = 0;
    if (!rc && w->nimg && !(rc = h5x_append(w->f, "image_bytes", H5X_U8, (int64_t)w->nimg, w->img))) w->nimg = 0;
    if (!rc && w->noffs && !(rc = h5x_append(w->f, "image_offsets", H5X_I64, w->noffs, w->offs))) w->noffs = 0;
    if (!rc && w->npairs && !(rc = h5x_append_raw(w->f, "pairs", w->mtype, w->npairs, w->pairs))) w->npairs = 0;
    return rc;
}

static void writer_free(ds_writer *w) {
    if (!w) return;
    if (w->mtype >= 0) H5Tclose(w->mtype);
    free(w->pairs);
    free(w->toks);
    free(w->img);
    free(w->offs);
    free(w->last);
    for (int i = 0; i < w->nsources; i++) free(w->sources[i]);
    free(w->sources);
    free(w);
}

int ds_create(const char *final_path, const ds_meta *meta, ds_writer **out) {
    (void)meta;
    *out = NULL;
    h5x_init();
    ds_writer *w = mem_calloc(1, sizeof *w, "data.h5 writer");
    w->f = -1;
    w->mtype = pair_mem_type();
    w->pairs = mem_alloc(sizeof(ds_pair) * PAIR_BUF, "data.h5 pair buffer");
    w->toks = mem_alloc(sizeof(int32_t) * TOK_BUF, "data.h5 token buffer");
    w->img = mem_alloc(IMG_BUF, "data.h5 image buffer");
    w->offs = mem_alloc(sizeof(int64_t) * OFF_BUF, "data.h5 image offset buffer");
    if (w->mtype < 0) {
        writer_free(w);
        return err_set(ERR_INTERNAL, "%s: cannot make the HDF5 type of /pairs", final_path);
    }
    /* temporaries of this file left by an import that died (kill -9, node failure) */
    int nstale = 0;
    if (atomic_cleanup_stale(final_path, &nstale)) log_warn("%s", err_msg());
    else if (nstale) log_info("removed %d temporary file%s of %s left by an import that died", nstale,
                              nstale > 1 ? "s" : "", final_path);
    err_clear();
    int rc = atomic_begin(&w->af, final_path);
    if (!rc) intr_guard(w->af.tmp, final_path);
    if (!rc) rc = h5x_create(w->af.tmp, &w->f);
    h5x_wopts o;
    memset(&o, 0, sizeof o);
    o.unlimited = 1;
    int64_t zero = 0;
    hid_t ft = pair_file_type();
    if (!rc) { o.chunk[0] = 1024; rc = h5x_write_raw(w->f, "pairs", ft, w->mtype, 1, &zero, NULL, &o); }
    H5Tclose(ft);
    if (!rc) { o.chunk[0] = 1 << 16; rc = h5x_write_opts(w->f, "tokens", H5X_I32, 1, &zero, NULL, &o); }
    if (!rc) { o.chunk[0] = 1 << 20; rc = h5x_write_opts(w->f, "image_bytes", H5X_U8, 1, &zero, NULL, &o); }
    if (!rc) { o.chunk[0] = 1 << 13; rc = h5x_write_opts(w->f, "image_offsets", H5X_I64, 1, &zero, NULL, &o); }
    if (rc) {
        ds_abort(w);
        return err_push("creating %s", final_path);
    }
    w->offs[w->noffs++] = 0;
    *out = w;
    return ERR_OK;
}

int ds_add_source(ds_writer *w, const char *name) {
    w->sources = mem_realloc(w->sources, sizeof(char *) * (size_t)(w->nsources + 1), "data.h5 source list");
    w->sources[w->nsources] = mem_strdup(name, "data.h5 source list");
    return w->nsources++;
}

static int push_tokens(ds_writer *w, const int32_t *ids, int32_t n) {
    for (int32_t done = 0; done < n;) {
        if (w->ntoks == TOK_BUF) {
            int rc = h5x_append(w->f, "tokens", H5X_I32, w->ntoks, w->toks);
            if (rc) return rc;
            w->ntoks = 0;
        }
        int64_t k = n - done;
        if (k > TOK_BUF - w->ntoks) k = TOK_BUF - w->ntoks;
        memcpy(w->toks + w->ntoks, ids + done, sizeof(int32_t) * (size_t)k);
        w->ntoks += k;
        done += (int32_t)k;
    }
    w->tok_total += n;
    return ERR_OK;
}

static int push_image(ds_writer *w, const uint8_t *img, size_t len) {
    int rc;
    if (w->nimg + len > IMG_BUF && w->nimg) {
        if ((rc = h5x_append(w->f, "image_bytes", H5X_U8, (int64_t)w->nimg, w->img))) return rc;
        w->nimg = 0;
    }
    if (len > IMG_BUF) { /* larger than the buffer: straight to the file */
        if ((rc = h5x_append(w->f, "image_bytes", H5X_U8, (int64_t)len, img))) return rc;
    } else {
        memcpy(w->img + w->nimg, img, len);
        w->nimg += len;
    }
    w->img_total += (int64_t)len;
    if (w->noffs == OFF_BUF) {
        if ((rc = h5x_append(w->f, "image_offsets", H5X_I64, w->noffs, w->offs))) return rc;
        w->noffs = 0;
    }
    w->offs[w->noffs++] = w->img_total;
    w->n_images++;
    /* remember it for the next pair */
    if (len > w->last_cap) {
        uint8_t *p = realloc(w->last, len);
        if (!p) return err_set(ERR_INTERNAL, "out of memory for an image of %zu bytes", len);
        w->last = p;
        w->last_cap = len;
    }
    memcpy(w->last, img, len);
    w->last_len = len;
    return ERR_OK;
}

static int add_pair(ds_writer *w, ds_pair *rec, const int32_t *prefix, const int32_t *chosen, const int32_t *rejected,
                    const uint8_t *img, size_t img_len) {
    int rc;
    if (w->n_images > 0 && img_len == w->last_len && !memcmp(img, w->last, img_len)) {
        rec->image = w->n_images - 1;
    } else {
        if ((rc = push_image(w, img, img_len))) return rc;
        rec->image = w->n_images - 1;
    }
    rec->prefix_off = w->tok_total;
    if ((rc = push_tokens(w, prefix, rec->prefix_len))) return rc;
    rec->chosen_off = w->tok_total;
    if ((rc = push_tokens(w, chosen, rec->chosen_len))) return rc;
    rec->rejected_off = w->tok_total;
    if ((rc = push_tokens(w, rejected, rec->rejected_len))) return rc;
    if (w->npairs == PAIR_BUF) {
        if ((rc = h5x_append_raw(w->f, "pairs", w->mtype, w->npairs, w->pairs))) return rc;
        w->npairs = 0;
    }
    w->pairs[w->npairs++] = *rec;
    w->n_pairs++;
    return ERR_OK;
}

int ds_add_pair(ds_writer *w, ds_pair *rec, const int32_t *prefix, const int32_t *chosen, const int32_t *rejected,
                const uint8_t *img, size_t img_len) {
    int rc = add_pair(w, rec, prefix, chosen, rejected, img, img_len);
    return rc ? err_push("writing %s", w->af.final) : ERR_OK;
}

static int write_sources(ds_writer *w) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int64_t n = w->nsources;
    const char *empty[1] = {""};
    int rc = h5x_write_raw(w->f, "sources", t, t, 1, &n, n ? (const void *)w->sources : (const void *)empty, NULL);
    H5Tclose(t);
    return rc;
}

int ds_finish(ds_writer *w, ds_meta *m) {
    m->n_pairs = w->n_pairs;
    m->n_images = w->n_images;
    m->n_tokens = w->tok_total;
    m->n_image_bytes = w->img_total;
    int rc = flush(w);
    if (!rc) rc = write_sources(w);
    if (!rc) rc = write_attrs(w->f, m);
    if (!rc) rc = h5x_close(&w->f);
    if (rc) err_push("writing %s", w->af.final);
    if (!rc) rc = chash_record(w->af.tmp, NULL); /* content_hash: checked by train / resume / eval */
    if (!rc) rc = atomic_commit(&w->af);
    if (rc) {
        ds_abort(w);
        return rc;
    }
    intr_release();
    writer_free(w);
    return ERR_OK;
}

void ds_abort(ds_writer *w) {
    if (!w) return;
    if (w->f >= 0) {
        H5Fclose(w->f);
        H5Eclear2(H5E_DEFAULT);
        w->f = -1;
    }
    atomic_abort(&w->af);
    intr_release();
    writer_free(w);
}

/* ---- reader ----------------------------------------------------------------------------- */

struct ds_file {
    char *path;
    hid_t f;
    ds_meta meta;
    ds_pair *pairs;
    int64_t npairs;
    int64_t *offs; /* n_images + 1 */
    int64_t nimages;
    int64_t ntokens, nbytes;
    char **sources;
    int64_t nsources;
};

void ds_close(ds_file *d) {
    if (!d) return;
    if (d->f >= 0) h5x_close(&d->f);
    for (int64_t i = 0; i < d->nsources; i++) free(d->sources[i]);
    free(d->sources);
    free(d->pairs);
    free(d->offs);
    free(d->path);
    free(d);
}

const ds_meta *ds_meta_of(const ds_file *d) { return &d->meta; }
int64_t ds_num_pairs(const ds_file *d) { return d->npairs; }
const ds_pair *ds_pair_at(const ds_file *d, int64_t i) { return i >= 0 && i < d->npairs ? &d->pairs[i] : NULL; }
const char *ds_source(const ds_file *d, int64_t i) { return i >= 0 && i < d->nsources ? d->sources[i] : "?"; }
const char *ds_path(const ds_file *d) { return d->path; }

int64_t ds_image_size(const ds_file *d, int64_t image) {
    if (image < 0 || image >= d->nimages) return -1;
    return d->offs[image + 1] - d->offs[image];
}

const char *ds_describe_pair(const ds_file *d, int64_t i, char *buf, size_t cap) {
    const ds_pair *p = ds_pair_at(d, i);
    if (!p) snprintf(buf, cap, "pair %lld", (long long)i);
    else if (p->source_group >= 0)
        snprintf(buf, cap, "pair %lld (%s row group %d row %lld)", (long long)i, ds_source(d, p->source_file),
                 p->source_group, (long long)p->source_row);
    else
        snprintf(buf, cap, "pair %lld (%s line %lld)", (long long)i, ds_source(d, p->source_file),
                 (long long)p->source_row);
    return buf;
}

static int read_pairs(ds_file *d) {
    hid_t ds = H5Dopen2(d->f, "pairs", H5P_DEFAULT);
    if (ds < 0) {
        H5Eclear2(H5E_DEFAULT);
        return err_set(ERR_DATA, "%s: /pairs: missing; not a complete data.h5", d->path);
    }
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    int rc = ERR_OK;
    if (H5Tget_class(ft) != H5T_COMPOUND || H5Sget_simple_extent_ndims(sp) != 1) {
        rc = err_set(ERR_DATA, "%s: /pairs: expected a 1-d compound table", d->path);
        goto done;
    }
    for (int i = 0; i < NFIELDS; i++) {
        int idx = H5Tget_member_index(ft, fields[i].name);
        hid_t mt = idx >= 0 ? H5Tget_member_type(ft, (unsigned)idx) : -1;
        int ok = mt >= 0 && H5Tget_class(mt) == H5T_INTEGER;
        if (mt >= 0) H5Tclose(mt);
        if (!ok) {
            H5Eclear2(H5E_DEFAULT);
            rc = err_set(ERR_DATA, "%s: /pairs: no integer field '%s'", d->path, fields[i].name);
            goto done;
        }
    }
    hsize_t n = 0;
    H5Sget_simple_extent_dims(sp, &n, NULL);
    d->npairs = (int64_t)n;
    d->pairs = malloc(sizeof(ds_pair) * (n ? n : 1));
    if (!d->pairs) {
        rc = err_set(ERR_INTERNAL, "%s: out of memory for %llu pairs", d->path, (unsigned long long)n);
        goto done;
    }
    if (n) {
        hid_t mt = pair_mem_type();
        herr_t e = H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->pairs);
        H5Tclose(mt);
        if (e < 0) {
            H5Eclear2(H5E_DEFAULT);
            rc = err_set(ERR_DATA, "%s: /pairs: reading the table failed (damaged file?)", d->path);
        }
    }
done:
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

static int read_sources(ds_file *d) {
    hid_t ds = H5Dopen2(d->f, "sources", H5P_DEFAULT);
    if (ds < 0) {
        H5Eclear2(H5E_DEFAULT);
        return err_set(ERR_DATA, "%s: /sources: missing", d->path);
    }
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    hsize_t n = 0;
    int rc = ERR_OK;
    if (H5Sget_simple_extent_ndims(sp) != 1 || H5Tget_class(ft) != H5T_STRING || !H5Tis_variable_str(ft)) {
        rc = err_set(ERR_DATA, "%s: /sources: expected a 1-d array of variable-length strings", d->path);
        goto done;
    }
    H5Sget_simple_extent_dims(sp, &n, NULL);
    d->sources = calloc(n ? n : 1, sizeof(char *));
    char **tmp = calloc(n ? n : 1, sizeof(char *));
    if (!d->sources || !tmp) {
        free(tmp);
        rc = err_set(ERR_INTERNAL, "out of memory");
        goto done;
    }
    if (n) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5T_CSET_UTF8);
        if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0) {
            H5Eclear2(H5E_DEFAULT);
            rc = err_set(ERR_DATA, "%s: /sources: reading failed", d->path);
        } else {
            for (hsize_t i = 0; i < n; i++) d->sources[i] = mem_strdup(tmp[i] ? tmp[i] : "", "data.h5 source list");
            d->nsources = (int64_t)n;
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, tmp);
        }
        H5Tclose(mt);
    }
    free(tmp);
done:
    H5Tclose(ft);
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

static int dataset_len(ds_file *d, const char *name, h5x_dtype want, int64_t *n) {
    h5x_dsinfo in;
    int rc = h5x_info(d->f, name, &in);
    if (rc) return rc;
    if (in.ndim != 1 || in.dtype != want)
        return err_set(ERR_DATA, "%s: /%s: expected a 1-d %s array", d->path, name, h5x_dtype_name(want));
    *n = in.dims[0];
    return ERR_OK;
}

static int validate(ds_file *d) {
    const ds_meta *m = &d->meta;
    if (d->offs[0] != 0) return err_set(ERR_DATA, "%s: /image_offsets[0] = %lld, expected 0", d->path, (long long)d->offs[0]);
    for (int64_t i = 0; i < d->nimages; i++)
        if (d->offs[i + 1] <= d->offs[i] || d->offs[i + 1] > d->nbytes)
            return err_set(ERR_DATA, "%s: /image_offsets[%lld..%lld] = %lld..%lld: expected increasing offsets within "
                           "/image_bytes (%lld bytes)", d->path, (long long)i, (long long)i + 1, (long long)d->offs[i],
                           (long long)d->offs[i + 1], (long long)d->nbytes);
    for (int64_t i = 0; i < d->npairs; i++) {
        const ds_pair *p = &d->pairs[i];
        const char *what = NULL;
        if (p->source_file < 0 || p->source_file >= d->nsources) what = "source_file out of range";
        else if (p->prefix_len < 1 || p->prefix_off < 0 || p->prefix_off + p->prefix_len > d->ntokens) what = "prefix range outside /tokens";
        else if (p->chosen_len < 1 || p->chosen_off < 0 || p->chosen_off + p->chosen_len > d->ntokens) what = "chosen range outside /tokens";
        else if (p->rejected_len < 1 || p->rejected_off < 0 || p->rejected_off + p->rejected_len > d->ntokens) what = "rejected range outside /tokens";
        else if (p->image_pos < 0 || p->image_pos >= p->prefix_len) what = "image_pos outside the prefix";
        else if (p->image < 0 || p->image >= d->nimages) what = "image index out of range";
        else if (p->height <= 0 || p->width <= 0 || (int64_t)p->height * p->width > (1LL << 31)) what = "bad image size";
        else if (p->n_image_tokens != anyres_num_image_tokens(&m->model.anyres, p->height, p->width))
            what = "n_image_tokens differs from the image size under the stored image config";
        else if (p->split > DS_VAL) what = "split is neither 0 (train) nor 1 (val)";
        if (what) {
            char desc[1200];
            return err_set(ERR_DATA, "%s: /pairs %s: %s", d->path, ds_describe_pair(d, i, desc, sizeof desc), what);
        }
    }
    return ERR_OK;
}

int ds_open(const char *path, ds_file **out) {
    *out = NULL;
    ds_file *d = mem_calloc(1, sizeof *d, "data.h5 reader");
    d->f = -1;
    d->path = mem_strdup(path, "data.h5 reader");
    int rc = h5x_open(path, 0, &d->f);
    if (!rc) rc = h5x_check_format(d->f, DS_FORMAT, DS_VERSION, NULL);
    if (!rc) rc = read_attrs(d->f, path, &d->meta);
    int64_t noffs = 0;
    if (!rc) rc = dataset_len(d, "tokens", H5X_I32, &d->ntokens);
    if (!rc) rc = dataset_len(d, "image_bytes", H5X_U8, &d->nbytes);
    if (!rc) rc = dataset_len(d, "image_offsets", H5X_I64, &noffs);
    if (!rc && noffs < 1) rc = err_set(ERR_DATA, "%s: /image_offsets is empty, expected n_images + 1 values", path);
    if (!rc) {
        d->nimages = noffs - 1;
        d->offs = malloc(sizeof(int64_t) * (size_t)noffs);
        if (!d->offs) rc = err_set(ERR_INTERNAL, "out of memory");
        else rc = h5x_read(d->f, "image_offsets", H5X_I64, 1, &noffs, d->offs);
    }
    if (!rc) rc = read_sources(d);
    if (!rc) rc = read_pairs(d);
    if (!rc && (d->npairs != d->meta.n_pairs || d->nimages != d->meta.n_images || d->ntokens != d->meta.n_tokens))
        rc = err_set(ERR_DATA, "%s: %lld pairs, %lld images, %lld tokens stored; the attributes say %lld, %lld, %lld",
                     path, (long long)d->npairs, (long long)d->nimages, (long long)d->ntokens,
                     (long long)d->meta.n_pairs, (long long)d->meta.n_images, (long long)d->meta.n_tokens);
    if (!rc) rc = validate(d);
    if (rc) {
        ds_close(d);
        return rc;
    }
    *out = d;
    return ERR_OK;
}

int ds_read_tokens(ds_file *d, int64_t off, int64_t n, int32_t *out) {
    return h5x_read_rows(d->f, "tokens", H5X_I32, off, n, out);
}

int ds_read_image(ds_file *d, int64_t image, uint8_t *out) {
    if (image < 0 || image >= d->nimages)
        return err_set(ERR_DATA, "%s: image %lld out of range (%lld images)", d->path, (long long)image,
                       (long long)d->nimages);
    return h5x_read_rows(d->f, "image_bytes", H5X_U8, d->offs[image], d->offs[image + 1] - d->offs[image], out);
}
