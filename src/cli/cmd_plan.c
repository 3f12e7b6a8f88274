/* orpo-hpc plan: the memory plan and step-time estimate of a job, no GPU and no weights needed
 * (src/job/job_plan.c, docs/plan.md).
 *
 *   orpo-hpc plan JOB.yaml [--gpu-memory-gb N] [--gpu NAME] [--image WxH] [--pairs N] [--prompt N] [--answer N]
 *                 [--ranks N] [--json] [--set key.path=value ...]
 *
 * Exit 0 when the plan fits the budget, 3 when nothing fits (the plan of the smallest configuration and what would
 * fit are printed all the same), 2 on a bad option or job, 3/4 on an unreadable model or data file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/log.h"
#include "job/job.h"
#include "job/job_plan.h"

/* a positive number: strtod / strtoll with nothing after it */
static int pos_num(const char *opt, const char *v, double *out) {
    char *end = NULL;
    double d = strtod(v, &end);
    if (!*v || *end || !(d > 0) || d > 1e9)
        return err_set(ERR_ARGS, "plan %s %s: expected a positive number", opt, v);
    *out = d;
    return ERR_OK;
}

static int pos_int(const char *opt, const char *v, int64_t max, int64_t *out) {
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < 1 || x > max)
        return err_set(ERR_ARGS, "plan %s %s: expected an integer from 1 to %lld", opt, v, (long long)max);
    *out = x;
    return ERR_OK;
}

/* WxH (width x height, like the image's pixels) */
static int image_size(const char *v, int *w, int *h) {
    char *end = NULL;
    long a = strtol(v, &end, 10);
    if (end == v || (*end != 'x' && *end != 'X')) goto bad;
    const char *p = end + 1;
    long b = strtol(p, &end, 10);
    if (end == p || *end || a < 1 || b < 1 || a > 100000 || b > 100000) goto bad;
    *w = (int)a;
    *h = (int)b;
    return ERR_OK;
bad:
    return err_set(ERR_ARGS, "plan --image %s: expected WIDTHxHEIGHT in pixels, e.g. 672x672", v);
}

static int parse(int argc, char **argv, jp_opts *o, const char **path, int *json) {
    int rc = ERR_OK;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x = 0;
        if (!strcmp(a, "--json")) {
            *json = 1;
            continue;
        }
        if (a[0] != '-' || !a[1]) {
            if (*path) return err_set(ERR_ARGS, "plan: one job file at a time ('%s' and '%s')", *path, a);
            *path = a;
            continue;
        }
        if (!v) return err_set(ERR_ARGS, "plan %s: needs a value (see orpo-hpc help plan)", a);
        i++;
        if (!strcmp(a, "--gpu-memory-gb")) rc = pos_num(a, v, &o->gpu_memory_gb);
        else if (!strcmp(a, "--gpu")) o->gpu = v;
        else if (!strcmp(a, "--image")) rc = image_size(v, &o->image_w, &o->image_h);
        else if (!strcmp(a, "--pairs")) rc = pos_int(a, v, 4096, &o->pairs);
        else if (!strcmp(a, "--prompt")) rc = pos_int(a, v, 1 << 20, &o->prompt);
        else if (!strcmp(a, "--answer")) rc = pos_int(a, v, 1 << 20, &o->answer);
        else if (!strcmp(a, "--ranks")) {
            if (!(rc = pos_int(a, v, 65536, &x))) o->ranks = (int)x;
        } else {
            return err_set(ERR_ARGS, "plan: unexpected argument '%s' (see orpo-hpc help plan)", a);
        }
    }
    if (!rc && !*path) rc = err_set(ERR_ARGS, "plan: which job? usage: orpo-hpc plan JOB.yaml");
    return rc;
}

/* the job's diagnostics, less the warnings about model.path / data.path: plan reads what is there (an HF
 * directory or config.json is fine; without data.h5 it assumes a pair) and says so itself */
static void print_report(const job_report *rep) {
    job_report keep;
    job_report_init(&keep);
    for (int i = 0; i < rep->n; i++) {
        const job_diag *d = &rep->d[i];
        if (d->severity == JOB_WARNING && (!strcmp(d->key, "model.path") || !strcmp(d->key, "data.path"))) continue;
        job_report_add(&keep, d->severity, d->file, d->line, d->col, d->key, "%s", d->msg);
    }
    job_report_print(&keep, stderr);
    job_report_free(&keep);
}

int cmd_plan(int argc, char **argv) {
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    jp_opts o;
    jp_opts_default(&o);
    const char *path = NULL;
    int json = 0;
    if (parse(argc, argv, &o, &path, &json)) {
        job_free_overrides(ov, nov);
        return cli_fail();
    }
    job_config job;
    job_report rep;
    job_report_init(&rep);
    int rc = job_load(path, ov, nov, 0, &job, &rep);
    print_report(&rep);
    job_report_free(&rep);
    job_free_overrides(ov, nov);
    if (rc) {
        log_error("%s: the job has errors (listed above); no plan", path);
        return ERR_ARGS;
    }
    jp_plan p;
    rc = jp_make(&job, &o, &p);
    if (!rc) {
        if (json) rc = jp_print_json(&p, stdout);
        else jp_print(&p, stdout);
        fflush(stdout);
    }
    int fits = p.fits;
    jp_free(&p);
    job_free(&job);
    if (rc) return cli_fail();
    if (!fits) {
        log_error("%s: does not fit the budget even with every memory strategy (what would fit is listed above)", path);
        return ERR_DATA; /* exit 3: does not fit */
    }
    return 0;
}
