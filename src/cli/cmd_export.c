/* orpo-hpc export | import-adapter: a job's checkpoint as a PEFT adapter, and a PEFT adapter as a job's
 * step-0 state (src/job/job_export.c, docs/export.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/log.h"
#include "job/job.h"
#include "job/job_export.h"

static int load_job(const char *path, job_override *ov, int nov, job_config *job) {
    job_report rep;
    job_report_init(&rep);
    int rc = job_load(path, ov, nov, 0, job, &rep);
    job_report_print(&rep, stderr);
    job_report_free(&rep);
    if (rc) log_error("%s: the job has errors (listed above); nothing was written", path);
    return rc ? ERR_ARGS : ERR_OK;
}

static int usage_error(const char *cmd, const char *what) {
    err_set(ERR_ARGS, "%s: %s (see orpo-hpc help %s)", cmd, what, cmd);
    return cli_fail();
}

int cmd_export(int argc, char **argv) {
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    const char *path = NULL, *which = NULL, *peft = NULL, *merged = NULL;
    jx_opts o = {0, JX_LAYOUT_CURRENT, NULL, NULL};
    int rc = ERR_OK;
    char bad[300] = "";
    for (int i = 1; i < argc && !bad[0]; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--checkpoint") && v) which = v, i++;
        else if (!strcmp(a, "--peft") && v) peft = v, i++;
        else if (!strcmp(a, "--merged") && v) merged = v, i++;
        else if (!strcmp(a, "--dtype") && v && (!strcmp(v, "fp32") || !strcmp(v, "bf16"))) o.bf16 = !strcmp(v, "bf16"), i++;
        else if (!strcmp(a, "--key-layout") && v && (!strcmp(v, "current") || !strcmp(v, "legacy")))
            o.layout = !strcmp(v, "legacy") ? JX_LAYOUT_LEGACY : JX_LAYOUT_CURRENT, i++;
        else if (a[0] != '-' && !path) path = a;
        else snprintf(bad, sizeof bad, "unexpected argument '%s'%s", a, v ? "" : " (or its value is missing)");
    }
    if (!bad[0] && !path) snprintf(bad, sizeof bad, "which job? usage: orpo-hpc export JOB.yaml --peft DIR");
    if (!bad[0] && !peft && !merged) snprintf(bad, sizeof bad, "nothing to write: give --peft DIR and/or --merged DIR");
    if (bad[0]) {
        job_free_overrides(ov, nov);
        return usage_error("export", bad);
    }
    job_config job;
    rc = load_job(path, ov, nov, &job);
    job_free_overrides(ov, nov);
    if (rc) return rc;
    jx_job x;
    char ckpt[4200], base[4096], *card = NULL;
    int64_t step = -1;
    rc = jx_open(&job, &x);
    if (!rc) rc = jx_load_checkpoint(&x, which, ckpt, sizeof ckpt, &step);
    if (!rc && peft) rc = jx_model_card(&job, ckpt, step, &card);
    if (!rc && peft) {
        o.card = card;
        jx_base_model(&job, base, sizeof base);
        o.base_model = base;
        rc = jx_write_peft(&x.t, &o, peft);
        if (!rc)
            log_info("exported step %lld of %s as a PEFT adapter (%s, %s key layout) to %s", (long long)step, ckpt,
                     o.bf16 ? "bf16" : "fp32", o.layout == JX_LAYOUT_LEGACY ? "legacy" : "current", peft);
    }
    if (!rc && merged) {
        rc = jx_write_merged(&x.t, job.model.path, (int64_t)5000000000, merged);
        if (!rc)
            log_info("exported step %lld of %s merged into the base as a bf16 HF model directory: %s", (long long)step,
                     ckpt, merged);
    }
    free(card);
    jx_close(&x);
    job_free(&job);
    return rc ? cli_fail() : 0;
}

int cmd_import_adapter(int argc, char **argv) {
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    const char *path = NULL, *peft = NULL;
    char bad[300] = "";
    for (int i = 1; i < argc && !bad[0]; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--peft") && v) peft = v, i++;
        else if (!strcmp(a, "--job") && v) path = v, i++;
        else snprintf(bad, sizeof bad, "unexpected argument '%s'%s", a, v ? "" : " (or its value is missing)");
    }
    if (!bad[0] && (!path || !peft)) snprintf(bad, sizeof bad, "usage: orpo-hpc import-adapter --peft DIR --job JOB.yaml");
    if (bad[0]) {
        job_free_overrides(ov, nov);
        return usage_error("import-adapter", bad);
    }
    job_config job;
    int rc = load_job(path, ov, nov, &job);
    job_free_overrides(ov, nov);
    if (rc) return rc;
    jx_job x;
    rc = jx_open(&job, &x);
    if (!rc) rc = jx_read_peft(&x.t, peft);
    if (!rc) rc = jx_write_step0(&x);
    if (!rc)
        log_info("%s: step-0 state of job %s written to %s/checkpoints; continue with orpo-hpc resume %s", peft,
                 job.job.name, job.job.output_dir, path);
    jx_close(&x);
    job_free(&job);
    return rc ? cli_fail() : 0;
}
