/* mem — host allocations that never return NULL.
 *
 *   mem_alloc(n, what)            malloc(n)
 *   mem_calloc(count, size, what) calloc(count, size), with the product checked for overflow
 *   mem_realloc(p, n, what)       realloc(p, n)
 *   mem_strdup(s, what)           strdup(s)
 *   mem_fail(n, what)             the same message and exit, for an allocation that failed inside a library
 *                                 (open_memstream, ...); n = 0 when its size is unknown
 *
 * Out of memory is not something a trainer can work around at the point where it happens: each of these prints
 * "orpo-hpc: error: out of memory: cannot allocate N bytes (M MiB) for WHAT" and exits with status 4 (a resource
 * failure, as a full disk; docs/cli.md). Everything orpo-hpc writes is atomic, so exiting here damages no file.
 * `what` names the buffer for the user (e.g. "trainer activations", "data.h5 token array").
 * A zero-byte request returns a valid pointer to free().
 */
#ifndef ORPO_MEM_H
#define ORPO_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n, const char *what);
void *mem_calloc(size_t count, size_t size, const char *what);
void *mem_realloc(void *p, size_t n, const char *what);
char *mem_strdup(const char *s, const char *what);
_Noreturn void mem_fail(size_t n, const char *what);

#endif
