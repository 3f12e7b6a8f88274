/* devctx — the op context (backend/ops.h opctx) of a device, for the commands that run ops themselves
 * (`device --selftest`, `bench step --shape`).
 *
 *   devctx_open(device, index, &c, why, n)   DEVICE_CPU: a zeroed context with bf16 activations. DEVICE_CUDA: the
 *                                            CUDA runtime's set-up of GPU `index` (streams, cuBLASLt handle) through
 *                                            devctx_cuda_open; ERR_ARGS with `why` when this binary has none
 *   devctx_close(device, &c)                 what devctx_open set up, and the context's scratch (opctx_release)
 *   devctx_cuda_open / devctx_cuda_close     the CUDA set-up: NULL until the CUDA runtime glue (kernels/cuda_ops.cu)
 *                                            sets them. MERGE: the one place the lead wires (see devctx.c)
 */
#ifndef ORPO_DEVCTX_H
#define ORPO_DEVCTX_H

#include <stddef.h>

#include "backend/ops.h"

extern int (*devctx_cuda_open)(int index, opctx *c, char *why, size_t why_len);
extern void (*devctx_cuda_close)(opctx *c);

int devctx_open(int device, int index, opctx *c, char *why, size_t why_len);
void devctx_close(int device, opctx *c);

#endif
