/* tensor — a pointer, a dtype and a shape. No reference counting, no autograd, no ownership.
 *
 *   tensor_make(data, dtype, ndim, shape)   build a tensor view (shape copied)
 *   tensor_numel(t)                        number of elements
 *   tensor_nbytes(t)                       bytes of data (NF4: two values per byte)
 *   dtype_name(dtype)                      "f32", "bf16", ...
 *   dtype_size(dtype)                      bytes per element (0 for packed NF4)
 */
#ifndef ORPO_TENSOR_H
#define ORPO_TENSOR_H

#include <stddef.h>
#include <stdint.h>

enum { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2, DT_NF4 = 3, DT_I32 = 4, DT_U8 = 5, DT_I64 = 6 };

#define TENSOR_MAX_DIMS 4

typedef struct tensor {
    void *data;
    int dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} tensor;

tensor tensor_make(void *data, int dtype, int ndim, const int64_t *shape);
int64_t tensor_numel(const tensor *t);
size_t tensor_nbytes(const tensor *t);
const char *dtype_name(int dtype);
size_t dtype_size(int dtype);

#endif
