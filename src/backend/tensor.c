#include "backend/tensor.h"

#include <string.h>

tensor tensor_make(void *data, int dtype, int ndim, const int64_t *shape) {
    tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim;
    for (int i = 0; i < ndim && i < TENSOR_MAX_DIMS; i++) t.shape[i] = shape[i];
    return t;
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dtype_size(int dtype) {
    switch (dtype) {
    case DT_F32: case DT_I32: return 4;
    case DT_BF16: case DT_F16: return 2;
    case DT_U8: return 1;
    case DT_I64: return 8;
    default: return 0;
    }
}

size_t tensor_nbytes(const tensor *t) {
    int64_t n = tensor_numel(t);
    if (t->dtype == DT_NF4) return (size_t)((n + 1) / 2);
    return (size_t)n * dtype_size(t->dtype);
}

const char *dtype_name(int dtype) {
    static const char *names[] = {"f32", "bf16", "f16", "nf4", "i32", "u8", "i64"};
    return dtype >= 0 && dtype <= DT_I64 ? names[dtype] : "?";
}
