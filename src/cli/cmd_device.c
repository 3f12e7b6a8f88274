/* orpo-hpc device: what compute this binary can use. */
#include <stdio.h>
#include <string.h>

#include "backend/device.h"
#include "cli/cli.h"
#include "io/err.h"

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
    }
    return 0;
}
