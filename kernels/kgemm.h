// kgemm — the kernels' matrix products and their scratch (kernels/kgemm.cu), for linear.cu and attn.cu.
//
//   kgemm(c, g)     C = alpha op(A) op(B) + beta C (+ bias), row-major, batched with strides: bf16 A and B, fp32
//                   accumulation, C f32 or bf16 (rounded once, nearest even). On the GPU one cuBLASLt call (bias as
//                   its epilogue); in the SIMT build plain loops summing k in ascending order. A failure (no
//                   algorithm, a library error) goes to the context's sticky error.
//   kscratch(c, n)  n bytes of the context's kernel scratch (c->kscratch), grown when smaller (stream-ordered on the
//                   GPU); NULL with the sticky error set when it cannot be had. One owner at a time: an op that holds
//                   it must not call kgemm with a bias (that path may use it too).
//   kget(c, dst, src, n)  n bytes of device memory read into host memory after the stream's earlier work (a
//                   synchronisation, for the few descriptors an op must see on the host)
#ifndef ORPO_KERNELS_KGEMM_H
#define ORPO_KERNELS_KGEMM_H

#ifdef ORPO_SIMT_NAMES
#include "simt/simt_names.h" // the CPU executor's build: names of its own
#endif

#include <stddef.h>
#include <stdint.h>

#include "simt.h"

enum { KG_F32 = 0, KG_BF16 = 1 };

// op(A) is m x k: A stored row-major as [m, k] (ta = 0) or [k, m] (ta = 1), rows lda apart; likewise op(B) k x n from
// [k, n] (tb = 0) or [n, k] (tb = 1); C [m, n] with rows ldc apart. Batch b uses A + b sa, B + b sb, C + b sc
// (elements). bias: NULL or n floats added to every row (C = alpha op(A) op(B) + beta C + bias, one rounding).
struct kgemm_args {
    int ta, tb;
    int64_t m, n, k;
    float alpha;
    const void *A;
    int64_t lda, sa;
    const void *B;
    int64_t ldb, sb;
    float beta;
    void *C;
    int cdt; // KG_F32 or KG_BF16
    int64_t ldc, sc;
    int batch;
    const float *bias;
};

void kgemm(opctx *c, const kgemm_args &g);
void *kscratch(opctx *c, size_t bytes);
// bytes of device memory into host memory, after the stream's earlier work (a synchronisation: for a few small
// descriptors an op must see on the host); 0 on success, else the context's sticky error is set
int kget(opctx *c, void *dst, const void *src, size_t bytes);

#endif
