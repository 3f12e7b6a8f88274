/* vcache — the vision-feature cache file (see vcache.h). */
#include "train/vcache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/tensor.h"
#include "data/loader.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"
#include "model/llava_size.h"

#define VC_PROGRESS_S 5.0 /* seconds between progress lines of a build */

struct vc_file {
    hid_t f;
    char path[ATOMIC_PATH_MAX];
    int act_dtype;
    int64_t np, dv, pairs;
};

/* what this run needs of a cache: the root attributes as text (hashes as 16 hex digits), in the order checked */
enum { A_MODEL, A_DATA, A_DTYPE, A_NP, A_DV, NATTR };
static const char *attr_name[NATTR] = {"model_hash", "data_hash", "act_dtype", "np", "dv"};
static const char *attr_what[NATTR] = {"model", "data", "activation dtype (runtime.precision)", "vision tower",
                                       "vision tower"};

typedef struct want {
    char v[NATTR][32];
    int64_t np, dv;
    int act_dtype;
} want;

static void want_of(const llava_trainer *lt, const vc_source *src, want *w) {
    const llava_config *c = &lt->m->cfg;
    w->np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    w->dv = c->v_hidden;
    w->act_dtype = lt->spec.act_dtype;
    snprintf(w->v[A_MODEL], sizeof w->v[A_MODEL], "%016llx", (unsigned long long)src->model_hash);
    snprintf(w->v[A_DATA], sizeof w->v[A_DATA], "%016llx", (unsigned long long)src->data_hash);
    snprintf(w->v[A_DTYPE], sizeof w->v[A_DTYPE], "%s", dtype_name(w->act_dtype));
    snprintf(w->v[A_NP], sizeof w->v[A_NP], "%lld", (long long)w->np);
    snprintf(w->v[A_DV], sizeof w->v[A_DV], "%lld", (long long)w->dv);
}

static h5x_dtype h5_dtype(int act_dtype) { return act_dtype == DT_BF16 ? H5X_BF16 : H5X_F32; }

/* ---- build ----------------------------------------------------------------------------------------------- */

typedef struct build {
    llava_trainer *lt;
    const vc_source *src;
    const want *w;
    const char *path;
    int64_t total, done;
} build;

static void fmt_eta(char *buf, size_t n, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

/* one split's pairs in file order */
static int build_split(hid_t f, build *b, int split, int64_t n, void *buf, size_t cap, double t0, double *t_logged) {
    if (n <= 0) return ERR_OK;
    ldr_opts lo;
    ldr_opts_default(&lo);
    lo.split = split;
    lo.batch_pairs = 8;
    lo.shuffle = 0;
    ldr *l = NULL;
    int rc = ldr_open(b->src->data_path, b->src->ref, &lo, &l);
    const h5x_dtype dt = h5_dtype(b->w->act_dtype);
    int64_t seen = 0;
    while (!rc && seen < n) {
        const ldr_batch *bt;
        if ((rc = ldr_next(l, &bt))) break;
        for (int i = 0; !rc && i < bt->n && seen < n; i++, seen++) {
            const ldr_pair *p = &bt->pairs[i];
            if (b->src->stop_requested && b->src->stop_requested()) {
                log_warn("vision cache %s: stopped by a signal at pair %lld of %lld; nothing written (the next run "
                         "builds it)", b->path, (long long)b->done, (long long)b->total);
                rc = err_set(ERR_INTERRUPTED, "%s: the build of the vision cache was stopped at pair %lld of %lld "
                             "(nothing written)", b->path, (long long)b->done, (long long)b->total);
                break;
            }
            const int64_t rows = (int64_t)p->n_patches * b->w->np;
            if ((size_t)(rows * b->w->dv) * dtype_size(b->w->act_dtype) > cap) {
                rc = err_set(ERR_DATA, "%s: pair %lld has %d image tiles, the model's images have at most %d",
                             b->src->data_path, (long long)p->index, p->n_patches, ls_image_tiles(&b->lt->m->cfg));
                break;
            }
            if ((rc = lt_vision_features(b->lt, p->pixels, p->n_patches, buf))) break;
            char name[64];
            snprintf(name, sizeof name, "features/%lld", (long long)p->index);
            const int64_t dims[2] = {rows, b->w->dv};
            if ((rc = h5x_write(f, name, dt, 2, dims, buf))) break;
            b->done++;
            double now = log_now();
            if (now - *t_logged >= VC_PROGRESS_S) {
                char eta[32];
                fmt_eta(eta, sizeof eta, (now - t0) / (double)b->done * (double)(b->total - b->done));
                log_info("vision cache %s: %lld/%lld pairs, ETA %s", b->path, (long long)b->done, (long long)b->total,
                         eta);
                *t_logged = now;
            }
        }
        if (!rc && bt->n == 0) rc = err_set(ERR_INTERNAL, "%s: the loader returned an empty batch", b->src->data_path);
    }
    ldr_close(l);
    return rc;
}

static int build_body(hid_t f, void *ctx) {
    build *b = ctx;
    ds_file *d = NULL;
    int rc = ds_open(b->src->data_path, &d);
    if (rc) return rc;
    const int64_t n_train = ds_meta_of(d)->n_train, n_val = ds_meta_of(d)->n_val;
    ds_close(d);
    b->total = n_train + n_val;
    b->done = 0;
    /* a forward-only plan that runs the tower on one image */
    llava_trainer *lt = b->lt;
    const int tiles = ls_image_tiles(&lt->m->cfg);
    ls_dims dims = {1, 1, tiles, 0, 0};
    ls_strategy st;
    ls_strategy_default(&st, lt->spec.act_dtype);
    st.forward_only = 1;
    if ((rc = lt_plan_ex(lt, &dims, &st))) return rc;
    rc = h5x_set_format(f, VC_FORMAT, VC_VERSION);
    for (int a = 0; !rc && a < NATTR; a++)
        rc = a == A_NP || a == A_DV ? h5x_attr_set_i64(f, ".", attr_name[a], a == A_NP ? b->w->np : b->w->dv)
                                    : h5x_attr_set_str(f, ".", attr_name[a], b->w->v[a]);
    if (!rc) rc = h5x_attr_set_i64(f, ".", "pairs", b->total);
    if (!rc) rc = h5x_attr_set_str(f, ".", "data_path", b->src->data_path);
    hid_t g;
    if (!rc && !(rc = h5x_group(f, "features", &g))) H5Gclose(g); /* present even for an empty data set */
    const size_t cap = (size_t)tiles * (size_t)(b->w->np * b->w->dv) * dtype_size(b->w->act_dtype);
    void *buf = mem_alloc(cap ? cap : 1, "vision cache: one image's features");
    double t0 = log_now(), t_logged = t0;
    log_info("vision cache %s: building the features of %lld pairs (%lld train, %lld val) with the vision tower",
             b->path, (long long)b->total, (long long)n_train, (long long)n_val);
    if (!rc) rc = build_split(f, b, DS_TRAIN, n_train, buf, cap, t0, &t_logged);
    if (!rc) rc = build_split(f, b, DS_VAL, n_val, buf, cap, t0, &t_logged);
    free(buf);
    return rc;
}

/* ---- open ------------------------------------------------------------------------------------------------ */

/* the root attributes of an open cache against what this run needs */
static int check(vc_file *vc, const want *w) {
    int64_t ver = 0;
    int rc = h5x_check_format(vc->f, VC_FORMAT, VC_VERSION, &ver);
    if (rc) return err_push("%s: runtime.vision_cache: not a vision cache of this orpo-hpc; delete it or set "
                            "runtime.vision_cache to another path", vc->path);
    for (int a = 0; a < NATTR; a++) {
        char got[64];
        if (!h5x_attr_exists(vc->f, ".", attr_name[a]))
            return err_set(ERR_DATA, "%s: vision cache without the root attribute %s; delete it or set "
                           "runtime.vision_cache to another path", vc->path, attr_name[a]);
        if (a == A_NP || a == A_DV) {
            int64_t v = 0;
            if ((rc = h5x_attr_get_i64(vc->f, ".", attr_name[a], &v))) return rc;
            snprintf(got, sizeof got, "%lld", (long long)v);
        } else {
            char *s = NULL;
            if ((rc = h5x_attr_get_str(vc->f, ".", attr_name[a], &s))) return rc;
            snprintf(got, sizeof got, "%s", s);
            free(s);
        }
        if (strcmp(got, w->v[a]))
            return err_set(ERR_DATA, "%s: a vision cache built for another %s: attribute %s is %s, this run's is %s; "
                           "delete the file to rebuild it, or set runtime.vision_cache to another path", vc->path,
                           attr_what[a], attr_name[a], got, w->v[a]);
    }
    if ((rc = h5x_attr_get_i64(vc->f, ".", "pairs", &vc->pairs))) return rc;
    return ERR_OK;
}

static int open_existing(const char *path, const want *w, vc_file **out) {
    vc_file *vc = mem_calloc(1, sizeof *vc, "vision cache");
    snprintf(vc->path, sizeof vc->path, "%s", path);
    vc->act_dtype = w->act_dtype;
    vc->np = w->np;
    vc->dv = w->dv;
    vc->f = -1;
    int rc = h5x_open(path, 0, &vc->f);
    if (!rc) rc = check(vc, w);
    if (rc) {
        vc_close(vc);
        return rc;
    }
    *out = vc;
    return ERR_OK;
}

int vc_open(const char *path, llava_trainer *lt, const vc_source *src, vc_file **out) {
    *out = NULL;
    want w;
    want_of(lt, src, &w);
    struct stat sb;
    if (stat(path, &sb) == 0) {
        int rc = open_existing(path, &w, out);
        if (!rc) log_info("vision cache %s: reusing it (%lld pairs; built for this model, data and %s activations)",
                          path, (long long)(*out)->pairs, w.v[A_DTYPE]);
        return rc;
    }
    if (errno != ENOENT) return err_set(ERR_IO, "runtime.vision_cache: %s: %s", path, strerror(errno));
    int removed = 0;
    if (atomic_cleanup_stale(path, &removed) == ERR_OK && removed)
        log_info("vision cache %s: removed %d temporary file(s) of an interrupted build", path, removed);
    build b = {lt, src, &w, path, 0, 0};
    double t0 = log_now();
    int rc = h5x_write_atomic(path, build_body, &b, NULL);
    if (rc) return err_push("runtime.vision_cache: building %s (nothing written)", path);
    struct stat st;
    log_info("vision cache %s: built, %lld pairs, %.1f MB in %.1f s", path, (long long)b.total,
             stat(path, &st) == 0 ? (double)st.st_size / 1e6 : 0.0, log_now() - t0);
    return open_existing(path, &w, out);
}

int vc_read(vc_file *vc, int64_t index, int P, void *dst, size_t cap) {
    char name[64];
    snprintf(name, sizeof name, "features/%lld", (long long)index);
    if (!h5x_exists(vc->f, name))
        return err_set(ERR_DATA, "%s: no vision features of pair %lld (/%s is missing): the cache is not of this "
                       "data.h5; delete it to rebuild it", vc->path, (long long)index, name);
    h5x_dsinfo info;
    int rc = h5x_info(vc->f, name, &info);
    if (rc) return rc;
    const int64_t rows = (int64_t)P * vc->np;
    const h5x_dtype dt = h5_dtype(vc->act_dtype);
    if (info.ndim != 2 || info.dims[0] != rows || info.dims[1] != vc->dv || info.dtype != dt)
        return err_set(ERR_DATA, "%s: /%s: %s [%lld, %lld], expected %s [%lld, %lld] (pair %lld has %d image tiles of "
                       "%lld patches); delete the cache to rebuild it", vc->path, name, h5x_dtype_name(info.dtype),
                       (long long)info.dims[0], (long long)(info.ndim > 1 ? info.dims[1] : 0), h5x_dtype_name(dt),
                       (long long)rows, (long long)vc->dv, (long long)index, P, (long long)vc->np);
    const size_t bytes = (size_t)(rows * vc->dv) * h5x_dtype_size(dt);
    if (bytes > cap)
        return err_set(ERR_INTERNAL, "%s: pair %lld: %zu bytes of features, the buffer holds %zu", vc->path,
                       (long long)index, bytes, cap);
    const int64_t dims[2] = {rows, vc->dv};
    return h5x_read(vc->f, name, dt, 2, dims, dst);
}

int64_t vc_pairs(const vc_file *vc) { return vc->pairs; }

void vc_close(vc_file *vc) {
    if (!vc) return;
    if (vc->f >= 0) h5x_close(&vc->f);
    free(vc);
}
