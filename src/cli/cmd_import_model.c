/* orpo-hpc import-model: HuggingFace LLaVA-NeXT directory -> model.h5 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/interrupt.h"
#include "io/log.h"
#include "model/model_h5.h"
#include "model/nf4.h"

int cmd_import_model(int argc, char **argv) {
    const char *from = NULL, *out = NULL;
    mh5_opts o;
    mh5_opts_default(&o);
    o.progress = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--from") && v) { from = v; i++; }
        else if (!strcmp(a, "--out") && v) { out = v; i++; }
        else if (!strcmp(a, "--quant") && v) {
            i++;
            if (!strcmp(v, "nf4")) o.quant = MH5_QUANT_NF4;
            else if (!strcmp(v, "bf16")) o.quant = MH5_QUANT_BF16;
            else if (!strcmp(v, "fp32")) o.quant = MH5_QUANT_FP32;
            else return err_set(ERR_ARGS, "import-model: --quant %s: expected nf4, bf16 or fp32", v), cli_fail();
        } else if (!strcmp(a, "--quant-scope") && v) {
            i++;
            if (!strcmp(v, "decoder")) o.scope = MH5_SCOPE_DECODER;
            else if (!strcmp(v, "all-linear")) o.scope = MH5_SCOPE_ALL_LINEAR;
            else return err_set(ERR_ARGS, "import-model: --quant-scope %s: expected decoder or all-linear", v), cli_fail();
        } else if (!strcmp(a, "--nf4-flavor") && v) {
            i++;
            if (!strcmp(v, "cuda")) o.nf4_flavor = NF4_FLAVOR_CUDA;
            else if (!strcmp(v, "cpu")) o.nf4_flavor = NF4_FLAVOR_CPU;
            else return err_set(ERR_ARGS, "import-model: --nf4-flavor %s: expected cuda or cpu", v), cli_fail();
        } else {
            return err_set(ERR_ARGS, "import-model: unexpected argument '%s' (see orpo-hpc help import-model)", a),
                   cli_fail();
        }
    }
    if (!from || !out) return err_set(ERR_ARGS, "import-model: --from DIR and --out FILE are required"), cli_fail();
    double t0 = log_now();
    intr_install("import-model"); /* SIGTERM/SIGINT remove the temporary (exit 75); ulimit -f gives exit 4 */
    if (cli_out_parent(out) || mh5_import(from, out, &o)) return cli_fail();
    log_info("imported %s -> %s in %.1f s", from, out, log_now() - t0);
    return 0;
}
