/* cpu_mem — host memory behind the backend memory interface, with per-placement byte counts (see cpu_mem.h). */
#include "backend/cpu/cpu_mem.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"

/* Each arena is preceded by a header of one alignment unit that remembers its size (for the counts). */
#define CPU_MEM_ALIGN 64

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t g_live[2], g_peak[2];

static int placement(int where) { return where == MEM_HOST ? MEM_HOST : MEM_DEVICE; }

void *cpu_mem_alloc(opctx *c, size_t bytes, int where, const char *what) {
    size_t total = 0;
    void *base = NULL;
    if (bytes <= SIZE_MAX - 2 * CPU_MEM_ALIGN) {
        total = (bytes + 2 * CPU_MEM_ALIGN - 1) / CPU_MEM_ALIGN * CPU_MEM_ALIGN; /* header + bytes, rounded up */
        base = aligned_alloc(CPU_MEM_ALIGN, total);
    }
    if (!base) {
        opctx_fail(c, ERR_IO, "out of memory: cannot allocate %zu bytes (%zu MiB) for %s", bytes, bytes >> 20,
                   what ? what : "a backend arena");
        return NULL;
    }
    memset(base, 0, total);
    memcpy(base, &bytes, sizeof bytes);
    int k = placement(where);
    pthread_mutex_lock(&g_lock);
    g_live[k] += bytes;
    if (g_live[k] > g_peak[k]) g_peak[k] = g_live[k];
    pthread_mutex_unlock(&g_lock);
    return (char *)base + CPU_MEM_ALIGN;
}

void cpu_mem_free(opctx *c, void *p, int where) {
    (void)c;
    if (!p) return;
    char *base = (char *)p - CPU_MEM_ALIGN;
    size_t bytes;
    memcpy(&bytes, base, sizeof bytes);
    int k = placement(where);
    pthread_mutex_lock(&g_lock);
    g_live[k] -= bytes < g_live[k] ? bytes : g_live[k];
    pthread_mutex_unlock(&g_lock);
    free(base);
}

void cpu_mem_upload(opctx *c, void *dst, const void *src, size_t bytes) {
    (void)c;
    if (bytes) memmove(dst, src, bytes);
}

void cpu_mem_download(opctx *c, void *dst, const void *src, size_t bytes) {
    (void)c;
    if (bytes) memmove(dst, src, bytes);
}

void cpu_mem_copy_async(opctx *c, void *dst, const void *src, size_t bytes, int dir) {
    (void)c;
    (void)dir;
    if (bytes) memmove(dst, src, bytes);
}

uint64_t cpu_mem_copy_fence(opctx *c) {
    (void)c;
    return 0; /* every copy is complete when it returns */
}

void cpu_mem_copy_wait(opctx *c, uint64_t fence) {
    (void)c;
    (void)fence;
}

void cpu_mem_memset(opctx *c, void *p, int value, size_t bytes) {
    (void)c;
    if (bytes) memset(p, value, bytes);
}

int cpu_mem_sync(opctx *c) {
    if (c->err) return err_set(c->err, "%s", c->errmsg);
    return ERR_OK;
}

void cpu_mem_stats(int where, size_t *live, size_t *peak) {
    int k = placement(where);
    pthread_mutex_lock(&g_lock);
    if (live) *live = g_live[k];
    if (peak) *peak = g_peak[k];
    pthread_mutex_unlock(&g_lock);
}

void cpu_mem_stats_reset(void) {
    pthread_mutex_lock(&g_lock);
    g_peak[0] = g_live[0];
    g_peak[1] = g_live[1];
    pthread_mutex_unlock(&g_lock);
}

void cpu_mem_stats_of(opctx *c, int where, size_t *live, size_t *peak) {
    (void)c;
    cpu_mem_stats(where, live, peak);
}
