/* orpo-hpc make-demo: the tiny demo model (HF LLaVA-NeXT directory) and synthetic preference data.
 *   make-demo --out DIR [--pairs N] [--seed S] [--mix c,s,n,p,e,d] [--init scaled|hf|built]   (docs/demo.md) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "demo/demo.h"
#include "io/err.h"
#include "io/log.h"

static int parse_num(const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return err_set(ERR_ARGS, "make-demo: %s %s: expected an integer in %lld..%lld", opt, v, lo, hi);
    *out = x;
    return ERR_OK;
}

int cmd_make_demo(int argc, char **argv) {
    const char *out = NULL;
    demo_opts o;
    demo_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x = 0;
        if (!strcmp(a, "--out") && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--pairs") && v) {
            if (parse_num(a, v, 1, 1000000, &x)) return cli_fail();
            o.pairs = (int)x;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            if (parse_num(a, v, 0, 0x7fffffffffffffffLL, &x)) return cli_fail();
            o.seed = (uint64_t)x;
            i++;
        } else if (!strcmp(a, "--mix") && v) {
            if (demo_mix_parse(v, o.mix)) return cli_fail();
            i++;
        } else if (!strcmp(a, "--init") && v) {
            if (!strcmp(v, "scaled")) o.init = DEMO_INIT_SCALED;
            else if (!strcmp(v, "hf")) o.init = DEMO_INIT_HF;
            else if (!strcmp(v, "built")) o.init = DEMO_INIT_BUILT;
            else return err_set(ERR_ARGS, "make-demo: --init %s: expected scaled, hf or built", v), cli_fail();
            i++;
        } else {
            return err_set(ERR_ARGS, "make-demo: unexpected argument '%s' (see orpo-hpc help make-demo)", a), cli_fail();
        }
    }
    if (!out) return err_set(ERR_ARGS, "make-demo: --out DIR is required"), cli_fail();
    double t0 = log_now();
    if (demo_make(out, &o)) return cli_fail();
    printf("make-demo: wrote %s/model (HF LLaVA-NeXT directory) and %s/data (%d pairs) in %.2f s\n", out, out,
           o.pairs, log_now() - t0);
    /* the split jobs/demo.yaml expects (data.val_fraction 0.25, data.seed 1: checked at train time) */
    printf("next:\n  orpo-hpc import-model --from %s/model --out %s/model.h5\n"
           "  orpo-hpc import-data --parquet %s/data/rlaif-v-demo.parquet --model %s/model.h5 --out %s/data.h5 "
           "--val-fraction 0.25 --seed 1\n"
           "  orpo-hpc train jobs/demo.yaml      (its paths expect --out demo in the repository root)\n",
           out, out, out, out, out);
    return 0;
}
