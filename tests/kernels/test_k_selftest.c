/* test_k_selftest — the runtime self-test (backend/selftest.c) on ops_simt(): every op of the CUDA table's kernels,
 * run by the CPU executor on its "device" memory (uploaded and downloaded through the table), passes at the
 * self-test's shapes (its tolerances hold for the kernels' own reduction trees and attention's bf16 probabilities),
 * and the kernels really ran. */
#include "backend/selftest.h"
#include "kcheck.h"

int main(void) {
    const ops *t = ops_simt();
    selftest_shape sh[2];
    selftest_shape_default(&sh[0]);
    sh[1] = sh[0]; /* wider rows: several warps per row reduction, a 4099-wide vocabulary */
    sh[1].m = 40, sh[1].d = 1000, sh[1].vocab = 4099, sh[1].n = 20001;
    for (int i = 0; i < 2; i++) {
        opctx *c = i ? &kc_rctx : &kc_kctx; /* kcheck.h's two contexts, one per shape */
        selftest_result r;
        long before = simt_launches();
        int rc = ops_selftest_ex(t, c, &sh[i], (uint64_t)(3 + i), &r);
        printf("%s, shape %d: %d ops, %d failing, worst %.3f of the tolerance (%s), %.2f s, %ld kernel launches%s%s\n",
               t->name, i, r.nops, r.nfail, r.worst_ratio, r.worst_op[0] ? r.worst_op : "-", r.seconds,
               simt_launches() - before, rc ? ": " : "", rc ? r.why : "");
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(r.nops, SELFTEST_NOPS);
        KC_RAN(before);
        opctx_release(c);
    }
    TEST_MAIN_END();
}
