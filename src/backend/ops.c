/* ops — choosing a backend's table (ops_for) and the context's sticky error (opctx_fail, opctx_release). */
#include "backend/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/device.h"
#include "backend/tensor.h"

const ops *ops_for(int device, int act_dtype) {
    if (device == DEVICE_CPU && act_dtype == DT_F32) return ops_cpu();
    if (device == DEVICE_CPU && act_dtype == DT_BF16) return ops_cpu_bf16();
    return NULL; /* DEVICE_CUDA: no CUDA table yet */
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
}
