// device.cu — CUDA device discovery and a self-test kernel, with C linkage for src/backend/device.c.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>

extern "C" {
#include "backend/device.h"
#include "io/err.h"
}

extern "C" int cudev_count(int *n, char *why, size_t why_len) {
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        snprintf(why, why_len, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        *n = 0;
        cudaGetLastError();  // clear the sticky error
    } else if (*n == 0) {
        snprintf(why, why_len, "the CUDA driver reports no device");
    }
    return ERR_OK;
}

extern "C" int cudev_props(int index, char *name, size_t name_len, size_t *mem_total, int *major,
                           int *minor) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    if (e != cudaSuccess)
        return err_set(ERR_INTERNAL, "cudaGetDeviceProperties(%d): %s", index, cudaGetErrorString(e));
    snprintf(name, name_len, "%s", p.name);
    *mem_total = p.totalGlobalMem;
    *major = p.major;
    *minor = p.minor;
    return ERR_OK;
}

__global__ static void saxpy_kernel(int n, float a, const float *x, float *y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

// C = A B for a 48x40 by 40x56 product with cuBLAS (column-major) against a host loop; 0 when equal
// to 1e-4 relative. Also creates and destroys a cuBLASLt handle, the library the matmuls will use.
static int gemm_selftest(char *why, size_t why_len) {
    const int m = 48, k = 40, n = 56;
    float *a = (float *)malloc(sizeof(float) * m * k), *b = (float *)malloc(sizeof(float) * k * n);
    float *c = (float *)malloc(sizeof(float) * m * n);
    float *da = NULL, *db = NULL, *dc = NULL;
    for (int i = 0; i < m * k; i++) a[i] = (float)((i * 7) % 11) - 5.0f;
    for (int i = 0; i < k * n; i++) b[i] = 0.5f * (float)((i * 5) % 9) - 2.0f;
    cublasHandle_t h = NULL;
    cublasLtHandle_t lt = NULL;
    int rc = 1;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_len, "cublasCreate/cublasLtCreate failed");
        goto done;
    }
    cudaMalloc(&da, sizeof(float) * m * k);
    cudaMalloc(&db, sizeof(float) * k * n);
    cudaMalloc(&dc, sizeof(float) * m * n);
    cudaMemcpy(da, a, sizeof(float) * m * k, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof(float) * k * n, cudaMemcpyHostToDevice);
    {
        const float one = 1.0f, zero = 0.0f;
        if (cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, m, db, k, &zero, dc, m) !=
            CUBLAS_STATUS_SUCCESS) {
            snprintf(why, why_len, "cublasSgemm failed");
            goto done;
        }
    }
    if (cudaMemcpy(c, dc, sizeof(float) * m * n, cudaMemcpyDeviceToHost) != cudaSuccess) {
        snprintf(why, why_len, "cudaMemcpy of the GEMM result failed");
        goto done;
    }
    rc = 0;
    for (int j = 0; j < n && !rc; j++)
        for (int i = 0; i < m; i++) {
            float ref = 0.0f;
            for (int p = 0; p < k; p++) ref += a[i + p * m] * b[p + j * k];
            if (fabsf(ref - c[i + j * m]) > 1e-4f * (1.0f + fabsf(ref))) {
                snprintf(why, why_len, "cuBLAS GEMM differs at (%d,%d): %g vs %g", i, j, c[i + j * m], ref);
                rc = 1;
                break;
            }
        }
done:
    if (lt) cublasLtDestroy(lt);
    if (h) cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    free(a);
    free(b);
    free(c);
    return rc;
}

// Runs y = 2x + y on the device and compares with the same sum on the host, then a cuBLAS GEMM.
extern "C" int cudev_selftest(int index, char *why, size_t why_len) {
    const int n = 1 << 16;
    float *hx = (float *)malloc(sizeof(float) * n), *hy = (float *)malloc(sizeof(float) * n);
    float *dx = NULL, *dy = NULL;
    int bad = -1;
    cudaError_t e = cudaSetDevice(index);
    for (int i = 0; i < n; i++) { hx[i] = (float)(i % 97) * 0.25f; hy[i] = (float)(i % 13); }
    if (e == cudaSuccess) e = cudaMalloc(&dx, sizeof(float) * n);
    if (e == cudaSuccess) e = cudaMalloc(&dy, sizeof(float) * n);
    if (e == cudaSuccess) e = cudaMemcpy(dx, hx, sizeof(float) * n, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(dy, hy, sizeof(float) * n, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) {
        saxpy_kernel<<<(n + 255) / 256, 256>>>(n, 2.0f, dx, dy);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaMemcpy(hy, dy, sizeof(float) * n, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess) {
        bad = 0;
        for (int i = 0; i < n; i++)
            if (hy[i] != 2.0f * ((float)(i % 97) * 0.25f) + (float)(i % 13)) { bad = i + 1; break; }
    }
    if (e != cudaSuccess) snprintf(why, why_len, "CUDA error: %s", cudaGetErrorString(e));
    else if (bad) snprintf(why, why_len, "wrong result at element %d", bad - 1);
    cudaFree(dx);
    cudaFree(dy);
    free(hx);
    free(hy);
    if (e != cudaSuccess || bad != 0) return ERR_INTERNAL;
    return gemm_selftest(why, why_len) ? ERR_INTERNAL : ERR_OK;
}

extern "C" int cudev_use(int index, char *why, size_t why_len) {
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(why, why_len, "cudaSetDevice(%d): %s", index, cudaGetErrorString(e));
        return ERR_ARGS;
    }
    return ERR_OK;
}
