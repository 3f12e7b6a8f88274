/* On a machine with a GPU and NCCL: a 1-rank NCCL run (runtime.data_parallel: nccl) writes the same checkpoint and
 * train table, bit for bit, as data_parallel: none (issue 13; docs/parallel.md: one rank's sum is its own value).
 * NCCL refuses two ranks on one GPU, so this is as far as one GPU can show. Skipped (77) without a GPU or NCCL. */
#include "test.h"
#include "backend/device.h"
#include "crash/crash_util.h"

enum { NSTEPS = 6 };

int main(void) {
#ifndef ORPO_HAVE_NCCL
    printf("skipped: built without NCCL\n");
    return 77;
#endif
    int n = 0;
    char why[256] = "";
    cudev_count(&n, why, sizeof why);
    if (n == 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);
    char ref[1200], out[1200], id[64], *log = NULL;
    snprintf(ref, sizeof ref, "%s/none", dir);
    snprintf(out, sizeof out, "%s/nccl", dir);
    snprintf(id, sizeof id, "one-rank-%ld", (long)getpid());
    setenv("ORPO_DIST_ID", id, 1); /* NCCL's id goes through a file named after the launch */
    int rc = cu_job_run(&log, dir, "train", ref, "--set", "train.max_steps=6", "--set", "runtime.device=auto", "--set",
                        "runtime.data_parallel=none", NULL);
    if (rc) fprintf(stderr, "none: exit %d\n%s\n", rc, log);
    CHECK_EQ_INT(rc, 0);
    free(log);
    rc = cu_job_run(&log, dir, "train", out, "--set", "train.max_steps=6", "--set", "runtime.device=auto", "--set",
                    "runtime.data_parallel=nccl", NULL);
    if (rc) fprintf(stderr, "nccl: exit %d\n%s\n", rc, log);
    CHECK_EQ_INT(rc, 0);
    CHECK_CONTAINS(log, "data parallel: nccl, 1 ranks");
    free(log);
    cu_state st;
    met_train *tr = NULL;
    int64_t nt = 0;
    if (!t_fail && cu_load_run(ref, NSTEPS, &st, &tr, &nt) == 0) {
        int bad = cu_compare_run(&st, tr, nt, out, NSTEPS, "1-rank nccl vs none");
        CHECK_EQ_INT(bad, 0);
        printf("1-rank NCCL vs none: checkpoint of step %d and train table bit-identical: %s\n", NSTEPS, bad ? "no" : "yes");
        cu_state_free(&st);
        free(tr);
    }
    TEST_MAIN_END();
}
