// simt_names — the CPU executor's build of the kernels (orpo_simt) gives every function it shares with the GPU build
// (orpo_cuda) a name of its own, so that a program may link both: kops.h, kops_f32.h and kgemm.h include this
// header when ORPO_SIMT_NAMES is defined (CMakeLists.txt: orpo_simt and the tests in tests/kernels), and
// tests/kernels/test_simt_names.sh checks that every kc_ / kf_ op and the kgemm functions are listed here.
#ifndef ORPO_KERNELS_SIMT_NAMES_H
#define ORPO_KERNELS_SIMT_NAMES_H

#define kc_adamw ksim_kc_adamw
#define kc_add ksim_kc_add
#define kc_add_inplace ksim_kc_add_inplace
#define kc_attn_bwd ksim_kc_attn_bwd
#define kc_attn_fwd ksim_kc_attn_fwd
#define kc_attn_fused_bwd ksim_kc_attn_fused_bwd
#define kc_attn_fused_fwd ksim_kc_attn_fused_fwd
#define kc_cast ksim_kc_cast
#define kc_copy ksim_kc_copy
#define kc_dropout ksim_kc_dropout
#define kc_embed_bwd ksim_kc_embed_bwd
#define kc_embed_fwd ksim_kc_embed_fwd
#define kc_gather_rows ksim_kc_gather_rows
#define kc_gather_rows_fill ksim_kc_gather_rows_fill
#define kc_gelu_bwd ksim_kc_gelu_bwd
#define kc_gelu_fwd ksim_kc_gelu_fwd
#define kc_im2col ksim_kc_im2col
#define kc_layernorm_bwd ksim_kc_layernorm_bwd
#define kc_layernorm_fwd ksim_kc_layernorm_fwd
#define kc_linear_bwd ksim_kc_linear_bwd
#define kc_linear_fwd ksim_kc_linear_fwd
#define kc_logprob_bwd ksim_kc_logprob_bwd
#define kc_logprob_fwd ksim_kc_logprob_fwd
#define kc_matmul_acc ksim_kc_matmul_acc
#define kc_nf4_dequant ksim_kc_nf4_dequant
#define kc_quick_gelu_bwd ksim_kc_quick_gelu_bwd
#define kc_quick_gelu_fwd ksim_kc_quick_gelu_fwd
#define kc_rmsnorm_bwd ksim_kc_rmsnorm_bwd
#define kc_rmsnorm_fwd ksim_kc_rmsnorm_fwd
#define kc_rope_bwd ksim_kc_rope_bwd
#define kc_rope_fwd ksim_kc_rope_fwd
#define kc_scale ksim_kc_scale
#define kc_scatter_add_rows ksim_kc_scatter_add_rows
#define kc_scatter_rows ksim_kc_scatter_rows
#define kc_sumsq ksim_kc_sumsq
#define kc_swiglu_bwd ksim_kc_swiglu_bwd
#define kc_swiglu_fwd ksim_kc_swiglu_fwd
#define kc_vis_embed ksim_kc_vis_embed
#define kc_zero ksim_kc_zero
#define kf_add_inplace ksim_kf_add_inplace
#define kf_copy ksim_kf_copy
#define kf_gather_rows ksim_kf_gather_rows
#define kf_scale ksim_kf_scale
#define kf_scatter_add_rows ksim_kf_scatter_add_rows
#define kf_scatter_rows ksim_kf_scatter_rows
#define kf_zero ksim_kf_zero
#define kc_attn_chunk_entries ksim_kc_attn_chunk_entries
#define kc_attn_host_descs ksim_kc_attn_host_descs
#define kc_attn_fused_count ksim_kc_attn_fused_count
#define kc_attn_fused_why ksim_kc_attn_fused_why
#define cudnn_sdpa_prepare ksim_cudnn_sdpa_prepare // attn_fused.cu's stand-ins of cudnn_attn.cpp
#define cudnn_sdpa_fwd ksim_cudnn_sdpa_fwd
#define cudnn_sdpa_bwd ksim_cudnn_sdpa_bwd
#define cudnn_sdpa_version ksim_cudnn_sdpa_version
#define kgemm(c, g) ksim_kgemm(c, g)
#define kget(c, d, s, n) ksim_kget(c, d, s, n)
#define kscratch(c, n) ksim_kscratch(c, n) // function-like: opctx has a field of that name

#endif
