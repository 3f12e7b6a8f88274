// kops_fill — the op fields of the kernel tables, once: ops_cuda() (kernels/cuda_ops.cu, device memory) and ops_simt()
// (kernels/simt/simt_ops.cpp, the same kernels run by the CPU executor on host memory) assign them here and add their
// own memory functions, context functions and name.
//
//   kops_fill(o)        every op of backend/ops.h on bf16 activations: the kc_* of kops.h
//   kops_fill_f32(o)    the fp32 table (ops.f32): kf_* of kops_f32.h, and the kc_* whose dtypes are explicit
//                       (sumsq, adamw, cast, nf4_dequant); every other op NULL
// (C++17: no designated initializers, so the fields are assigned in a function.)
#ifndef ORPO_KERNELS_KOPS_FILL_H
#define ORPO_KERNELS_KOPS_FILL_H

#include "kops.h"
#include "kops_f32.h"

static inline void kops_fill(ops *o) {
    o->linear_fwd = kc_linear_fwd;
    o->linear_bwd = kc_linear_bwd;
    o->rmsnorm_fwd = kc_rmsnorm_fwd;
    o->rmsnorm_bwd = kc_rmsnorm_bwd;
    o->layernorm_fwd = kc_layernorm_fwd;
    o->layernorm_bwd = kc_layernorm_bwd;
    o->rope_fwd = kc_rope_fwd;
    o->rope_bwd = kc_rope_bwd;
    o->attn_fwd = kc_attn_fwd;
    o->attn_bwd = kc_attn_bwd;
    o->gelu_fwd = kc_gelu_fwd;
    o->gelu_bwd = kc_gelu_bwd;
    o->quick_gelu_fwd = kc_quick_gelu_fwd;
    o->quick_gelu_bwd = kc_quick_gelu_bwd;
    o->swiglu_fwd = kc_swiglu_fwd;
    o->swiglu_bwd = kc_swiglu_bwd;
    o->add_inplace = kc_add_inplace;
    o->embed_fwd = kc_embed_fwd;
    o->embed_bwd = kc_embed_bwd;
    o->logprob_fwd = kc_logprob_fwd;
    o->logprob_bwd = kc_logprob_bwd;
    o->matmul_acc = kc_matmul_acc;
    o->scale = kc_scale;
    o->zero = kc_zero;
    o->copy = kc_copy;
    o->dropout = kc_dropout;
    o->gather_rows = kc_gather_rows;
    o->scatter_add_rows = kc_scatter_add_rows;
    o->gather_rows_fill = kc_gather_rows_fill;
    o->scatter_rows = kc_scatter_rows;
    o->add = kc_add;
    o->nf4_dequant = kc_nf4_dequant;
    o->im2col = kc_im2col;
    o->vis_embed = kc_vis_embed;
    o->cast = kc_cast;
    o->sumsq = kc_sumsq;
    o->adamw = kc_adamw;
}

static inline void kops_fill_f32(ops *o) {
    o->scale = kf_scale;
    o->zero = kf_zero;
    o->copy = kf_copy;
    o->add_inplace = kf_add_inplace;
    o->gather_rows = kf_gather_rows;
    o->scatter_rows = kf_scatter_rows;
    o->scatter_add_rows = kf_scatter_add_rows;
    o->nf4_dequant = kc_nf4_dequant;
    o->cast = kc_cast;
    o->sumsq = kc_sumsq;
    o->adamw = kc_adamw;
}

#endif
