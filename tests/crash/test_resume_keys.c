/* Resumes that change keys which do not change the result stay bit-identical (issue 6, docs/jobs.md): a job run in
 * pieces with other train.max_steps and checkpoint.every_steps ends with the same checkpoint and train table as
 * one uninterrupted run, also when a piece ends exactly at the end of an epoch (22 steps of 4 pairs = 88 training
 * pairs, the data cursor at the end of the permutation) or one step after it.
 *   A: max_steps 22 | every_steps 5 to 30
 *   B: max_steps 7, every_steps 7 | max_steps 23, every_steps 2 | to 30
 *   C: max_steps 1 | max_steps 2 | ... one step per resume up to 5, then to 30 */
#include "test.h"
#include "crash_util.h"

enum { NSTEPS = 30 };

static cu_state g_ref;
static met_train *g_train;
static int64_t g_ntrain;

/* one piece: resume with the given --set values; expect exit 0 and a checkpoint at `end` */
static void piece(const char *dir, const char *out, const char *a, const char *b, int64_t end, const char *what) {
    char *log = NULL, p[1300];
    int rc = b ? cu_job_run(&log, dir, "resume", out, "--set", a, "--set", b, NULL)
               : a ? cu_job_run(&log, dir, "resume", out, "--set", a, NULL)
                   : cu_job_run(&log, dir, "resume", out, NULL);
    if (rc) fprintf(stderr, "%s: resume %s %s: exit %d\n%s\n", what, a ? a : "", b ? b : "", rc, log);
    CHECK_EQ_INT(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "done at step %lld", (long long)end);
    CHECK_CONTAINS(log, want);
    free(log);
    snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)end);
    CHECK_EQ_INT(access(p, F_OK), 0);
}

static void compare(const char *out, const char *what) {
    CHECK_EQ_INT(cu_compare_run(&g_ref, g_train, g_ntrain, out, NSTEPS, what), 0);
    printf("%s: final checkpoint and train table bit-identical: %s\n", what, t_fail ? "no" : "yes");
}

int main(void) {
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);
    char ref[1200], out[1200], p[1300], *log = NULL;
    snprintf(ref, sizeof ref, "%s/ref", dir);
    int rc = cu_job_run(&log, dir, "train", ref, NULL);
    if (rc) fprintf(stderr, "reference run failed (%d):\n%s\n", rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cu_load_run(ref, NSTEPS, &g_ref, &g_train, &g_ntrain), 0);
    CHECK_EQ_INT(g_ntrain, NSTEPS);
    if (t_fail) TEST_MAIN_END();

    snprintf(out, sizeof out, "%s/A", dir);
    piece(dir, out, "train.max_steps=22", NULL, 22, "A");
    cu_state st;
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, 22);
    if (!cu_state_load(p, &st)) {
        printf("A: checkpoint 22: epoch %lld, cursor %lld\n", (long long)st.s.epoch, (long long)st.s.cursor_pos);
        cu_state_free(&st);
    }
    piece(dir, out, "checkpoint.every_steps=5", NULL, NSTEPS, "A");
    compare(out, "A");

    snprintf(out, sizeof out, "%s/B", dir);
    piece(dir, out, "train.max_steps=7", "checkpoint.every_steps=7", 7, "B");
    piece(dir, out, "train.max_steps=23", "checkpoint.every_steps=2", 23, "B");
    piece(dir, out, NULL, NULL, NSTEPS, "B");
    compare(out, "B");

    snprintf(out, sizeof out, "%s/C", dir);
    for (int s = 1; s <= 5; s++) {
        char set[64];
        snprintf(set, sizeof set, "train.max_steps=%d", s);
        piece(dir, out, set, NULL, s, "C");
    }
    piece(dir, out, NULL, NULL, NSTEPS, "C");
    compare(out, "C");

    cu_state_free(&g_ref);
    free(g_train);
    if (!t_fail) {
        char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        cu_run_argv(rm, 60, NULL);
    }
    TEST_MAIN_END();
}
