// simt_ops — ops_simt(): the CUDA kernels (kernels/*.cu, run by the CPU executor) as a device backend with the CPU
// backend's memory functions (src/backend/cpu/cpu_mem.h), and its fp32 table (ops_simt()->f32). The trainer runs a
// step on it as it would on the GPU (host_mem 0: the frozen weights are uploaded, every read of trainer memory
// goes through the table's download), which tests/kernels/test_step_simt.c compares with the CPU bf16 mode.
extern "C" {
#include "backend/ops.h"
}
#include "kops.h"
#include "kops_fill.h"

extern "C" {
#include "backend/cpu/cpu_mem.h"
}

static void fill_mem(ops *o) {
    o->mem_alloc = cpu_mem_alloc;
    o->mem_free = cpu_mem_free;
    o->upload = cpu_mem_upload;
    o->download = cpu_mem_download;
    o->copy_async = cpu_mem_copy_async;
    o->copy_fence = cpu_mem_copy_fence;
    o->copy_wait = cpu_mem_copy_wait;
    o->memset = cpu_mem_memset;
    o->sync = cpu_mem_sync;
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
