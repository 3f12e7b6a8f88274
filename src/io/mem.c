/* mem — allocations that exit with a clear message instead of returning NULL (see mem.h). */
#include "io/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

_Noreturn void mem_fail(size_t n, const char *what) {
    /* no log_ call: stdio may itself need memory, a fixed string on fd 2 does not */
    fflush(stdout);
    if (n) fprintf(stderr, "orpo-hpc: error: out of memory: cannot allocate %zu bytes (%.1f MiB) for %s\n", n,
                   (double)n / 1048576.0, what ? what : "a buffer");
    else fprintf(stderr, "orpo-hpc: error: out of memory: cannot allocate memory for %s\n", what ? what : "a buffer");
    exit(ERR_IO);
}

void *mem_alloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) mem_fail(n, what);
    return p;
}

void *mem_calloc(size_t count, size_t size, const char *what) {
    if (size && count > SIZE_MAX / size) mem_fail(SIZE_MAX, what);
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) mem_fail(count * size, what);
    return p;
}

void *mem_realloc(void *p, size_t n, const char *what) {
    void *q = realloc(p, n ? n : 1);
    if (!q) mem_fail(n, what);
    return q;
}

char *mem_strdup(const char *s, const char *what) {
    size_t n = strlen(s) + 1;
    char *d = mem_alloc(n, what);
    memcpy(d, s, n);
    return d;
}
