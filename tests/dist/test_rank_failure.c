/* A rank that dies or hangs never hangs the others (issue 13, docs/parallel.md): with runtime.dist_timeout_s 10,
 *  - SIGSTOP to rank 1 (it hangs): rank 0 names it ("rank 1 did not answer within 10 s") and the job ends with
 *    exit 4 well before any test deadline;
 *  - SIGSTOP to rank 0: rank 1 names rank 0 the same way;
 *  - SIGKILL to rank 1 (it dies): the job ends non-zero, naming rank 1;
 * each time every process of the job is gone afterwards, no temporary is left in checkpoints/ and every checkpoint
 * there verifies; after the first, a resume (what Slurm's requeue runs) continues from the newest one. */
#include "test.h"
#include "dist/dist_util.h"

static int match_step2(const char *line, void *ctx) {
    (void)ctx;
    return strstr(line, "step 4/") != NULL; /* after the checkpoint of step 3 */
}

/* 1 while pid is a live process (a zombie counts as gone) */
static int alive(long pid) {
    if (pid <= 0 || kill((pid_t)pid, 0) != 0) return 0;
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%ld/stat", pid);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static void scenario(const char *dir, const char *name, int victim, int sig, int want_rc, const char *want, int resume) {
    char out[1200];
    snprintf(out, sizeof out, "%s/%s", dir, name);
    setenv("ORPO_LOG_ALL_RANKS", "1", 1);
    cu_child c;
    CHECK_EQ_INT(du_spawn(&c, 2, dir, "train", out, "--set", "train.grad_accum=2", "--set", "train.max_steps=40",
                          "--set", "runtime.dist_timeout_s=10", NULL),
                 0);
    unsetenv("ORPO_LOG_ALL_RANKS");
    int got = cu_pump(&c, cu_now() + 300, match_step2, NULL);
    long pid[2] = {du_pid_of_rank(c.out, 0), du_pid_of_rank(c.out, 1)};
    CHECK(got == 1 && pid[0] > 0 && pid[1] > 0);
    double t0 = cu_now();
    if (got == 1 && pid[victim] > 0) kill((pid_t)pid[victim], sig);
    /* the deadline of this test only catches a hang: 10 s timeout + rank 1's grace + slow machines */
    int r = cu_pump(&c, cu_now() + 180, NULL, NULL);
    if (r == 0) {
        fprintf(stderr, "%s: the job still runs 180 s after the signal: it hangs\n", name);
        CHECK(0);
        kill(c.pid, SIGKILL);
    }
    char *log = NULL;
    int rc = du_finish(&c, &log);
    double dt = cu_now() - t0;
    if (want_rc >= 0) CHECK_EQ_INT(rc, want_rc);
    else CHECK(rc != 0);
    CHECK_CONTAINS(log, want);
    /* every process of the job is gone (a stopped one too); else clean up and fail */
    for (int k = 0; k < 2; k++) {
        double t = cu_now();
        while (alive(pid[k]) && cu_now() - t < 20) cu_sleep(0.2);
        if (alive(pid[k])) {
            fprintf(stderr, "%s: rank %d (pid %ld) is still there after the job ended\n", name, k, pid[k]);
            CHECK(0);
            kill((pid_t)pid[k], SIGKILL);
        }
    }
    int nck = 0, nmet = 0;
    cu_temps(out, &nck, &nmet);
    CHECK_EQ_INT(nck, 0);
    int64_t steps[64];
    int n = cu_ckpt_steps(out, steps, 64);
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        char p[1300];
        int64_t s = -1;
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)steps[i]);
        CHECK_EQ_INT(ckpt_verify(p, &s), 0);
        CHECK_EQ_INT(s, steps[i]);
    }
    printf("%s: signal %d to rank %d: exit %d after %.1f s; %d checkpoints (newest step %lld), all verify, "
           "%d temporaries\n", name, sig, victim, rc, dt, n, n ? (long long)steps[n - 1] : -1LL, nck);
    if (t_fail) fprintf(stderr, "---- %s log:\n%s\n", name, log ? log : "");
    free(log);
    /* the requeued job: resume continues from the newest checkpoint */
    if (resume && n > 0) {
        char want_from[1400];
        snprintf(want_from, sizeof want_from, "resuming from %s/checkpoints/step-%08lld.h5", out, (long long)steps[n - 1]);
        rc = du_run(&log, 2, dir, "resume", out, "--set", "train.grad_accum=2", "--set", "train.max_steps=8", NULL);
        CHECK_EQ_INT(rc, 0);
        CHECK_CONTAINS(log, want_from);
        CHECK_CONTAINS(log, "done at step 8");
        if (rc) fprintf(stderr, "%s: resume: exit %d\n%s\n", name, rc, log ? log : "");
        printf("%s: resume: exit %d\n", name, rc);
        free(log);
    }
}

int main(void) {
    const char *dir = du_start();
    scenario(dir, "stop1", 1, SIGSTOP, 4, "orpo-hpc: error: rank 1 did not answer within 10 s", 1);
    scenario(dir, "stop0", 0, SIGSTOP, 4, "orpo-hpc[rank 1]: error: rank 0 did not answer within 10 s", 0);
    scenario(dir, "kill1", 1, SIGKILL, -1, "rank 1", 0);
    if (!t_fail) {
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    }
    TEST_MAIN_END();
}
