/* crash_util — what the crash tests (tests/crash/test_*.c) share: running `orpo-hpc` as a child process and
 * watching its log line by line, the demo set-up, and bit-exact comparisons of checkpoints and metrics tables.
 * Header-only (static functions); include it after test.h.
 *
 *   cu_now()                                  monotonic seconds
 *   cu_rand() / cu_uniform(a, b)              xorshift64* (seed: cu_seed(), from $CRASH_SEED or the clock; printed)
 *   cu_slurp(path)                            whole file, malloc'ed and NUL-terminated (NULL when missing)
 *   cu_spawn(&c, argv)                        start a command; stdout+stderr come back through a pipe into c.out;
 *                                             with cu_child_fsize >= 0 the child runs under RLIMIT_FSIZE of that
 *                                             many bytes and ignores SIGXFSZ, so its writes fail with EFBIG
 *   cu_pump(&c, deadline, match, ctx)         read lines until match(line, ctx) (1), the deadline (0) or EOF (-1)
 *   cu_reap(&c)                               read to EOF, wait: the exit code, or 128+signal; frees nothing
 *   cu_free(&c)                               free c.out
 *   cu_setup(dir)                             dir/D (make-demo, import-model, import-data), dir/job.yaml from
 *                                             tests/crash/job.yaml.in
 *   cu_job(&c, dir, verb, out, extra...)      spawn `orpo-hpc VERB dir/job.yaml --set job.output_dir=OUT extra...`
 *   cu_job_run(dir, verb, out, extra...)      the same, run to the end (ORPO_LOG=info); exit code; log in *log
 *   cu_ckpt_steps(out, steps, cap)            steps of OUT/checkpoints/step-*.h5, ascending; returns how many
 *   cu_temps(out, &nck, &nmet)                temporaries left in OUT/checkpoints and OUT, OUT/metrics
 *   cu_state_load(path, &st) / cu_state_free  a checkpoint through ckpt_read; tensor names/shapes from the file
 *   cu_state_diff(a, b, what)                 0 when tensors and deterministic scalars are bit-identical
 *   cu_train_diff(ref, nref, got, ngot, what) got = steps 1..ngot, each equal to ref's row in every
 *                                             deterministic column (all but step_time, tokens_per_s, mem_peak,
 *                                             segment); 0 when so
 *   cu_val_diff / cu_samples_diff             the same for the val and samples tables (all but segment)
 *   cu_load_run(out, nsteps, &st, &tr, &n)    OUT's checkpoint of step nsteps and its metrics train table (the reference)
 *   cu_compare_run(ref, rt, nrt, out, nsteps, what)  OUT's final checkpoint and train table (exactly nsteps rows)
 *                                             against the reference; 0 when bit-identical
 */
#ifndef ORPO_CRASH_UTIL_H
#define ORPO_CRASH_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/err.h"
#include "io/h5x.h"
#include "train/ckpt.h"
#include "train/metrics.h"

static inline double cu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline void cu_sleep(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- random numbers -------------------------------------------------------------------------------- */

static uint64_t cu_rng_state = 0x9e3779b97f4a7c15ull;

static inline uint64_t cu_seed(void) {
    const char *e = getenv("CRASH_SEED");
    uint64_t s = e && *e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
    cu_rng_state = s ? s : 1;
    printf("random seed %llu (rerun with CRASH_SEED=%llu)\n", (unsigned long long)s, (unsigned long long)s);
    return s;
}

static inline uint64_t cu_rand(void) {
    uint64_t x = cu_rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    cu_rng_state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline double cu_uniform(double a, double b) { return a + (b - a) * (double)(cu_rand() >> 11) * (1.0 / 9007199254740992.0); }

/* ---- files ---------------------------------------------------------------------------------------- */

static inline char *cu_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while ((k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n < 2) b = realloc(b, cap *= 2);
    }
    fclose(f);
    b[n] = 0;
    return b;
}

static inline const char *cu_bin(void) {
    const char *b = getenv("ORPO_BIN");
    if (!b || !*b) {
        fprintf(stderr, "ORPO_BIN is not set (run through ctest)\n");
        exit(77);
    }
    return b;
}

/* ---- child processes ------------------------------------------------------------------------------ */

typedef struct cu_child {
    pid_t pid;
    int fd;        /* read end of the child's stdout+stderr, -1 at EOF */
    char *out;     /* everything read so far, NUL-terminated */
    size_t len, cap, scan; /* scan: start of the first line not yet given to a matcher */
    double t0;     /* start time */
} cu_child;

static int64_t cu_child_fsize = -1;

static inline int cu_spawn(cu_child *c, char *const argv[]) {
    memset(c, 0, sizeof *c);
    int p[2];
    if (pipe(p)) return -1;
    fflush(stdout);
    fflush(stderr);
    c->t0 = cu_now();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        if (cu_child_fsize >= 0) {
            struct rlimit rl = {(rlim_t)cu_child_fsize, (rlim_t)cu_child_fsize};
            signal(SIGXFSZ, SIG_IGN);
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(126);
        }
        execv(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    close(p[1]);
    c->pid = pid;
    c->fd = p[0];
    c->cap = 1 << 16;
    c->out = malloc(c->cap);
    c->out[0] = 0;
    return 0;
}

/* one read (waiting at most `wait_s`); 0 data or nothing yet, -1 EOF */
static inline int cu_read_some(cu_child *c, double wait_s) {
    if (c->fd < 0) return -1;
    struct pollfd pf = {c->fd, POLLIN, 0};
    int ms = wait_s <= 0 ? 0 : (int)(wait_s * 1000.0) + 1;
    int r = poll(&pf, 1, ms);
    if (r <= 0) return 0;
    char tmp[8192];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) return 0;
    if (n <= 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (c->len + (size_t)n + 1 > c->cap) {
        while (c->len + (size_t)n + 1 > c->cap) c->cap *= 2;
        c->out = realloc(c->out, c->cap);
    }
    memcpy(c->out + c->len, tmp, (size_t)n);
    c->len += (size_t)n;
    c->out[c->len] = 0;
    return 0;
}

typedef int (*cu_match_fn)(const char *line, void *ctx);

/* 1: match(line) was true for a new complete line; 0: deadline (absolute cu_now() time); -1: EOF */
static inline int cu_pump(cu_child *c, double deadline, cu_match_fn match, void *ctx) {
    int polled = 0; /* a deadline already past still reads what is there (once) */
    for (;;) {
        char *nl;
        while ((nl = memchr(c->out + c->scan, '\n', c->len - c->scan)) != NULL) {
            size_t n = (size_t)(nl - (c->out + c->scan));
            char line[4096];
            if (n >= sizeof line) n = sizeof line - 1;
            memcpy(line, c->out + c->scan, n);
            line[n] = 0;
            c->scan = (size_t)(nl - c->out) + 1;
            if (match && match(line, ctx)) return 1;
        }
        if (c->fd < 0) return -1;
        double left = deadline - cu_now();
        if (left <= 0 && polled) return 0;
        cu_read_some(c, left);
        polled = 1;
    }
}

/* exit code, or 128 + signal number */
static inline int cu_reap(cu_child *c) {
    while (cu_read_some(c, 1.0) == 0) {
    }
    int st = 0;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

static inline void cu_free(cu_child *c) {
    free(c->out);
    c->out = NULL;
}

static inline int cu_run_argv(char *const argv[], double timeout_s, char **log) {
    cu_child c;
    if (cu_spawn(&c, argv)) return -1;
    int r = cu_pump(&c, cu_now() + timeout_s, NULL, NULL);
    if (r == 0) kill(c.pid, SIGKILL);
    int rc = cu_reap(&c);
    if (r == 0) fprintf(stderr, "%s %s: still running after %.0f s, killed\n", argv[0], argv[1], timeout_s);
    if (log) *log = c.out;
    else cu_free(&c);
    return r == 0 ? -1 : rc;
}

/* ---- the demo job ------------------------------------------------------------------------------ */

static inline int cu_setup(const char *dir) {
    char d[1100], model[1100], out[1100], pq[1100], data[1100];
    snprintf(d, sizeof d, "%s/D", dir);
    snprintf(model, sizeof model, "%s/D/model", dir);
    snprintf(out, sizeof out, "%s/D/model.h5", dir);
    snprintf(pq, sizeof pq, "%s/D/data/rlaif-v-demo.parquet", dir);
    snprintf(data, sizeof data, "%s/D/data.h5", dir);
    char *bin = (char *)cu_bin();
    char *a1[] = {bin, "make-demo", "--out", d, "--pairs", "120", NULL};
    char *a2[] = {bin, "import-model", "--from", model, "--out", out, NULL};
    char *a3[] = {bin, "import-data", "--parquet", pq, "--model", out, "--out", data, "--val-fraction", "0.25",
                  "--seed", "1", NULL};
    char *const *steps[] = {a1, a2, a3};
    for (int i = 0; i < 3; i++) {
        char *log = NULL;
        int rc = cu_run_argv(steps[i], 300, &log);
        if (rc) {
            fprintf(stderr, "set-up: %s %s failed (%d):\n%s\n", bin, steps[i][1], rc, log ? log : "");
            free(log);
            return -1;
        }
        free(log);
    }
    /* the job file: tests/crash/job.yaml.in with @DIR@ replaced */
    const char *src = getenv("ORPO_SOURCE_DIR");
    char tpl[1100], job[1100];
#ifdef ORPO_SOURCE_DIR
    if (!src || !*src) src = ORPO_SOURCE_DIR;
#endif
    snprintf(tpl, sizeof tpl, "%s/tests/crash/job.yaml.in", src ? src : ".");
    char *t = cu_slurp(tpl);
    if (!t) {
        fprintf(stderr, "set-up: cannot read %s\n", tpl);
        return -1;
    }
    snprintf(job, sizeof job, "%s/job.yaml", dir);
    FILE *f = fopen(job, "w");
    if (!f) {
        free(t);
        return -1;
    }
    for (const char *p = t; *p;) {
        if (!strncmp(p, "@DIR@", 5)) {
            fputs(dir, f);
            p += 5;
        } else {
            fputc(*p++, f);
        }
    }
    fclose(f);
    free(t);
    return 0;
}

#define CU_MAX_ARGS 24

/* argv of `orpo-hpc VERB DIR/job.yaml --set job.output_dir=OUT extra...` (extra: NULL-terminated list) */
typedef struct cu_argv {
    char *v[CU_MAX_ARGS];
    char job[1100], outset[1200];
} cu_argv;

static inline void cu_job_argv_v(cu_argv *a, const char *dir, const char *verb, const char *out, va_list ap) {
    int n = 0;
    snprintf(a->job, sizeof a->job, "%s/job.yaml", dir);
    snprintf(a->outset, sizeof a->outset, "job.output_dir=%s", out);
    a->v[n++] = (char *)cu_bin();
    a->v[n++] = (char *)verb;
    a->v[n++] = a->job;
    a->v[n++] = "--set";
    a->v[n++] = a->outset;
    const char *x;
    while (n < CU_MAX_ARGS - 1 && (x = va_arg(ap, const char *)) != NULL) a->v[n++] = (char *)x;
    a->v[n] = NULL;
}

static inline int cu_job(cu_child *c, const char *dir, const char *verb, const char *out, ...) {
    cu_argv a;
    va_list ap;
    va_start(ap, out);
    cu_job_argv_v(&a, dir, verb, out, ap);
    va_end(ap);
    return cu_spawn(c, a.v);
}

/* run a job command to its end (at most 600 s); the exit code; its log in *log (caller frees) when log != NULL */
static inline int cu_job_run(char **log, const char *dir, const char *verb, const char *out, ...) {
    cu_argv a;
    va_list ap;
    va_start(ap, out);
    cu_job_argv_v(&a, dir, verb, out, ap);
    va_end(ap);
    return cu_run_argv(a.v, 600, log);
}

/* ---- the output directory ------------------------------------------------------------------------- */

static inline int cu_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* steps of OUT/checkpoints/step-NNNNNNNN.h5 (exact names), ascending */
static inline int cu_ckpt_steps(const char *out, int64_t *steps, int cap) {
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints", out);
    DIR *d = opendir(p);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long long s;
        int used = 0;
        if (sscanf(e->d_name, "step-%lld.h5%n", &s, &used) == 1 && used == (int)strlen(e->d_name) &&
            strlen(e->d_name) == 16 && n < cap)
            steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cu_cmp_i64);
    return n;
}

static inline int cu_count_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* temporaries (".NAME.tmp.HOST.PID") in OUT/checkpoints (*nck) and in OUT and OUT/metrics (*nmet) */
static inline void cu_temps(const char *out, int *nck, int *nmet) {
    char p[1200];
    snprintf(p, sizeof p, "%s/checkpoints", out);
    *nck = cu_count_temps(p);
    snprintf(p, sizeof p, "%s/metrics", out);
    *nmet = cu_count_temps(out) + cu_count_temps(p);
}

/* ---- checkpoints, bit for bit ----------------------------------------------------------------------- */

typedef struct cu_state {
    ckpt_state s;
    ckpt_tensor *t;               /* params, adam_m, adam_v: 3 * n */
    char (*names)[CKPT_MAX_NAME];
    float *buf;
    int n;
} cu_state;

static inline void cu_state_free(cu_state *st) {
    free(st->t);
    free(st->names);
    free(st->buf);
    free(st->s.loaded_yaml);
    memset(st, 0, sizeof *st);
}

/* the tensor list is taken from the file's /params group; then ckpt_read verifies and reads everything */
static inline int cu_state_load(const char *path, cu_state *st) {
    memset(st, 0, sizeof *st);
    hid_t f = -1;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    hid_t g = H5Gopen2(f, "/params", H5P_DEFAULT);
    H5G_info_t gi;
    if (g < 0 || H5Gget_info(g, &gi) < 0) {
        if (g >= 0) H5Gclose(g);
        h5x_close(&f);
        return err_set(ERR_DATA, "%s: no /params group", path);
    }
    int n = (int)gi.nlinks;
    st->n = n;
    st->t = calloc((size_t)(3 * n + 1), sizeof *st->t);
    st->names = calloc((size_t)(n + 1), sizeof *st->names);
    int64_t total = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)i, st->names[i], CKPT_MAX_NAME,
                               H5P_DEFAULT) < 0) {
            rc = err_set(ERR_DATA, "%s: /params link %d", path, i);
            break;
        }
        char p[CKPT_MAX_NAME + 16];
        snprintf(p, sizeof p, "/params/%s", st->names[i]);
        h5x_dsinfo info;
        if ((rc = h5x_info(f, p, &info))) break;
        int64_t numel = 1;
        for (int k = 0; k < info.ndim; k++) numel *= info.dims[k];
        for (int l = 0; l < 3; l++) {
            ckpt_tensor *t = &st->t[l * n + i];
            t->name = st->names[i];
            t->numel = numel;
            t->ndim = info.ndim;
            for (int k = 0; k < info.ndim && k < 4; k++) t->shape[k] = info.dims[k];
        }
        total += numel;
    }
    H5Gclose(g);
    h5x_close(&f);
    if (rc) return rc;
    st->buf = calloc((size_t)(3 * total + 1), sizeof(float));
    int64_t off = 0;
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < n; i++) {
            st->t[l * n + i].data = st->buf + off;
            off += st->t[l * n + i].numel;
        }
    st->s.params = st->t;
    st->s.adam_m = st->t + n;
    st->s.adam_v = st->t + 2 * n;
    st->s.ntensors = n;
    return ckpt_read(path, &st->s);
}

#define CU_SAME(a, b, field, what)                                                                         \
    do {                                                                                                   \
        if (memcmp(&(a)->field, &(b)->field, sizeof((a)->field))) {                                        \
            fprintf(stderr, "%s: %s differs\n", what, #field);                                             \
            ndiff++;                                                                                       \
        }                                                                                                  \
    } while (0)

/* 0 when every tensor (params, adam_m, adam_v) and every scalar that does not measure time is bit-identical */
static inline int cu_state_diff(const cu_state *a, const cu_state *b, const char *what) {
    int ndiff = 0;
    if (a->n != b->n) {
        fprintf(stderr, "%s: %d tensors vs %d\n", what, a->n, b->n);
        return 1;
    }
    for (int i = 0; i < 3 * a->n; i++) {
        const ckpt_tensor *x = &a->t[i], *y = &b->t[i];
        static const char *list[3] = {"params", "adam_m", "adam_v"};
        if (strcmp(x->name, y->name) || x->numel != y->numel || x->ndim != y->ndim) {
            fprintf(stderr, "%s: tensor %s vs %s (shape)\n", what, x->name, y->name);
            ndiff++;
            continue;
        }
        if (memcmp(x->data, y->data, sizeof(float) * (size_t)x->numel)) {
            int64_t k = 0;
            while (k < x->numel && !memcmp(&x->data[k], &y->data[k], 4)) k++;
            fprintf(stderr, "%s: /%s/%s differs first at element %lld: %.9g vs %.9g\n", what, list[i / a->n], x->name,
                    (long long)k, (double)x->data[k], (double)y->data[k]);
            ndiff++;
        }
    }
    const ckpt_state *p = &a->s, *q = &b->s;
    CU_SAME(p, q, step, what);
    CU_SAME(p, q, epoch, what);
    CU_SAME(p, q, cursor_pos, what);
    CU_SAME(p, q, perm_seed, what);
    CU_SAME(p, q, rng_seed, what);
    CU_SAME(p, q, metrics_rows, what);
    CU_SAME(p, q, sched_lr_factor, what);
    CU_SAME(p, q, adam_step, what);
    CU_SAME(p, q, samples_seen, what);
    CU_SAME(p, q, tokens_seen, what);
    CU_SAME(p, q, world_size, what);
    CU_SAME(p, q, job_hash, what);
    CU_SAME(p, q, model_hash, what);
    CU_SAME(p, q, data_hash, what);
    return ndiff;
}

/* ---- metrics tables, bit for bit ---------------------------------------------------------------------- */

static inline int cu_train_row_diff(const met_train *a, const met_train *b, const char *what) {
    int ndiff = 0;
    CU_SAME(a, b, step, what);
    CU_SAME(a, b, epoch, what);
    CU_SAME(a, b, samples, what);
    CU_SAME(a, b, tokens, what);
    CU_SAME(a, b, loss, what);
    CU_SAME(a, b, nll_loss, what);
    CU_SAME(a, b, log_odds_ratio, what);
    CU_SAME(a, b, log_odds_chosen, what);
    CU_SAME(a, b, chosen_logps, what);
    CU_SAME(a, b, rejected_logps, what);
    CU_SAME(a, b, reward_accuracy, what);
    CU_SAME(a, b, reward_margin, what);
    CU_SAME(a, b, lr, what);
    CU_SAME(a, b, grad_norm, what);
    return ndiff;
}

/* got must hold steps 1..ngot in order, each row equal to the reference row of its step */
static inline int cu_train_diff(const met_train *ref, int64_t nref, const met_train *got, int64_t ngot, const char *what) {
    int ndiff = 0;
    for (int64_t i = 0; i < ngot; i++) {
        char w[600];
        snprintf(w, sizeof w, "%s: train row %lld (step %lld)", what, (long long)i, (long long)got[i].step);
        if (got[i].step != i + 1) {
            fprintf(stderr, "%s: expected step %lld (steps 1..%lld each exactly once)\n", w, (long long)(i + 1),
                    (long long)ngot);
            ndiff++;
            continue;
        }
        if (i >= nref || ref[i].step != i + 1) {
            fprintf(stderr, "%s: no reference row\n", w);
            ndiff++;
            continue;
        }
        ndiff += cu_train_row_diff(&ref[i], &got[i], w);
    }
    return ndiff;
}

static inline int cu_val_diff(const met_val *ref, int64_t nref, const met_val *got, int64_t ngot, const char *what) {
    int ndiff = 0;
    if (nref != ngot) {
        fprintf(stderr, "%s: %lld val rows, the reference has %lld\n", what, (long long)ngot, (long long)nref);
        return 1;
    }
    for (int64_t i = 0; i < ngot; i++) {
        char w[600];
        snprintf(w, sizeof w, "%s: val row %lld (step %lld)", what, (long long)i, (long long)got[i].step);
        const met_val *a = &ref[i], *b = &got[i];
        CU_SAME(a, b, step, w);
        CU_SAME(a, b, loss, w);
        CU_SAME(a, b, nll_loss, w);
        CU_SAME(a, b, accuracy, w);
        CU_SAME(a, b, chosen_logps, w);
        CU_SAME(a, b, rejected_logps, w);
    }
    return ndiff;
}

static inline int cu_samples_diff(const met_sample_row *ref, int64_t nref, const met_sample_row *got, int64_t ngot,
                           const char *what) {
    int ndiff = 0;
    if (nref != ngot) {
        fprintf(stderr, "%s: %lld samples, the reference has %lld\n", what, (long long)ngot, (long long)nref);
        return 1;
    }
    for (int64_t i = 0; i < ngot; i++) {
        const met_sample_row *a = &ref[i], *b = &got[i];
        if (a->step != b->step || a->index != b->index || strcmp(a->prompt, b->prompt) || strcmp(a->chosen, b->chosen) ||
            strcmp(a->rejected, b->rejected) || strcmp(a->answer, b->answer)) {
            fprintf(stderr, "%s: sample %lld (step %lld) differs\n", what, (long long)i, (long long)b->step);
            ndiff++;
        }
    }
    return ndiff;
}

static inline int cu_load_run(const char *out, int nsteps, cu_state *st, met_train **tr, int64_t *n) {
    char p[1300];
    snprintf(p, sizeof p, "%s/checkpoints/step-%08d.h5", out, nsteps);
    if (cu_state_load(p, st)) return 1;
    snprintf(p, sizeof p, "%s/metrics.h5", out);
    if (met_read_train(p, tr, n)) {
        cu_state_free(st);
        return 1;
    }
    return 0;
}

static inline int cu_compare_run(const cu_state *ref, const met_train *rt, int64_t nrt, const char *out, int nsteps,
                                 const char *what) {
    cu_state st;
    met_train *tr = NULL;
    int64_t n = 0;
    if (cu_load_run(out, nsteps, &st, &tr, &n)) {
        fprintf(stderr, "%s: cannot read the final checkpoint (step %d) or metrics.h5 of %s: %s\n", what, nsteps, out,
                err_msg());
        return 1;
    }
    int bad = cu_state_diff(ref, &st, what) != 0;
    if (n != nsteps) {
        fprintf(stderr, "%s: %lld train rows, expected %d\n", what, (long long)n, nsteps);
        bad++;
    }
    bad += cu_train_diff(rt, nrt, tr, n, what) != 0;
    cu_state_free(&st);
    free(tr);
    return bad;
}

#endif
