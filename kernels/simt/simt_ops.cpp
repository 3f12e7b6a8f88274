// simt_ops — ops_simt(): the CUDA kernels (kernels/*.cu, run by the CPU executor) as a device backend with the CPU
// backend's memory functions (src/backend/cpu/cpu_mem.h), and its fp32 table (ops_simt()->f32). The trainer runs a
// step on it as it would on the GPU (host_mem 0: the frozen weights are uploaded, every read of trainer memory
// goes through the table's download), which tests/kernels/test_step_simt.c compares with the CPU bf16 mode. With
// simt_guard(1) (simt_guard.h) its device memory is inaccessible to host code, so that a host read of it crashes
// with a message instead of passing unnoticed.
extern "C" {
#include "backend/ops.h"
}
#include "kops.h"
#include "kops_fill.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#include "simt/simt_cpu.h"
#include "simt/simt_guard.h"

extern "C" {
#include "backend/cpu/cpu_mem.h"
#include "io/err.h"
}

// ---- the guard (simt_guard.h) ----------------------------------------------------------------------------------

struct region {
    char *p;
    size_t bytes; // the mapping (whole pages)
    size_t asked; // the caller's bytes (counted in mem_stats)
    char what[64];
};
static std::vector<region> g_regions;
static int g_guard, g_depth;

static void protect_all(int prot) {
    for (const region &r : g_regions)
        if (mprotect(r.p, r.bytes, prot)) {
            perror("simt guard: mprotect");
            abort();
        }
}

extern "C" void simt_guard_enter(void) {
    if (g_depth++ == 0 && !g_regions.empty()) protect_all(PROT_READ | PROT_WRITE);
}

extern "C" void simt_guard_leave(void) {
    if (--g_depth == 0 && !g_regions.empty()) protect_all(PROT_NONE);
}

static void hook(int enter) {
    if (enter) simt_guard_enter();
    else simt_guard_leave();
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    const char *a = (const char *)si->si_addr;
    for (const region &r : g_regions)
        if (a >= r.p && a < r.p + r.bytes) {
            char msg[256];
            int n = snprintf(msg, sizeof msg, "simt guard: host access to device memory at %p, byte %zu of %s "
                             "(read it with the op table's download)\n", si->si_addr, (size_t)(a - r.p), r.what);
            if (write(2, msg, (size_t)(n > 0 && n < (int)sizeof msg ? n : (int)sizeof msg - 1)) < 0) _exit(3);
            break;
        }
    signal(sig, SIG_DFL);
    raise(sig);
}

extern "C" void simt_guard(int on) {
    g_guard = on;
    simt_launch_hook = hook;
    static int installed;
    if (on && !installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_segv;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, NULL);
        installed = 1;
    }
}

static region *find(void *p) {
    for (region &r : g_regions)
        if (r.p == p) return &r;
    return NULL;
}

// ---- the memory functions: the CPU backend's, guarded while the guard is on ---------------------------------------

static void *s_alloc(opctx *c, size_t bytes, int where, const char *what) {
    if (!g_guard || where == MEM_HOST) return cpu_mem_alloc(c, bytes, where, what);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (bytes + page - 1) / page * page + page;
    void *p = mmap(NULL, n, g_depth ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        opctx_fail(c, ERR_IO, "out of memory: cannot map %zu bytes for %s", bytes, what ? what : "a backend arena");
        return NULL;
    }
    region r;
    r.p = (char *)p;
    r.bytes = n;
    r.asked = bytes;
    snprintf(r.what, sizeof r.what, "%s", what ? what : "a backend arena");
    g_regions.push_back(r); // mmap'ed memory is zero, as cpu_mem_alloc's
    return p;
}

static void run_copies(uint64_t upto);

static void s_free(opctx *c, void *p, int where) {
    run_copies(UINT64_MAX); // cudaFree waits for the whole device
    region *r = where == MEM_DEVICE && p ? find(p) : NULL;
    if (!r) {
        cpu_mem_free(c, p, where);
        return;
    }
    munmap(r->p, r->bytes);
    g_regions.erase(g_regions.begin() + (r - g_regions.data()));
}

#define GUARDED(call)                                                                                                \
    do {                                                                                                             \
        simt_guard_enter();                                                                                          \
        call;                                                                                                        \
        simt_guard_leave();                                                                                          \
    } while (0)

static void s_upload(opctx *c, void *dst, const void *src, size_t bytes) { GUARDED(cpu_mem_upload(c, dst, src, bytes)); }
static void s_download(opctx *c, void *dst, const void *src, size_t bytes) {
    GUARDED(cpu_mem_download(c, dst, src, bytes));
}
static void s_memset(opctx *c, void *p, int value, size_t bytes) { GUARDED(cpu_mem_memset(c, p, value, bytes)); }

// ---- the copy stream, as late as CUDA allows -------------------------------------------------------------------
// On a GPU, copy_async runs on the copy stream after the compute work issued before it, at some time before the
// compute stream passes a copy_wait on a later fence (or a sync, or a free: cudaFree waits for the device). The CPU
// backend copies at once, the earliest time, which hides a missing wait. Here the copies are queued and run, in issue
// order, at the latest time instead: a compute op that overwrites a copy's source, or reads its destination, without
// the wait in between then sees the wrong bytes, and test_step_simt's step (offloaded layer inputs) fails.

struct pending {
    void *dst;
    const void *src;
    size_t bytes;
    uint64_t fence; // the first fence recorded after it
};
static std::vector<pending> g_copies;
static uint64_t g_fences;

static void run_copies(uint64_t upto) {
    size_t n = 0;
    while (n < g_copies.size() && g_copies[n].fence <= upto) n++;
    for (size_t i = 0; i < n; i++) GUARDED(memmove(g_copies[i].dst, g_copies[i].src, g_copies[i].bytes));
    g_copies.erase(g_copies.begin(), g_copies.begin() + (long)n);
}

static void s_copy_async(opctx *c, void *dst, const void *src, size_t bytes, int dir) {
    (void)c;
    (void)dir;
    if (bytes) g_copies.push_back(pending{dst, src, bytes, g_fences + 1});
}

static uint64_t s_copy_fence(opctx *c) {
    (void)c;
    return ++g_fences;
}

static void s_copy_wait(opctx *c, uint64_t fence) {
    (void)c;
    run_copies(fence);
}

static int s_sync(opctx *c) {
    run_copies(UINT64_MAX);
    return cpu_mem_sync(c);
}

static void fill_mem(ops *o) {
    o->mem_alloc = s_alloc;
    o->mem_free = s_free;
    o->upload = s_upload;
    o->download = s_download;
    o->copy_async = s_copy_async;
    o->copy_fence = s_copy_fence;
    o->copy_wait = s_copy_wait;
    o->memset = s_memset;
    o->sync = s_sync;
    o->mem_stats = cpu_mem_stats_of;
    o->host_mem = 0;
}

static ops g_simt, g_simt_f32;

static int make(void) {
    g_simt_f32.name = "simt-f32";
    kops_fill_f32(&g_simt_f32);
    fill_mem(&g_simt_f32);
    g_simt.name = "simt";
    kops_fill(&g_simt);
    fill_mem(&g_simt);
    g_simt.f32 = &g_simt_f32;
    g_simt_f32.f32 = &g_simt_f32;
    return 1;
}

extern "C" const ops *ops_simt(void) {
    static const int made = make(); // thread-safe once (C++11 statics)
    (void)made;
    return &g_simt;
}
