/* Unit tests of atomic (crash-safe file replacement): temporaries, cleanup, a file-size limit
 * (EFBIG, the cheap stand-in for a full disk) that must leave the old file intact.
 * `test_atomic --bench DIR MIB` times an f32 dataset of MIB MiB written through the atomic writer. */
#include <errno.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "test.h"

static char g_path[1024];
static const char *tpath(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", test_tmpdir(), name);
    return g_path;
}

static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) n += atomic_is_temp(e->d_name);
    if (d) closedir(d);
    return n;
}

static int file_equals(const char *path, const char *want) {
    char *buf = NULL;
    size_t n = 0;
    if (fs_read_all(path, &buf, &n)) return 0;
    int eq = n == strlen(want) && !memcmp(buf, want, n);
    free(buf);
    return eq;
}

static void test_write_file(void) {
    const char *dir = test_tmpdir();
    char p[1024];
    snprintf(p, sizeof p, "%s/DONE", dir);
    CHECK_EQ_INT(atomic_write_file(p, "step 100\n", 9), ERR_OK);
    CHECK(file_equals(p, "step 100\n"));
    CHECK_EQ_INT(atomic_write_file(p, "step 200\n", 9), ERR_OK);
    CHECK(file_equals(p, "step 200\n"));
    CHECK_EQ_INT(atomic_write_file(p, "", 0), ERR_OK);
    CHECK(file_equals(p, ""));
    CHECK_EQ_INT(count_temps(dir), 0);
    /* a missing directory: ERR_IO naming the path */
    CHECK_EQ_INT(atomic_write_file(tpath("nodir/DONE"), "x", 1), ERR_IO);
    CHECK_CONTAINS(err_msg(), "nodir/DONE");
    CHECK_CONTAINS(err_msg(), "does not exist");
    /* begin + abort leaves nothing and keeps the old file */
    atomic_file af;
    CHECK_EQ_INT(atomic_begin(&af, p), ERR_OK);
    CHECK(atomic_is_temp(fs_basename(af.tmp)));
    CHECK(strncmp(fs_basename(af.tmp), ".DONE.tmp.", 10) == 0);
    FILE *fp = fopen(af.tmp, "w");
    fputs("partial", fp);
    fclose(fp);
    CHECK_EQ_INT(count_temps(dir), 1);
    atomic_abort(&af);
    atomic_abort(&af);
    CHECK_EQ_INT(count_temps(dir), 0);
    CHECK(file_equals(p, ""));
    /* commit when the caller never created the temporary */
    CHECK_EQ_INT(atomic_begin(&af, p), ERR_OK);
    CHECK_EQ_INT(atomic_commit(&af), ERR_IO);
    CHECK_CONTAINS(err_msg(), "cannot open the temporary");
    CHECK(file_equals(p, ""));
    CHECK_EQ_INT(atomic_begin(&af, "dir/"), ERR_ARGS);
    /* fs helpers used by the writer */
    char b[64];
    CHECK_EQ_STR(fs_dirname("a/b/c.h5", b, sizeof b), "a/b");
    CHECK_EQ_STR(fs_dirname("c.h5", b, sizeof b), ".");
    CHECK_EQ_STR(fs_dirname("/c.h5", b, sizeof b), "/");
    CHECK_EQ_STR(fs_basename("a/b/c.h5"), "c.h5");
    CHECK_CONTAINS(fs_errno_msg(ENOSPC), "No space left on device (disk full)");
    char deep[1024];
    snprintf(deep, sizeof deep, "%s/x/y/z", dir);
    CHECK_EQ_INT(fs_mkdirs(deep), ERR_OK);
    CHECK(fs_is_dir(deep));
    CHECK_EQ_INT(fs_mkdirs(deep), ERR_OK);
    CHECK_EQ_INT(fs_mkdirs(p), ERR_IO); /* a file is in the way */
}

static void test_is_temp(void) {
    CHECK(atomic_is_temp(".ckpt.h5.tmp.node01.1234"));
    CHECK(atomic_is_temp(".a.tmp.h.1"));
    CHECK(!atomic_is_temp("ckpt.h5.tmp.node01.1234")); /* no leading dot */
    CHECK(!atomic_is_temp(".ckpt.h5.tmp.node01.12x4"));
    CHECK(!atomic_is_temp(".ckpt.h5.tmp.node01."));
    CHECK(!atomic_is_temp(".ckpt.h5.tmp..1234"));
    CHECK(!atomic_is_temp(".tmp.node01.1234"));
    CHECK(!atomic_is_temp(".ckpt.h5.node01.1234"));
    CHECK(!atomic_is_temp(".."));
    CHECK(!atomic_is_temp("."));
}

static void test_cleanup(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/clean", test_tmpdir());
    CHECK_EQ_INT(fs_mkdirs(dir), ERR_OK);
    char p[1200];
    snprintf(p, sizeof p, "%s/ckpt.h5", dir);
    /* a writer that dies after creating its temporary */
    pid_t pid = fork();
    if (pid == 0) {
        atomic_file af;
        if (atomic_begin(&af, p)) _exit(2);
        FILE *fp = fopen(af.tmp, "w");
        if (!fp) _exit(3);
        fputs("half", fp);
        fclose(fp);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* our own live temporary, another host's, and an unrelated file */
    atomic_file mine;
    CHECK_EQ_INT(atomic_begin(&mine, p), ERR_OK);
    FILE *fp = fopen(mine.tmp, "w");
    fclose(fp);
    char other[1300], keep[1300];
    snprintf(other, sizeof other, "%s/.ckpt.h5.tmp.some-other-host.1", dir);
    snprintf(keep, sizeof keep, "%s/keep.h5", dir);
    fclose(fopen(other, "w"));
    fclose(fopen(keep, "w"));
    CHECK_EQ_INT(count_temps(dir), 3);
    int n = -1;
    CHECK_EQ_INT(atomic_cleanup(dir, 0, &n), ERR_OK);
    CHECK_EQ_INT(n, 1); /* only the dead writer's */
    CHECK_EQ_INT(count_temps(dir), 2);
    CHECK(fs_exists(mine.tmp));
    CHECK_EQ_INT(atomic_cleanup(dir, 1, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(count_temps(dir), 0);
    CHECK(fs_exists(keep));
    CHECK_EQ_INT(atomic_cleanup(tpath("no-such-dir"), 0, &n), ERR_IO);
}

/* writes generation gen (values depend on it) to final through the atomic writer */
static int write_gen(const char *final, int gen, int64_t nfloat) {
    atomic_file af;
    int rc = atomic_begin(&af, final);
    if (rc) return rc;
    hid_t f;
    if ((rc = h5x_create(af.tmp, &f))) {
        atomic_abort(&af);
        return rc;
    }
    float *x = malloc((size_t)nfloat * 4);
    for (int64_t i = 0; i < nfloat; i++) x[i] = (float)(gen * 1000 + i % 101);
    rc = h5x_attr_set_i64(f, "/", "generation", gen);
    if (!rc) rc = h5x_write(f, "/x", H5X_F32, 1, &nfloat, x);
    free(x);
    if (rc) { /* keep the first error: the close fails too on a full disk */
        char first[2048];
        snprintf(first, sizeof first, "%s", err_msg());
        h5x_close(&f);
        err_set(rc, "%s", first);
    } else {
        rc = h5x_close(&f);
    }
    if (rc) {
        atomic_abort(&af);
        return rc;
    }
    return atomic_commit(&af);
}

static int verify_gen(const char *final, int64_t nfloat) {
    hid_t f;
    if (h5x_open(final, 0, &f)) return -1;
    int64_t gen = -1;
    float *x = malloc((size_t)nfloat * 4);
    int ok = !h5x_attr_get_i64(f, "/", "generation", &gen) && !h5x_read(f, "/x", H5X_F32, 1, &nfloat, x);
    for (int64_t i = 0; ok && i < nfloat; i++) ok = x[i] == (float)(gen * 1000 + i % 101);
    free(x);
    h5x_close(&f);
    return ok ? (int)gen : -1;
}

static void test_file_size_limit(void) {
    const char *p = tpath("limited.h5");
    const int64_t small = 1000, big = 1 << 20; /* 4 MiB of floats against a 1 MiB limit */
    CHECK_EQ_INT(write_gen(p, 1, small), ERR_OK);
    CHECK_EQ_INT(verify_gen(p, small), 1);
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1 << 20, 1 << 20};
        setrlimit(RLIMIT_FSIZE, &rl);
        char msg[2048];
        int rc1 = write_gen(p, 2, big);
        snprintf(msg, sizeof msg, "%d|%s\n", rc1, err_msg());
        char *buf = malloc((size_t)big * 4);
        memset(buf, 7, (size_t)big * 4);
        int rc2 = atomic_write_file(p, buf, (size_t)big * 4);
        free(buf);
        size_t l = strlen(msg);
        snprintf(msg + l, sizeof msg - l, "%d|%s\n", rc2, err_msg());
        if (write(fds[1], msg, strlen(msg)) < 0) _exit(3);
        exit(0); /* a normal exit: HDF5's exit-time cleanup must survive the failed close */
    }
    close(fds[1]);
    char out[4096] = "";
    size_t got = 0;
    ssize_t r;
    while ((r = read(fds[0], out + got, sizeof out - 1 - got)) > 0) got += (size_t)r;
    out[got] = '\0';
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    printf("under a 1 MiB file size limit:\n%s", out);
    char *nl = strchr(out, '\n');
    CHECK(nl != NULL);
    if (nl) {
        *nl = '\0';
        CHECK(!strncmp(out, "4|", 2)); /* ERR_IO from the HDF5 writer */
        CHECK_CONTAINS(out, "/x: writing the dataset failed: File too large");
        CHECK(!strncmp(nl + 1, "4|", 2)); /* ERR_IO from the buffer writer */
        CHECK_CONTAINS(nl + 1, "write failed after");
        CHECK_CONTAINS(nl + 1, "File too large; the old file is unchanged");
        CHECK_CONTAINS(nl + 1, "limited.h5");
    }
    CHECK_EQ_INT(verify_gen(p, small), 1); /* the old file is intact */
    CHECK_EQ_INT(count_temps(test_tmpdir()), 0);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench(const char *dir, int mib) {
    char p[1024];
    snprintf(p, sizeof p, "%s/bench.h5", dir);
    int64_t n = (int64_t)mib << 18;
    float *x = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) x[i] = (float)i;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        atomic_file af;
        hid_t f;
        if (atomic_begin(&af, p) || h5x_create(af.tmp, &f) || h5x_write(f, "/x", H5X_F32, 1, &n, x) || h5x_close(&f)) {
            fprintf(stderr, "%s\n", err_msg());
            return 1;
        }
        double t1 = now();
        if (atomic_commit(&af)) {
            fprintf(stderr, "%s\n", err_msg());
            return 1;
        }
        double t2 = now();
        printf("%d MiB f32: write+close %.3f s, fsync+rename+dir fsync %.3f s, total %.3f s (%.0f MiB/s)\n", mib,
               t1 - t0, t2 - t1, t2 - t0, mib / (t2 - t0));
    }
    free(x);
    unlink(p);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--bench")) return bench(argv[2], atoi(argv[3]));
    test_write_file();
    test_is_temp();
    test_cleanup();
    test_file_size_limit();
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_tmpdir());
    TEST_MAIN_END();
}
