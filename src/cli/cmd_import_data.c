/* orpo-hpc import-data: RLAIF-V Parquet files or JSONL + images -> data.h5 (docs/data.md) */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/import.h"
#include "model/model_h5.h"
#include "io/err.h"
#include "io/interrupt.h"
#include "io/log.h"
#include "io/mem.h"

static int parse_i64(const char *opt, const char *v, int64_t *out) {
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || x < 0) return err_set(ERR_ARGS, "import-data: %s %s: expected an integer >= 0", opt, v);
    *out = x;
    return ERR_OK;
}

int cmd_import_data(int argc, char **argv) {
    imp_opts o;
    imp_opts_default(&o);
    o.progress = 1;
    const char *model = NULL;
    const char **pq = mem_calloc((size_t)argc + 1, sizeof *pq, "the argument list");
    int rc = ERR_OK;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) { model = v; i++; }
        else if (!strcmp(a, "--out") && v) { o.out = v; i++; }
        else if (!strcmp(a, "--jsonl") && v) { o.jsonl = v; i++; }
        else if (!strcmp(a, "--images") && v) { o.images_dir = v; i++; }
        else if (!strcmp(a, "--parquet") && v) {
            /* one or more files, up to the next option */
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) pq[o.n_parquet++] = argv[++i];
        } else if (!strcmp(a, "--max-pairs") && v) { rc = parse_i64(a, v, &o.max_pairs); i++; }
        else if (!strcmp(a, "--max-tokens") && v) { rc = parse_i64(a, v, &o.max_tokens); i++; }
        else if (!strcmp(a, "--seed") && v) {
            int64_t s = 0;
            rc = parse_i64(a, v, &s);
            o.seed = (uint64_t)s;
            i++;
        } else if (!strcmp(a, "--val-fraction") && v) {
            char *end = NULL;
            o.val_fraction = strtod(v, &end);
            if (!*v || *end || !(o.val_fraction >= 0.0 && o.val_fraction <= 1.0))
                rc = err_set(ERR_ARGS, "import-data: --val-fraction %s: expected a number in [0, 1]", v);
            i++;
        } else if (!strcmp(a, "--no-progress")) {
            o.progress = 0;
        } else {
            rc = err_set(ERR_ARGS, "import-data: unexpected argument '%s' (see orpo-hpc help import-data)", a);
        }
    }
    o.parquet = pq;
    if (!rc && (!model || !o.out))
        rc = err_set(ERR_ARGS, "import-data: --model model.h5 and --out data.h5 are required");
    if (!rc && (o.n_parquet > 0) == (o.jsonl != NULL))
        rc = err_set(ERR_ARGS, "import-data: give either --parquet FILE... or --jsonl FILE --images DIR");
    if (!rc && o.jsonl && !o.images_dir) rc = err_set(ERR_ARGS, "import-data: --jsonl needs --images DIR");
    ds_model_ref ref;
    tok *t = NULL;
    imp_report *rep = mem_calloc(1, sizeof *rep, "the import report");
    o.model_path = model;
    intr_install("import-data"); /* SIGTERM/SIGINT remove the temporary (exit 75); ulimit -f gives exit 4 */
    if (!rc) rc = mh5_data_ref(model, &ref, &t);
    if (!rc) rc = cli_out_parent(o.out);
    if (!rc) rc = imp_run(&o, &ref, t, rep);
    if (!rc) {
        imp_report_print(rep);
        log_info("wrote %s", o.out);
    }
    tok_free(t);
    free(rep);
    free(pq);
    return rc ? cli_fail() : 0;
}
