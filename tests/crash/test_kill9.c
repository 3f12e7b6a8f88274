/* kill -9 at any instant loses at most the steps since the last checkpoint, never a checkpoint or a metrics row,
 * and the resumed run is bit-identical to an uninterrupted one (DESIGN.md "Job lifecycle and signals", issue 6).
 *
 * The demo job (tests/crash/job.yaml.in: 30 steps crossing an epoch, a checkpoint every 3 steps, validation every
 * 10, LoRA dropout on) is first run uninterrupted with `orpo-hpc train` (the reference). Then, in fresh output
 * directories ("rounds"), `orpo-hpc resume` is started and SIGKILLed again and again, until a resume exits 0:
 *   - at a random instant anywhere in the run (0.02 s .. the reference's whole wall time);
 *   - right after a "checkpoint step N written" line;
 *   - aimed inside a checkpoint: 0 .. 1.5x the reference's checkpoint time after the log line of a checkpoint step
 *     (the window of ckpt_write and met_checkpoint, which rebuilds metrics.h5);
 *   - aimed at the end of a step, where the metrics journal is rewritten.
 * After every kill: every step-*.h5 left verifies, the newest never goes back, metrics.h5 reads and each row in
 * it equals the reference's row of its step; the next resume says it resumes from that newest checkpoint.
 * Temporaries left by a kill (a checkpoint's or a metrics file's) are counted: at least one of each is required,
 * so the kills did land inside those writes. At the end of each round: the final checkpoint's tensors and
 * deterministic scalars equal the reference's bit for bit; metrics.h5's train table holds steps 1..30 exactly
 * once, equal to the reference in every column but step_time, tokens_per_s, mem_peak and segment; val rows and
 * samples equal too; the last segment is `done` and the others `crashed`; no temporary or journal is left.
 * CRASH_SEED=N reruns a sequence; CRASH_KILLS=N changes the minimum number of kills (default 24). */
#include "test.h"
#include "crash_util.h"

enum { NSTEPS = 30, EVERY = 3 };

typedef struct ref_run {
    cu_state st;
    met_train *train;
    met_val *val;
    met_sample_row *samples;
    int64_t ntrain, nval, nsamples;
    double wall, ckpt_s, step_s;
} ref_run;

/* ---- line matchers ---- */

typedef struct want {
    int kind;  /* 0 "checkpoint step N written", 1 "step N/" with N % EVERY == 0 and no validation, 2 any "step N/" */
    int count; /* match the count-th such line */
    int seen;
} want;

static int step_of_line(const char *line, long long *n) {
    const char *p = strstr(line, ": step ");
    return p && sscanf(p, ": step %lld/", n) == 1;
}

static int match_want(const char *line, void *ctx) {
    want *w = ctx;
    long long n;
    int hit = 0;
    if (w->kind == 0) hit = strstr(line, "checkpoint step ") && strstr(line, " written");
    else if (w->kind == 1) hit = step_of_line(line, &n) && n % EVERY == 0 && n % 10 != 0;
    else hit = step_of_line(line, &n) && n < NSTEPS;
    return hit && ++w->seen == w->count;
}

/* ---- checks after a kill ---- */

static int check_after_kill(const ref_run *ref, const char *out, int64_t *newest, const char *what) {
    int bad = 0;
    int64_t steps[64];
    int n = cu_ckpt_steps(out, steps, 64);
    for (int i = 0; i < n; i++) {
        char p[1300];
        int64_t s = -1;
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)steps[i]);
        if (ckpt_verify(p, &s) || s != steps[i]) {
            fprintf(stderr, "%s: %s does not verify: %s\n", what, p, err_msg());
            bad++;
        }
    }
    int64_t nw = n ? steps[n - 1] : -1;
    if (nw < *newest) {
        fprintf(stderr, "%s: newest checkpoint went back from %lld to %lld\n", what, (long long)*newest, (long long)nw);
        bad++;
    }
    *newest = nw;
    char mp[1300];
    snprintf(mp, sizeof mp, "%s/metrics.h5", out);
    if (access(mp, F_OK) == 0) {
        met_train *rows = NULL;
        int64_t nr = 0;
        if (met_read_train(mp, &rows, &nr)) {
            fprintf(stderr, "%s: metrics.h5 unreadable: %s\n", what, err_msg());
            bad++;
        } else {
            bad += cu_train_diff(ref->train, ref->ntrain, rows, nr, what);
        }
        free(rows);
    }
    return bad;
}

/* the resume log says it resumed from the newest checkpoint (or nothing when there was none) */
static int check_resume_line(const char *log, int64_t newest, const char *what) {
    const char *p = strstr(log, "resuming from ");
    if (!strstr(log, "resuming crash at step") && !p) return 0; /* killed before it got that far */
    if (newest < 0) {
        if (p) fprintf(stderr, "%s: resumed although there was no checkpoint: %.200s\n", what, p);
        return p != NULL;
    }
    char want_s[128];
    snprintf(want_s, sizeof want_s, "step-%08lld.h5 (step %lld,", (long long)newest, (long long)newest);
    if (!p || !strstr(p, want_s)) {
        fprintf(stderr, "%s: expected to resume from checkpoint %lld, log:\n%s\n", what, (long long)newest, log);
        return 1;
    }
    return 0;
}

static double seconds_after(const char *log, const char *key) {
    double worst = 0;
    for (const char *p = log; (p = strstr(p, key)) != NULL; p += strlen(key)) {
        double v = 0;
        if (sscanf(p + strlen(key), "%lf", &v) == 1 && v > worst) worst = v;
    }
    return worst;
}

/* ---- final comparison of a round ---- */

/* segments: at least the runs that logged "resuming crash at step" (after met_open), at most those that got
 * through the set-up (a kill between met_open and that log line leaves a segment unlogged) */
static void check_round_end(const ref_run *ref, const char *out, int min_segments, int max_segments, int64_t last_start,
                            int *at_end) {
    char p[1300], what[1400];
    snprintf(what, sizeof what, "%s (final)", out);
    cu_state st;
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, NSTEPS);
    int rc = cu_state_load(p, &st);
    if (rc) fprintf(stderr, "%s: %s\n", what, err_msg());
    CHECK_EQ_INT(rc, 0);
    if (!rc) CHECK_EQ_INT(cu_state_diff(&ref->st, &st, what), 0);
    cu_state_free(&st);

    snprintf(p, sizeof p, "%s/metrics.h5", out);
    met_train *tr = NULL;
    met_val *va = NULL;
    met_sample_row *sa = NULL;
    met_segment *sg = NULL;
    int64_t ntr = 0, nva = 0, nsa = 0, nsg = 0;
    CHECK_EQ_INT(met_read_train(p, &tr, &ntr), 0);
    CHECK_EQ_INT(ntr, NSTEPS);
    CHECK_EQ_INT(cu_train_diff(ref->train, ref->ntrain, tr, ntr, what), 0);
    CHECK_EQ_INT(met_read_val(p, &va, &nva), 0);
    CHECK_EQ_INT(cu_val_diff(ref->val, ref->nval, va, nva, what), 0);
    CHECK_EQ_INT(met_read_samples(p, &sa, &nsa), 0);
    CHECK_EQ_INT(cu_samples_diff(ref->samples, ref->nsamples, sa, nsa, what), 0);
    CHECK_EQ_INT(met_read_segments(p, &sg, &nsg), 0);
    CHECK(nsg >= min_segments && nsg <= max_segments);
    if (nsg < min_segments || nsg > max_segments)
        fprintf(stderr, "%s: %lld segments, expected %d..%d\n", what, (long long)nsg, min_segments, max_segments);
    for (int64_t i = 0; i < nsg; i++) {
        CHECK_EQ_INT(sg[i].segment, i + 1);
        /* an earlier segment is `crashed`, or `done` when the kill came after its met_close (it ended at the end) */
        if (i + 1 == nsg) CHECK_EQ_STR(sg[i].reason, "done");
        else if (strcmp(sg[i].reason, "crashed")) {
            CHECK_EQ_STR(sg[i].reason, "done");
            CHECK_EQ_INT(sg[i].end_step, NSTEPS);
        }
    }
    if (nsg > 0) {
        CHECK_EQ_INT(sg[nsg - 1].start_step, last_start);
        CHECK_EQ_INT(sg[nsg - 1].end_step, NSTEPS);
        /* a segment that resumed from the final checkpoint (the kill came after it) writes no checkpoint */
        if (last_start == NSTEPS) CHECK(sg[nsg - 1].checkpoint_step == -1 || sg[nsg - 1].checkpoint_step == NSTEPS);
        else CHECK_EQ_INT(sg[nsg - 1].checkpoint_step, NSTEPS);
    }
    free(tr);
    free(va);
    met_free_samples(sa, nsa);
    free(sg);

    /* keep_last 2, also when the last resume had nothing to do after a kill between the final checkpoint and its
     * pruning (resume prunes at start) */
    int64_t steps[64];
    int n = cu_ckpt_steps(out, steps, 64);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(steps[0], NSTEPS - EVERY);
        CHECK_EQ_INT(steps[1], NSTEPS);
    }
    if (last_start == NSTEPS) ++*at_end;
    int nck, nmet;
    cu_temps(out, &nck, &nmet);
    CHECK_EQ_INT(nck + nmet, 0);
    snprintf(p, sizeof p, "%s/metrics", out);
    DIR *d = opendir(p);
    int journals = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, "seg-", 4)) journals++;
    if (d) closedir(d);
    CHECK_EQ_INT(journals, 0);
}

int main(void) {
    const char *dir = test_tmpdir();
    cu_seed();
    const char *ke = getenv("CRASH_KILLS");
    int min_kills = ke && atoi(ke) > 0 ? atoi(ke) : 24;
    double t_begin = cu_now();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);

    /* the reference: one uninterrupted `train` */
    ref_run ref;
    memset(&ref, 0, sizeof ref);
    char out[1200], *log = NULL;
    snprintf(out, sizeof out, "%s/ref", dir);
    double t0 = cu_now();
    int rc = cu_job_run(&log, dir, "train", out, NULL);
    ref.wall = cu_now() - t0;
    if (rc) fprintf(stderr, "reference run failed (%d):\n%s\n", rc, log);
    CHECK_EQ_INT(rc, 0);
    ref.ckpt_s = seconds_after(log, " written in ");
    if (ref.ckpt_s < 0.005) ref.ckpt_s = 0.005;
    ref.step_s = ref.wall / NSTEPS;
    free(log);
    char p[1300];
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, NSTEPS);
    CHECK_EQ_INT(cu_state_load(p, &ref.st), 0);
    CHECK_EQ_INT(ref.st.s.step, NSTEPS);
    snprintf(p, sizeof p, "%s/metrics.h5", out);
    CHECK_EQ_INT(met_read_train(p, &ref.train, &ref.ntrain), 0);
    CHECK_EQ_INT(met_read_val(p, &ref.val, &ref.nval), 0);
    CHECK_EQ_INT(met_read_samples(p, &ref.samples, &ref.nsamples), 0);
    CHECK_EQ_INT(ref.ntrain, NSTEPS);
    CHECK_EQ_INT(ref.nval, 4); /* before the first step, at 10, 20, 30 */
    for (int64_t i = 0; i < ref.ntrain; i++) CHECK_EQ_INT(ref.train[i].step, i + 1);
    printf("reference: %d steps in %.2f s wall (checkpoint %.3f s)\n", NSTEPS, ref.wall, ref.ckpt_s);
    if (t_fail) TEST_MAIN_END();

    /* rounds of kill -9 + resume */
    static const char *mode_name[4] = {"random instant", "after 'checkpoint written'", "inside a checkpoint",
                                       "at a step's end"};
    int kills = 0, by_mode[4] = {0}, left_ck = 0, left_met = 0, rounds = 0, resumes = 0, at_end = 0;
    double t_kill0 = cu_now();
    int extra = 0; /* kills aimed at a missing kind of temporary after the minimum */
#define WANT_MORE (kills < min_kills || ((left_ck == 0 || left_met == 0) && extra < 60))
    while (WANT_MORE && rounds < 40) {
        snprintf(out, sizeof out, "%s/crash-%d", dir, rounds);
        int64_t newest = -1, last_start = 0;
        int with_segment = 0, past_setup = 0, done = 0;
        for (int attempt = 0; !done && attempt < 200; attempt++) {
            /* after the minimum, aim only at the writes still missing; then let the round finish */
            int mode = kills % 4;
            if (!WANT_MORE) mode = -1;
            else if (kills >= min_kills) mode = left_ck == 0 ? 2 : 3, extra++;
            cu_child c;
            CHECK_EQ_INT(cu_job(&c, dir, "resume", out, NULL), 0);
            resumes++;
            double deadline = c.t0 + 60 + 20 * ref.wall;
            int r;
            if (mode == -1) {
                r = cu_pump(&c, deadline, NULL, NULL);
            } else if (mode == 0) {
                r = cu_pump(&c, c.t0 + cu_uniform(0.02, ref.wall), NULL, NULL);
            } else {
                want w = {mode == 1 ? 0 : mode == 2 ? 1 : 2, 1 + (int)(cu_rand() % 2), 0};
                r = cu_pump(&c, deadline, match_want, &w);
                if (r == 1) {
                    if (mode == 2) cu_sleep(cu_uniform(0, 1.5 * ref.ckpt_s));
                    if (mode == 3) cu_sleep(cu_uniform(0.6, 1.1) * ref.step_s);
                }
            }
            if (r != -1) kill(c.pid, SIGKILL);
            int st = cu_reap(&c);
            char what[1400];
            snprintf(what, sizeof what, "%s resume %d (%s)", out, attempt + 1, mode < 0 ? "not killed" : mode_name[mode]);
            if (check_resume_line(c.out, newest, what)) CHECK(0);
            if (strstr(c.out, "orpo-hpc: trainable: ")) past_setup++;
            if (strstr(c.out, "resuming crash at step")) {
                with_segment++;
                last_start = newest < 0 ? 0 : newest;
            }
            if (st == 0) {
                done = 1;
            } else if (st == 128 + SIGKILL && mode >= 0) {
                kills++;
                by_mode[mode]++;
                int nck, nmet;
                cu_temps(out, &nck, &nmet);
                left_ck += nck > 0;
                left_met += nmet > 0;
                int bad = check_after_kill(&ref, out, &newest, what);
                CHECK_EQ_INT(bad, 0);
            } else {
                fprintf(stderr, "%s: exit %d, log:\n%s\n", what, st, c.out);
                CHECK(0);
                cu_free(&c);
                break;
            }
            cu_free(&c);
        }
        CHECK(done);
        if (!done) break;
        check_round_end(&ref, out, with_segment, past_setup, last_start, &at_end);
        rounds++;
        if (t_fail) break;
    }
    printf("%d kills in %d rounds (%d resumes, %.1f s): %d at random instants, %d right after a checkpoint line, %d "
           "aimed inside a checkpoint, %d at a step's end; %d left a checkpoint temporary, %d a metrics temporary\n",
           kills, rounds, resumes, cu_now() - t_kill0, by_mode[0], by_mode[1], by_mode[2], by_mode[3], left_ck, left_met);
    if (at_end) printf("%d rounds ended with a resume from the final checkpoint (killed after it)\n", at_end);
    CHECK(kills >= min_kills);
    CHECK(left_ck > 0);
    CHECK(left_met > 0);
    cu_state_free(&ref.st);
    free(ref.train);
    free(ref.val);
    met_free_samples(ref.samples, ref.nsamples);
    printf("total %.1f s\n", cu_now() - t_begin);
    if (!t_fail) {
        char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        cu_run_argv(rm, 60, NULL);
    }
    TEST_MAIN_END();
}
