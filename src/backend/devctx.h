/* devctx — the op context (backend/ops.h opctx) of a device, for the commands that run ops themselves
 * (`device --selftest`, `bench step --shape`).
 *
 *   devctx_open(device, index, &c, why, n)   DEVICE_CPU: a zeroed context with bf16 activations. DEVICE_CUDA: the
 *                                            CUDA table's set-up (ctx_open) of GPU `index` (streams, cuBLASLt handle);
 *                                            ERR_ARGS with `why` when this binary has none
 *   devctx_close(device, &c)                 what devctx_open set up, and the context's scratch (opctx_release)
 */
#ifndef ORPO_DEVCTX_H
#define ORPO_DEVCTX_H

#include <stddef.h>

#include "backend/ops.h"

int devctx_open(int device, int index, opctx *c, char *why, size_t why_len);
void devctx_close(int device, opctx *c);

#endif
