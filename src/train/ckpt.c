/* ckpt — atomic, checksummed HDF5 checkpoints (see ckpt.h, docs/checkpoints.md). */
#include "train/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ckpt: the checksums are defined over little-endian bytes; a big-endian host needs byte swapping here"
#endif

#define MF_PATH 256 /* bytes of a manifest path (NUL-terminated) */
#define MF_GROUP 64 /* bytes of an optimiser group name */
#define PATHCAP 4096

/* one manifest row; its memory layout equals the packed file layout (256 + 64 + 8 + 8 bytes, no padding) */
typedef struct mrow {
    char path[MF_PATH];
    char group[MF_GROUP]; /* params: the "group" attribute, "" otherwise */
    int64_t nbytes;
    int64_t crc32;
} mrow;

typedef struct manifest {
    mrow *rows;
    int64_t n, cap;
} manifest;

/* the scalar state, each a 0-d dataset under /state */
typedef struct scal {
    const char *name;
    h5x_dtype dt;
    size_t off;
} scal;

static const scal g_scalars[] = {
    {"step", H5X_I64, offsetof(ckpt_state, step)},
    {"epoch", H5X_I64, offsetof(ckpt_state, epoch)},
    {"cursor_pos", H5X_I64, offsetof(ckpt_state, cursor_pos)},
    {"perm_seed", H5X_U64, offsetof(ckpt_state, perm_seed)},
    {"rng_seed", H5X_U64, offsetof(ckpt_state, rng_seed)},
    {"metrics_rows", H5X_I64, offsetof(ckpt_state, metrics_rows)},
    {"sched_lr_factor", H5X_F64, offsetof(ckpt_state, sched_lr_factor)},
    {"adam_step", H5X_I64, offsetof(ckpt_state, adam_step)},
    {"samples_seen", H5X_I64, offsetof(ckpt_state, samples_seen)},
    {"tokens_seen", H5X_I64, offsetof(ckpt_state, tokens_seen)},
    {"elapsed_s", H5X_F64, offsetof(ckpt_state, elapsed_s)},
    {"world_size", H5X_I64, offsetof(ckpt_state, world_size)},
    {"job_hash", H5X_U64, offsetof(ckpt_state, job_hash)},
    {"model_hash", H5X_U64, offsetof(ckpt_state, model_hash)},
    {"data_hash", H5X_U64, offsetof(ckpt_state, data_hash)},
};
enum { NSCALARS = (int)(sizeof g_scalars / sizeof g_scalars[0]) };

static const char *const g_lists[3] = {"params", "adam_m", "adam_v"};

static uint32_t crc_of(const void *p, size_t n) {
    return (uint32_t)crc32_z(crc32_z(0L, Z_NULL, 0), (const Bytef *)p, n);
}

/* ---- names and paths ------------------------------------------------------------------- */

int ckpt_path(const char *dir, int64_t step, char *buf, size_t cap) {
    if (step < 0) return err_set(ERR_ARGS, "%s: checkpoint step %lld, expected >= 0", dir, (long long)step);
    int w = snprintf(buf, cap, "%s/checkpoints/step-%08lld.h5", dir, (long long)step);
    if (w < 0 || (size_t)w >= cap) return err_set(ERR_ARGS, "%s: checkpoint path too long", dir);
    return ERR_OK;
}

/* "step-NNNNNNNN.h5" (8 or more digits) -> step; -1 otherwise */
static int64_t parse_name(const char *name) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    const char *p = name + 5;
    int nd = 0;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (nd >= 18) return -1;
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd < 8 || strcmp(p, ".h5") != 0) return -1;
    return v;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* every step of cdir/step-*.h5, ascending, malloc'ed; a missing directory gives n = 0 */
static int list_steps(const char *cdir, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(cdir);
    if (!d) {
        if (errno == ENOENT) return ERR_OK;
        return err_set(ERR_IO, "%s: cannot list the checkpoint directory: %s", cdir, fs_errno_msg(errno));
    }
    int cap = 0, cnt = 0;
    int64_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t s = parse_name(e->d_name);
        if (s < 0) continue;
        if (cnt == cap) {
            int nc = cap ? cap * 2 : 16;
            v = mem_realloc(v, (size_t)nc * sizeof *v, "the list of checkpoints");
            cap = nc;
        }
        v[cnt++] = s;
    }
    closedir(d);
    if (cnt > 1) qsort(v, (size_t)cnt, sizeof *v, cmp_i64);
    *steps = v;
    *n = cnt;
    return ERR_OK;
}

static int ckpt_dir(const char *dir, char *buf, size_t cap) {
    int rc = fs_join(buf, cap, dir, "checkpoints");
    return rc ? err_push("checkpoint directory") : ERR_OK;
}

int ckpt_list(const char *dir, int64_t *steps, int cap, int *n) {
    char cdir[PATHCAP];
    int64_t *v;
    int cnt, rc;
    *n = 0;
    if ((rc = ckpt_dir(dir, cdir, sizeof cdir)) || (rc = list_steps(cdir, &v, &cnt))) return rc;
    int k = cnt < cap ? cnt : cap;
    if (k > 0) memcpy(steps, v, (size_t)k * sizeof *v);
    free(v);
    *n = cnt;
    return ERR_OK;
}

/* ---- manifest --------------------------------------------------------------------------- */

static hid_t manifest_type(void) {
    hid_t s = H5Tcopy(H5T_C_S1), g = H5Tcopy(H5T_C_S1);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(mrow));
    if (s < 0 || g < 0 || t < 0 || H5Tset_size(s, MF_PATH) < 0 || H5Tset_strpad(s, H5T_STR_NULLTERM) < 0 ||
        H5Tset_size(g, MF_GROUP) < 0 || H5Tset_strpad(g, H5T_STR_NULLTERM) < 0 ||
        H5Tinsert(t, "path", offsetof(mrow, path), s) < 0 || H5Tinsert(t, "group", offsetof(mrow, group), g) < 0 ||
        H5Tinsert(t, "nbytes", offsetof(mrow, nbytes), H5T_STD_I64LE) < 0 ||
        H5Tinsert(t, "crc32", offsetof(mrow, crc32), H5T_STD_I64LE) < 0) {
        if (t >= 0) H5Tclose(t);
        t = -1;
    }
    if (s >= 0) H5Tclose(s);
    if (g >= 0) H5Tclose(g);
    return t;
}

static int manifest_add(manifest *m, const char *path, const char *group, int64_t nbytes, uint32_t crc) {
    if (m->n == m->cap) {
        int64_t nc = m->cap ? m->cap * 2 : 64;
        m->rows = mem_realloc(m->rows, (size_t)nc * sizeof *m->rows, "the checkpoint manifest");
        m->cap = nc;
    }
    mrow *r = &m->rows[m->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    snprintf(r->group, sizeof r->group, "%s", group ? group : "");
    r->nbytes = nbytes;
    r->crc32 = (int64_t)crc;
    return ERR_OK;
}

static int cmp_row(const void *a, const void *b) {
    return strcmp(((const mrow *)a)->path, ((const mrow *)b)->path);
}

static const mrow *manifest_find(const manifest *m, const char *path) {
    mrow key;
    size_t n = strlen(path);
    if (n >= sizeof key.path) return NULL; /* longer than any stored path */
    memcpy(key.path, path, n + 1);
    return m->n ? bsearch(&key, m->rows, (size_t)m->n, sizeof(mrow), cmp_row) : NULL;
}

/* ---- writing ---------------------------------------------------------------------------- */

/* one dataset + its crc32 attribute + a manifest row */
static int put(hid_t f, manifest *mf, const char *path, h5x_dtype dt, int ndim, const int64_t *dims,
               const void *data, int64_t nbytes, const char *group) {
    uint32_t crc = crc_of(data, (size_t)nbytes);
    int rc = h5x_write(f, path, dt, ndim, dims, data);
    if (!rc) rc = h5x_attr_set_i64(f, path, "crc32", (int64_t)crc);
    if (!rc && group) rc = h5x_attr_set_str(f, path, "group", group);
    if (!rc) rc = manifest_add(mf, path, group, nbytes, crc);
    return rc;
}

static int check_tensors(const ckpt_state *s, const char *final) {
    if (s->ntensors < 0 || (s->ntensors > 0 && (!s->params || !s->adam_m || !s->adam_v)))
        return err_set(ERR_ARGS, "%s: %d tensors but a NULL params/adam_m/adam_v list", final, s->ntensors);
    for (int i = 0; i < s->ntensors; i++) {
        const ckpt_tensor *p = &s->params[i];
        const char *n = p->name;
        if (p->group && strlen(p->group) >= MF_GROUP)
            return err_set(ERR_ARGS, "%s: tensor '%s': group name longer than %d bytes", final, n ? n : "", MF_GROUP - 1);
        if (!n || !n[0] || strchr(n, '/') || strlen(n) > CKPT_MAX_NAME)
            return err_set(ERR_ARGS, "%s: tensor %d: name '%s' must be 1..%d bytes without '/'", final, i,
                           n ? n : "(null)", CKPT_MAX_NAME);
        if (p->ndim < 0 || p->ndim > 4)
            return err_set(ERR_ARGS, "%s: tensor '%s': %d dimensions, expected 0..4", final, n, p->ndim);
        int64_t numel = 1;
        for (int k = 0; k < p->ndim; k++) {
            if (p->shape[k] < 0) return err_set(ERR_ARGS, "%s: tensor '%s': negative dimension", final, n);
            numel *= p->shape[k];
        }
        if (numel != p->numel)
            return err_set(ERR_ARGS, "%s: tensor '%s': numel %lld, its shape holds %lld", final, n,
                           (long long)p->numel, (long long)numel);
        if (numel > 0 && !p->data) return err_set(ERR_ARGS, "%s: tensor '%s': no data", final, n);
        for (int l = 1; l < 3; l++) {
            const ckpt_tensor *q = l == 1 ? &s->adam_m[i] : &s->adam_v[i];
            int same = q->name && !strcmp(q->name, n) && q->ndim == p->ndim && q->numel == p->numel &&
                       (numel == 0 || q->data);
            for (int k = 0; same && k < p->ndim; k++) same = q->shape[k] == p->shape[k];
            if (!same)
                return err_set(ERR_ARGS, "%s: %s[%d] ('%s') does not match params[%d] ('%s') in name and shape",
                               final, g_lists[l], i, q->name ? q->name : "(null)", i, n);
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(s->params[j].name, n)) return err_set(ERR_ARGS, "%s: tensor name '%s' twice", final, n);
    }
    return ERR_OK;
}

static int write_body(hid_t f, const ckpt_state *s) {
    manifest mf = {0};
    int rc = h5x_set_format(f, CKPT_FORMAT, CKPT_FORMAT_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, "/", "created_by", "orpo-hpc " ORPO_VERSION);
    if (!rc) rc = h5x_attr_set_i64(f, "/", "step", s->step);
    for (int i = 0; i < NSCALARS && !rc; i++) {
        char p[64];
        snprintf(p, sizeof p, "/state/%s", g_scalars[i].name);
        rc = put(f, &mf, p, g_scalars[i].dt, 0, NULL, (const char *)s + g_scalars[i].off, 8, NULL);
    }
    if (!rc) {
        const char *y = s->job_yaml ? s->job_yaml : "";
        int64_t n = (int64_t)strlen(y);
        rc = put(f, &mf, "/config/job_yaml", H5X_U8, 1, &n, y, n, NULL);
    }
    for (int l = 0; l < 3 && !rc; l++) {
        const ckpt_tensor *list = l == 0 ? s->params : l == 1 ? s->adam_m : s->adam_v;
        for (int i = 0; i < s->ntensors && !rc; i++) {
            const ckpt_tensor *t = &list[i];
            char p[MF_PATH];
            snprintf(p, sizeof p, "/%s/%s", g_lists[l], t->name);
            rc = put(f, &mf, p, H5X_F32, t->ndim, t->shape, t->data, t->numel * 4,
                     l == 0 ? s->params[i].group : NULL);
        }
    }
    if (!rc) {
        qsort(mf.rows, (size_t)mf.n, sizeof(mrow), cmp_row);
        hid_t t = manifest_type();
        int64_t n = mf.n;
        if (t < 0) rc = err_set(ERR_INTERNAL, "cannot build the manifest type");
        if (!rc) rc = h5x_write_raw(f, "/manifest", t, t, 1, &n, mf.rows, NULL);
        if (!rc) rc = h5x_attr_set_i64(f, "/manifest", "crc32", (int64_t)crc_of(mf.rows, (size_t)n * sizeof(mrow)));
        if (t >= 0) H5Tclose(t);
    }
    free(mf.rows);
    return rc;
}

static int write_body_cb(hid_t f, void *s) { return write_body(f, s); }

int ckpt_write(const char *dir, const ckpt_state *s) {
    char cdir[PATHCAP], final[PATHCAP];
    int rc, at;
    if ((rc = ckpt_dir(dir, cdir, sizeof cdir)) || (rc = ckpt_path(dir, s->step, final, sizeof final))) return rc;
    if ((rc = check_tensors(s, final))) return rc;
    if ((rc = fs_mkdirs(cdir))) return err_push("checkpoint step %lld", (long long)s->step);
    if (!(rc = h5x_write_atomic(final, write_body_cb, (void *)s, &at))) return ERR_OK;
    if (at == H5X_AT_BEGIN) return err_push("checkpoint step %lld", (long long)s->step);
    if (at == H5X_AT_WRITE)
        return err_push("%s: checkpoint of step %lld not written; the previous checkpoints are intact", final,
                        (long long)s->step);
    return err_push("checkpoint of step %lld", (long long)s->step);
}

/* ---- verification ----------------------------------------------------------------------- */

typedef struct vfile {
    hid_t f;
    manifest mf;
    char path[PATHCAP];
    int64_t version; /* format_version */
} vfile;

static void vclose(vfile *v) {
    if (v->f >= 0) h5x_close(&v->f);
    free(v->mf.rows);
    v->mf.rows = NULL;
}

static int read_manifest(vfile *v) {
    const char *path = v->path;
    h5x_dsinfo in;
    int rc = h5x_info(v->f, "/manifest", &in);
    if (rc) return rc;
    if (in.ndim != 1 || in.dims[0] < 1 || in.dims[0] > 10000000)
        return err_set(ERR_DATA, "%s: /manifest: expected a 1-d table of 1..1e7 rows", path);
    hid_t want = manifest_type();
    hid_t d = H5Dopen2(v->f, "/manifest", H5P_DEFAULT);
    hid_t t = d >= 0 ? H5Dget_type(d) : -1;
    if (want < 0 || d < 0 || t < 0 || H5Tequal(t, want) <= 0) {
        char desc[512] = "?";
        if (t >= 0) h5x_type_describe(t, desc, sizeof desc);
        rc = err_set(ERR_DATA, "%s: /manifest: expected compound{path:string(256), group:string(64), nbytes:int64, "
                     "crc32:int64}, got %s",
                     path, desc);
        goto done;
    }
    v->mf.n = v->mf.cap = in.dims[0];
    v->mf.rows = mem_calloc((size_t)in.dims[0], sizeof(mrow), "the checkpoint manifest");
    if (H5Dread(d, want, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->mf.rows) < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = err_set(ERR_DATA, "%s: /manifest: cannot read the table (damaged file)", path);
        goto done;
    }
    int64_t stored = -1;
    if ((rc = h5x_attr_get_i64(v->f, "/manifest", "crc32", &stored))) goto done;
    uint32_t crc = crc_of(v->mf.rows, (size_t)v->mf.n * sizeof(mrow));
    if (stored != (int64_t)crc) {
        rc = err_set(ERR_DATA, "%s: /manifest: CRC-32 %08llx, computed %08x (damaged file)", path,
                     (unsigned long long)stored, crc);
        goto done;
    }
    for (int64_t i = 0; i < v->mf.n; i++) {
        mrow *r = &v->mf.rows[i];
        if (memchr(r->path, 0, MF_PATH) == NULL || memchr(r->group, 0, MF_GROUP) == NULL || r->path[0] != '/' ||
            r->nbytes < 0) {
            rc = err_set(ERR_DATA, "%s: /manifest row %lld: bad path or size", path, (long long)i);
            goto done;
        }
        if (i > 0 && cmp_row(&v->mf.rows[i - 1], r) >= 0) {
            rc = err_set(ERR_DATA, "%s: /manifest row %lld ('%s'): rows are not sorted and unique", path,
                         (long long)i, r->path);
            goto done;
        }
    }
done:
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (want >= 0) H5Tclose(want);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

/* checks that row's dataset exists with the recorded size; returns its info */
static int check_row(vfile *v, const mrow *r, h5x_dsinfo *in) {
    int rc = h5x_info(v->f, r->path, in);
    if (rc) return rc;
    size_t es = h5x_dtype_size(in->dtype);
    int ok_type = in->dtype == H5X_F32 || in->dtype == H5X_I64 || in->dtype == H5X_U64 || in->dtype == H5X_F64 ||
                  in->dtype == H5X_U8;
    int64_t numel = 1;
    for (int k = 0; k < in->ndim; k++) numel *= in->dims[k];
    if (!ok_type || in->chunked || numel * (int64_t)es != r->nbytes)
        return err_set(ERR_DATA, "%s: %s: expected %lld bytes of contiguous numbers, got %s with %lld elements%s",
                       v->path, r->path, (long long)r->nbytes, h5x_dtype_name(in->dtype), (long long)numel,
                       in->chunked ? " (chunked)" : "");
    return ERR_OK;
}

/* reads a row's dataset into buf (r->nbytes bytes) and checks its CRC against the manifest and its attribute */
static int read_checked(vfile *v, const mrow *r, const h5x_dsinfo *in, void *buf) {
    int rc = h5x_read(v->f, r->path, in->dtype, in->ndim, in->dims, buf);
    if (rc) return rc;
    uint32_t crc = crc_of(buf, (size_t)r->nbytes);
    int64_t attr = -1;
    if ((rc = h5x_attr_get_i64(v->f, r->path, "crc32", &attr))) return rc;
    if ((int64_t)crc != r->crc32 || attr != r->crc32)
        return err_set(ERR_DATA, "%s: %s: CRC-32 of the data %08x, manifest %08llx, attribute %08llx (damaged file)",
                       v->path, r->path, crc, (unsigned long long)r->crc32, (unsigned long long)attr);
    if (r->group[0]) { /* the attribute a reader sees must say what the manifest says */
        char *g = NULL;
        if ((rc = h5x_attr_get_str(v->f, r->path, "group", &g))) return err_push("damaged file");
        int eq = !strcmp(g, r->group);
        if (!eq) err_set(ERR_DATA, "%s: %s: attribute group '%s', the manifest says '%s' (damaged file)", v->path, r->path,
                         g, r->group);
        free(g);
        if (!eq) return ERR_DATA;
    }
    return ERR_OK;
}

/* open + format + manifest; full: also read every dataset and check its CRC */
static int vopen(const char *path, int full, vfile *v) {
    memset(v, 0, sizeof *v);
    v->f = -1;
    snprintf(v->path, sizeof v->path, "%s", path);
    int64_t sz = 0;
    int rc = fs_size(path, &sz);
    if (rc) return rc;
    if (sz == 0) return err_set(ERR_DATA, "%s: empty file (0 bytes)", path);
    if ((rc = h5x_open(path, 0, &v->f))) return rc;
    if ((rc = h5x_check_format(v->f, CKPT_FORMAT, CKPT_FORMAT_VERSION, &v->version)) || (rc = read_manifest(v))) {
        vclose(v);
        return rc;
    }
    /* the scalars and the config must be listed */
    for (int i = 0; i <= NSCALARS && !rc; i++) {
        char p[64];
        if (i < NSCALARS) snprintf(p, sizeof p, "/state/%s", g_scalars[i].name);
        else snprintf(p, sizeof p, "/config/job_yaml");
        const mrow *r = manifest_find(&v->mf, p);
        if (!r) rc = err_set(ERR_DATA, "%s: %s is not in the manifest", path, p);
        else if (i < NSCALARS && r->nbytes != 8) rc = err_set(ERR_DATA, "%s: %s: expected 8 bytes", path, p);
    }
    void *buf = NULL;
    size_t bufcap = 0;
    for (int64_t i = 0; i < v->mf.n && !rc; i++) {
        const mrow *r = &v->mf.rows[i];
        h5x_dsinfo in;
        if ((rc = check_row(v, r, &in)) || !full) continue;
        if ((size_t)r->nbytes > bufcap) {
            free(buf);
            bufcap = (size_t)r->nbytes;
            buf = mem_alloc(bufcap, "a checkpoint tensor being verified");
        }
        rc = read_checked(v, r, &in, buf ? buf : (void *)&bufcap);
    }
    free(buf);
    if (rc) vclose(v);
    return rc;
}

static int read_scalar(vfile *v, const char *name, h5x_dtype dt, void *out) {
    char p[64];
    snprintf(p, sizeof p, "/state/%s", name);
    const mrow *r = manifest_find(&v->mf, p);
    h5x_dsinfo in;
    int rc = r ? check_row(v, r, &in) : err_set(ERR_DATA, "%s: %s missing", v->path, p);
    if (!rc && (in.dtype != dt || in.ndim != 0))
        rc = err_set(ERR_DATA, "%s: %s: expected a %s scalar, got %s with %d dimensions", v->path, p,
                     h5x_dtype_name(dt), h5x_dtype_name(in.dtype), in.ndim);
    if (!rc) rc = read_checked(v, r, &in, out);
    return rc;
}

int ckpt_verify(const char *path, int64_t *step) {
    vfile v;
    int rc = vopen(path, 1, &v);
    if (rc) return rc;
    int64_t s = -1, attr = -1;
    rc = read_scalar(&v, "step", H5X_I64, &s);
    if (!rc) rc = h5x_attr_get_i64(v.f, "/", "step", &attr);
    if (!rc && attr != s)
        rc = err_set(ERR_DATA, "%s: root attribute step %lld, /state/step %lld (damaged file)", path, (long long)attr,
                     (long long)s);
    vclose(&v);
    if (!rc && step) *step = s;
    return rc;
}

/* ---- reading ---------------------------------------------------------------------------- */

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *dims) {
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (len < cap) snprintf(buf + len, cap - len, "]");
}

/* checks the expected tensors of one list against the file; read: copy them into the caller's buffers */
static int tensors(vfile *v, int l, const ckpt_tensor *list, int nt, int read) {
    const char *pre = g_lists[l];
    size_t plen = strlen(pre);
    int64_t have = 0;
    for (int64_t i = 0; i < v->mf.n; i++) {
        const char *p = v->mf.rows[i].path;
        have += p[0] == '/' && !strncmp(p + 1, pre, plen) && p[plen + 1] == '/';
    }
    for (int i = 0; i < nt; i++) {
        const ckpt_tensor *t = &list[i];
        char p[MF_PATH + 64];
        snprintf(p, sizeof p, "/%s/%s", pre, t->name ? t->name : "");
        const mrow *r = manifest_find(&v->mf, p);
        if (!r)
            return err_set(ERR_DATA, "%s: tensor '%s' (%s) is not in the checkpoint; it holds %lld %s tensors", v->path,
                           t->name ? t->name : "(null)", p, (long long)have, pre);
        h5x_dsinfo in;
        int rc = check_row(v, r, &in);
        if (rc) return rc;
        int same = in.dtype == H5X_F32 && in.ndim == t->ndim;
        for (int k = 0; same && k < t->ndim; k++) same = in.dims[k] == t->shape[k];
        if (!same) {
            char a[128], b[128];
            fmt_shape(a, sizeof a, t->ndim, t->shape);
            fmt_shape(b, sizeof b, in.ndim, in.dims);
            return err_set(ERR_DATA, "%s: tensor '%s' (%s): expected float32 %s, got %s %s", v->path, t->name, p, a,
                           h5x_dtype_name(in.dtype), b);
        }
        if (l == 0 && t->group && strcmp(r->group, t->group))
            return err_set(ERR_DATA, "%s: tensor '%s': group '%s', expected '%s'", v->path, t->name, r->group, t->group);
        if (read && (rc = read_checked(v, r, &in, t->data))) return rc;
    }
    if (have != nt)
        return err_set(ERR_DATA, "%s: the checkpoint holds %lld %s tensors, the model expects %d", v->path,
                       (long long)have, pre, nt);
    return ERR_OK;
}

static int check_hash(vfile *v, const char *name, uint64_t want, uint64_t got) {
    if (want == 0 || want == got) return ERR_OK;
    return err_set(ERR_ARGS, "%s: %s is %016llx, the job has %016llx: this checkpoint belongs to another "
                   "configuration and must not be resumed", v->path, name, (unsigned long long)got,
                   (unsigned long long)want);
}

int ckpt_read(const char *path, ckpt_state *into) {
    vfile v;
    into->loaded_yaml = NULL;
    int rc = vopen(path, 1, &v); /* every checksum first */
    if (rc) return rc;
    ckpt_state got = *into;
    for (int i = 0; i < NSCALARS && !rc; i++)
        rc = read_scalar(&v, g_scalars[i].name, g_scalars[i].dt, (char *)&got + g_scalars[i].off);
    if (!rc) rc = check_hash(&v, "job_hash", into->job_hash, got.job_hash);
    if (!rc) rc = check_hash(&v, "model_hash", into->model_hash, got.model_hash);
    if (!rc) rc = check_hash(&v, "data_hash", into->data_hash, got.data_hash);
    /* names and shapes of every list before any caller buffer is written */
    int withm = into->adam_m != NULL, withv = into->adam_v != NULL;
    if (!rc && into->ntensors > 0 && !into->params)
        rc = err_set(ERR_ARGS, "%s: %d tensors expected but no params list", path, into->ntensors);
    if (!rc) rc = tensors(&v, 0, into->params, into->ntensors, 0);
    if (!rc && withm) rc = tensors(&v, 1, into->adam_m, into->ntensors, 0);
    if (!rc && withv) rc = tensors(&v, 2, into->adam_v, into->ntensors, 0);
    char *yaml = NULL;
    if (!rc) {
        const mrow *r = manifest_find(&v.mf, "/config/job_yaml");
        h5x_dsinfo in;
        rc = check_row(&v, r, &in);
        if (!rc && (in.dtype != H5X_U8 || in.ndim != 1))
            rc = err_set(ERR_DATA, "%s: /config/job_yaml: expected uint8 [n]", path);
        if (!rc) yaml = mem_calloc((size_t)r->nbytes + 1, 1, "the job text of a checkpoint");
        if (!rc) rc = read_checked(&v, r, &in, yaml);
    }
    if (!rc) rc = tensors(&v, 0, into->params, into->ntensors, 1);
    if (!rc && withm) rc = tensors(&v, 1, into->adam_m, into->ntensors, 1);
    if (!rc && withv) rc = tensors(&v, 2, into->adam_v, into->ntensors, 1);
    vclose(&v);
    if (rc) {
        free(yaml);
        return rc;
    }
    for (int i = 0; i < NSCALARS; i++)
        memcpy((char *)into + g_scalars[i].off, (char *)&got + g_scalars[i].off, 8);
    into->loaded_yaml = yaml;
    into->format_version = v.version;
    return ERR_OK;
}

/* ---- finding, pruning ------------------------------------------------------------------- */

int ckpt_find_latest(const char *dir, char *path, size_t cap, int64_t *step) {
    char cdir[PATHCAP];
    int64_t *steps = NULL;
    int n = 0, rc, removed = 0;
    if (cap) path[0] = '\0';
    *step = -1;
    if ((rc = ckpt_dir(dir, cdir, sizeof cdir))) return rc;
    if (!fs_is_dir(cdir)) return ERR_OK;
    /* only temporaries of dead processes on this host: a live trainer may be writing one right now (eval, or a
     * second resume that will be refused by the job lock); ckpt_cleanup removes the rest under the lock */
    if ((rc = atomic_cleanup(cdir, 0, &removed))) log_warn("%s", err_msg());
    if (removed) log_info("%s: removed %d unfinished checkpoint temporaries", cdir, removed);
    if ((rc = list_steps(cdir, &steps, &n))) return rc;
    for (int i = n - 1; i >= 0; i--) {
        char p[PATHCAP];
        if ((rc = ckpt_path(dir, steps[i], p, sizeof p))) break;
        int64_t s = -1;
        rc = ckpt_verify(p, &s);
        if (!rc && s != steps[i])
            rc = err_set(ERR_DATA, "%s: holds step %lld, its name says %lld", p, (long long)s, (long long)steps[i]);
        if (!rc) {
            if (strlen(p) >= cap) {
                rc = err_set(ERR_ARGS, "%s: path longer than %zu bytes", p, cap);
                break;
            }
            memcpy(path, p, strlen(p) + 1);
            *step = s;
            break;
        }
        int code = rc;
        log_warn("checkpoint %s skipped: %s", p, err_msg());
        if (code == ERR_DATA) {
            char aside[PATHCAP + 16];
            snprintf(aside, sizeof aside, "%s.corrupt", p);
            if (rename(p, aside) == 0) log_warn("moved the damaged checkpoint to %s", aside);
            else log_warn("cannot move %s aside: %s", p, fs_errno_msg(errno));
        }
        rc = ERR_OK;
        err_clear();
    }
    free(steps);
    return rc;
}

int ckpt_cleanup(const char *dir) {
    char cdir[PATHCAP];
    int removed = 0, rc = ckpt_dir(dir, cdir, sizeof cdir);
    if (rc || !fs_is_dir(cdir)) return rc;
    rc = atomic_cleanup(cdir, 1, &removed);
    if (removed) log_info("%s: removed %d unfinished checkpoint temporaries", cdir, removed);
    return rc;
}

int ckpt_prune(const char *dir, int keep_last) {
    char cdir[PATHCAP];
    int64_t *steps = NULL;
    int n = 0, rc;
    if (keep_last < 1) return err_set(ERR_ARGS, "%s: keep_last %d, expected >= 1", dir, keep_last);
    if ((rc = ckpt_dir(dir, cdir, sizeof cdir)) || (rc = list_steps(cdir, &steps, &n))) return rc;
    if (n <= keep_last) {
        free(steps);
        return ERR_OK;
    }
    /* only after a newer one is durable and sound: the newest must open with a valid manifest */
    char p[PATHCAP];
    vfile v;
    rc = ckpt_path(dir, steps[n - 1], p, sizeof p);
    if (!rc && !(rc = vopen(p, 0, &v))) vclose(&v);
    if (rc) {
        free(steps);
        return err_push("not pruning %s: the newest checkpoint does not verify", cdir);
    }
    int removed = 0;
    for (int i = 0; i < n - keep_last; i++) {
        if ((rc = ckpt_path(dir, steps[i], p, sizeof p))) break;
        if (unlink(p) != 0 && errno != ENOENT) {
            rc = err_set(ERR_IO, "%s: cannot delete an old checkpoint: %s", p, fs_errno_msg(errno));
            break;
        }
        removed++;
    }
    free(steps);
    if (removed) {
        int r2 = fs_fsync_dir(cdir);
        if (!rc) rc = r2;
    }
    return rc;
}
