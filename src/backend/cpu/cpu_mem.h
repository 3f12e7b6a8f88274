/* cpu_mem — the memory interface of the CPU backend (ops.h "Memory"): host memory for both placements, copies by
 * memcpy (complete when they return), the sticky error in the context. It counts the bytes it hands out per
 * placement so that tests can compare a run's measured high-water mark with the plan's size table.
 *
 *   cpu_mem_alloc / _free / _upload / _download / _copy_async / _copy_fence / _copy_wait / _memset / _sync
 *                                         the table entries (shared by ops_cpu() and ops_cpu_bf16())
 *   cpu_mem_stats(where, &live, &peak)    bytes now allocated at MEM_DEVICE or MEM_HOST, and the most ever at once
 *                                         since the start or the last reset (every context of the process together)
 *   cpu_mem_stats_reset()                 peak := live, for both placements
 */
#ifndef ORPO_CPU_MEM_H
#define ORPO_CPU_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "backend/ops.h"

void *cpu_mem_alloc(opctx *c, size_t bytes, int where, const char *what);
void cpu_mem_free(opctx *c, void *p, int where);
void cpu_mem_upload(opctx *c, void *dst, const void *src, size_t bytes);
void cpu_mem_download(opctx *c, void *dst, const void *src, size_t bytes);
void cpu_mem_copy_async(opctx *c, void *dst, const void *src, size_t bytes, int dir);
uint64_t cpu_mem_copy_fence(opctx *c);
void cpu_mem_copy_wait(opctx *c, uint64_t fence);
void cpu_mem_memset(opctx *c, void *p, int value, size_t bytes);
int cpu_mem_sync(opctx *c);

void cpu_mem_stats(int where, size_t *live, size_t *peak);
void cpu_mem_stats_reset(void);
void cpu_mem_stats_of(opctx *c, int where, size_t *live, size_t *peak); /* the op table's mem_stats */

/* the memory part of both CPU op tables (fp32 and bf16) */
#define CPU_MEM_OPS                                                                                               \
    .mem_alloc = cpu_mem_alloc, .mem_free = cpu_mem_free, .upload = cpu_mem_upload, .download = cpu_mem_download, \
    .copy_async = cpu_mem_copy_async, .copy_fence = cpu_mem_copy_fence, .copy_wait = cpu_mem_copy_wait,          \
    .memset = cpu_mem_memset, .sync = cpu_mem_sync, .mem_stats = cpu_mem_stats_of

#endif
