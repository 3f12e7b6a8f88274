/* metrics — crash-proof metrics.h5 (see metrics.h, docs/metrics.md). */
#include "train/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"

#define PATHCAP 4096

/* ---- table descriptions ------------------------------------------------------------------ */

enum { F_I64, F_F64, F_STR, F_VSTR };

typedef struct fld {
    const char *name;
    size_t off;
    int kind;
    size_t size; /* F_STR: bytes */
    int opt;     /* may be missing from an older file (read as 0) */
} fld;

typedef struct tdesc {
    const char *path;
    const fld *f;
    int nf;
    size_t esz;
} tdesc;

#define FI(S, m) {#m, offsetof(S, m), F_I64, 8, 0}
#define FD(S, m) {#m, offsetof(S, m), F_F64, 8, 0}
#define FS(S, m) {#m, offsetof(S, m), F_STR, sizeof(((S *)0)->m), 0}
#define FV(S, m) {#m, offsetof(S, m), F_VSTR, 0, 0}
#define FIO(S, m) {#m, offsetof(S, m), F_I64, 8, 1}

static const fld g_train_f[] = {
    FI(met_train, step), FD(met_train, epoch), FI(met_train, samples), FI(met_train, tokens),
    FD(met_train, loss), FD(met_train, nll_loss), FD(met_train, log_odds_ratio), FD(met_train, log_odds_chosen),
    FD(met_train, chosen_logps), FD(met_train, rejected_logps), FD(met_train, reward_accuracy),
    FD(met_train, reward_margin), FD(met_train, lr), FD(met_train, grad_norm), FD(met_train, step_time),
    FD(met_train, tokens_per_s), FI(met_train, mem_peak), FI(met_train, segment)};
static const fld g_val_f[] = {FI(met_val, step), FD(met_val, loss), FD(met_val, nll_loss), FD(met_val, accuracy),
                              FD(met_val, chosen_logps), FD(met_val, rejected_logps), FI(met_val, segment),
                              FIO(met_val, standalone)};
static const fld g_samp_f[] = {FI(met_sample_row, step), FI(met_sample_row, index), FV(met_sample_row, prompt),
                               FV(met_sample_row, chosen), FV(met_sample_row, rejected), FV(met_sample_row, answer),
                               FI(met_sample_row, segment)};
static const fld g_seg_f[] = {FI(met_segment, segment), FI(met_segment, start_step), FI(met_segment, end_step),
                              FI(met_segment, checkpoint_step), FS(met_segment, reason),
                              FI(met_segment, slurm_job_id), FI(met_segment, restart_count),
                              FI(met_segment, slurm_array_job_id), FI(met_segment, slurm_array_task_id),
                              FD(met_segment, start_time), FD(met_segment, end_time), FS(met_segment, host)};

static const fld g_hal_f[] = {FI(met_halluc, step), FI(met_halluc, answers), FI(met_halluc, answered),
                              FI(met_halluc, false_answers), FI(met_halluc, mentions), FI(met_halluc, absent),
                              FD(met_halluc, rate), FD(met_halluc, chair), FI(met_halluc, segment)};

#define NF(a) ((int)(sizeof a / sizeof a[0]))
static const tdesc T_TRAIN = {"/train", g_train_f, NF(g_train_f), sizeof(met_train)};
static const tdesc T_VAL = {"/val", g_val_f, NF(g_val_f), sizeof(met_val)};
static const tdesc T_SAMP = {"/samples", g_samp_f, NF(g_samp_f), sizeof(met_sample_row)};
static const tdesc T_SEG = {"/segments", g_seg_f, NF(g_seg_f), sizeof(met_segment)};
static const tdesc T_HAL = {"/halluc", g_hal_f, NF(g_hal_f), sizeof(met_halluc)}; /* optional: absent in older files */

/* member type of a field; the caller closes it */
static hid_t field_type(const fld *f, int file) {
    hid_t t = -1;
    switch (f->kind) {
    case F_I64: t = H5Tcopy(file ? H5T_STD_I64LE : H5T_NATIVE_INT64); break;
    case F_F64: t = H5Tcopy(file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE); break;
    case F_STR:
        t = H5Tcopy(H5T_C_S1);
        if (t >= 0 && (H5Tset_size(t, f->size) < 0 || H5Tset_strpad(t, H5T_STR_NULLTERM) < 0)) {
            H5Tclose(t);
            t = -1;
        }
        break;
    case F_VSTR:
        t = H5Tcopy(H5T_C_S1);
        if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
            H5Tclose(t);
            t = -1;
        }
        break;
    }
    return t;
}

/* the compound type of a table: file = packed little-endian, else the C struct; with `present` >= 0 (a file's
 * row type), the struct without the optional columns that type lacks */
static hid_t table_type_of(const tdesc *td, int file, hid_t present) {
    h5x_init();
    hid_t mt[32];
    size_t size = 0;
    int nok = 0;
    while (nok < td->nf && nok < 32 && (mt[nok] = field_type(&td->f[nok], file)) >= 0) size += H5Tget_size(mt[nok++]);
    hid_t t = nok == td->nf ? H5Tcreate(H5T_COMPOUND, file ? size : td->esz) : -1;
    size_t off = 0;
    for (int i = 0; i < nok; i++) {
        int skip = present >= 0 && td->f[i].opt && H5Tget_member_index(present, td->f[i].name) < 0;
        if (t >= 0 && !skip && H5Tinsert(t, td->f[i].name, file ? off : td->f[i].off, mt[i]) < 0) {
            H5Tclose(t);
            t = -1;
        }
        off += H5Tget_size(mt[i]);
        H5Tclose(mt[i]);
    }
    return t;
}

static hid_t table_type(const tdesc *td, int file) { return table_type_of(td, file, -1); }

static int write_table(hid_t f, const tdesc *td, const void *rows, int64_t n) {
    hid_t ft = table_type(td, 1), mt = table_type(td, 0);
    int rc = ERR_OK;
    if (ft < 0 || mt < 0) rc = err_set(ERR_INTERNAL, "%s: cannot build the row type", td->path);
    if (!rc) {
        h5x_wopts o;
        memset(&o, 0, sizeof o);
        o.unlimited = 1;
        int64_t per = (int64_t)((1u << 20) / H5Tget_size(ft));
        o.chunk[0] = n < 1 ? 1 : n < per ? n : per;
        rc = h5x_write_raw(f, td->path, ft, mt, 1, &n, rows, &o);
    }
    if (ft >= 0) H5Tclose(ft);
    if (mt >= 0) H5Tclose(mt);
    return rc;
}

/* reads a whole table into a malloc'ed array of C structs; strings are malloc'ed copies */
static int read_table(hid_t f, const char *fname, const tdesc *td, void **rows, int64_t *n) {
    *rows = NULL;
    *n = 0;
    h5x_dsinfo in;
    int rc = h5x_info(f, td->path, &in);
    if (rc) return rc;
    if (in.ndim != 1) return err_set(ERR_DATA, "%s: %s: expected a 1-d table, got %d dimensions", fname, td->path, in.ndim);
    hid_t d = H5Dopen2(f, td->path, H5P_DEFAULT);
    hid_t ft = d >= 0 ? H5Dget_type(d) : -1;
    hid_t mt = ft >= 0 ? table_type_of(td, 0, ft) : -1;
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    void *raw = NULL, *out = NULL;
    if (d < 0 || ft < 0 || mt < 0 || sp < 0) {
        rc = err_set(ERR_DATA, "%s: %s: cannot open the table", fname, td->path);
        goto done;
    }
    if (H5Tget_class(ft) != H5T_COMPOUND) {
        rc = err_set(ERR_DATA, "%s: %s: expected a compound table", fname, td->path);
        goto done;
    }
    for (int i = 0; i < td->nf; i++) {
        int idx = H5Tget_member_index(ft, td->f[i].name);
        H5T_class_t c = idx >= 0 ? H5Tget_member_class(ft, (unsigned)idx) : H5T_NO_CLASS;
        int want_str = td->f[i].kind == F_STR || td->f[i].kind == F_VSTR;
        if (idx < 0 && td->f[i].opt) continue; /* a column added in a later format_version */
        if (idx < 0 || (want_str ? c != H5T_STRING : (c != H5T_INTEGER && c != H5T_FLOAT))) {
            char desc[1024];
            rc = err_set(ERR_DATA, "%s: %s: column '%s' (%s) missing; the table is %s", fname, td->path, td->f[i].name,
                         want_str ? "string" : "number", h5x_type_describe(ft, desc, sizeof desc));
            goto done;
        }
    }
    int64_t cnt = in.dims[0];
    if (cnt > 0) {
        raw = mem_calloc((size_t)cnt, td->esz, "a metrics table being read");
        out = mem_calloc((size_t)cnt, td->esz, "a metrics table being read");
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            rc = err_set(ERR_DATA, "%s: %s: cannot read %lld rows (damaged file?)", fname, td->path, (long long)cnt);
            goto done;
        }
        memcpy(out, raw, (size_t)cnt * td->esz);
        int has_v = 0;
        for (int i = 0; i < td->nf; i++) {
            if (td->f[i].kind != F_VSTR) continue;
            has_v = 1;
            for (int64_t r = 0; r < cnt; r++) {
                char **p = (char **)((char *)out + (size_t)r * td->esz + td->f[i].off);
                *p = mem_strdup(*p ? *p : "", "the text of a metrics sample");
            }
        }
        for (int i = 0; i < td->nf; i++) /* fixed strings: NUL-terminate */
            if (td->f[i].kind == F_STR)
                for (int64_t r = 0; r < cnt; r++) ((char *)out + (size_t)r * td->esz + td->f[i].off)[td->f[i].size - 1] = 0;
        if (has_v) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
    }
    *rows = out;
    *n = cnt;
    out = NULL;
done:
    free(raw);
    free(out);
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (d >= 0) H5Dclose(d);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

/* ---- row sets ----------------------------------------------------------------------------- */

typedef struct tables {
    met_train *train;
    int64_t ntrain;
    met_val *val;
    int64_t nval;
    met_sample_row *samp;
    int64_t nsamp;
    met_segment *seg;
    int64_t nseg;
    met_halluc *hal;
    int64_t nhal;
} tables;

static void free_strings(met_sample_row *r) {
    free(r->prompt);
    free(r->chosen);
    free(r->rejected);
    free(r->answer);
    r->prompt = r->chosen = r->rejected = r->answer = NULL;
}

void met_free_samples(met_sample_row *rows, int64_t n) {
    for (int64_t i = 0; rows && i < n; i++) free_strings(&rows[i]);
    free(rows);
}

static void tables_free(tables *t) {
    free(t->train);
    free(t->val);
    met_free_samples(t->samp, t->nsamp);
    free(t->seg);
    free(t->hal);
    memset(t, 0, sizeof *t);
}

static void grow(void **p, int64_t *cap, int64_t need, size_t esz) {
    if (need <= *cap) return;
    int64_t nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    *p = mem_realloc(*p, (size_t)nc * esz, "metric rows");
    *cap = nc;
}

/* appends n rows of src to *dst (count *nd) */
static int append(void **dst, int64_t *nd, const void *src, int64_t n, size_t esz) {
    if (n == 0) return ERR_OK;
    int64_t cap = *nd;
    grow(dst, &cap, *nd + n, esz);
    memcpy((char *)*dst + (size_t)*nd * esz, src, (size_t)n * esz);
    *nd += n;
    return ERR_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_seg(const void *a, const void *b) {
    int64_t x = ((const met_segment *)a)->segment, y = ((const met_segment *)b)->segment;
    return x < y ? -1 : x > y;
}

/* adds or merges one segment row into a list sorted by id */
static int seg_merge(met_segment **list, int64_t *n, const met_segment *s) {
    for (int64_t i = 0; i < *n; i++) {
        met_segment *e = &(*list)[i];
        if (e->segment != s->segment) continue;
        if (s->end_step > e->end_step) e->end_step = s->end_step;
        if (s->checkpoint_step > e->checkpoint_step) e->checkpoint_step = s->checkpoint_step;
        if (!strcmp(e->reason, "running") && strcmp(s->reason, "running")) {
            memcpy(e->reason, s->reason, sizeof e->reason);
            e->end_time = s->end_time;
        }
        return ERR_OK;
    }
    if (append((void **)list, n, s, 1, sizeof *s)) return ERR_INTERNAL;
    qsort(*list, (size_t)*n, sizeof **list, cmp_seg);
    return ERR_OK;
}

typedef struct rkey {
    int64_t step, seg, idx, pos;
} rkey;

static int cmp_key(const void *a, const void *b) {
    const rkey *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->seg != y->seg) return x->seg > y->seg ? -1 : 1; /* newest segment first */
    if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The supersede rule (docs/metrics.md): a row of segment j at step t survives when every later segment
 * k > j started at a step >= t, and, among the rows at one step, only those of the newest segment stay
 * (exact duplicates of one (segment, step, index) collapse to one). The result is sorted by step.
 * drop: called on every removed row (frees its strings), or NULL for a shallow view. */
static int resolve(void *rows, int64_t *n, size_t esz, size_t off_step, size_t off_seg, long off_idx,
                   const met_segment *segs, int64_t nseg, void (*drop)(void *)) {
    int64_t cnt = *n;
    if (cnt == 0) return ERR_OK;
    int64_t *suf = mem_alloc((size_t)(nseg + 1) * sizeof *suf, "resolving metric rows");
    rkey *k = mem_alloc((size_t)cnt * sizeof *k, "resolving metric rows");
    char *tmp = mem_alloc((size_t)cnt * esz, "resolving metric rows");
    suf[nseg] = INT64_MAX;
    for (int64_t i = nseg - 1; i >= 0; i--) suf[i] = segs[i].start_step < suf[i + 1] ? segs[i].start_step : suf[i + 1];
    int64_t nk = 0;
    for (int64_t i = 0; i < cnt; i++) {
        char *r = (char *)rows + (size_t)i * esz;
        int64_t step, seg, idx = 0;
        memcpy(&step, r + off_step, 8);
        memcpy(&seg, r + off_seg, 8);
        if (off_idx >= 0) memcpy(&idx, r + off_idx, 8);
        int64_t j = 0;
        while (j < nseg && segs[j].segment <= seg) j++;
        if (step > suf[j]) {
            if (drop) drop(r);
            continue;
        }
        k[nk++] = (rkey){step, seg, idx, i};
    }
    qsort(k, (size_t)nk, sizeof *k, cmp_key);
    int64_t out = 0;
    for (int64_t i = 0; i < nk; i++) {
        char *r = (char *)rows + (size_t)k[i].pos * esz;
        int keep = 1;
        if (i > 0 && k[i].step == k[i - 1].step) {
            int64_t g = i - 1; /* first row of this step is the newest segment */
            while (g > 0 && k[g - 1].step == k[i].step) g--;
            keep = k[i].seg == k[g].seg && !(k[i].seg == k[i - 1].seg && k[i].idx == k[i - 1].idx);
        }
        if (keep) memcpy(tmp + (size_t)out++ * esz, r, esz);
        else if (drop) drop(r);
    }
    memcpy(rows, tmp, (size_t)out * esz);
    *n = out;
    free(suf);
    free(k);
    free(tmp);
    return ERR_OK;
}

static void drop_sample(void *r) { free_strings(r); }

static int cmp_val(const void *a, const void *b) {
    const met_val *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    if (x->standalone != y->standalone) return x->standalone < y->standalone ? -1 : 1;
    return x->segment < y->segment ? -1 : x->segment > y->segment;
}

/* val rows: those of training follow the supersede rule; stand-alone evaluations (eval) are records of their
 * own and stay; the result is sorted by step, a step's training row first */
static int resolve_val(tables *t, const met_segment *segs, int64_t nseg) {
    int64_t nstand = 0, k = 0;
    for (int64_t i = 0; i < t->nval; i++) nstand += t->val[i].standalone != 0;
    if (nstand == 0)
        return resolve(t->val, &t->nval, sizeof(met_val), offsetof(met_val, step), offsetof(met_val, segment), -1, segs,
                       nseg, NULL);
    met_val *st = malloc((size_t)nstand * sizeof *st);
    if (!st) return err_set(ERR_INTERNAL, "out of memory resolving %lld metric rows", (long long)t->nval);
    int64_t n = 0;
    for (int64_t i = 0; i < t->nval; i++) {
        if (t->val[i].standalone) st[k++] = t->val[i];
        else t->val[n++] = t->val[i];
    }
    int rc = resolve(t->val, &n, sizeof(met_val), offsetof(met_val, step), offsetof(met_val, segment), -1, segs, nseg,
                     NULL);
    if (!rc) {
        memcpy(t->val + n, st, (size_t)nstand * sizeof *st);
        t->nval = n + nstand;
        qsort(t->val, (size_t)t->nval, sizeof *t->val, cmp_val);
    }
    free(st);
    return rc;
}

static int resolve_all(tables *t, const met_segment *segs, int64_t nseg, int deep) {
    int rc = resolve(t->train, &t->ntrain, sizeof(met_train), offsetof(met_train, step), offsetof(met_train, segment),
                     -1, segs, nseg, NULL);
    if (!rc) rc = resolve_val(t, segs, nseg);
    if (!rc)
        rc = resolve(t->samp, &t->nsamp, sizeof(met_sample_row), offsetof(met_sample_row, step),
                     offsetof(met_sample_row, segment), (long)offsetof(met_sample_row, index), segs, nseg,
                     deep ? drop_sample : NULL);
    return rc;
}

/* ---- files --------------------------------------------------------------------------------- */

static int load_file(const char *path, tables *t, int64_t *segattr) {
    memset(t, 0, sizeof *t);
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    if (!(rc = h5x_check_format(f, MET_FORMAT, MET_FORMAT_VERSION, NULL))) {
        void *p;
        if (!(rc = read_table(f, path, &T_TRAIN, &p, &t->ntrain))) t->train = p;
        if (!rc && !(rc = read_table(f, path, &T_VAL, &p, &t->nval))) t->val = p;
        if (!rc && !(rc = read_table(f, path, &T_SAMP, &p, &t->nsamp))) t->samp = p;
        if (!rc && !(rc = read_table(f, path, &T_SEG, &p, &t->nseg))) t->seg = p;
        if (!rc && h5x_exists(f, T_HAL.path) && !(rc = read_table(f, path, &T_HAL, &p, &t->nhal))) t->hal = p;
        if (!rc && segattr) {
            *segattr = 0;
            if (h5x_attr_exists(f, "/", "segment")) rc = h5x_attr_get_i64(f, "/", "segment", segattr);
        }
    }
    h5x_close(&f);
    if (rc) tables_free(t);
    return rc;
}

typedef struct file_body {
    const char *kind;
    int64_t segid;
    const tables *t;
} file_body;

static int write_body(hid_t f, void *ctx) {
    const file_body *b = ctx;
    int rc = h5x_set_format(f, MET_FORMAT, MET_FORMAT_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, "/", "created_by", "orpo-hpc " ORPO_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, "/", "kind", b->kind);
    if (!rc && b->segid > 0) rc = h5x_attr_set_i64(f, "/", "segment", b->segid);
    if (!rc) rc = write_table(f, &T_TRAIN, b->t->train, b->t->ntrain);
    if (!rc) rc = write_table(f, &T_VAL, b->t->val, b->t->nval);
    if (!rc) rc = write_table(f, &T_SAMP, b->t->samp, b->t->nsamp);
    if (!rc) rc = write_table(f, &T_SEG, b->t->seg, b->t->nseg);
    if (!rc && b->t->nhal) rc = write_table(f, &T_HAL, b->t->hal, b->t->nhal);
    return rc;
}

static int write_file(const char *path, const char *kind, int64_t segid, const tables *t) {
    file_body b = {kind, segid, t};
    int at, rc = h5x_write_atomic(path, write_body, &b, &at);
    if (rc && at == H5X_AT_WRITE) return err_push("%s: not written; the previous file is intact", path);
    return rc;
}

/* ---- the writer ---------------------------------------------------------------------------- */

struct met_log {
    char dir[PATHCAP], mpath[PATHCAP], mdir[PATHCAP], segpath[PATHCAP + 64];
    int lockfd;
    double refresh_s, last_cons;
    met_segment *segs; /* every segment, sorted; the current one is the last */
    int64_t nseg;
    tables old;        /* rows of earlier segments that survived at met_open */
    tables cur;        /* rows of this segment */
    int64_t cap_train, cap_val, cap_samp;
    int64_t cons_train, cons_val, cons_samp; /* rows of cur already in metrics.h5 */
};

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static met_segment *current(met_log *m) { return &m->segs[m->nseg - 1]; }

static void note_step(met_log *m, int64_t step) {
    met_segment *s = current(m);
    if (step > s->end_step) s->end_step = step;
}

/* the journal of this segment: its rows not yet in metrics.h5 */
static int write_journal(met_log *m) {
    tables t = {m->cur.train + m->cons_train, m->cur.ntrain - m->cons_train, m->cur.val + m->cons_val,
                m->cur.nval - m->cons_val,       m->cur.samp + m->cons_samp,   m->cur.nsamp - m->cons_samp,
                current(m),                      1,
                NULL,                            0}; /* halluc rows: written at met_close only (stand-alone eval) */
    return write_file(m->segpath, "segment", current(m)->segment, &t);
}

/* metrics.h5 := every row (old + this segment), resolved; then an empty journal unless closing */
static int consolidate(met_log *m, int closing) {
    tables all = {0};
    int rc = append((void **)&all.train, &all.ntrain, m->old.train, m->old.ntrain, sizeof(met_train));
    if (!rc) rc = append((void **)&all.train, &all.ntrain, m->cur.train, m->cur.ntrain, sizeof(met_train));
    if (!rc) rc = append((void **)&all.val, &all.nval, m->old.val, m->old.nval, sizeof(met_val));
    if (!rc) rc = append((void **)&all.val, &all.nval, m->cur.val, m->cur.nval, sizeof(met_val));
    if (!rc) rc = append((void **)&all.samp, &all.nsamp, m->old.samp, m->old.nsamp, sizeof(met_sample_row));
    if (!rc) rc = append((void **)&all.samp, &all.nsamp, m->cur.samp, m->cur.nsamp, sizeof(met_sample_row));
    if (!rc) rc = append((void **)&all.hal, &all.nhal, m->old.hal, m->old.nhal, sizeof(met_halluc));
    if (!rc) rc = append((void **)&all.hal, &all.nhal, m->cur.hal, m->cur.nhal, sizeof(met_halluc));
    if (!rc) rc = resolve_all(&all, m->segs, m->nseg, 0); /* shallow: strings stay owned by old/cur */
    all.seg = m->segs;
    all.nseg = m->nseg;
    if (!rc) rc = write_file(m->mpath, "consolidated", 0, &all);
    free(all.train);
    free(all.val);
    free(all.samp);
    free(all.hal);
    if (rc) return rc;
    m->cons_train = m->cur.ntrain;
    m->cons_val = m->cur.nval;
    m->cons_samp = m->cur.nsamp;
    m->last_cons = log_now();
    return closing ? ERR_OK : write_journal(m);
}

/* after a new row: rebuild metrics.h5 when due, else rewrite the journal */
static int row_written(met_log *m) {
    if (m->refresh_s > 0 && log_now() - m->last_cons >= m->refresh_s) return consolidate(m, 0);
    return write_journal(m);
}

/* "seg-NNNNNN.h5" -> number, else -1 */
static int64_t parse_seg(const char *name) {
    if (strncmp(name, "seg-", 4) != 0) return -1;
    const char *p = name + 4;
    int64_t v = 0;
    int nd = 0;
    while (*p >= '0' && *p <= '9' && nd < 18) v = v * 10 + (*p++ - '0'), nd++;
    return nd >= 1 && !strcmp(p, ".h5") ? v : -1;
}

static void move_aside(const char *path, const char *why) {
    char aside[PATHCAP + 256];
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    log_warn("%s: unreadable, ignored: %s", path, why);
    if (rename(path, aside) == 0) log_warn("moved %s to %s", path, aside);
}

/* merges one loaded file into acc (rows and segments); the file's rows are moved */
static int absorb(tables *acc, tables *t) {
    int rc = append((void **)&acc->train, &acc->ntrain, t->train, t->ntrain, sizeof(met_train));
    if (!rc) rc = append((void **)&acc->val, &acc->nval, t->val, t->nval, sizeof(met_val));
    if (!rc) rc = append((void **)&acc->samp, &acc->nsamp, t->samp, t->nsamp, sizeof(met_sample_row));
    if (!rc) rc = append((void **)&acc->hal, &acc->nhal, t->hal, t->nhal, sizeof(met_halluc));
    if (!rc) t->nsamp = 0; /* the strings belong to acc now */
    for (int64_t i = 0; i < t->nseg && !rc; i++) rc = seg_merge(&acc->seg, &acc->nseg, &t->seg[i]);
    tables_free(t);
    return rc;
}

static void free_log(met_log *m) {
    if (m->lockfd >= 0) close(m->lockfd);
    tables_free(&m->old);
    tables_free(&m->cur);
    free(m->segs);
    free(m);
}

/* wait_s: how long to wait for a holder that writes only briefly (an eval's row; a trainer holds the job's
 * run.lock, so the only other holder it can meet here is an eval) */
static int take_lock(met_log *m, double wait_s) {
    char lp[PATHCAP];
    if (fs_join(lp, sizeof lp, m->mdir, "lock")) return err_push("metrics lock");
    m->lockfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (m->lockfd < 0) return err_set(ERR_IO, "%s: cannot create the lock file: %s", lp, fs_errno_msg(errno));
    double t0 = log_now();
    int got;
    while ((got = flock(m->lockfd, LOCK_EX | LOCK_NB)) != 0 && errno == EWOULDBLOCK && log_now() - t0 < wait_s) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (got != 0) {
        if (errno == EWOULDBLOCK)
            return err_set(ERR_IO, "%s: another orpo-hpc process is writing metrics in %s (lock %s is held)", m->mpath,
                           m->dir, lp);
        log_debug("%s: flock not available (%s); going on without a lock", lp, strerror(errno));
    }
    return ERR_OK;
}

/* eval: a segment of a stand-alone evaluation, which supersedes nothing */
static int open_log(const char *dir, int64_t resume_from_step, int eval, met_log **out) {
    *out = NULL;
    if (resume_from_step < 0)
        return err_set(ERR_ARGS, "%s: metrics resume step %lld, expected >= 0", dir, (long long)resume_from_step);
    met_log *m = mem_calloc(1, sizeof *m, "the metrics log");
    m->lockfd = -1;
    m->refresh_s = 60;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    int rc = fs_join(m->mpath, sizeof m->mpath, dir, "metrics.h5");
    if (!rc) rc = fs_join(m->mdir, sizeof m->mdir, dir, "metrics");
    if (!rc) rc = fs_mkdirs(m->mdir);
    if (!rc) rc = take_lock(m, eval ? 0 : 10);
    if (rc) {
        free_log(m);
        return err_push("metrics of %s", dir);
    }
    int removed = 0;
    if (atomic_cleanup(m->mdir, 1, &removed)) log_warn("%s", err_msg());
    if (atomic_cleanup(dir, 0, &removed)) log_warn("%s", err_msg());

    /* everything on disk: metrics.h5, then the journals in segment order */
    tables acc = {0}, t;
    int64_t *jids = NULL, nj = 0;
    if (fs_exists(m->mpath)) {
        rc = load_file(m->mpath, &t, NULL);
        if (rc == ERR_DATA) move_aside(m->mpath, err_msg()), rc = ERR_OK, err_clear();
        else if (!rc) rc = absorb(&acc, &t);
    }
    DIR *d = rc ? NULL : opendir(m->mdir);
    if (!rc && !d) rc = err_set(ERR_IO, "%s: cannot list: %s", m->mdir, fs_errno_msg(errno));
    struct dirent *e;
    while (d && !rc && (e = readdir(d)) != NULL) {
        int64_t id = parse_seg(e->d_name);
        if (id < 0) continue;
        if ((rc = append((void **)&jids, &nj, &id, 1, sizeof id))) break;
    }
    if (d) closedir(d);
    if (nj > 1) qsort(jids, (size_t)nj, sizeof *jids, cmp_i64);
    for (int64_t i = 0; i < nj && !rc; i++) {
        char jp[PATHCAP + 64];
        snprintf(jp, sizeof jp, "%s/seg-%06lld.h5", m->mdir, (long long)jids[i]);
        int64_t segattr = 0;
        rc = load_file(jp, &t, &segattr);
        if (rc == ERR_DATA) {
            move_aside(jp, err_msg());
            rc = ERR_OK;
            err_clear();
            jids[i] = -1;
            continue;
        }
        if (!rc) rc = absorb(&acc, &t);
    }
    if (rc) goto fail;

    /* segments found still "running" have crashed (we hold the lock); their last step */
    for (int64_t i = 0; i < acc.nseg; i++) {
        met_segment *s = &acc.seg[i];
        for (int64_t r = 0; r < acc.ntrain; r++)
            if (acc.train[r].segment == s->segment && acc.train[r].step > s->end_step) s->end_step = acc.train[r].step;
        for (int64_t r = 0; r < acc.nval; r++)
            if (acc.val[r].segment == s->segment && acc.val[r].step > s->end_step) s->end_step = acc.val[r].step;
        if (!strcmp(s->reason, "running")) {
            snprintf(s->reason, sizeof s->reason, "crashed");
            s->end_time = NAN;
        }
    }
    /* the new segment */
    met_segment ns;
    memset(&ns, 0, sizeof ns);
    ns.segment = (acc.nseg ? acc.seg[acc.nseg - 1].segment : 0) + 1;
    for (int64_t i = 0; i < nj; i++)
        if (jids[i] >= ns.segment) ns.segment = jids[i] + 1;
    ns.start_step = ns.end_step = resume_from_step;
    for (int64_t i = 0; eval && i < acc.nseg; i++) /* after every step seen: supersedes no row */
        if (acc.seg[i].end_step > ns.start_step) ns.start_step = ns.end_step = acc.seg[i].end_step;
    ns.checkpoint_step = -1;
    snprintf(ns.reason, sizeof ns.reason, "running");
    const char *sj = getenv("SLURM_JOB_ID"), *sr = getenv("SLURM_RESTART_COUNT");
    ns.slurm_job_id = sj ? strtoll(sj, NULL, 10) : 0;
    ns.restart_count = sr ? strtoll(sr, NULL, 10) : 0;
    const char *aj = getenv("SLURM_ARRAY_JOB_ID"), *at = getenv("SLURM_ARRAY_TASK_ID");
    ns.slurm_array_job_id = aj ? strtoll(aj, NULL, 10) : -1;
    ns.slurm_array_task_id = at ? strtoll(at, NULL, 10) : -1;
    ns.start_time = wall_now();
    ns.end_time = NAN;
    if (gethostname(ns.host, sizeof ns.host) != 0) ns.host[0] = 0;
    ns.host[sizeof ns.host - 1] = 0;
    if ((rc = append((void **)&acc.seg, &acc.nseg, &ns, 1, sizeof ns))) goto fail;
    if ((rc = resolve_all(&acc, acc.seg, acc.nseg, 1))) goto fail;
    m->segs = acc.seg;
    m->nseg = acc.nseg;
    acc.seg = NULL;
    acc.nseg = 0;
    m->old = acc;
    memset(&acc, 0, sizeof acc);
    snprintf(m->segpath, sizeof m->segpath, "%s/seg-%06lld.h5", m->mdir, (long long)ns.segment);

    /* metrics.h5 with every older row folded in, the new journal, then the old journals go */
    if ((rc = consolidate(m, 0))) goto fail;
    for (int64_t i = 0; i < nj; i++) {
        if (jids[i] < 0) continue;
        char jp[PATHCAP + 64];
        snprintf(jp, sizeof jp, "%s/seg-%06lld.h5", m->mdir, (long long)jids[i]);
        if (unlink(jp) != 0 && errno != ENOENT) log_warn("%s: cannot remove a folded journal: %s", jp, strerror(errno));
    }
    if (nj) fs_fsync_dir(m->mdir);
    free(jids);
    *out = m;
    return ERR_OK;
fail:
    free(jids);
    tables_free(&acc);
    free_log(m);
    return err_push("metrics of %s", dir);
}

int met_open(const char *dir, int64_t resume_from_step, met_log **out) {
    return open_log(dir, resume_from_step, 0, out);
}

int met_open_eval(const char *dir, met_log **out) { return open_log(dir, 0, 1, out); }

int met_eval_row(met_log *m, const met_val *row) {
    grow((void **)&m->cur.val, &m->cap_val, m->cur.nval + 1, sizeof(met_val));
    met_val *r = &m->cur.val[m->cur.nval++];
    *r = *row;
    r->standalone = 1;
    r->segment = current(m)->segment;
    return ERR_OK; /* met_close writes it */
}

int met_halluc_row(met_log *m, const met_halluc *row) {
    int64_t cap = m->cur.nhal;
    grow((void **)&m->cur.hal, &cap, m->cur.nhal + 1, sizeof(met_halluc));
    met_halluc *r = &m->cur.hal[m->cur.nhal++];
    *r = *row;
    r->segment = current(m)->segment;
    return ERR_OK; /* met_close writes it */
}

void met_rows_at(const met_log *m, int64_t step, int64_t *nval, int64_t *nsamp) {
    *nval = *nsamp = 0;
    const tables *t[2] = {&m->old, &m->cur};
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < t[k]->nval; i++) *nval += t[k]->val[i].step == step && !t[k]->val[i].standalone;
        for (int64_t i = 0; i < t[k]->nsamp; i++) *nsamp += t[k]->samp[i].step == step;
    }
}

void met_set_refresh(met_log *m, double seconds) {
    if (m) m->refresh_s = seconds;
}

int64_t met_train_rows(const met_log *m) { return m ? m->old.ntrain + m->cur.ntrain : 0; }

int64_t met_segment_id(const met_log *m) { return m ? m->segs[m->nseg - 1].segment : 0; }

int met_train_row(met_log *m, const met_train *row) {
    met_segment *s = current(m);
    int64_t last = m->cur.ntrain ? m->cur.train[m->cur.ntrain - 1].step : s->start_step;
    if (row->step <= last)
        return err_set(ERR_INTERNAL, "%s: train row for step %lld, expected a step > %lld (segment %lld resumed at %lld)",
                       m->mpath, (long long)row->step, (long long)last, (long long)s->segment,
                       (long long)s->start_step);
    grow((void **)&m->cur.train, &m->cap_train, m->cur.ntrain + 1, sizeof(met_train));
    met_train *r = &m->cur.train[m->cur.ntrain++];
    *r = *row;
    r->segment = s->segment;
    note_step(m, row->step);
    return row_written(m);
}

int met_val_row(met_log *m, const met_val *row) {
    met_segment *s = current(m);
    int64_t last = m->cur.nval ? m->cur.val[m->cur.nval - 1].step : s->start_step - 1;
    if (row->step <= last)
        return err_set(ERR_INTERNAL, "%s: val row for step %lld, expected a step > %lld", m->mpath,
                       (long long)row->step, (long long)last);
    grow((void **)&m->cur.val, &m->cap_val, m->cur.nval + 1, sizeof(met_val));
    met_val *r = &m->cur.val[m->cur.nval++];
    *r = *row;
    r->segment = s->segment;
    note_step(m, row->step);
    return row_written(m);
}

int met_sample(met_log *m, int64_t step, const char *prompt, const char *chosen, const char *rejected,
               const char *answer) {
    met_segment *s = current(m);
    int64_t index = 0;
    if (m->cur.nsamp) {
        const met_sample_row *p = &m->cur.samp[m->cur.nsamp - 1];
        if (step < p->step)
            return err_set(ERR_INTERNAL, "%s: sample for step %lld after one for step %lld", m->mpath,
                           (long long)step, (long long)p->step);
        if (step == p->step) index = p->index + 1;
    }
    if (step < s->start_step)
        return err_set(ERR_INTERNAL, "%s: sample for step %lld, the segment resumed at %lld", m->mpath,
                       (long long)step, (long long)s->start_step);
    grow((void **)&m->cur.samp, &m->cap_samp, m->cur.nsamp + 1, sizeof(met_sample_row));
    const char *what = "the text of a metrics sample";
    met_sample_row r = {step, index, mem_strdup(prompt ? prompt : "", what), mem_strdup(chosen ? chosen : "", what),
                        mem_strdup(rejected ? rejected : "", what), mem_strdup(answer ? answer : "", what), s->segment};
    m->cur.samp[m->cur.nsamp++] = r;
    note_step(m, step);
    return row_written(m);
}

int met_checkpoint(met_log *m, int64_t step) {
    met_segment *s = current(m);
    if (step > s->checkpoint_step) s->checkpoint_step = step;
    return consolidate(m, 0);
}

int met_close(met_log *m, const char *reason) {
    if (!m) return ERR_OK;
    met_segment *s = current(m);
    snprintf(s->reason, sizeof s->reason, "%s", reason && *reason ? reason : "done");
    if (!strcmp(s->reason, "running") || !strcmp(s->reason, "crashed")) snprintf(s->reason, sizeof s->reason, "closed");
    s->end_time = wall_now();
    int rc = consolidate(m, 1);
    if (!rc) {
        if (unlink(m->segpath) != 0 && errno != ENOENT)
            log_warn("%s: cannot remove the journal: %s", m->segpath, strerror(errno));
        fs_fsync_dir(m->mdir);
    }
    free_log(m);
    return rc;
}

/* ---- readers ------------------------------------------------------------------------------- */

static int read_one(const char *path, const tdesc *td, void **rows, int64_t *n) {
    *rows = NULL;
    *n = 0;
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    rc = h5x_check_format(f, MET_FORMAT, MET_FORMAT_VERSION, NULL);
    if (!rc) rc = read_table(f, path, td, rows, n);
    h5x_close(&f);
    return rc;
}

int met_read_train(const char *path, met_train **rows, int64_t *n) { return read_one(path, &T_TRAIN, (void **)rows, n); }
int met_read_val(const char *path, met_val **rows, int64_t *n) { return read_one(path, &T_VAL, (void **)rows, n); }
int met_read_samples(const char *path, met_sample_row **rows, int64_t *n) {
    return read_one(path, &T_SAMP, (void **)rows, n);
}
int met_read_segments(const char *path, met_segment **rows, int64_t *n) {
    return read_one(path, &T_SEG, (void **)rows, n);
}
int met_read_halluc(const char *path, met_halluc **rows, int64_t *n) {
    *rows = NULL;
    *n = 0;
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    rc = h5x_check_format(f, MET_FORMAT, MET_FORMAT_VERSION, NULL);
    if (!rc && h5x_exists(f, T_HAL.path)) rc = read_table(f, path, &T_HAL, (void **)rows, n);
    h5x_close(&f);
    return rc;
}
