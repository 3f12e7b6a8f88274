/* On a machine with a GPU: the CUDA self-test kernel gives the CPU's answer. Skipped (77) without one. */
#include <stdio.h>

#include "backend/device.h"
#include "test.h"

int main(void) {
    int n = 0;
    char why[256] = "";
    cudev_count(&n, why, sizeof why);
    if (n == 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    device_info d;
    CHECK_EQ_INT(device_select("cuda", &d), 0);
    CHECK_EQ_INT(d.kind, DEVICE_CUDA);
    CHECK(d.mem_total > 0);
    CHECK_EQ_INT(cudev_selftest(0, why, sizeof why), 0);
    TEST_MAIN_END();
}
