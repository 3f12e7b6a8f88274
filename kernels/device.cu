// device.cu — CUDA device discovery and a self-test kernel, with C linkage for src/backend/device.c.
#include <cuda_runtime.h>
#include <stdio.h>
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

// Runs y = 2x + y on the device and compares with the same sum on the host.
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
    return (e == cudaSuccess && bad == 0) ? ERR_OK : ERR_INTERNAL;
}
