/* SIGTERM / SIGUSR1 / SIGINT: finish the current step, write a checkpoint, exit 75; a second SIGINT aborts at once
 * (DESIGN.md "Job lifecycle and signals", issue 6).
 *
 * The demo job (tests/crash/job.yaml.in: 30 steps, checkpoint every 3, validation every 10) is run uninterrupted
 * (the reference). Then for each case `orpo-hpc resume` starts in a fresh output directory, the test waits for the
 * log line of step K and sends the signal at once:
 *   - SIGTERM after step 7 (a step without checkpoint), SIGTERM after step 6 (the checkpoint of step 6 is being
 *     written), SIGUSR1 after step 10 (a validation follows), SIGINT after step 21 (the next step ends the epoch),
 *     SIGTERM right after the set-up (before the first step);
 *   - exit 75 and the log line "signal S: checkpointing at step M"; M is K or K + 1 (the step that was running
 *     when the signal came is finished, no more); a checkpoint of step M exists, verifies and is the newest;
 *     metrics.h5 holds steps 1..M equal to the reference, its last segment is `interrupted` with checkpoint M;
 *   - two SIGINTs: exit 130 at once (well within a step), nothing damaged;
 *   - after each, `resume` finishes the job: final checkpoint and train table bit-identical to the reference.
 * Printed: the signal-to-exit latency of each case. */
#include "test.h"
#include "crash_util.h"

enum { NSTEPS = 30, EVERY = 3 };

static cu_state g_ref;
static met_train *g_train;
static int64_t g_ntrain;
static double g_step_s;

typedef struct want {
    long long step; /* -1: the "trainable:" line at the end of the set-up */
} want;

static int match(const char *line, void *ctx) {
    want *w = ctx;
    if (w->step < 0) return strstr(line, "orpo-hpc: trainable: ") != NULL;
    const char *p = strstr(line, ": step ");
    long long n;
    return p && sscanf(p, ": step %lld/", &n) == 1 && n == w->step;
}

static void finish_and_compare(const char *dir, const char *out, const char *what) {
    char *log = NULL;
    int rc = cu_job_run(&log, dir, "resume", out, NULL);
    if (rc) fprintf(stderr, "%s: resume: exit %d\n%s\n", what, rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cu_compare_run(&g_ref, g_train, g_ntrain, out, NSTEPS, what), 0);
}

/* one signal (or two SIGINTs when twice) after the log line of step k (k < 0: after the set-up) */
static void signal_case(const char *dir, const char *name, int sig, long long k, int twice) {
    char out[1200], p[1300], what[1300];
    int fails = t_fail;
    snprintf(out, sizeof out, "%s/%s", dir, name);
    snprintf(what, sizeof what, "%s (signal %d after step %lld)", name, sig, k);
    cu_child c;
    CHECK_EQ_INT(cu_job(&c, dir, "resume", out, NULL), 0);
    want w = {k};
    int r = cu_pump(&c, c.t0 + 60 + 20 * NSTEPS * g_step_s, match, &w);
    CHECK_EQ_INT(r, 1);
    /* Stop the trainer, read everything it logged, then send the signal and let it go on: the last step logged
     * before the signal is then known exactly, however late this process got to see the line of step k. */
    long long last = 0;
    if (!twice) {
        kill(c.pid, SIGSTOP);
        int ws = 0;
        while (waitpid(c.pid, &ws, WUNTRACED) < 0 && errno == EINTR) {
        }
        for (size_t len = (size_t)-1; len != c.len;) {
            len = c.len;
            cu_read_some(&c, 0.01);
        }
        for (const char *q = c.out; (q = strstr(q, ": step ")) != NULL; q++) {
            long long n;
            if (sscanf(q, ": step %lld/", &n) == 1) last = n;
        }
    }
    kill(c.pid, sig);
    if (!twice) kill(c.pid, SIGCONT);
    double ts = cu_now();
    if (twice) {
        /* a second Ctrl-C comes after the first was handled (two sent back to back are merged into one by the
         * kernel while pending); the running step takes g_step_s, so 10 ms later it is still running */
        cu_sleep(0.01);
        ts = cu_now();
        kill(c.pid, sig);
    }
    int st = cu_reap(&c);
    double lat = cu_now() - ts;
    if (twice) {
        printf("%s: exit %d %.3f s after the second SIGINT (a step takes %.3f s)\n", what, st, lat, g_step_s);
        CHECK_EQ_INT(st, 130);
        CHECK(lat < 0.5 + g_step_s);
        int64_t steps[64];
        int n = cu_ckpt_steps(out, steps, 64);
        for (int i = 0; i < n; i++) {
            int64_t s = -1;
            snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)steps[i]);
            CHECK_EQ_INT(ckpt_verify(p, &s), 0);
        }
    } else {
        CHECK_EQ_INT(st, 75);
        long long m = -1;
        char key[64];
        snprintf(key, sizeof key, "signal %d: checkpointing at step ", sig);
        const char *q = strstr(c.out, key);
        CHECK(q != NULL);
        if (q) m = atoll(q + strlen(key));
        long long k0 = last; /* >= k */
        CHECK(last >= (k < 0 ? 0 : k));
        printf("%s: exit %d %.3f s after the signal; last step logged before it %lld, checkpoint at step %lld "
               "(a step takes %.3f s)\n", what, st, lat, k0, m, g_step_s);
        CHECK(m == k0 || m == k0 + 1);
        CHECK(lat < 5.0 + 3 * g_step_s);
        int64_t steps[64];
        int n = cu_ckpt_steps(out, steps, 64);
        CHECK(n > 0 && steps[n - 1] == m);
        int64_t s = -1;
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, m);
        CHECK_EQ_INT(ckpt_verify(p, &s), 0);
        CHECK_EQ_INT(s, m);
        char want_s[128];
        snprintf(want_s, sizeof want_s, "checkpoint step %lld written", m);
        CHECK_CONTAINS(c.out, want_s);
        /* the metrics: rows 1..m, the segment interrupted at m */
        snprintf(p, sizeof p, "%s/metrics.h5", out);
        met_train *tr = NULL;
        int64_t ntr = 0;
        CHECK_EQ_INT(met_read_train(p, &tr, &ntr), 0);
        CHECK_EQ_INT(ntr, m);
        CHECK_EQ_INT(cu_train_diff(g_train, g_ntrain, tr, ntr, what), 0);
        free(tr);
        met_segment *sg = NULL;
        int64_t nsg = 0;
        CHECK_EQ_INT(met_read_segments(p, &sg, &nsg), 0);
        CHECK_EQ_INT(nsg, 1);
        if (nsg == 1) {
            CHECK_EQ_STR(sg[0].reason, "interrupted");
            CHECK_EQ_INT(sg[0].checkpoint_step, m);
            CHECK_EQ_INT(sg[0].end_step, m);
        }
        free(sg);
    }
    int nck, nmet;
    cu_temps(out, &nck, &nmet);
    if (!twice) CHECK_EQ_INT(nck + nmet, 0);
    if (t_fail > fails) fprintf(stderr, "%s log:\n%s\n", what, c.out);
    cu_free(&c);
    finish_and_compare(dir, out, what);
}

int main(void) {
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);
    char ref[1200], *log = NULL;
    snprintf(ref, sizeof ref, "%s/ref", dir);
    double t0 = cu_now();
    int rc = cu_job_run(&log, dir, "train", ref, NULL);
    g_step_s = (cu_now() - t0) / NSTEPS;
    if (rc) fprintf(stderr, "reference run failed (%d):\n%s\n", rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(cu_load_run(ref, NSTEPS, &g_ref, &g_train, &g_ntrain), 0);
    CHECK_EQ_INT(g_ntrain, NSTEPS);
    if (t_fail) TEST_MAIN_END();

    signal_case(dir, "term7", SIGTERM, 7, 0);
    signal_case(dir, "term6", SIGTERM, 6, 0);
    signal_case(dir, "usr1-10", SIGUSR1, 10, 0);
    signal_case(dir, "int21", SIGINT, 21, 0);
    signal_case(dir, "term-setup", SIGTERM, -1, 0);
    signal_case(dir, "int-int", SIGINT, 14, 1);

    cu_state_free(&g_ref);
    free(g_train);
    if (!t_fail) {
        char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        cu_run_argv(rm, 60, NULL);
    }
    TEST_MAIN_END();
}
