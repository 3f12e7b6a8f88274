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

/* the children run under a 512 MiB address-space limit, except under ASan, whose shadow memory is far over it */
#define AS_LIMIT (UNDER_ASAN ? (size_t)0 : (size_t)512 << 20)
#define HUGE ((size_t)2 << 40) /* 2 TiB: over ASan's maximum allocation, and over the child's address-space limit */

static void huge_alloc(void) { volatile char *p = mem_alloc(HUGE, "the test's huge buffer"); p[0] = 1; }
static void huge_calloc(void) { mem_calloc((size_t)1 << 62, 16, "an overflowing count"); }
void *volatile g_small; /* reachable at exit: LeakSanitizer would turn the exit status into its own */
static void huge_realloc(void) { g_small = mem_alloc(16, "small"); mem_realloc(g_small, HUGE, "a grown table"); }

int main(void) {
    char msg[4096];
    CHECK_EQ_INT(test_child(huge_alloc, AS_LIMIT, msg, sizeof msg), 4);
    CHECK_CONTAINS(msg, "out of memory: cannot allocate 2199023255552 bytes (2097152.0 MiB) for the test's huge buffer");
    CHECK_EQ_INT(test_child(huge_calloc, AS_LIMIT, msg, sizeof msg), 4);
    CHECK_CONTAINS(msg, "for an overflowing count");
    CHECK_EQ_INT(test_child(huge_realloc, AS_LIMIT, msg, sizeof msg), 4);
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
