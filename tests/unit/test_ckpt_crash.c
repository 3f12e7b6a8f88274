/* Crash test of checkpoints + metrics together. A forked child plays the trainer: it resumes from
 * ckpt_find_latest (or starts fresh), opens the metrics (met_open at the checkpoint's step), runs steps whose
 * state update and metric values depend on the restored state, writes a metrics row per step, a val row and
 * samples every 10 steps, a checkpoint every E steps (ckpt_write, ckpt_prune, met_checkpoint), and
 * met_close at the end. The parent SIGKILLs it at 24+ instants: random ones, ones aimed inside ckpt_write and
 * ones aimed inside met_checkpoint; after every kill a new child resumes. While a child runs, the parent (another
 * process) opens metrics.h5 with the HDF5 C API and checks every row in it. At the end metrics.h5 must hold
 * steps 1..N exactly once with the values of an uninterrupted run, the final state must equal that run's bit
 * for bit, and no journal or temporary may be left. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "train/ckpt.h"
#include "train/metrics.h"
#include "test.h"

enum { NSTEPS = 120, EVERY = 5, NW = 1 << 16, KILLS = 24 };

typedef struct trainer {
    float *w, *m, *v;
    ckpt_tensor tp, tm, tv;
    ckpt_state s;
} trainer;

static void trainer_init(trainer *t) {
    memset(t, 0, sizeof *t);
    t->w = malloc(NW * 4);
    t->m = malloc(NW * 4);
    t->v = malloc(NW * 4);
    for (int i = 0; i < NW; i++) {
        t->w[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
        t->m[i] = 0;
        t->v[i] = 0;
    }
    ckpt_tensor base = {"w", "lora", NULL, NW, 2, {256, NW / 256, 0, 0}};
    t->tp = t->tm = t->tv = base;
    t->tp.data = t->w;
    t->tm.data = t->m;
    t->tv.data = t->v;
    t->s.params = &t->tp;
    t->s.adam_m = &t->tm;
    t->s.adam_v = &t->tv;
    t->s.ntensors = 1;
    t->s.job_hash = 0x5eed;
    t->s.job_yaml = "job: crash-test\n";
}

static void trainer_free(trainer *t) {
    free(t->w);
    free(t->m);
    free(t->v);
    free(t->s.loaded_yaml);
}

/* one deterministic "optimiser step"; returns the new loss (depends on the whole state) */
static double step_once(trainer *t, int64_t step) {
    double sum = 0;
    for (int i = 0; i < NW; i++) {
        float g = t->w[i] * 0.01f + (float)((step * 31 + i) % 17) * 1e-4f;
        t->m[i] = 0.9f * t->m[i] + 0.1f * g;
        t->v[i] = 0.999f * t->v[i] + 0.001f * g * g;
        t->w[i] -= 1e-2f * t->m[i] / (sqrtf(t->v[i]) + 1e-8f);
        sum += t->w[i];
    }
    t->s.step = step;
    t->s.adam_step = step;
    t->s.samples_seen = step * 8;
    return sum;
}

static met_train train_row(int64_t step, double loss) {
    met_train r;
    memset(&r, 0, sizeof r);
    r.step = step;
    r.epoch = (double)step / 40.0;
    r.samples = step * 8;
    r.tokens = step * 8192;
    r.loss = loss;
    r.nll_loss = loss * 0.5;
    r.log_odds_ratio = -loss;
    r.lr = 1e-4 * (double)(NSTEPS - step);
    r.grad_norm = loss * loss;
    r.mem_peak = step;
    return r;
}

static void say(int fd, char c) {
    if (fd >= 0 && write(fd, &c, 1) != 1) _exit(90);
}

/* the trainer; 'C' before ckpt_write, 'M' before met_checkpoint, 'm' after it, 'D' once the run is closed "done" */
static int run(const char *dir, int fd) {
    trainer t;
    trainer_init(&t);
    char path[2048];
    int64_t from = -1;
    int rc = ckpt_find_latest(dir, path, sizeof path, &from);
    if (!rc && from >= 0) rc = ckpt_read(path, &t.s);
    if (from < 0) from = 0;
    met_log *m = NULL;
    if (!rc) rc = met_open(dir, from, &m);
    if (!rc) met_set_refresh(m, 0.03);
    if (!rc && met_train_rows(m) != from) rc = err_set(ERR_INTERNAL, "metrics rows %lld at resume step %lld",
                                                      (long long)met_train_rows(m), (long long)from);
    for (int64_t step = from + 1; step <= NSTEPS && !rc; step++) {
        double loss = step_once(&t, step);
        met_train r = train_row(step, loss);
        rc = met_train_row(m, &r);
        if (!rc && step % 10 == 0) {
            met_val v = {step, loss * 2, loss, 0.5, -loss, -2 * loss, 0, 0};
            char ans[64];
            snprintf(ans, sizeof ans, "answer at step %lld: %.6f", (long long)step, loss);
            rc = met_val_row(m, &v);
            if (!rc) rc = met_sample(m, step, "prompt", "chosen", "rejected", ans);
        }
        if (!rc && (step % EVERY == 0 || step == NSTEPS)) {
            t.s.metrics_rows = met_train_rows(m);
            say(fd, 'C');
            rc = ckpt_write(dir, &t.s);
            if (!rc) rc = ckpt_prune(dir, 2);
            say(fd, 'M');
            if (!rc) rc = met_checkpoint(m, step);
            say(fd, 'm');
        }
    }
    if (!rc) rc = met_close(m, "done");
    else met_close(m, "error");
    if (!rc) say(fd, 'D');
    if (rc) fprintf(stderr, "trainer: %s\n", err_msg());
    trainer_free(&t);
    return rc;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static pid_t spawn(const char *dir, int *fd) {
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        log_set_level(LOG_ERROR); /* the expected warnings about damaged/stale files are noise here */
        _exit(run(dir, p[1]) ? 20 : 0);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

/* whether the child said 'D' (its run closed "done"), in the bytes read since the last spawn */
static int said_done;

/* reads the child's bytes until `want` (1) or EOF (0) */
static int wait_for(int fd, char want) {
    char c;
    while (read(fd, &c, 1) == 1) {
        said_done |= c == 'D';
        if (c == want) return 1;
    }
    return 0;
}

typedef struct ref {
    met_train *train;
    int64_t ntrain;
    met_val *val;
    int64_t nval;
    met_sample_row *samp;
    int64_t nsamp;
    float *w;
} ref;

static int same_row(const met_train *a, const met_train *b) {
    met_train x = *a, y = *b;
    x.segment = y.segment = 0;
    return !memcmp(&x, &y, sizeof x);
}

/* metrics.h5 read from this (other) process: rows strictly increasing, each equal to the reference row */
static int check_partial(const char *mpath, const ref *r, int64_t *nrows) {
    met_train *rows = NULL;
    int64_t n = 0;
    if (met_read_train(mpath, &rows, &n)) {
        fprintf(stderr, "reader: %s\n", err_msg());
        return 0;
    }
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i++) {
        int64_t s = rows[i].step;
        ok = s >= 1 && s <= r->ntrain && (i == 0 || s > rows[i - 1].step) && same_row(&rows[i], &r->train[s - 1]);
        if (!ok) fprintf(stderr, "reader: row %lld (step %lld) is wrong\n", (long long)i, (long long)s);
    }
    free(rows);
    *nrows = n;
    return ok;
}

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += prefix ? !strncmp(e->d_name, prefix, strlen(prefix)) : atomic_is_temp(e->d_name);
    if (d) closedir(d);
    return n;
}

static void check_final(const char *dir, const ref *r, int round) {
    char mpath[1100], sub[1100];
    snprintf(mpath, sizeof mpath, "%s/metrics.h5", dir);
    met_train *rows = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(met_read_train(mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, NSTEPS);
    int good = 0;
    for (int64_t i = 0; i < n && i < NSTEPS; i++) good += rows[i].step == i + 1 && same_row(&rows[i], &r->train[i]);
    CHECK_EQ_INT(good, NSTEPS);
    free(rows);
    met_val *val = NULL;
    CHECK_EQ_INT(met_read_val(mpath, &val, &n), ERR_OK);
    CHECK_EQ_INT(n, r->nval);
    for (int64_t i = 0; i < n && i < r->nval; i++) {
        met_val a = val[i], b = r->val[i];
        a.segment = b.segment = 0;
        CHECK(!memcmp(&a, &b, sizeof a));
    }
    free(val);
    met_sample_row *sm = NULL;
    CHECK_EQ_INT(met_read_samples(mpath, &sm, &n), ERR_OK);
    CHECK_EQ_INT(n, r->nsamp);
    for (int64_t i = 0; i < n && i < r->nsamp; i++) {
        CHECK_EQ_INT(sm[i].step, r->samp[i].step);
        CHECK_EQ_STR(sm[i].answer, r->samp[i].answer);
    }
    met_free_samples(sm, n);
    met_segment *sg = NULL;
    CHECK_EQ_INT(met_read_segments(mpath, &sg, &n), ERR_OK);
    /* every segment but the last crashed, except one that had closed "done" at the last step when the kill came
     * (the child on its way out, after met_close: the next child resumes at the end and closes its own) */
    int crashed = 0, done_at_end = 0;
    for (int64_t i = 0; i + 1 < n; i++) {
        crashed += !strcmp(sg[i].reason, "crashed");
        done_at_end += !strcmp(sg[i].reason, "done") && sg[i].end_step == NSTEPS;
    }
    CHECK(n >= 1 && !strcmp(sg[n - 1].reason, "done") && sg[n - 1].end_step == NSTEPS);
    CHECK_EQ_INT(crashed + done_at_end, n - 1);
    printf("round %d: metrics.h5 holds steps 1..%d once each, %lld segments (%d crashed)\n", round, NSTEPS,
           (long long)n, crashed);
    free(sg);
    /* the final state, bit for bit */
    trainer t;
    trainer_init(&t);
    char path[2048];
    int64_t step = -1;
    CHECK_EQ_INT(ckpt_find_latest(dir, path, sizeof path, &step), ERR_OK);
    CHECK_EQ_INT(step, NSTEPS);
    CHECK_EQ_INT(ckpt_read(path, &t.s), ERR_OK);
    CHECK(!memcmp(t.w, r->w, NW * 4));
    CHECK_EQ_INT(t.s.metrics_rows, NSTEPS);
    trainer_free(&t);
    snprintf(sub, sizeof sub, "%s/metrics", dir);
    CHECK_EQ_INT(count_files(sub, "seg-"), 0);
    CHECK_EQ_INT(count_files(sub, NULL), 0);
    CHECK_EQ_INT(count_files(dir, NULL), 0);
    snprintf(sub, sizeof sub, "%s/checkpoints", dir);
    CHECK_EQ_INT(count_files(sub, NULL), 0);
    CHECK_EQ_INT(count_files(sub, "step-"), 2);
}

int main(void) {
    const char *root = test_tmpdir();
    char refdir[1024], mpath[1100];
    snprintf(refdir, sizeof refdir, "%s/reference", root);
    fs_mkdirs(refdir);

    /* the uninterrupted run, and how long its phases take */
    int fd = -1, st = 0;
    double t0 = now(), tc = 0, tm = 0, sum_c = 0, sum_m = 0;
    int nc = 0;
    pid_t pid = spawn(refdir, &fd);
    char c;
    while (read(fd, &c, 1) == 1) {
        double t = now();
        if (c == 'C') tc = t;
        if (c == 'M') sum_c += t - tc, tm = t;
        if (c == 'm') sum_m += t - tm, nc++;
    }
    close(fd);
    waitpid(pid, &st, 0);
    double total = now() - t0;
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    double dc = nc ? sum_c / nc : 0.01, dm = nc ? sum_m / nc : 0.01;
    printf("uninterrupted run: %d steps in %.2f s; ckpt_write+prune %.1f ms, met_checkpoint %.1f ms\n", NSTEPS, total,
           dc * 1e3, dm * 1e3);
    ref r;
    memset(&r, 0, sizeof r);
    snprintf(mpath, sizeof mpath, "%s/metrics.h5", refdir);
    CHECK_EQ_INT(met_read_train(mpath, &r.train, &r.ntrain), ERR_OK);
    CHECK_EQ_INT(r.ntrain, NSTEPS);
    CHECK_EQ_INT(met_read_val(mpath, &r.val, &r.nval), ERR_OK);
    CHECK_EQ_INT(met_read_samples(mpath, &r.samp, &r.nsamp), ERR_OK);
    CHECK_EQ_INT(r.nval, NSTEPS / 10);
    CHECK_EQ_INT(r.nsamp, NSTEPS / 10);
    {
        trainer t;
        trainer_init(&t);
        char path[2048];
        int64_t step = -1;
        CHECK_EQ_INT(ckpt_find_latest(refdir, path, sizeof path, &step), ERR_OK);
        CHECK_EQ_INT(step, NSTEPS);
        CHECK_EQ_INT(ckpt_read(path, &t.s), ERR_OK);
        r.w = t.w;
        t.w = NULL;
        trainer_free(&t);
    }
    if (r.ntrain != NSTEPS) TEST_MAIN_END();

    /* crash rounds: kill, resume, ... until the run completes; then check; until KILLS kills in all */
    uint32_t seed = 12345;
    int kills = 0, kill_ckpt = 0, kill_met = 0, reads = 0, reads_ok = 0, round = 0;
    while (kills < KILLS && round < 10) {
        char dir[1100];
        snprintf(dir, sizeof dir, "%s/crash%d", root, round);
        fs_mkdirs(dir);
        snprintf(mpath, sizeof mpath, "%s/metrics.h5", dir);
        int finished = 0;
        for (int trial = 0; !finished && kills < KILLS && trial < 200; trial++) {
            seed = seed * 1103515245u + 12345u;
            double u = (double)(seed >> 8) / (double)(1u << 24);
            int mode = trial % 3;
            pid = spawn(dir, &fd);
            said_done = 0;
            int aimed = 0;
            if (mode == 0) {
                sleep_s(u * total * 0.12);
            } else if (wait_for(fd, mode == 1 ? 'C' : 'M')) {
                sleep_s(u * (mode == 1 ? dc : dm) * 1.1);
                aimed = mode;
            }
            /* another process reads metrics.h5 while the writer is active */
            if (fs_exists(mpath)) {
                int64_t nr = 0;
                reads++;
                reads_ok += check_partial(mpath, &r, &nr);
            }
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            /* a kill that lands after the run closed its metrics "done" (the child on its way out) ends the round
             * like a clean exit: that segment is the run's last, not a crashed one */
            while (read(fd, &c, 1) == 1) said_done |= c == 'D';
            int closed = said_done;
            close(fd);
            if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && !closed) {
                kills++;
                kill_ckpt += aimed == 1;
                kill_met += aimed == 2;
                /* after a kill: metrics.h5 still opens and holds only right rows */
                if (fs_exists(mpath)) {
                    int64_t nr = 0;
                    reads++;
                    reads_ok += check_partial(mpath, &r, &nr);
                }
            } else {
                CHECK(closed || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
                finished = 1;
            }
        }
        if (!finished) { /* the last resume runs to the end */
            pid = spawn(dir, &fd);
            while (read(fd, &c, 1) == 1) {
            }
            close(fd);
            waitpid(pid, &st, 0);
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        check_final(dir, &r, round);
        round++;
    }
    printf("%d kills (%d inside ckpt_write, %d inside met_checkpoint), metrics.h5 read by another process %d times, "
           "%d complete and right\n", kills, kill_ckpt, kill_met, reads, reads_ok);
    CHECK(kills >= KILLS);
    CHECK(kill_ckpt >= 4 && kill_met >= 4);
    CHECK_EQ_INT(reads_ok, reads);
    free(r.train);
    free(r.val);
    met_free_samples(r.samp, r.nsamp);
    free(r.w);
    TEST_MAIN_END();
}
