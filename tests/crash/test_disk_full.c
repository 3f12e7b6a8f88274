/* A full disk during a checkpoint: exit 4 with a clear message, the previous checkpoints intact (issue 6).
 *
 * The disk fills up through RLIMIT_FSIZE in the child (SIGXFSZ ignored, so a write past the limit fails with
 * EFBIG, as a write to a full disk fails with ENOSPC); no root, no mount. The demo job first runs to step 12
 * (checkpoints 9 and 12), then `orpo-hpc resume` runs again under a limit:
 *   1. 100 KiB: metrics files fit, a checkpoint (~200 KB) does not: the checkpoint of step 15 fails. Exit 4; the
 *      message names step-00000015.h5, says it was not written, the previous checkpoints are intact, and
 *      "File too large"; checkpoints 9 and 12 byte-identical, no temporary left, metrics.h5 readable with rows
 *      1..15 equal to an uninterrupted run's and the segment marked `error`.
 *   2. 0 bytes (disk full from the start): exit 4, "File too large"; the checkpoints and metrics.h5 unchanged.
 *   3. One byte less than metrics.h5 ends up with in case 1: the checkpoint fails, and then so does the rebuild
 *      of metrics.h5 at the end of the segment. Exit 4, the message still names the checkpoint that failed
 *      (the first error), nothing damaged.
 * After each case a `resume` without limit finishes the job bit-identical to the uninterrupted run. */
#include "test.h"
#include "crash_util.h"

enum { NSTEPS = 30, EVERY = 3, PRE = 12 };

static cu_state g_ref;
static met_train *g_train;
static int64_t g_ntrain;

typedef struct blob {
    char *b;
    int64_t n;
} blob;

static blob read_blob(const char *p) {
    blob x = {NULL, -1};
    FILE *f = fopen(p, "rb");
    if (!f) return x;
    fseek(f, 0, SEEK_END);
    x.n = ftell(f);
    fseek(f, 0, SEEK_SET);
    x.b = malloc((size_t)x.n + 1);
    if (fread(x.b, 1, (size_t)x.n, f) != (size_t)x.n) x.n = -2;
    fclose(f);
    return x;
}

static int same_blob(const char *p, const blob *x) {
    blob y = read_blob(p);
    int same = y.n == x->n && x->n >= 0 && !memcmp(x->b, y.b, (size_t)x->n);
    free(y.b);
    return same;
}

static int64_t fsize(const char *p) {
    struct stat sb;
    return stat(p, &sb) ? -1 : (int64_t)sb.st_size;
}

static void print_errors(const char *log) {
    for (const char *l = log; l && *l;) {
        const char *e = strchr(l, '\n');
        int len = e ? (int)(e - l) : (int)strlen(l);
        if (!strncmp(l, "orpo-hpc: error:", 16) || !strncmp(l, "orpo-hpc: warning:", 18)) printf("  %.*s\n", len, l);
        l = e ? e + 1 : NULL;
    }
}

/* A child under the limit: HDF5 1.10.8 leaks 264 bytes inside H5Fcreate when the create fails (see
 * tests/crash/lsan-hdf5.supp); in an ASan build LeakSanitizer would turn the exit code into 1. Only that leak is
 * suppressed (by function name, which needs the slow unwinder); every other leak still fails the run. */
static void limit_disk(int64_t bytes) {
    static char saved[1024];
    static int have;
    if (bytes >= 0) {
        const char *ao = getenv("ASAN_OPTIONS");
        have = ao != NULL;
        snprintf(saved, sizeof saved, "%s", ao ? ao : "");
        char buf[1200], supp[1200];
        snprintf(buf, sizeof buf, "%s%sfast_unwind_on_malloc=0", saved, saved[0] ? ":" : "");
        setenv("ASAN_OPTIONS", buf, 1);
        const char *src = getenv("ORPO_SOURCE_DIR");
#ifdef ORPO_SOURCE_DIR
        if (!src || !*src) src = ORPO_SOURCE_DIR;
#endif
        snprintf(supp, sizeof supp, "suppressions=%s/tests/crash/lsan-hdf5.supp", src ? src : ".");
        setenv("LSAN_OPTIONS", supp, 1);
    } else {
        if (have) setenv("ASAN_OPTIONS", saved, 1);
        else unsetenv("ASAN_OPTIONS");
        unsetenv("LSAN_OPTIONS");
    }
    cu_child_fsize = bytes;
}

/* resume without a limit to the end: bit-identical to the uninterrupted run */
static void finish_and_compare(const char *dir, const char *out, const char *what) {
    char *log = NULL;
    int rc = cu_job_run(&log, dir, "resume", out, NULL);
    if (rc) fprintf(stderr, "%s: resume after the full disk: exit %d\n%s\n", what, rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cu_compare_run(&g_ref, g_train, g_ntrain, out, NSTEPS, what), 0);
}

/* the output directory after a failed resume: checkpoints 9 and 12 as they were, no temporary */
static void check_intact(const char *out, const blob *ck9, const blob *ck12, const char *what) {
    char p[1300];
    int fails = t_fail;
    int64_t steps[16];
    int n = cu_ckpt_steps(out, steps, 16);
    CHECK_EQ_INT(n, 2);
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, PRE - EVERY);
    CHECK(same_blob(p, ck9));
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, PRE);
    CHECK(same_blob(p, ck12));
    int nck, nmet;
    cu_temps(out, &nck, &nmet);
    CHECK_EQ_INT(nck, 0);
    CHECK_EQ_INT(nmet, 0);
    if (t_fail > fails) fprintf(stderr, "%s: the previous checkpoints are not intact\n", what);
}

int main(void) {
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);
    char ref[1200], pre[1200], out[1200], p[1300], want[1400], *log = NULL;
    snprintf(ref, sizeof ref, "%s/ref", dir);
    int rc = cu_job_run(&log, dir, "train", ref, NULL);
    if (rc) fprintf(stderr, "reference run failed (%d):\n%s\n", rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cu_load_run(ref, NSTEPS, &g_ref, &g_train, &g_ntrain), 0);
    CHECK_EQ_INT(g_ntrain, NSTEPS);

    /* the state before the disk fills: checkpoints 9 and 12 */
    snprintf(pre, sizeof pre, "%s/pre", dir);
    rc = cu_job_run(&log, dir, "resume", pre, "--set", "train.max_steps=12", NULL);
    free(log);
    CHECK_EQ_INT(rc, 0);
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", pre, PRE - EVERY);
    blob ck9 = read_blob(p);
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", pre, PRE);
    blob ck12 = read_blob(p);
    snprintf(p, sizeof p, "%s/metrics.h5", pre);
    blob met = read_blob(p);
    CHECK(ck9.n > 0 && ck12.n > 0 && met.n > 0);
    if (t_fail) TEST_MAIN_END();

    /* 1. the checkpoint does not fit */
    const int64_t limit = 100 * 1024;
    CHECK(met.n * 3 < limit && limit < ck12.n); /* the sizes this case relies on */
    snprintf(out, sizeof out, "%s/full1", dir);
    char *cp1[] = {"/bin/cp", "-a", pre, out, NULL};
    CHECK_EQ_INT(cu_run_argv(cp1, 60, NULL), 0);
    limit_disk(limit);
    rc = cu_job_run(&log, dir, "resume", out, NULL);
    limit_disk(-1);
    printf("case 1 (limit %lld bytes): exit %d\n", (long long)limit, rc);
    print_errors(log);
    CHECK_EQ_INT(rc, 4);
    snprintf(want, sizeof want, "error: %s/checkpoints/step-%08d.h5: checkpoint of step %d not written; the previous "
             "checkpoints are intact", out, PRE + EVERY, PRE + EVERY);
    CHECK_CONTAINS(log, want);
    CHECK_CONTAINS(log, "File too large");
    free(log);
    check_intact(out, &ck9, &ck12, "case 1");
    snprintf(p, sizeof p, "%s/metrics.h5", out);
    int64_t s2 = fsize(p);
    met_train *tr = NULL;
    int64_t ntr = 0;
    CHECK_EQ_INT(met_read_train(p, &tr, &ntr), 0);
    CHECK_EQ_INT(ntr, PRE + EVERY);
    CHECK_EQ_INT(cu_train_diff(g_train, g_ntrain, tr, ntr, "case 1 metrics.h5"), 0);
    free(tr);
    met_segment *sg = NULL;
    int64_t nsg = 0;
    CHECK_EQ_INT(met_read_segments(p, &sg, &nsg), 0);
    CHECK_EQ_INT(nsg, 2);
    if (nsg == 2) {
        CHECK_EQ_STR(sg[1].reason, "error");
        CHECK_EQ_INT(sg[1].checkpoint_step, -1);
    }
    free(sg);
    finish_and_compare(dir, out, "case 1");

    /* 2. full from the start */
    snprintf(out, sizeof out, "%s/full2", dir);
    char *cp2[] = {"/bin/cp", "-a", pre, out, NULL};
    CHECK_EQ_INT(cu_run_argv(cp2, 60, NULL), 0);
    limit_disk(0);
    rc = cu_job_run(&log, dir, "resume", out, NULL);
    limit_disk(-1);
    printf("case 2 (limit 0 bytes): exit %d\n", rc);
    print_errors(log);
    CHECK_EQ_INT(rc, 4);
    CHECK_CONTAINS(log, "File too large");
    free(log);
    check_intact(out, &ck9, &ck12, "case 2");
    snprintf(p, sizeof p, "%s/metrics.h5", out);
    CHECK(same_blob(p, &met));
    finish_and_compare(dir, out, "case 2");

    /* 3. the checkpoint fails, then the rebuild of metrics.h5 at the end of the segment */
    snprintf(out, sizeof out, "%s/full3", dir);
    char *cp3[] = {"/bin/cp", "-a", pre, out, NULL};
    CHECK_EQ_INT(cu_run_argv(cp3, 60, NULL), 0);
    limit_disk(s2 - 1);
    rc = cu_job_run(&log, dir, "resume", out, NULL);
    limit_disk(-1);
    printf("case 3 (limit %lld bytes): exit %d\n", (long long)(s2 - 1), rc);
    print_errors(log);
    CHECK_EQ_INT(rc, 4);
    snprintf(want, sizeof want, "error: %s/checkpoints/step-%08d.h5: checkpoint of step %d not written; the previous "
             "checkpoints are intact", out, PRE + EVERY, PRE + EVERY);
    CHECK_CONTAINS(log, want);
    free(log);
    check_intact(out, &ck9, &ck12, "case 3");
    snprintf(p, sizeof p, "%s/metrics.h5", out);
    CHECK_EQ_INT(met_read_train(p, &tr, &ntr), 0);
    CHECK_EQ_INT(cu_train_diff(g_train, g_ntrain, tr, ntr, "case 3 metrics.h5"), 0);
    free(tr);
    finish_and_compare(dir, out, "case 3");

    free(ck9.b);
    free(ck12.b);
    free(met.b);
    cu_state_free(&g_ref);
    free(g_train);
    if (!t_fail) {
        char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        cu_run_argv(rm, 60, NULL);
    }
    TEST_MAIN_END();
}
