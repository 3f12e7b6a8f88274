/* atomic_cleanup_stale: the temporaries of one final file left by dead processes on this host are removed; those
 * of live processes, of other hosts and of other files stay (what import-data / import-model do at start). */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/atomic.h"
#include "io/err.h"
#include "test.h"

static void touch(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

static int exists(const char *dir, const char *name) {
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

int main(void) {
    const char *dir = test_tmpdir();
    char final[1024];
    snprintf(final, sizeof final, "%s/data.h5", dir);
    /* the host tag and the pid layout as atomic_begin makes them */
    atomic_file af;
    CHECK_EQ_INT(atomic_begin(&af, final), ERR_OK);
    const char *t = strstr(af.tmp, ".tmp.");
    CHECK(t != NULL);
    if (!t) TEST_MAIN_END();
    char host[256];
    snprintf(host, sizeof host, "%s", t + 5);
    char *dot = strrchr(host, '.');
    if (dot) *dot = '\0';
    atomic_abort(&af);

    pid_t child = fork(); /* a pid that is surely dead once waited for */
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[512], live[512], other_file[512], other_host[512];
    snprintf(dead, sizeof dead, ".data.h5.tmp.%s.%ld", host, (long)child);
    snprintf(live, sizeof live, ".data.h5.tmp.%s.%ld", host, (long)getppid());
    snprintf(other_file, sizeof other_file, ".model.h5.tmp.%s.%ld", host, (long)child);
    snprintf(other_host, sizeof other_host, ".data.h5.tmp.%s-elsewhere.%ld", host, (long)child);
    touch(dir, dead);
    touch(dir, live);
    touch(dir, other_file);
    touch(dir, other_host);
    touch(dir, "data.h5");

    int n = -1;
    CHECK_EQ_INT(atomic_cleanup_stale(final, &n), ERR_OK);
    CHECK_EQ_INT(n, 1);
    CHECK(!exists(dir, dead));
    CHECK(exists(dir, live));
    CHECK(exists(dir, other_file));
    CHECK(exists(dir, other_host));
    CHECK(exists(dir, "data.h5"));
    /* nothing more to do; a missing directory is not an error here (atomic_begin reports it) */
    CHECK_EQ_INT(atomic_cleanup_stale(final, &n), ERR_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(atomic_cleanup_stale("/nonexistent-dir/x.h5", &n), ERR_OK);
    CHECK_EQ_INT(n, 0);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TEST_MAIN_END();
}
