/* Crash test of the atomic writer: a child replaces a valid HDF5 file with a new one (32 MiB,
 * several datasets) through atomic_begin / h5x / atomic_commit and is SIGKILLed at random
 * instants spread over the whole write, close, fsync and rename. After every kill the final
 * path must hold the complete old file or the complete new one (all values checked), and
 * atomic_cleanup must remove the dead writer's temporary. */
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
#include "io/h5x.h"
#include "test.h"

enum { NDSET = 8, NFLOAT = 1 << 20 }; /* 8 x 4 MiB */

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

static float value(int gen, int k, int64_t i) { return (float)(gen * 100000 + k * 1000 + (int)(i % 997)); }

/* the writer; reports 'C' on fd just before atomic_commit (after H5Fclose) */
static int write_gen(const char *final, int gen, int fd) {
    atomic_file af;
    int rc = atomic_begin(&af, final);
    if (rc) return rc;
    hid_t f;
    if ((rc = h5x_create(af.tmp, &f))) return rc;
    float *x = malloc((size_t)NFLOAT * 4);
    rc = h5x_attr_set_i64(f, "/", "generation", gen);
    for (int k = 0; k < NDSET && !rc; k++) {
        char name[64];
        snprintf(name, sizeof name, "/state/d%02d", k);
        for (int64_t i = 0; i < NFLOAT; i++) x[i] = value(gen, k, i);
        int64_t n = NFLOAT;
        rc = h5x_write(f, name, H5X_F32, 1, &n, x);
    }
    free(x);
    int rc2 = h5x_close(&f);
    if (!rc) rc = rc2;
    if (rc) {
        atomic_abort(&af);
        return rc;
    }
    if (fd >= 0 && write(fd, "C", 1) != 1) return ERR_IO;
    return atomic_commit(&af);
}

/* generation of a complete, correct file; -1 for anything else */
static int verify(const char *final) {
    hid_t f;
    if (h5x_open(final, 0, &f)) {
        fprintf(stderr, "verify: %s\n", err_msg());
        return -1;
    }
    int64_t gen = -1;
    int ok = !h5x_attr_get_i64(f, "/", "generation", &gen);
    float *x = malloc((size_t)NFLOAT * 4);
    for (int k = 0; k < NDSET && ok; k++) {
        char name[64];
        snprintf(name, sizeof name, "/state/d%02d", k);
        int64_t n = NFLOAT;
        ok = !h5x_read(f, name, H5X_F32, 1, &n, x);
        for (int64_t i = 0; ok && i < NFLOAT; i++) ok = x[i] == value((int)gen, k, i);
    }
    if (!ok) fprintf(stderr, "verify: %s: bad content (%s)\n", final, err_msg());
    free(x);
    h5x_close(&f);
    return ok ? (int)gen : -1;
}

static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += atomic_is_temp(e->d_name);
    if (d) closedir(d);
    return n;
}

/* starts a writer of generation gen; *fd receives its 'C' byte */
static pid_t spawn(const char *final, int gen, int *fd) {
    int p[2];
    if (pipe(p) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        int rc = write_gen(final, gen, p[1]);
        _exit(rc ? 10 + rc : 0);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

int main(void) {
    const char *dir = test_tmpdir();
    char final[1024];
    snprintf(final, sizeof final, "%s/step.h5", dir);
    CHECK_EQ_INT(write_gen(final, 1, -1), ERR_OK);
    CHECK_EQ_INT(verify(final), 1);

    /* one undisturbed run: its duration and the length of the commit phase */
    int fd = -1, st = 0;
    double t0 = now();
    pid_t pid = spawn(final, 2, &fd);
    char c = 0;
    CHECK(read(fd, &c, 1) == 1 && c == 'C');
    double tc = now();
    waitpid(pid, &st, 0);
    double t1 = now();
    close(fd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK_EQ_INT(verify(final), 2);
    double total = t1 - t0, commit = t1 - tc;
    printf("undisturbed write of %d MiB: %.3f s, of which commit (fsync, rename, dir fsync) %.3f s\n",
           NDSET * NFLOAT / (1 << 18), total, commit);

    uint32_t s = 777;
    /* 24 kills anywhere in the run, then 12 aimed at the commit (fsync -> rename -> dir fsync);
       a run that finished before its kill arrived does not count as a kill */
    int trials = 0, kills = 0, commit_kills = 0, saw_old = 0, saw_new = 0, bad = 0, left = 0;
    int gen = 2;
    for (int t = 0; t < 300 && (kills < 24 || commit_kills < 12); t++) {
        s = s * 1103515245u + 12345u;
        double u = (double)(s >> 8) / (double)(1u << 24);
        int in_commit = kills >= 24;
        int next = 3 - gen;
        pid = spawn(final, next, &fd);
        if (in_commit) {
            if (read(fd, &c, 1) != 1) c = 0;
            sleep_s(u * commit * 1.2);
        } else {
            sleep_s(u * total * 1.15);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        close(fd);
        int killed = WIFSIGNALED(st);
        if (killed && in_commit) commit_kills++;
        else if (killed) kills++;
        int g = verify(final);
        trials++;
        if (g == gen) saw_old++;
        else if (g == next) saw_new++;
        else bad++;
        printf("kill %2d at %s+%.3f s: %s, final holds generation %d (%s)\n", t, in_commit ? "commit" : "start",
               in_commit ? u * commit * 1.2 : u * total * 1.15, killed ? "killed" : "had finished", g,
               g == gen ? "old" : g == next ? "new" : "BROKEN");
        if (g == next) gen = next;
        int n = 0;
        CHECK_EQ_INT(atomic_cleanup(dir, 0, &n), ERR_OK);
        left += count_temps(dir);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(left, 0);
    CHECK(kills >= 24);
    CHECK(commit_kills >= 12);
    CHECK(saw_old > 0);
    printf("%d runs, %d killed during the write and %d during the commit: %d left the old file, %d the new one, "
           "%d broken\n", trials, kills, commit_kills, saw_old, saw_new, bad);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TEST_MAIN_END();
}
