/* test_k_selftest — the runtime self-test (backend/selftest.c) on the kernels run by the CPU executor: a table that is
 * ops_cpu_bf16 with every op that has a kernel on this branch replaced by it (kernels/act.cu, embed.cu, norm.cu,
 * optim.cu) passes at the self-test's shapes (its tolerances hold for the kernels' own reduction trees), and the kernels
 * really ran. MERGE: when kernels/cuda_ops.cu gives ops_simt(), run ops_selftest_ex on ops_simt() itself here. */
#include "backend/selftest.h"
#include "kcheck.h"

int main(void) {
    ops t = *ops_cpu_bf16();
    t.name = "cpu-bf16 + SIMT kernels";
    t.gelu_fwd = kc_gelu_fwd, t.gelu_bwd = kc_gelu_bwd, t.quick_gelu_fwd = kc_quick_gelu_fwd;
    t.quick_gelu_bwd = kc_quick_gelu_bwd, t.swiglu_fwd = kc_swiglu_fwd, t.swiglu_bwd = kc_swiglu_bwd;
    t.add_inplace = kc_add_inplace, t.add = kc_add;
    t.embed_fwd = kc_embed_fwd, t.embed_bwd = kc_embed_bwd, t.logprob_fwd = kc_logprob_fwd;
    t.logprob_bwd = kc_logprob_bwd;
    t.rmsnorm_fwd = kc_rmsnorm_fwd, t.rmsnorm_bwd = kc_rmsnorm_bwd, t.layernorm_fwd = kc_layernorm_fwd;
    t.layernorm_bwd = kc_layernorm_bwd;
    t.sumsq = kc_sumsq, t.adamw = kc_adamw;
    selftest_shape sh[2];
    selftest_shape_default(&sh[0]);
    sh[1] = sh[0]; /* wider rows: several warps per row reduction, a 4099-wide vocabulary */
    sh[1].m = 40, sh[1].d = 1000, sh[1].vocab = 4099, sh[1].n = 20001;
    for (int i = 0; i < 2; i++) {
        opctx *c = i ? &kc_rctx : &kc_kctx; /* kcheck.h's two contexts, one per shape */
        selftest_result r;
        long before = simt_launches();
        int rc = ops_selftest_ex(&t, c, &sh[i], (uint64_t)(3 + i), &r);
        printf("%s, shape %d: %d ops, %d failing, worst %.3f of the tolerance (%s), %.2f s, %ld kernel launches%s%s\n",
               t.name, i, r.nops, r.nfail, r.worst_ratio, r.worst_op[0] ? r.worst_op : "-", r.seconds,
               simt_launches() - before, rc ? ": " : "", rc ? r.why : "");
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(r.nops, SELFTEST_NOPS);
        KC_RAN(before);
        opctx_release(c);
    }
    TEST_MAIN_END();
}
