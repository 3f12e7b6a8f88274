/* On a machine with a GPU: every op of the CUDA table (ops_for(DEVICE_CUDA, DT_BF16)) against the CPU bf16 reference
 * through the runtime self-test (backend/selftest.h: each op within its stated tolerance) at several shapes: the
 * default small ones, odd sizes (one row, widths that are not multiples of a warp, a head dimension of 2), and the
 * 7B layer widths (hidden 4096, 32 query / 8 key-value heads of 128, vocabulary 32064) on a few rows. A GPU without
 * the table or its context set-up is a failure, not a skip. Skipped (77) without a GPU. */
#include <stdio.h>

#include "backend/devctx.h"
#include "backend/device.h"
#include "backend/selftest.h"
#include "backend/tensor.h"
#include "test.h"

int main(void) {
    int n = 0;
    char why[512] = "";
    cudev_count(&n, why, sizeof why);
    if (n == 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    const ops *dev = ops_for(DEVICE_CUDA, DT_BF16);
    if (!dev) printf("this build has no CUDA op table: ops_for(DEVICE_CUDA, DT_BF16) is NULL\n");
    CHECK(dev != NULL);
    opctx c;
    int rc = devctx_open(DEVICE_CUDA, 0, &c, why, sizeof why);
    if (rc) printf("no CUDA op context: %s\n", why);
    CHECK_EQ_INT(rc, 0);
    if (!dev || rc) TEST_MAIN_END();
    selftest_shape sh[4];
    selftest_shape_default(&sh[0]);
    sh[1] = sh[0]; /* odd: one row, widths off the warp size, the smallest head */
    sh[1].m = 1, sh[1].k = 33, sh[1].nout = 5, sh[1].d = 37, sh[1].vocab = 31, sh[1].nq = 3, sh[1].nkv = 1;
    sh[1].hd = 2, sh[1].prefix = 2, sh[1].n = 3, sh[1].tiles = 1, sh[1].tile = 14;
    sh[2] = sh[0]; /* medium: several warps per row, GQA 4:1 */
    sh[2].m = 67, sh[2].k = 300, sh[2].nout = 129, sh[2].d = 1024, sh[2].vocab = 4099, sh[2].nq = 16, sh[2].nkv = 4;
    sh[2].hd = 64, sh[2].prefix = 45, sh[2].n = 100003, sh[2].tiles = 3, sh[2].tile = 56;
    sh[3] = sh[0]; /* the 7B widths on a few rows */
    sh[3].m = 8, sh[3].k = 4096, sh[3].nout = 1024, sh[3].d = 4096, sh[3].vocab = 32064, sh[3].nq = 32, sh[3].nkv = 8;
    sh[3].hd = 128, sh[3].prefix = 24, sh[3].n = 14336 * 8, sh[3].tiles = 1, sh[3].tile = 336;
    const char *label[4] = {"default", "odd", "medium", "7B widths"};
    for (int i = 0; i < 4; i++) {
        selftest_result r;
        int e = ops_selftest_ex(dev, &c, &sh[i], (uint64_t)(11 + i), &r);
        printf("%-9s: %d ops, %d failing, worst %.3f of the tolerance (%s), %.2f s%s%s\n", label[i], r.nops, r.nfail,
               r.worst_ratio, r.worst_op[0] ? r.worst_op : "-", r.seconds, e ? ": " : "", e ? r.why : "");
        CHECK_EQ_INT(e, 0);
        CHECK_EQ_INT(r.nops, SELFTEST_NOPS);
    }
    devctx_close(DEVICE_CUDA, &c);
    TEST_MAIN_END();
}
