/* devctx — the op context of a device (see devctx.h). */
#include "backend/devctx.h"

#include <stdio.h>
#include <string.h>

#include "backend/device.h"
#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"

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
    const ops *o = ops_for(DEVICE_CUDA, DT_BF16);
    if (!o || !o->ctx_open) {
        snprintf(why, why_len, "%s", device_built_with_cuda()
                                         ? "this build has the CUDA kernels but not every op of the CUDA table"
                                         : "this orpo-hpc was built without CUDA (nvcc was not found at build time)");
        return ERR_ARGS;
    }
    int rc = cudev_use(index, why, why_len);
    if (rc) return rc;
    if ((rc = o->ctx_open(c))) {
        snprintf(why, why_len, "%s", err_msg());
        return rc;
    }
    return ERR_OK;
}

void devctx_close(int device, opctx *c) {
    const ops *o = device == DEVICE_CUDA ? ops_for(DEVICE_CUDA, DT_BF16) : NULL;
    if (o && o->ctx_close) o->ctx_close(c);
    opctx_release(c);
}
