// cuda_ops — ops_cuda(): the CUDA backend's op table, the kernels of kernels/*.cu (kops_fill.h) with the memory and
// context of kernels/cuda_mem.cu (cuda_mem_fill), and its fp32 table (ops_cuda()->f32). CUDA build only
// (CMakeLists.txt ORPO_CUDA_ONLY). With cuDNN attention built (ORPO_HAVE_CUDNN), ops_cuda_cudnn() is the same table
// with attn_fwd / attn_bwd through cuDNN (kernels/attn_fused.cu; backend/attn_fused.h chooses it at run time).
extern "C" {
#include "backend/ops.h"
}
#include "cuda_ctx.h"
#include "kops.h"
#include "kops_fill.h"
#include "cudnn_attn.h"

static ops g_cuda, g_cuda_f32, g_cuda_cudnn;

static int make(void) {
    g_cuda_f32.name = "cuda-f32";
    kops_fill_f32(&g_cuda_f32);
    cuda_mem_fill(&g_cuda_f32);
    g_cuda_f32.f32 = &g_cuda_f32;
    g_cuda.name = "cuda";
    kops_fill(&g_cuda);
    cuda_mem_fill(&g_cuda);
    g_cuda.f32 = &g_cuda_f32;
    g_cuda_cudnn = g_cuda;
    g_cuda_cudnn.name = "cuda-cudnn";
    g_cuda_cudnn.attn_fwd = kc_attn_fused_fwd;
    g_cuda_cudnn.attn_bwd = kc_attn_fused_bwd;
    return 1;
}

extern "C" const ops *ops_cuda(void) {
    static const int made = make(); // once, thread-safe (C++11 statics)
    (void)made;
    return &g_cuda;
}

#ifdef ORPO_HAVE_CUDNN
extern "C" const ops *ops_cuda_cudnn(void) {
    (void)ops_cuda();
    return &g_cuda_cudnn;
}
#endif
