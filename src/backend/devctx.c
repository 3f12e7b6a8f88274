/* devctx — the op context of a device (see devctx.h). */
#include "backend/devctx.h"

#include <stdio.h>
#include <string.h>

#include "backend/device.h"
#include "backend/tensor.h"
#include "io/err.h"

/* MERGE: the CUDA runtime glue sets these two (e.g. a function in kernels/cuda_ops.cu that fills c->stream,
 * c->copy_stream and c->blas for GPU `index`, called from here under ORPO_HAVE_CUDA, or an initialiser there that
 * assigns the pointers). Until then `device --selftest` and `bench step` on CUDA say that the set-up is missing. */
int (*devctx_cuda_open)(int index, opctx *c, char *why, size_t why_len) = NULL;
void (*devctx_cuda_close)(opctx *c) = NULL;

int devctx_open(int device, int index, opctx *c, char *why, size_t why_len) {
    memset(c, 0, sizeof *c);
    c->device = device;
    c->act_dtype = DT_BF16;
    c->threads = 1;
    if (device == DEVICE_CPU) return ERR_OK;
    if (device != DEVICE_CUDA) {
        snprintf(why, why_len, "device %d: expected DEVICE_CPU or DEVICE_CUDA", device);
        return ERR_INTERNAL;
    }
    if (!devctx_cuda_open) {
        snprintf(why, why_len, "%s", device_built_with_cuda()
                                         ? "this build has the CUDA kernels but no CUDA op context set-up "
                                           "(devctx_cuda_open is not wired: src/backend/devctx.c)"
                                         : "this orpo-hpc was built without CUDA (nvcc was not found at build time)");
        return ERR_ARGS;
    }
    return devctx_cuda_open(index, c, why, why_len);
}

void devctx_close(int device, opctx *c) {
    if (device == DEVICE_CUDA && devctx_cuda_close) devctx_cuda_close(c);
    opctx_release(c);
}
