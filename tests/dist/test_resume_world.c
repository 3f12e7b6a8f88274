/* Resume with another world size (issue 13, docs/parallel.md): the state is the same on every rank and the data
 * cursor counts pairs, so a run trained by 2 ranks (grad_accum 2), resumed by 1 process (grad_accum 4) and then by
 * 4 ranks (grad_accum 1) ends with the same checkpoint and metrics as one uninterrupted process (grad_accum 4).
 * A resume whose ranks x grad_accum differs from the frozen job's is refused (exit 2, naming train.grad_accum).
 * A signal to one rank (SIGUSR1 to rank 1) checkpoints them all at the same step and exits 75; resuming from that
 * checkpoint gives the uninterrupted result too. */
#include "test.h"
#include "dist/dist_util.h"

enum { NSTEPS = 9 };

static int match_step2(const char *line, void *ctx) {
    (void)ctx;
    return strstr(line, "step 2/") != NULL;
}

static void piece(int np, const char *dir, const char *verb, const char *out, const char *accum, const char *steps,
                  int end) {
    char *log = du_run_done(np, dir, verb, out, accum, steps, end);
    printf("%s np %d %s: done at step %d\n", verb, np, accum, end);
    free(log);
}

int main(void) {
    const char *dir = du_start();
    char ref[1200], out[1200], sig[1200], p[1300];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(out, sizeof out, "%s/pieces", dir);
    snprintf(sig, sizeof sig, "%s/signal", dir);
    piece(0, dir, "train", ref, "train.grad_accum=4", NULL, NSTEPS);

    /* 2 ranks -> 1 process -> 4 ranks; always 4 micro-batches of 3 pairs per step */
    piece(2, dir, "train", out, "train.grad_accum=2", "train.max_steps=3", 3);
    piece(0, dir, "resume", out, "train.grad_accum=4", "train.max_steps=6", 6);

    /* refused: 2 ranks x grad_accum 1 is another run than the frozen 4 micro-batches per step; nothing changes */
    char *log = NULL;
    snprintf(p, sizeof p, "%s/checkpoints/step-00000006.h5", out);
    char *before = cu_slurp(p);
    int rc = du_run(&log, 2, dir, "resume", out, "--set", "train.grad_accum=1", NULL);
    CHECK(rc == 2);
    CHECK_CONTAINS(log, "train.grad_accum: 4 then, 2 now");
    CHECK_CONTAINS(log, "ranks x train.grad_accum");
    char *after = cu_slurp(p);
    CHECK(before && after && !strcmp(before, after));
    if (rc != 2) fprintf(stderr, "resume np 2 grad_accum 1: exit %d, expected 2:\n%s\n", rc, log ? log : "");
    printf("resume np 2 grad_accum 1 (2 micro-batches per step, frozen: 4): exit %d (refused)\n", rc);
    free(log);
    free(before);
    free(after);

    piece(4, dir, "resume", out, "train.grad_accum=1", NULL, NSTEPS); /* crosses the epoch's short last step */
    CHECK_EQ_INT(du_compare(ref, out, NSTEPS, 4, 1, "2 -> 1 -> 4 ranks vs 1 uninterrupted process"), 0);

    /* SIGUSR1 to rank 1 only: both ranks checkpoint the same step, exit 75 */
    setenv("ORPO_LOG_ALL_RANKS", "1", 1);
    cu_child c;
    CHECK_EQ_INT(du_spawn(&c, 2, dir, "train", sig, "--set", "train.grad_accum=2", NULL), 0);
    int got = cu_pump(&c, cu_now() + 300, match_step2, NULL);
    long pid1 = du_pid_of_rank(c.out, 1);
    CHECK(got == 1 && pid1 > 0);
    if (got == 1 && pid1 > 0) kill((pid_t)pid1, SIGUSR1);
    rc = du_finish(&c, &log);
    unsetenv("ORPO_LOG_ALL_RANKS");
    CHECK_EQ_INT(rc, 75);
    CHECK_CONTAINS(log, "orpo-hpc[rank 1]: warning: signal 10: checkpointing at step");
    CHECK_CONTAINS(log, "orpo-hpc: warning: signal 10: checkpointing at step");
    int64_t steps[16];
    int n = cu_ckpt_steps(sig, steps, 16);
    CHECK(n > 0 && steps[n - 1] >= 2 && steps[n - 1] < NSTEPS);
    if (n > 0) {
        char want[96];
        snprintf(want, sizeof want, "signal 10: checkpointing at step %lld", (long long)steps[n - 1]);
        CHECK_CONTAINS(log, want);
        printf("SIGUSR1 to rank 1 (pid %ld): exit %d, both ranks checkpointed step %lld\n", pid1, rc,
               (long long)steps[n - 1]);
    }
    if (rc != 75) fprintf(stderr, "%s\n", log ? log : "");
    free(log);
    piece(2, dir, "resume", sig, "train.grad_accum=2", NULL, NSTEPS);
    CHECK_EQ_INT(du_compare(ref, sig, NSTEPS, 2, 1, "2 ranks stopped by SIGUSR1 to rank 1, resumed, vs uninterrupted"), 0);

    if (!t_fail) {
        char cmd[1300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    }
    TEST_MAIN_END();
}
