/* job_pairs — per-pair results of eval (see job_pairs.h). */
#include "job/job_pairs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/h5x.h"
#include "io/mem.h"

struct job_pairs {
    char *path;
    int h5;
    tr_pair_result *r;
    int64_t n, cap;
};

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int job_pairs_open(const char *path, job_pairs **out) {
    *out = NULL;
    int h5 = ends_with(path, ".h5");
    if (!h5 && !ends_with(path, ".jsonl"))
        return err_set(ERR_ARGS, "eval --pairs-out %s: expected a file name ending in .h5 or .jsonl", path);
    job_pairs *p = mem_calloc(1, sizeof *p, "eval pairs");
    p->path = mem_strdup(path, "eval pairs path");
    p->h5 = h5;
    *out = p;
    return ERR_OK;
}

int job_pairs_add(void *ctx, const tr_pair_result *r) {
    job_pairs *p = ctx;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->r = mem_realloc(p->r, (size_t)p->cap * sizeof *p->r, "eval pairs");
    }
    p->r[p->n++] = *r;
    return ERR_OK;
}

static void num(FILE *f, const char *key, double v) {
    if (isfinite(v)) fprintf(f, ",\"%s\":%.17g", key, v);
    else fprintf(f, ",\"%s\":null", key);
}

static int write_jsonl(const job_pairs *p) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return err_set(ERR_IO, "%s: cannot build the text", p->path);
    for (int64_t i = 0; i < p->n; i++) {
        const tr_pair_result *r = &p->r[i];
        fprintf(f, "{\"pair\":%lld", (long long)r->index);
        num(f, "chosen_logps", r->chosen_logps);
        num(f, "rejected_logps", r->rejected_logps);
        num(f, "nll", r->nll);
        num(f, "log_odds", r->log_odds);
        fprintf(f, ",\"correct\":%s}\n", r->correct ? "true" : "false");
    }
    fclose(f);
    int rc = atomic_write_file(p->path, buf, n);
    free(buf);
    return rc;
}

static int write_h5(const job_pairs *p, const job_pairs_meta *meta) {
    atomic_file af;
    int rc = atomic_begin(&af, p->path);
    if (rc) return rc;
    hid_t f = -1;
    int64_t n = p->n;
    int64_t *ix = mem_calloc((size_t)(n ? n : 1), sizeof *ix, "eval pairs column");
    double *col = mem_calloc((size_t)(n ? n : 1), sizeof *col, "eval pairs column");
    uint8_t *ok = mem_calloc((size_t)(n ? n : 1), 1, "eval pairs column");
    rc = h5x_create(af.tmp, &f);
    if (!rc) rc = h5x_set_format(f, JOB_PAIRS_FORMAT, 1);
    if (!rc) rc = h5x_attr_set_i64(f, "/", "step", meta->step);
    if (!rc) rc = h5x_attr_set_str(f, "/", "checkpoint", meta->checkpoint ? meta->checkpoint : "");
    if (!rc) rc = h5x_attr_set_str(f, "/", "model", meta->model ? meta->model : "");
    if (!rc) rc = h5x_attr_set_str(f, "/", "data", meta->data ? meta->data : "");
    for (int64_t i = 0; i < n; i++) ix[i] = p->r[i].index, ok[i] = (uint8_t)p->r[i].correct;
    if (!rc) rc = h5x_write(f, "pair", H5X_I64, 1, &n, ix);
    if (!rc) rc = h5x_write(f, "correct", H5X_U8, 1, &n, ok);
    static const char *names[] = {"chosen_logps", "rejected_logps", "nll", "log_odds"};
    for (int k = 0; k < 4 && !rc; k++) {
        for (int64_t i = 0; i < n; i++) {
            const tr_pair_result *r = &p->r[i];
            col[i] = k == 0 ? r->chosen_logps : k == 1 ? r->rejected_logps : k == 2 ? r->nll : r->log_odds;
        }
        rc = h5x_write(f, names[k], H5X_F64, 1, &n, col);
    }
    free(ix);
    free(col);
    free(ok);
    if (f >= 0) {
        int crc = h5x_close(&f);
        if (!rc) rc = crc;
    }
    if (!rc) return atomic_commit(&af);
    atomic_abort(&af);
    return err_push("%s: not written", p->path);
}

int job_pairs_close(job_pairs *p, const job_pairs_meta *meta, int write) {
    if (!p) return ERR_OK;
    int rc = ERR_OK;
    if (write) rc = p->h5 ? write_h5(p, meta) : write_jsonl(p);
    free(p->r);
    free(p->path);
    free(p);
    return rc;
}
