/* test — a tiny assertion harness for the C test programs (no Python, no framework).
 *
 *   CHECK(cond)                    count a failure (with file:line) when cond is false
 *   CHECK_EQ_INT(a, b)             integers equal
 *   CHECK_EQ_STR(a, b)             strings equal (NULL-safe)
 *   CHECK_CONTAINS(hay, needle)    substring present
 *   CHECK_NEAR(a, b, tol)          |a-b| <= tol
 *   TEST_MAIN_END()                print "N passed, N failed" and return the exit status
 *   test_tmpdir()                  a fresh per-process scratch directory under $TMPDIR or /tmp
 *   test_fixture(rel)              path of tests/fixtures/<rel> (ORPO_FIXTURES or the source tree)
 *   test_child(f, as_limit, buf, cap)  run f() in a child process, its address space limited to as_limit bytes
 *                                  when nonzero; its stderr into buf; returns its exit status (0 when f returns,
 *                                  128 + signal when killed)
 */
#ifndef ORPO_TEST_H
#define ORPO_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (cond) t_pass++;                                                   \
        else { t_fail++; fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); } \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                    \
    do {                                                                      \
        long long _a = (long long)(a), _b = (long long)(b);                   \
        if (_a == _b) t_pass++;                                               \
        else { t_fail++; fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, _a, #b, _b); } \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                    \
    do {                                                                      \
        const char *_a = (a), *_b = (b);                                      \
        if (_a && _b && !strcmp(_a, _b)) t_pass++;                            \
        else { t_fail++; fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, _a ? _a : "(null)", _b ? _b : "(null)"); } \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                           \
    do {                                                                      \
        const char *_h = (hay), *_n = (needle);                               \
        if (_h && _n && strstr(_h, _n)) t_pass++;                             \
        else { t_fail++; fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, _h ? _h : "(null)", _n ? _n : "(null)"); } \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                 \
    do {                                                                      \
        double _a = (double)(a), _b = (double)(b);                            \
        if (fabs(_a - _b) <= (tol)) t_pass++;                                 \
        else { t_fail++; fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, _a, _b, (double)(tol)); } \
    } while (0)

#define TEST_MAIN_END()                                                       \
    do {                                                                      \
        printf("%s: %d passed, %d failed\n", __FILE__, t_pass, t_fail);     \
        return t_fail ? 1 : 0;                                                \
    } while (0)

static inline const char *test_tmpdir(void) {
    static char dir[512];
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/orpo-test-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(1); }
    }
    return dir;
}

static inline const char *test_fixture(const char *rel) {
    static char path[4][1024];
    static int slot;
    const char *root = getenv("ORPO_FIXTURES");
#ifdef ORPO_SOURCE_DIR
    if (!root) root = ORPO_SOURCE_DIR "/tests/fixtures";
#endif
    if (!root) root = "tests/fixtures";
    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof path[slot], "%s/%s", root, rel);
    return path[slot];
}

static inline int test_child(void (*f)(void), size_t as_limit, char *buf, size_t cap) {
    int fd[2];
    if (pipe(fd)) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        struct rlimit rl = {as_limit, as_limit};
        if (as_limit) setrlimit(RLIMIT_AS, &rl);
        f();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while (n + 1 < cap && (k = read(fd[0], buf + n, cap - 1 - n)) > 0) n += (size_t)k;
    buf[n] = '\0';
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
