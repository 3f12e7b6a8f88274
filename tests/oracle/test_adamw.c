/* AdamW + clip_grad_norm_ + LambdaLR against torch (tests/fixtures/orpo/orpo.h5, /adamw and /sched).
 * cosine_clip: 2 groups (lora lr 1e-2 wd 0.01, mm_projector lr 3e-3 wd 0.1), warm-up 2 + cosine to 6,
 *              4 steps, max_norm 1 (clipping active every step).
 * constant_noclip: 3 groups, constant schedule with 1 warm-up step, max_norm 1000 (coefficient clamped to 1).
 * Tolerances (was: params and moments 1e-6 relative per tensor, with no derivation):
 *   params after every step: per element within the bound of adamw_bound.h. Both sides get the same fp32 gradients;
 *     they differ only by the clip coefficient, through torch's fp32 norm (per-tensor norms, then the norm of the
 *     norms: gamma_n/2 + u each, any order; the coefficient's division and rounding: 3 u): kappa relative on every
 *     gradient, and by the rounding of the AdamW arithmetic itself (part 2 of adamw_bound.h);
 *   moments: |m - m_ref| <= sum_s a_s delta_s + 2 (4t+1) u sum_s a_s |g_s| (a_s = (1-b1) b1^(t-s), not bias
 *     corrected); |v - v_ref| <= 2 sqrt(v V) + V + 2 (6t) u v with V = sum_s b_s delta_s^2 (Cauchy-Schwarz);
 *   gradient norm: ours fp64, torch's fp32 as above: kappa relative;
 *   control: the same steps without weight decay (on copies) must break the parameter bound;
 *   schedule factors: the same double formula as transformers (cos, one libm call within 1 ulp, and <= 4
 *     roundings): <= 8 x 2^-53 = 8.9e-16 absolute on factors in [0, 1], checked against 1e-15 (was 1e-12); the lr,
 *     2e-4 x factor: 2e-4 x 1e-15 + 1 ulp of 2e-4 < 1e-18. */
#include <hdf5_hl.h>
#include <string.h>

#include "adamw_bound.h"
#include "fixture_h5.h"
#include "io/err.h"
#include "test.h"
#include "train/adamw.h"
#include "train/sched.h"

static hid_t F;
static double worst_p, worst_norm;

static double *rd_d(const char *path, size_t *n) {
    *n = fx_numel(F, path);
    double *p = malloc(sizeof(double) * *n);
    if (H5LTread_dataset_double(F, path, p) < 0) {
        fprintf(stderr, "fixture: cannot read %s\n", path);
        exit(1);
    }
    return p;
}

static void run_sched(void) {
    const char *cases[] = {"cosine_w3_t10", "cosine_w0_t7", "cosine_w5_t5", "cosine_w30_t1000",
                           "constant_w4_t10", "constant_w0_t6", "linear_w3_t10"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char grp[64], path[96];
        snprintf(grp, sizeof grp, "sched/%s", cases[c]);
        snprintf(path, sizeof path, "%s/factor", grp);
        size_t n;
        double *f = rd_d(path, &n);
        int kind = (int)fx_attr_d(F, grp, "kind");
        int64_t w = (int64_t)fx_attr_d(F, grp, "warmup"), t = (int64_t)fx_attr_d(F, grp, "total");
        int bad = 0;
        for (size_t s = 0; s < n; s++) {
            double got = sched_factor(kind, (int64_t)s, w, t);
            if (fabs(got - f[s]) > 1e-15) {
                if (bad++ < 3) fprintf(stderr, "%s step %zu: factor %.17g, expected %.17g\n", grp, s, got, f[s]);
            }
            CHECK_NEAR(sched_lr(kind, 2e-4, (int64_t)s, w, t), 2e-4 * f[s], 1e-18);
        }
        CHECK_EQ_INT(bad, 0);
        free(f);
    }
}

typedef struct {
    adamw_group g[4], mg[4]; /* mg: the control, without weight decay, on copies */
    adamw_tensor t[4][4], mt[4][4];
    int64_t off[4][4];
    char names[4][64];
} setup;

static double gamma_n(double n) { return n * AB_U / (1 - n * AB_U); }

static void run_adamw(const char *name) {
    char grp[64], path[160];
    snprintf(grp, sizeof grp, "adamw/%s", name);
    int steps = (int)fx_attr_d(F, grp, "steps"), ng = (int)fx_attr_d(F, grp, "ngroups");
    int kind = (int)fx_attr_d(F, grp, "kind");
    int64_t warm = (int64_t)fx_attr_d(F, grp, "warmup"), total = (int64_t)fx_attr_d(F, grp, "total");
    double max_norm = fx_attr_d(F, grp, "max_norm");
    size_t n;
    snprintf(path, sizeof path, "%s/norm", grp);
    double *norms = rd_d(path, &n);
    snprintf(path, sizeof path, "%s/lr", grp);
    double *lrs = rd_d(path, &n);
    static setup S;
    memset(&S, 0, sizeof S);
    for (int k = 0; k < ng; k++) {
        char gp[96];
        snprintf(gp, sizeof gp, "%s/group%d", grp, k);
        CHECK(H5LTget_attribute_string(F, gp, "name", S.names[k]) >= 0);
        S.g[k].name = S.names[k];
        S.g[k].lr = fx_attr_d(F, gp, "lr");
        S.g[k].weight_decay = fx_attr_d(F, gp, "weight_decay");
        S.g[k].nt = (int)fx_attr_d(F, gp, "ntensors");
        S.g[k].t = S.t[k];
        for (int j = 0; j < S.g[k].nt; j++) {
            snprintf(path, sizeof path, "%s/t%d/p0", gp, j);
            adamw_tensor *t = &S.t[k][j];
            t->param = fx_f32(F, path, &n);
            t->n = (int64_t)n;
            t->grad = calloc(n, sizeof(float));
            t->m = calloc(n, sizeof(float));
            t->v = calloc(n, sizeof(float));
            t->name = S.names[k];
        }
    }
    int64_t ntot = 0;
    double kappa = 0;
    for (int k = 0; k < ng; k++) {
        S.mg[k] = S.g[k];
        S.mg[k].weight_decay = 0;
        S.mg[k].t = S.mt[k];
        for (int j = 0; j < S.g[k].nt; j++) {
            adamw_tensor *t = &S.t[k][j], *c = &S.mt[k][j];
            *c = *t;
            c->param = malloc(sizeof(float) * (size_t)t->n);
            memcpy(c->param, t->param, sizeof(float) * (size_t)t->n);
            c->m = calloc((size_t)t->n, sizeof(float));
            c->v = calloc((size_t)t->n, sizeof(float));
            S.off[k][j] = ntot;
            ntot += t->n;
            kappa = fmax(kappa, gamma_n((double)t->n) / 2 + AB_U);
        }
    }
    int ntens = 0;
    for (int k = 0; k < ng; k++) ntens += S.g[k].nt;
    kappa += gamma_n(ntens) / 2 + AB_U + 3 * AB_U; /* the norm of the norms; the coefficient */
    adamw_opt mopt;
    adamw_init(&mopt);
    ab_state B;
    ab_init(&B, &mopt, ntot);
    double worst_ratio = 0, control = 0;
    CHECK_EQ_INT(adamw_group_index(S.g, ng, "mm_projector"), 1);
    CHECK_EQ_INT(adamw_group_index(S.g, ng, "nope"), -1);
    adamw_opt opt;
    adamw_init(&opt);
    for (int s = 0; s < steps; s++) {
        for (int k = 0; k < ng; k++)
            for (int j = 0; j < S.g[k].nt; j++) {
                snprintf(path, sizeof path, "%s/group%d/t%d/grad%d", grp, k, j, s);
                float *gr = fx_f32(F, path, &n);
                memcpy(S.t[k][j].grad, gr, sizeof(float) * n);
                free(gr);
            }
        double norm = adamw_clip(&opt, S.g, ng, max_norm);
        double rn = fabs(norm - norms[s]) / norms[s];
        if (rn > worst_norm) worst_norm = rn;
        CHECK(rn <= kappa);
        if (max_norm < norms[s]) {
            /* clipping was active: the clipped gradients have norm max_norm (up to the 1e-6 of torch) */
            CHECK_NEAR(adamw_grad_norm(&opt, S.g, ng), max_norm * norms[s] / (norms[s] + 1e-6), kappa * max_norm);
        }
        double factor = sched_factor(kind, s, warm, total);
        for (int k = 0; k < ng; k++) CHECK_NEAR(S.g[k].lr * factor, lrs[s * ng + k], 1e-15);
        /* both sides clamp the coefficient to 1 when the norm is below max_norm: then the gradients are the same */
        double drel = max_norm < norms[s] * (1 + kappa) ? kappa : 0;
        ab_begin_step(&B);
        for (int k = 0; k < ng; k++)
            for (int j = 0; j < S.g[k].nt; j++) ab_grad(&B, S.off[k][j], S.t[k][j].grad, S.t[k][j].n, 0, drel);
        CHECK_EQ_INT(adamw_step(&opt, S.g, ng, factor), ERR_OK);
        CHECK_EQ_INT(adamw_step(&mopt, S.mg, ng, factor), ERR_OK);
        CHECK_EQ_INT(opt.step, s + 1);
        for (int k = 0; k < ng; k++)
            for (int j = 0; j < S.g[k].nt; j++) {
                snprintf(path, sizeof path, "%s/group%d/t%d/p%d", grp, k, j, s + 1);
                float *ref = fx_f32(F, path, &n);
                adamw_tensor *t = &S.t[k][j];
                ab_step(&B, S.off[k][j], t->param, t->m, t->v, t->n, S.g[k].lr * factor, S.g[k].weight_decay);
                double e = fx_relerr(t->param, ref, n), r = ab_ratio(&B, S.off[k][j], t->param, ref, t->n, NULL);
                if (e > worst_p) worst_p = e;
                worst_ratio = fmax(worst_ratio, r);
                control = fmax(control, ab_ratio(&B, S.off[k][j], S.mt[k][j].param, ref, t->n, NULL));
                if (r > 1) fprintf(stderr, "%s step %d group %d tensor %d: |diff| / bound %.3g\n", name, s, k, j, r);
                CHECK(r <= 1);
                free(ref);
            }
    }
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < S.g[k].nt; j++) {
            snprintf(path, sizeof path, "%s/group%d/t%d/m", grp, k, j);
            float *ref = fx_f32(F, path, &n);
            const int64_t o = S.off[k][j];
            const int t = B.t;
            int bad_m = 0, bad_v = 0;
            for (size_t i = 0; i < n; i++) {
                double bm = B.dm[o + i] + 2 * (4 * t + 1) * AB_U * B.am[o + i];
                bad_m += fabs((double)S.t[k][j].m[i] - ref[i]) > bm;
            }
            free(ref);
            snprintf(path, sizeof path, "%s/group%d/t%d/v", grp, k, j);
            ref = fx_f32(F, path, &n);
            for (size_t i = 0; i < n; i++) {
                double v = S.t[k][j].v[i], V = B.dv[o + i];
                bad_v += fabs(v - ref[i]) > 2 * sqrt(v * V) + V + 2 * 6 * t * AB_U * v;
            }
            CHECK_EQ_INT(bad_m, 0);
            CHECK_EQ_INT(bad_v, 0);
            free(ref);
            free(S.t[k][j].param); free(S.t[k][j].grad); free(S.t[k][j].m); free(S.t[k][j].v);
            free(S.mt[k][j].param); free(S.mt[k][j].m); free(S.mt[k][j].v);
        }
    printf("adamw %s: worst |w - w_torch| / bound %.3f; control without weight decay %.3g (must be > 1)\n", name,
           worst_ratio, control);
    CHECK(control > 1);
    ab_free(&B);
    free(norms);
    free(lrs);
}

int main(void) {
    F = fx_open(test_fixture("orpo/orpo.h5"));
    run_sched();
    run_adamw("cosine_clip");
    run_adamw("constant_noclip");
    printf("adamw: worst param max|diff|/max|ref| %.3g, worst grad-norm rel diff %.3g\n", worst_p, worst_norm);
    H5Fclose(F);
    TEST_MAIN_END();
}
