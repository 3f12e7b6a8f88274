/* ops — choosing a backend's table (ops_for: the CPU's, or kernels/cuda_ops.cu's ops_cuda) and the context's sticky
 * error (opctx_fail, opctx_release). */
#include "backend/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/device.h"
#include "backend/tensor.h"

#ifdef ORPO_HAVE_CUDA_OPS
const ops *ops_cuda(void); /* kernels/cuda_ops.cu (kernels/kops.h) */
#endif

const ops *ops_for(int device, int act_dtype) {
    if (device == DEVICE_CPU && act_dtype == DT_F32) return ops_cpu();
    if (device == DEVICE_CPU && act_dtype == DT_BF16) return ops_cpu_bf16();
#ifdef ORPO_HAVE_CUDA_OPS /* a CUDA build with every kernel family (CMakeLists.txt) */
    if (device == DEVICE_CUDA && act_dtype == DT_BF16) return ops_cuda();
#endif
    return NULL; /* no such backend in this binary (CUDA: bf16 activations only) */
}

int opctx_fail(opctx *c, int code, const char *fmt, ...) {
    if (c->err) return c->err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    c->err = code ? code : 1;
    return c->err;
}

void opctx_release(opctx *c) {
    free(c->scratch);
    c->scratch = NULL;
    c->scratch_bytes = 0;
    /* the kernels' scratch of a host-memory context (the CPU executor's); a CUDA context's ctx_close freed its own */
    free(c->kscratch);
    c->kscratch = NULL;
    c->kscratch_bytes = 0;
}
