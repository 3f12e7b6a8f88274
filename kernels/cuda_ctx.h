// cuda_ctx — the CUDA backend's context and memory (kernels/cuda_mem.cu), C linkage: what ops_cuda()'s ctx_open /
// ctx_close do, and the memory part of its tables.
//
//   cuda_ctx_open(c)    on the current CUDA device (cudaSetDevice before it): refuses a GPU older than sm_80 ("sm_80
//                       or newer needed (bf16); this GPU is sm_XY", ERR_ARGS); creates the compute stream
//                       (c->stream) and the copy stream (c->copy_stream), the cuBLASLt handle (c->blas) and its
//                       workspace (c->blas_ws, OPS_BLAS_WS_CAP bytes: the plan's ws.library), and the events of the
//                       copy fences (c->backend). ERR_OK, or an error naming the failing call
//   cuda_ctx_close(c)   waits for the streams, frees all of it; the context can be opened again
//   cuda_mem_fill(o)    the memory fields of a table (mem_alloc ... mem_stats, kernels/cuda_mem.cu), ctx_open /
//                       ctx_close (the two above) and host_mem 0; ops_cuda() adds the ops
#ifndef ORPO_KERNELS_CUDA_CTX_H
#define ORPO_KERNELS_CUDA_CTX_H

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/ops.h"

/* copy fences in flight at once: a fence older than this many waits for a later point of the copy stream (safe) */
#define CUDA_FENCES 16

int cuda_ctx_open(opctx *c);
void cuda_ctx_close(opctx *c);
void cuda_mem_fill(ops *o);

#ifdef __cplusplus
}
#endif

#endif
