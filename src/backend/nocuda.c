/* nocuda — the CUDA entry points of a CPU-only build: they report that no GPU code is here. */
#include <stdio.h>

#include "backend/device.h"
#include "io/err.h"

int cudev_count(int *n, char *why, size_t why_len) {
    *n = 0;
    snprintf(why, why_len, "this orpo-hpc was built without CUDA (nvcc was not found at build time)");
    return ERR_OK;
}

int cudev_props(int index, char *name, size_t name_len, size_t *mem_total, int *major, int *minor) {
    (void)index; (void)name; (void)name_len; (void)mem_total; (void)major; (void)minor;
    return err_set(ERR_INTERNAL, "cudev_props: built without CUDA");
}

int cudev_selftest(int index, char *why, size_t why_len) {
    (void)index;
    snprintf(why, why_len, "built without CUDA");
    return ERR_ARGS;
}

int cudev_use(int index, char *why, size_t why_len) {
    (void)index;
    snprintf(why, why_len, "this orpo-hpc was built without CUDA (nvcc was not found at build time)");
    return ERR_ARGS;
}
