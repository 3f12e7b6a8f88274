/* orpo-hpc device: what compute this binary can use; --selftest: the GPU smoke test (a kernel and a cuBLAS GEMM),
 * then every op of the CUDA table against the CPU bf16 reference (backend/selftest.h). */
#include <stdio.h>
#include <string.h>

#include "backend/devctx.h"
#include "backend/device.h"
#include "backend/ops.h"
#include "backend/selftest.h"
#include "backend/tensor.h"
#include "cli/cli.h"
#include "io/err.h"

/* every op of the CUDA table on GPU 0 against the CPU bf16 reference: 0, 2 when this binary cannot run the table
 * (no table or no CUDA context set-up: "not available"), 1 when an op disagrees */
static int ops_check_cuda(void) {
    const ops *dev = ops_for(DEVICE_CUDA, DT_BF16);
    if (!dev) {
        fprintf(stderr, "orpo-hpc: error: op self-test: this build has no CUDA op table (ops_for(cuda, bf16) is NULL)\n");
        return ERR_ARGS;
    }
    opctx c;
    char why[512];
    if (devctx_open(DEVICE_CUDA, 0, &c, why, sizeof why)) {
        fprintf(stderr, "orpo-hpc: error: op self-test: %s\n", why);
        return ERR_ARGS;
    }
    selftest_shape sh;
    selftest_result r;
    selftest_shape_default(&sh);
    int rc = ops_selftest_ex(dev, &c, &sh, 1, &r);
    devctx_close(DEVICE_CUDA, &c);
    if (rc) {
        fprintf(stderr, "orpo-hpc: error: op self-test on cuda:0 failed (%d of %d ops): %s; CUDA is refused on this "
                "GPU and driver\n", r.nfail, SELFTEST_NOPS, r.why);
        return ERR_INTERNAL;
    }
    printf("op self-test on cuda:0: %d ops of the %s table agree with the CPU bf16 reference (worst %.2f of its "
           "tolerance, in %s) in %.2f s\n", r.nops, dev->name, r.worst_ratio, r.worst_op[0] ? r.worst_op : "-",
           r.seconds);
    return 0;
}

int cmd_device(int argc, char **argv) {
    int selftest = 0;
    const char *want = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--selftest")) selftest = 1;
        else if (!strcmp(argv[i], "--want") && i + 1 < argc) want = argv[++i];
        else return err_set(ERR_ARGS, "device: unknown argument '%s'", argv[i]), cli_fail();
    }
    if (want) {
        device_info d;
        char line[256];
        if (device_select(want, &d)) return cli_fail();
        device_describe(&d, line, sizeof line);
        printf("runtime.device %s -> %s\n", want, line);
        return 0;
    }
    int n = 0;
    char why[256] = "";
    cudev_count(&n, why, sizeof why);
    printf("built with CUDA: %s\n", device_built_with_cuda() ? "yes" : "no");
    printf("CUDA devices: %d%s%s\n", n, n ? "" : " — ", n ? "" : why);
    for (int i = 0; i < n; i++) {
        char name[128];
        size_t mem = 0;
        int ma = 0, mi = 0;
        if (cudev_props(i, name, sizeof name, &mem, &ma, &mi)) return cli_fail();
        printf("  cuda:%d %s sm_%d%d %.1f GiB\n", i, name, ma, mi, (double)mem / (1 << 30));
    }
    if (selftest) {
        if (n == 0) {
            fprintf(stderr, "orpo-hpc: error: --selftest needs a CUDA GPU: %s\n", why);
            return ERR_ARGS;
        }
        if (cudev_selftest(0, why, sizeof why)) {
            fprintf(stderr, "orpo-hpc: error: GPU self-test failed: %s\n", why);
            return ERR_INTERNAL;
        }
        printf("self-test on cuda:0: ok\n");
        return ops_check_cuda();
    }
    return 0;
}
