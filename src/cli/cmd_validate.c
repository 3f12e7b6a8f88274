/* orpo-hpc validate: check job files and report every problem as FILE:LINE:COL: key.path: message.
 *
 *   orpo-hpc validate JOB.yaml... [--set key.path=value ...] [--require-files] [--print-config]
 *   orpo-hpc validate --print-schema     the JSON Schema of a job file (schemas/job.schema.json)
 *   orpo-hpc validate --print-keys       the key reference table of docs/jobs.md (Markdown)
 *
 * Diagnostics and "FILE: ok" go to stderr; --print-* output goes to stdout.
 * Exit 0 when every file is clean (warnings allowed), 2 when any has an error. */
#include <stdio.h>
#include <string.h>

#include "backend/attn_fused.h"
#include "backend/device.h"
#include "backend/ops.h"
#include "backend/tensor.h"
#include "cli/cli.h"
#include "io/err.h"
#include "job/job.h"

/* What the job asks for that this binary cannot do: validate says so, instead of "ok" now and exit 2 at run time */
static void serve_warnings(const job_config *c, const char *file, job_report *rep) {
    int k = job_find_key("runtime.device");
    if (c->runtime.device == JOB_DEVICE_CUDA && !ops_for(DEVICE_CUDA, DT_BF16))
        job_report_add(rep, JOB_WARNING, file, c->pos[k].line, c->pos[k].col, "runtime.device",
                       "cuda: this orpo-hpc cannot train on a GPU (it was built without the GPU training backend): "
                       "train, resume and eval refuse this job (exit 2); set runtime.device: cpu or auto to run on "
                       "the CPU");
    else if (c->runtime.device == JOB_DEVICE_CUDA && c->runtime.precision == JOB_PREC_FP32)
        job_report_add(rep, JOB_WARNING, file, c->pos[k].line, c->pos[k].col, "runtime.device",
                       "cuda with runtime.precision fp32: the GPU training backend runs bf16 activations: train, "
                       "resume and eval refuse this job (exit 2); set runtime.precision: bf16 or auto");
    int a = job_find_key("runtime.attention");
    if (c->runtime.attention == AFZ_CUDNN && !afz_ops_cuda())
        job_report_add(rep, JOB_WARNING, file, c->pos[a].line, c->pos[a].col, "runtime.attention",
                       "cudnn: this orpo-hpc was built without cuDNN attention: a run on a GPU refuses this job "
                       "(exit 2); set runtime.attention: auto or kernels");
}

int cmd_validate(int argc, char **argv) {
    job_override *ov = NULL;
    int nov = 0;
    if (job_parse_set_args(&argc, argv, &ov, &nov)) return cli_fail();
    int require = 0, print_config = 0, nfiles = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--require-files")) require = 1;
        else if (!strcmp(argv[i], "--print-config")) print_config = 1;
        else if (!strcmp(argv[i], "--print-schema") || !strcmp(argv[i], "--print-keys")) {
            int r = !strcmp(argv[i], "--print-schema") ? job_print_schema(stdout) : job_print_keys_markdown(stdout);
            job_free_overrides(ov, nov);
            return r ? cli_fail() : 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            job_free_overrides(ov, nov);
            return err_set(ERR_ARGS,
                           "validate: unknown option '%s' (options: --set, --require-files, --print-config, "
                           "--print-schema, --print-keys)",
                           argv[i]),
                   cli_fail();
        } else {
            nfiles++;
        }
    }
    if (!nfiles) {
        job_free_overrides(ov, nov);
        return err_set(ERR_ARGS, "validate: no job file given (usage: orpo-hpc validate JOB.yaml...)"), cli_fail();
    }
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) continue;
        job_report rep;
        job_config cfg;
        job_report_init(&rep);
        int r = job_load(argv[i], ov, nov, require, &cfg, &rep);
        if (r == ERR_OK) serve_warnings(&cfg, argv[i], &rep);
        job_report_print(&rep, stderr);
        if (r == ERR_OK) {
            if (rep.nwarn) fprintf(stderr, "%s: ok (%d warning%s)\n", argv[i], rep.nwarn, rep.nwarn == 1 ? "" : "s");
            else fprintf(stderr, "%s: ok\n", argv[i]);
            if (print_config) job_write_yaml(&cfg, stdout);
        } else if (r > rc && (rc == 0 || r != ERR_INTERNAL)) {
            rc = r;
        }
        job_free(&cfg);
        job_report_free(&rep);
    }
    job_free_overrides(ov, nov);
    fflush(stdout);
    return rc;
}
