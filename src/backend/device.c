#include "backend/device.h"

#include <stdio.h>
#include <string.h>

#include "io/err.h"

int device_built_with_cuda(void) {
#ifdef ORPO_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int device_cuda_count(int *n) {
    char why[256];
    return cudev_count(n, why, sizeof why);
}

static void fill_cpu(device_info *out) {
    memset(out, 0, sizeof *out);
    out->kind = DEVICE_CPU;
    snprintf(out->name, sizeof out->name, "cpu");
}

int device_select(const char *want, device_info *out) {
    fill_cpu(out);
    if (!want || !strcmp(want, "cpu")) return ERR_OK;
    if (strcmp(want, "auto") && strcmp(want, "cuda"))
        return err_set(ERR_ARGS, "runtime.device: expected auto, cpu or cuda, got '%s'", want);
    int n = 0;
    char why[256] = "";
    int rc = cudev_count(&n, why, sizeof why);
    if (rc) return rc;
    if (n == 0) {
        if (!strcmp(want, "cuda"))
            return err_set(ERR_ARGS, "runtime.device is 'cuda' but no CUDA GPU is usable: %s "
                           "(set runtime.device: cpu or auto to run on the CPU)", why);
        return ERR_OK;
    }
    out->kind = DEVICE_CUDA;
    out->index = 0;
    return cudev_props(0, out->name, sizeof out->name, &out->mem_total, &out->cc_major, &out->cc_minor);
}

void device_describe(const device_info *d, char *buf, size_t n) {
    if (d->kind == DEVICE_CUDA)
        snprintf(buf, n, "cuda:%d %s (sm_%d%d, %.1f GiB)", d->index, d->name, d->cc_major,
                 d->cc_minor, (double)d->mem_total / (1024.0 * 1024.0 * 1024.0));
    else
        snprintf(buf, n, "cpu");
}
