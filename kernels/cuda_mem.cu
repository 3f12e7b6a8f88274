// cuda_mem — the CUDA backend's memory interface and context (backend/ops.h "Memory", cuda_ctx.h): the fields of
// ops_cuda()'s tables other than the ops (kernels/cuda_ops.cu fills those). CUDA build only (CMakeLists.txt
// ORPO_CUDA_ONLY).
//
// Memory: MEM_DEVICE is cudaMalloc'd, MEM_HOST pinned (cudaHostAlloc); both zeroed once when allocated (device memory
// on the compute stream, before the work given to it next), as the CPU backend's, and counted per placement (live, high-water) for mem_stats. upload / download are ordered on the compute
// stream after the work before them and return when done. copy_async runs on the copy stream after everything the
// compute stream was given before it (an event between them), so an offloaded buffer is complete when it leaves and
// a prefetch does not overwrite a buffer still being read; copy_fence records an event of a ring on the copy stream,
// copy_wait makes the compute stream wait for it. Errors of the runtime go to the context's sticky error, naming the
// call; sync waits for both streams and returns it.
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <mutex>
#include <stdio.h>
#include <string.h>
#include <unordered_map>

extern "C" {
#include "backend/ops.h"
#include "io/err.h"
}
#include "cuda_ctx.h"

// ---- bookkeeping of allocations: live and high-water bytes per placement -------------------------------------

static std::mutex g_lock;
static std::unordered_map<void *, size_t> g_size[2];
static size_t g_live[2], g_peak[2];

static int placement(int where) { return where == MEM_HOST ? MEM_HOST : MEM_DEVICE; }

static void count_alloc(void *p, size_t bytes, int k) {
    std::lock_guard<std::mutex> l(g_lock);
    g_size[k][p] = bytes;
    g_live[k] += bytes;
    if (g_live[k] > g_peak[k]) g_peak[k] = g_live[k];
}

static void count_free(void *p, int k) {
    std::lock_guard<std::mutex> l(g_lock);
    auto it = g_size[k].find(p);
    if (it == g_size[k].end()) return;
    g_live[k] -= it->second < g_live[k] ? it->second : g_live[k];
    g_size[k].erase(it);
}

static cudaStream_t stream_of(opctx *c) { return (cudaStream_t)c->stream; }
static cudaStream_t copy_stream_of(opctx *c) { return (cudaStream_t)c->copy_stream; }

// a failed runtime call into the sticky error; 1 when it failed
static int failed(opctx *c, cudaError_t e, const char *call, const char *what) {
    if (e == cudaSuccess) return 0;
    opctx_fail(c, e == cudaErrorMemoryAllocation ? ERR_IO : ERR_INTERNAL, "%s (%s): %s", call, what ? what : "",
               cudaGetErrorString(e));
    cudaGetLastError(); // clear a non-sticky error so that later calls report their own
    return 1;
}

// ---- memory ----------------------------------------------------------------------------------------------------

static void *cu_mem_alloc(opctx *c, size_t bytes, int where, const char *what) {
    const int k = placement(where);
    void *p = NULL;
    size_t n = bytes ? bytes : 1;
    cudaError_t e = k == MEM_HOST ? cudaHostAlloc(&p, n, cudaHostAllocDefault) : cudaMalloc(&p, n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        opctx_fail(c, ERR_IO, "out of %s memory: cannot allocate %zu bytes (%zu MiB) for %s: %s",
                   k == MEM_HOST ? "pinned host" : "GPU", bytes, bytes >> 20, what ? what : "a backend arena",
                   cudaGetErrorString(e));
        return NULL;
    }
    // device memory is zeroed on the compute stream: the legacy default stream would not order it before the work of
    // a non-blocking stream
    if (k == MEM_HOST) {
        memset(p, 0, n);
    } else if (failed(c, cudaMemsetAsync(p, 0, n, stream_of(c)), "cudaMemsetAsync", what)) {
        cudaFree(p);
        return NULL;
    }
    count_alloc(p, bytes, k);
    return p;
}

static void cu_mem_free(opctx *c, void *p, int where) {
    if (!p) return;
    const int k = placement(where);
    count_free(p, k);
    failed(c, k == MEM_HOST ? cudaFreeHost(p) : cudaFree(p), k == MEM_HOST ? "cudaFreeHost" : "cudaFree", NULL);
}

static void cu_upload(opctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    if (!failed(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_of(c)), "cudaMemcpyAsync",
                "upload"))
        failed(c, cudaStreamSynchronize(stream_of(c)), "cudaStreamSynchronize", "upload");
}

static void cu_download(opctx *c, void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    if (!failed(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_of(c)), "cudaMemcpyAsync",
                "download"))
        failed(c, cudaStreamSynchronize(stream_of(c)), "cudaStreamSynchronize", "download");
}

struct cu_state {
    cudaEvent_t fence[CUDA_FENCES];
    cudaEvent_t issued; // the compute stream's point before an asynchronous copy
    uint64_t fences;    // recorded so far; fence f (1, 2, ...) is event (f - 1) % CUDA_FENCES
};

static void cu_copy_async(opctx *c, void *dst, const void *src, size_t bytes, int dir) {
    cu_state *s = (cu_state *)c->backend;
    if (!bytes || !s) return;
    if (failed(c, cudaEventRecord(s->issued, stream_of(c)), "cudaEventRecord", "copy_async") ||
        failed(c, cudaStreamWaitEvent(copy_stream_of(c), s->issued, 0), "cudaStreamWaitEvent", "copy_async"))
        return;
    failed(c, cudaMemcpyAsync(dst, src, bytes, dir == MEM_D2H ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice,
                              copy_stream_of(c)),
           "cudaMemcpyAsync", dir == MEM_D2H ? "copy_async to the host" : "copy_async to the device");
}

static uint64_t cu_copy_fence(opctx *c) {
    cu_state *s = (cu_state *)c->backend;
    if (!s) return 0;
    const uint64_t f = ++s->fences;
    failed(c, cudaEventRecord(s->fence[(f - 1) % CUDA_FENCES], copy_stream_of(c)), "cudaEventRecord", "copy_fence");
    return f;
}

static void cu_copy_wait(opctx *c, uint64_t f) {
    cu_state *s = (cu_state *)c->backend;
    if (!s || f == 0) return;
    failed(c, cudaStreamWaitEvent(stream_of(c), s->fence[(f - 1) % CUDA_FENCES], 0), "cudaStreamWaitEvent",
           "copy_wait");
}

static void cu_memset(opctx *c, void *p, int value, size_t bytes) {
    if (bytes) failed(c, cudaMemsetAsync(p, value, bytes, stream_of(c)), "cudaMemsetAsync", "memset");
}

static int cu_sync(opctx *c) {
    if (c->stream) failed(c, cudaStreamSynchronize(stream_of(c)), "cudaStreamSynchronize", "the compute stream");
    if (c->copy_stream) failed(c, cudaStreamSynchronize(copy_stream_of(c)), "cudaStreamSynchronize", "the copy stream");
    failed(c, cudaGetLastError(), "a kernel launch", NULL);
    if (c->err) return err_set(c->err, "%s", c->errmsg);
    return ERR_OK;
}

static void cu_mem_stats(opctx *c, int where, size_t *live, size_t *peak) {
    (void)c;
    const int k = placement(where);
    std::lock_guard<std::mutex> l(g_lock);
    if (live) *live = g_live[k];
    if (peak) *peak = g_peak[k];
}

// ---- the context -----------------------------------------------------------------------------------------------

extern "C" void cuda_ctx_close(opctx *c) {
    if (c->stream) cudaStreamSynchronize(stream_of(c));
    if (c->copy_stream) cudaStreamSynchronize(copy_stream_of(c));
    cu_state *s = (cu_state *)c->backend;
    if (s) {
        for (int i = 0; i < CUDA_FENCES; i++)
            if (s->fence[i]) cudaEventDestroy(s->fence[i]);
        if (s->issued) cudaEventDestroy(s->issued);
        delete s;
    }
    if (c->kscratch) cudaFree(c->kscratch); // the kernels' scratch (kgemm.h kscratch), stream-ordered allocation
    c->kscratch = NULL;
    c->kscratch_bytes = 0;
    if (c->blas_ws) cu_mem_free(c, c->blas_ws, MEM_DEVICE);
    if (c->blas) cublasLtDestroy((cublasLtHandle_t)c->blas);
    if (c->copy_stream) cudaStreamDestroy(copy_stream_of(c));
    if (c->stream) cudaStreamDestroy(stream_of(c));
    c->backend = NULL;
    c->blas_ws = NULL;
    c->blas_ws_bytes = 0;
    c->blas = NULL;
    c->stream = c->copy_stream = NULL;
    c->err = 0; // a context opened again starts without the old sticky error
    c->errmsg[0] = 0;
}

#define CTX_TRY(call)                                                                                                \
    do {                                                                                                             \
        cudaError_t ctx_e_ = (call);                                                                                 \
        if (ctx_e_ != cudaSuccess) {                                                                                 \
            cudaGetLastError();                                                                                      \
            cuda_ctx_close(c);                                                                                       \
            return err_set(ERR_INTERNAL, "CUDA context: %s: %s", #call, cudaGetErrorString(ctx_e_));                 \
        }                                                                                                            \
    } while (0)

extern "C" int cuda_ctx_open(opctx *c) {
    int dev = 0;
    cudaDeviceProp p;
    CTX_TRY(cudaGetDevice(&dev));
    CTX_TRY(cudaGetDeviceProperties(&p, dev));
    if (p.major < 8)
        return err_set(ERR_ARGS, "runtime.device cuda: sm_80 or newer needed (bf16); this GPU is sm_%d%d (%s)", p.major,
                       p.minor, p.name);
    cudaStream_t s1 = NULL, s2 = NULL;
    CTX_TRY(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    c->stream = s1;
    CTX_TRY(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    c->copy_stream = s2;
    cu_state *st = new cu_state();
    c->backend = st;
    for (int i = 0; i < CUDA_FENCES; i++) CTX_TRY(cudaEventCreateWithFlags(&st->fence[i], cudaEventDisableTiming));
    CTX_TRY(cudaEventCreateWithFlags(&st->issued, cudaEventDisableTiming));
    cublasLtHandle_t h = NULL;
    cublasStatus_t bs = cublasLtCreate(&h);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cuda_ctx_close(c);
        return err_set(ERR_INTERNAL, "CUDA context: cublasLtCreate: %s", cublasGetStatusString(bs));
    }
    c->blas = h;
    c->blas_ws = cu_mem_alloc(c, OPS_BLAS_WS_CAP, MEM_DEVICE, "the cuBLASLt workspace");
    if (!c->blas_ws) {
        int rc = err_set(c->err ? c->err : ERR_IO, "%s", c->errmsg);
        cuda_ctx_close(c);
        return rc;
    }
    c->blas_ws_bytes = OPS_BLAS_WS_CAP;
    return ERR_OK;
}

static int cu_ctx_open(opctx *c) { return cuda_ctx_open(c); }
static void cu_ctx_close(opctx *c) { cuda_ctx_close(c); }

// ---- the table's fields --------------------------------------------------------------------------------------

extern "C" void cuda_mem_fill(ops *o) {
    o->mem_alloc = cu_mem_alloc;
    o->mem_free = cu_mem_free;
    o->upload = cu_upload;
    o->download = cu_download;
    o->copy_async = cu_copy_async;
    o->copy_fence = cu_copy_fence;
    o->copy_wait = cu_copy_wait;
    o->memset = cu_memset;
    o->sync = cu_sync;
    o->mem_stats = cu_mem_stats;
    o->ctx_open = cu_ctx_open;
    o->ctx_close = cu_ctx_close;
    o->host_mem = 0;
}
