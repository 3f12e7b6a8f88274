/* cpu_ops — the op table of the fp32 CPU reference. */
#include "backend/cpu/cpu_ops.h"

#include "backend/cpu/cpu_mem.h"

static const ops g_cpu_ops = {
    .name = "cpu",
    .linear_fwd = cpu_linear_fwd,
    .linear_bwd = cpu_linear_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .layernorm_fwd = cpu_layernorm_fwd,
    .layernorm_bwd = cpu_layernorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attn_fwd = cpu_attn_fwd,
    .attn_bwd = cpu_attn_bwd,
    .gelu_fwd = cpu_gelu_fwd,
    .gelu_bwd = cpu_gelu_bwd,
    .quick_gelu_fwd = cpu_quick_gelu_fwd,
    .quick_gelu_bwd = cpu_quick_gelu_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .add_inplace = cpu_add_inplace,
    .embed_fwd = cpu_embed_fwd,
    .embed_bwd = cpu_embed_bwd,
    .logprob_fwd = cpu_logprob_fwd,
    .logprob_bwd = cpu_logprob_bwd,
    .matmul_acc = cpu_matmul_acc,
    .scale = cpu_scale,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .dropout = cpu_dropout,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .gather_rows_fill = cpu_gather_rows_fill,
    .scatter_rows = cpu_scatter_rows,
    .add = cpu_add,
    .nf4_dequant = cpu_nf4_dequant,
    .im2col = cpu_im2col,
    .vis_embed = cpu_vis_embed,
    .cast = cpu_cast,
    .sumsq = cpu_sumsq,
    .adamw = cpu_adamw,
    CPU_MEM_OPS,
};

const ops *ops_cpu(void) { return &g_cpu_ops; }
