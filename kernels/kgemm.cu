// kgemm — the kernels' matrix products (cuBLASLt on the GPU, plain loops in the SIMT build) and their scratch; see
// kgemm.h. A product with a bias that cuBLASLt's epilogue does not take (and every one in the SIMT build) is formed
// in fp32 scratch and finished by kg_bias_k: C = T + beta C + bias, rounded once, as the epilogue does.
#include "kgemm.h"

#include <stdlib.h>
#include <string.h>

#ifdef __CUDACC__
#include <cublasLt.h>
#endif

enum { KG_THREADS = 256 };

// C[i, j] = T[i, j] (+ beta C[i, j]) + bias[j]; T: [m, n] f32 dense
__global__ static void kg_bias_k(void *C, int cdt, int64_t ldc, const float *T, const float *bias, int64_t m,
                                 int64_t n, float beta) {
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < m * n; e += (int64_t)blockDim.x * gridDim.x) {
        int64_t i = e / n, j = e - i * n;
        float v = T[e];
        if (cdt == KG_BF16) {
            bf16 *c = (bf16 *)C + i * ldc + j;
            if (beta != 0.0f) v += beta * bf2f(*c);
            *c = f2bf(v + bias[j]);
        } else {
            float *c = (float *)C + i * ldc + j;
            if (beta != 0.0f) v += beta * *c;
            *c = v + bias[j];
        }
    }
}

int kget(opctx *c, void *dst, const void *src, size_t bytes) {
    if (c->err) return c->err;
#ifdef __CUDACC__
    cudaStream_t st = (cudaStream_t)c->stream;
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st);
    if (e == cudaSuccess) e = cudaStreamSynchronize(st);
    if (e != cudaSuccess) return opctx_fail(c, ERR_INTERNAL, "reading %zu bytes of descriptors: %s", bytes,
                                            cudaGetErrorString(e));
#else
    if (simt_launch_hook) simt_launch_hook(1); // a device read, as the GPU's copy engine does it
    memcpy(dst, src, bytes);
    if (simt_launch_hook) simt_launch_hook(0);
#endif
    return 0;
}

void *kscratch(opctx *c, size_t bytes) {
    if (bytes <= c->kscratch_bytes && c->kscratch) return c->kscratch;
    void *p = NULL;
#ifdef __CUDACC__
    cudaStream_t st = (cudaStream_t)c->stream;
    if (c->kscratch) cudaFreeAsync(c->kscratch, st);
    cudaError_t e = cudaMallocAsync(&p, bytes, st);
    if (e != cudaSuccess) {
        cudaGetLastError(); // not a sticky CUDA error: the next launch must not report it
        p = NULL;
    }
#else
    free(c->kscratch);
    p = malloc(bytes);
#endif
    c->kscratch = p;
    c->kscratch_bytes = p ? bytes : 0;
    if (!p)
        opctx_fail(c, ERR_IO, "out of memory: cannot allocate %zu bytes (%zu MiB) for the kernels' scratch", bytes,
                   bytes >> 20);
    return p;
}

#ifndef __CUDACC__
// the SIMT build: op(A) and op(B) of a batch widened to fp32 row-major copies, then every C element's k products
// summed in ascending order in fp32 (row i of C accumulated over kk: the j loop is independent), then alpha acc
// (+ beta C)
static void kg_run(opctx *c, const kgemm_args &g) {
    (void)c;
    if (simt_launch_hook) simt_launch_hook(1); // the library's product runs "on the device", as a kernel does
    float *a = (float *)malloc(sizeof(float) * (size_t)(g.m * g.k)), *bt = (float *)malloc(sizeof(float) * (size_t)(g.k * g.n));
    float *row = (float *)malloc(sizeof(float) * (size_t)g.n);
    for (int b = 0; b < g.batch; b++) {
        const bf16 *A = (const bf16 *)g.A + b * g.sa, *B = (const bf16 *)g.B + b * g.sb;
        for (int64_t i = 0; i < g.m; i++)
            for (int64_t kk = 0; kk < g.k; kk++) a[i * g.k + kk] = bf2f(g.ta ? A[kk * g.lda + i] : A[i * g.lda + kk]);
        for (int64_t kk = 0; kk < g.k; kk++)
            for (int64_t j = 0; j < g.n; j++) bt[kk * g.n + j] = bf2f(g.tb ? B[j * g.ldb + kk] : B[kk * g.ldb + j]);
        for (int64_t i = 0; i < g.m; i++) {
            for (int64_t j = 0; j < g.n; j++) row[j] = 0.0f;
            for (int64_t kk = 0; kk < g.k; kk++) {
                const float av = a[i * g.k + kk], *br = bt + kk * g.n;
                for (int64_t j = 0; j < g.n; j++) row[j] += av * br[j];
            }
            for (int64_t j = 0; j < g.n; j++) {
                float v = g.alpha * row[j];
                if (g.cdt == KG_BF16) {
                    bf16 *o = (bf16 *)g.C + b * g.sc + i * g.ldc + j;
                    if (g.beta != 0.0f) v += g.beta * bf2f(*o);
                    *o = f2bf(v);
                } else {
                    float *o = (float *)g.C + b * g.sc + i * g.ldc + j;
                    if (g.beta != 0.0f) v += g.beta * *o;
                    *o = v;
                }
            }
        }
    }
    free(a), free(bt), free(row);
    if (simt_launch_hook) simt_launch_hook(0);
}

static int kg_bias_epilogue(opctx *c, const kgemm_args &g) { // the SIMT build forms biased products in scratch
    (void)c, (void)g;
    return 0;
}
#else
// the largest power of two (<= 256) dividing a pointer and, for a batch, its stride in bytes: the alignment a
// cuBLASLt algorithm may assume (its default, 256, would rule out every algorithm for a less aligned operand)
static uint32_t kg_align(const void *p, int64_t stride_bytes, int batch) {
    uintptr_t a = (uintptr_t)p | (batch > 1 ? (uintptr_t)stride_bytes : 0);
    uint32_t al = 256;
    while (al > 1 && (a & (al - 1))) al >>= 1;
    return al;
}

// a cache of chosen algorithms per thread, by everything the heuristic sees
struct kg_key {
    void *handle;
    int ta, tb, cdt, bias, batch;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc;
    uint32_t al_a, al_b, al_c, al_bias;
    size_t ws;
};
struct kg_slot {
    kg_key key;
    cublasLtMatmulAlgo_t algo;
    int used;
    int none; // no algorithm takes this (biased) product
};
enum { KG_CACHE = 128 };
static thread_local kg_slot kg_cache[KG_CACHE];
static thread_local int kg_next;

#define KG_TRY(call)                                                                                                \
    do {                                                                                                             \
        cublasStatus_t kg_s_ = (call);                                                                               \
        if (kg_s_ != CUBLAS_STATUS_SUCCESS) {                                                                        \
            st = kg_s_;                                                                                              \
            goto done;                                                                                               \
        }                                                                                                            \
    } while (0)

// one cuBLASLt call; 1 when done, 0 when no algorithm takes this bias epilogue (the caller forms it), -1 on error.
// The bias epilogue is asked for only where cuBLASLt documents it: the bias of D's type (cublasLt.h,
// CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: "same as D" but for int8 / fp8 kernels), so fp32 D with an fp32 bias
// aligned to 16 bytes; a bf16 D with our fp32 bias is formed by the caller (kg_bias_k), as is any product whose
// biased algorithm fails at run time
static int kg_lt(opctx *c, const kgemm_args &g) {
    if (g.bias && (g.cdt != KG_F32 || kg_align(g.bias, 0, 1) < 16)) return 0;
    cublasLtHandle_t h = (cublasLtHandle_t)c->blas;
    const cudaDataType_t ct = g.cdt == KG_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const int64_t cb = g.cdt == KG_BF16 ? 2 : 4;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    int rc = -1;
    // row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt's "A" is our B and its "B" our A
    cublasOperation_t opa = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    kg_key key;
    memset(&key, 0, sizeof key);
    key.handle = (void *)h, key.ta = g.ta, key.tb = g.tb, key.cdt = g.cdt, key.bias = g.bias != NULL;
    key.batch = g.batch, key.m = g.m, key.n = g.n, key.k = g.k, key.lda = g.lda, key.ldb = g.ldb, key.ldc = g.ldc;
    key.sa = g.sa, key.sb = g.sb, key.sc = g.sc, key.ws = c->blas_ws ? c->blas_ws_bytes : 0;
    key.al_a = kg_align(g.B, 2 * g.sb, g.batch), key.al_b = kg_align(g.A, 2 * g.sa, g.batch);
    key.al_c = kg_align(g.C, cb * g.sc, g.batch), key.al_bias = g.bias ? kg_align(g.bias, 0, 1) : 0;
    KG_TRY(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    KG_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    KG_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (g.bias) {
        cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
        int32_t bt = CUDA_R_32F;
        KG_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
        KG_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        KG_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof g.bias));
    }
    KG_TRY(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, g.tb ? g.k : g.n, g.tb ? g.n : g.k, g.ldb));
    KG_TRY(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, g.ta ? g.m : g.k, g.ta ? g.k : g.m, g.lda));
    KG_TRY(cublasLtMatrixLayoutCreate(&lc, ct, g.n, g.m, g.ldc));
    if (g.batch > 1) {
        int32_t nb = g.batch;
        KG_TRY(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb));
        KG_TRY(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb));
        KG_TRY(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb));
        KG_TRY(cublasLtMatrixLayoutSetAttribute(la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &g.sb, sizeof g.sb));
        KG_TRY(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &g.sa, sizeof g.sa));
        KG_TRY(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &g.sc, sizeof g.sc));
    }
    {
        kg_slot *hit = NULL;
        for (int i = 0; i < KG_CACHE && !hit; i++)
            if (kg_cache[i].used && !memcmp(&kg_cache[i].key, &key, sizeof key)) hit = &kg_cache[i];
        if (hit && hit->none) { // this biased product has no algorithm: the caller forms the bias
            rc = 0;
            goto done;
        }
        if (!hit) {
            KG_TRY(cublasLtMatmulPreferenceCreate(&pref));
            KG_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &key.ws,
                                                        sizeof key.ws));
            KG_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &key.al_a,
                                                        sizeof key.al_a));
            KG_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &key.al_b,
                                                        sizeof key.al_b));
            KG_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &key.al_c,
                                                        sizeof key.al_c));
            KG_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &key.al_c,
                                                        sizeof key.al_c));
            cublasLtMatmulHeuristicResult_t res;
            int nres = 0;
            cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, lc, lc, pref, 1, &res, &nres);
            hit = &kg_cache[kg_next];
            kg_next = (kg_next + 1) % KG_CACHE;
            hit->key = key;
            hit->used = 1;
            hit->none = hs != CUBLAS_STATUS_SUCCESS || nres < 1;
            if (hit->none) {
                if (g.bias) rc = 0; // the caller forms the bias (remembered: no second query for this shape)
                else st = hs != CUBLAS_STATUS_SUCCESS ? hs : CUBLAS_STATUS_NOT_SUPPORTED;
                goto done;
            }
            hit->algo = res.algo;
        }
        cublasStatus_t ms = cublasLtMatmul(h, op, &g.alpha, g.B, la, g.A, lb, &g.beta, g.C, lc, g.C, lc, &hit->algo,
                                           c->blas_ws, key.ws, (cudaStream_t)c->stream);
        if (ms != CUBLAS_STATUS_SUCCESS && g.bias) { // a biased algorithm that fails: form the bias ourselves
            hit->none = 1;
            rc = 0;
            goto done;
        }
        if (ms != CUBLAS_STATUS_SUCCESS) {
            st = ms;
            goto done;
        }
        rc = 1;
    }
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
    if (rc < 0)
        opctx_fail(c, ERR_INTERNAL, "cuBLASLt: %s for a %lld x %lld x %lld product (batch %d, ta %d, tb %d, C %s)",
                   cublasLtGetStatusString(st), (long long)g.m, (long long)g.n, (long long)g.k, g.batch, g.ta, g.tb,
                   g.cdt == KG_BF16 ? "bf16" : "f32");
    return rc;
}

static void kg_run(opctx *c, const kgemm_args &g) { kg_lt(c, g); }
static int kg_bias_epilogue(opctx *c, const kgemm_args &g) { return kg_lt(c, g) != 0; }
#endif

void kgemm(opctx *c, const kgemm_args &g) {
    if (c->err || g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
    if (g.k <= 0) {
        opctx_fail(c, ERR_INTERNAL, "kgemm: a product over k = %lld terms", (long long)g.k);
        return;
    }
    if (!g.bias) {
        kg_run(c, g);
        return;
    }
    if (kg_bias_epilogue(c, g)) return;
    // the bias by hand: T = alpha op(A) op(B) in fp32 scratch, then C = T (+ beta C) + bias, one rounding
    if (g.batch != 1) {
        opctx_fail(c, ERR_INTERNAL, "kgemm: a bias on a batch of %d products", g.batch);
        return;
    }
    float *T = (float *)kscratch(c, sizeof(float) * (size_t)(g.m * g.n));
    if (!T) return;
    kgemm_args t = g;
    t.beta = 0.0f, t.C = T, t.cdt = KG_F32, t.ldc = g.n, t.sc = 0, t.bias = NULL;
    kg_run(c, t);
    KLAUNCH(kg_bias_k, KMIN(kgrid(g.m * g.n, KG_THREADS), 4096u), KG_THREADS, 0, c, g.C, g.cdt, g.ldc, (const float *)T,
            g.bias, g.m, g.n, g.beta);
}
