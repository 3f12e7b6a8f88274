/* orpo-hpc train | resume | eval | generate: load and check the job, then run it (src/job/job_run.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/dataset.h"
#include "io/err.h"
#include "io/log.h"
#include "job/job.h"
#include "job/job_run.h"

/* generate's own options; 1 when argv[*i] was one (and its value taken) */
static int gen_arg(job_run_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (*i + 1 >= argc) return 0;
    const char *v = argv[*i + 1];
    char *end = NULL;
    if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
    else if (!strcmp(a, "--image")) o->image = v;
    else if (!strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--split") && (!strcmp(v, "val") || !strcmp(v, "train"))) o->split = strcmp(v, "val") ? DS_TRAIN : DS_VAL;
    else if (!strcmp(a, "--max-pairs") && (o->max_pairs = strtoll(v, &end, 10)) >= 0 && !*end) {}
    else if (!strcmp(a, "--max-new-tokens") && (o->max_new = (int)strtol(v, &end, 10)) > 0 && !*end) {}
    else if (!strcmp(a, "--temperature") && (o->temperature = strtod(v, &end)) >= 0 && !*end) {}
    else if (!strcmp(a, "--top-p") && (o->top_p = strtod(v, &end)) > 0 && o->top_p <= 1 && !*end) {}
    else if (!strcmp(a, "--seed") && (o->seed = strtoull(v, &end, 10), !*end)) {}
    else return 0;
    (*i)++;
    return 1;
}

static int run_command(int mode, int argc, char **argv) {
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    job_run_opts o;
    job_run_opts_default(&o);
    o.mode = mode;
    o.split = DS_VAL;
    o.top_p = 1.0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (mode == JOB_RUN_TRAIN && !strcmp(argv[i], "--restart")) o.restart = 1;
        else if (mode == JOB_RUN_EVAL && !strcmp(argv[i], "--checkpoint") && i + 1 < argc) o.checkpoint = argv[++i];
        else if (mode == JOB_RUN_EVAL && !strcmp(argv[i], "--pairs-out") && i + 1 < argc) o.pairs_out = argv[++i];
        else if (mode != JOB_RUN_TRAIN && !strcmp(argv[i], "--accept-changed-inputs")) o.accept_changed_inputs = 1;
        else if (mode == JOB_RUN_GENERATE && gen_arg(&o, argc, argv, &i)) continue;
        else if (mode == JOB_RUN_EVAL && !strcmp(argv[i], "--hallucination")) o.hallucination = 1;
        else if (mode == JOB_RUN_EVAL && !strcmp(argv[i], "--json")) o.json = 1;
        else if (mode == JOB_RUN_EVAL && !strcmp(argv[i], "--items") && i + 1 < argc) o.halluc_items = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else {
            job_free_overrides(ov, nov);
            return err_set(ERR_ARGS, "%s: unexpected argument '%s' (see orpo-hpc help %s)", argv[0], argv[i], argv[0]),
                   cli_fail();
        }
    }
    if (!path) {
        job_free_overrides(ov, nov);
        return err_set(ERR_ARGS, "%s: which job? usage: orpo-hpc %s JOB.yaml", argv[0], argv[0]), cli_fail();
    }
    if (mode == JOB_RUN_GENERATE && (!o.image != !o.prompt || (o.image && o.data))) {
        job_free_overrides(ov, nov);
        return err_set(ERR_ARGS, "generate: give either --image IMG --prompt TEXT or [--data data.h5] --split val|train"),
               cli_fail();
    }
    job_config job;
    job_report rep;
    job_report_init(&rep);
    int rc = job_load(path, ov, nov, 1, &job, &rep);
    job_report_print(&rep, stderr);
    job_report_free(&rep);
    if (rc) {
        /* a job that is fine but names a file that is not there (model.h5, data.h5): a missing file is exit 4,
         * as for every command (docs/cli.md); any other error in the job is exit 2 */
        job_report quiet;
        job_report_init(&quiet);
        int only_files = job_load(path, ov, nov, 0, &job, &quiet) == ERR_OK;
        if (only_files) job_free(&job);
        job_report_free(&quiet);
        job_free_overrides(ov, nov);
        log_error("%s: %s (listed above); nothing was run", path,
                  only_files ? "the job names a file that does not exist" : "the job has errors");
        return only_files ? ERR_IO : ERR_ARGS;
    }
    job_free_overrides(ov, nov);
    job_run_signal_install();
    rc = job_run(&job, &o);
    job_free(&job);
    if (rc == ERR_INTERRUPTED) return ERR_INTERRUPTED;
    if (rc) {
        log_error_current();
        return err_exit_code(rc);
    }
    return 0;
}

int cmd_train(int argc, char **argv) { return run_command(JOB_RUN_TRAIN, argc, argv); }
int cmd_resume(int argc, char **argv) { return run_command(JOB_RUN_RESUME, argc, argv); }
int cmd_eval(int argc, char **argv) { return run_command(JOB_RUN_EVAL, argc, argv); }
int cmd_generate(int argc, char **argv) { return run_command(JOB_RUN_GENERATE, argc, argv); }
