/* device — which compute device a run uses, decided at run time.
 *
 *   device_built_with_cuda()          1 when this binary contains the CUDA kernels
 *   device_cuda_count(&n)             number of usable CUDA devices; ERR_OK with n = 0 when
 *                                     the binary has no CUDA or the driver finds no GPU
 *   device_select(want, &info)        want is "auto" | "cpu" | "cuda"; "cuda" without a GPU
 *                                     is an error (ERR_ARGS) that says why; "auto" falls back to cpu
 *   device_describe(&info, buf, n)    one line: "cpu (OpenBLAS, 2 threads)" / "cuda:0 NVIDIA H100 ..."
 */
#ifndef ORPO_DEVICE_H
#define ORPO_DEVICE_H

#include <stddef.h>

enum { DEVICE_CPU = 0, DEVICE_CUDA = 1 };

typedef struct device_info {
    int kind;           /* DEVICE_CPU or DEVICE_CUDA */
    int index;          /* CUDA ordinal */
    char name[128];     /* GPU name, or "cpu" */
    size_t mem_total;   /* bytes of device memory (0 for cpu) */
    int cc_major, cc_minor;
} device_info;

int device_built_with_cuda(void);
int device_cuda_count(int *n);
int device_select(const char *want, device_info *out);
void device_describe(const device_info *d, char *buf, size_t n);

/* Implemented by kernels/device.cu (CUDA build) or src/backend/nocuda.c (CPU build). */
int cudev_count(int *n, char *why, size_t why_len);
int cudev_props(int index, char *name, size_t name_len, size_t *mem_total, int *major, int *minor);
int cudev_selftest(int index, char *why, size_t why_len);
/* make GPU `index` the calling thread's current device (cudaSetDevice); ERR_ARGS with `why` when it cannot be */
int cudev_use(int index, char *why, size_t why_len);

#endif
