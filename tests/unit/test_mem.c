/* mem: an allocation that cannot be satisfied exits 4 with a message naming the size and the buffer (never NULL,
 * never a segfault); ordinary allocations work, zero-byte ones give a pointer free() takes. */
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "io/mem.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
/* ASan's own allocator: a request over its maximum returns NULL instead of aborting, as malloc would */
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
#else
#define UNDER_ASAN 0
#endif

#define HUGE ((size_t)2 << 40) /* 2 TiB: over ASan's maximum allocation, and over the child's address-space limit */

/* run f in a child (outside ASan, under a 512 MiB address-space limit); its stderr into buf, its exit status returned */
static int child_status(void (*f)(void), char *buf, size_t cap) {
    int fd[2];
    if (pipe(fd)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        struct rlimit rl = {512ull << 20, 512ull << 20};
        if (!UNDER_ASAN) setrlimit(RLIMIT_AS, &rl); /* ASan's shadow memory is far over any such limit */
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

static void huge_alloc(void) { volatile char *p = mem_alloc(HUGE, "the test's huge buffer"); p[0] = 1; }
static void huge_calloc(void) { mem_calloc((size_t)1 << 62, 16, "an overflowing count"); }
void *volatile g_small; /* reachable at exit: LeakSanitizer would turn the exit status into its own */
static void huge_realloc(void) { g_small = mem_alloc(16, "small"); mem_realloc(g_small, HUGE, "a grown table"); }

int main(void) {
    char msg[4096];
    CHECK_EQ_INT(child_status(huge_alloc, msg, sizeof msg), 4);
    CHECK_CONTAINS(msg, "out of memory: cannot allocate 2199023255552 bytes (2097152.0 MiB) for the test's huge buffer");
    CHECK_EQ_INT(child_status(huge_calloc, msg, sizeof msg), 4);
    CHECK_CONTAINS(msg, "for an overflowing count");
    CHECK_EQ_INT(child_status(huge_realloc, msg, sizeof msg), 4);
    CHECK_CONTAINS(msg, "for a grown table");
    char *s = mem_strdup("abc", "copy");
    CHECK_EQ_STR(s, "abc");
    int *z = mem_calloc(4, sizeof(int), "zeros");
    CHECK(z[0] == 0 && z[3] == 0);
    void *e = mem_alloc(0, "empty");
    CHECK(e != NULL);
    free(s);
    free(z);
    free(e);
    TEST_MAIN_END();
}
