// kops_f32 — the device ops on fp32 arrays (kernels/f32.cu): what the trainer does to its fp32 masters, gradients,
// moments and the embedding table (backend/ops.h, the `f32` table), with the signatures of backend/ops.h. Each is
// the fp32 CPU reference's (src/backend/cpu/cpu_misc.c, cpu_act.c) formula in the same order: bit-identical to
// ops_cpu(). No floating-point atomics: scatter_add_rows gives each thread one column and adds the rows in order.
//
//   kf_scale / kf_zero / kf_copy / kf_add_inplace     x *= alpha; x = 0; y = x; y += x  (n floats)
//   kf_gather_rows / kf_scatter_rows                   dst[i] = src[rows[i]];  dst[rows[i]] = src[i]  (rows of D floats)
//   kf_scatter_add_rows                                dst[rows[i]] += src[i], i in order (repeated rows add up in
//                                                      the reference's order)
//   kops_fill(o) / kops_fill_f32(o)                    kernels/kops_fill.h: the op fields of the two tables
#ifndef ORPO_KERNELS_KOPS_F32_H
#define ORPO_KERNELS_KOPS_F32_H

#ifdef ORPO_SIMT_NAMES
#include "simt/simt_names.h" /* the CPU executor's build: names of its own */
#endif

#ifdef __cplusplus
extern "C" {
#endif

#include "backend/ops.h"

void kf_scale(opctx *c, void *x, int64_t n, float alpha);
void kf_zero(opctx *c, void *x, int64_t n);
void kf_copy(opctx *c, void *y, const void *x, int64_t n);
void kf_add_inplace(opctx *c, void *y, const void *x, int64_t n);
void kf_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void kf_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);
void kf_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D);

#ifdef __cplusplus
}
#endif

#endif
