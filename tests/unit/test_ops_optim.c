/* The optimiser's ops (sumsq, adamw) and train/adamw.c running through them: bit for bit against the plain loops
 * that adamw.c held before it used the ops (torch's single-tensor AdamW and clip_grad_norm_ in fp32 with fp64
 * scalars), unbound (the fp32 CPU reference) and bound to a backend context (adamw_bind), with and without weight
 * decay, clipping active. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_mem.h"
#include "backend/ops.h"
#include "io/err.h"
#include "test.h"
#include "test_ops_util.h"
#include "train/adamw.h"

/* the reference: the loops of adamw.c before the ops */
static double ref_norm(const adamw_group *g, int ng) {
    double ss = 0;
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            for (int64_t i = 0; i < g[k].t[j].n; i++) ss += (double)g[k].t[j].grad[i] * (double)g[k].t[j].grad[i];
    return sqrt(ss);
}

static double ref_clip(adamw_group *g, int ng, double max_norm) {
    double total = ref_norm(g, ng), coef = max_norm / (total + 1e-6);
    if (!(max_norm > 0) || !(coef < 1.0)) return total;
    float c = (float)coef;
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            for (int64_t i = 0; i < g[k].t[j].n; i++) g[k].t[j].grad[i] *= c;
    return total;
}

static void ref_step(adamw_opt *o, adamw_group *g, int ng, double lr_factor) {
    o->step++;
    const double t = (double)o->step, bc1 = 1.0 - pow(o->beta1, t), bc2_sqrt = sqrt(1.0 - pow(o->beta2, t));
    const float w1 = (float)(1.0 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1.0 - o->beta2);
    const float bc2f = (float)bc2_sqrt, epsf = (float)o->eps;
    for (int k = 0; k < ng; k++) {
        const double lr = g[k].lr * lr_factor;
        const float decay = (float)(1.0 - lr * g[k].weight_decay), neg_step = (float)(-(lr / bc1));
        for (int j = 0; j < g[k].nt; j++) {
            float *p = g[k].t[j].param, *m = g[k].t[j].m, *v = g[k].t[j].v;
            const float *gr = g[k].t[j].grad;
            for (int64_t i = 0; i < g[k].t[j].n; i++) {
                float gi = gr[i];
                if (g[k].weight_decay != 0) p[i] *= decay;
                m[i] = m[i] + w1 * (gi - m[i]);
                float vi = v[i] * b2;
                v[i] = vi + w2 * gi * gi;
                float denom = sqrtf(v[i]) / bc2f + epsf;
                p[i] = p[i] + neg_step * m[i] / denom;
            }
        }
    }
}

static void test_sumsq(void) {
    opctx c = {0};
    uint64_t s = 21;
    enum { N = 10007 };
    float *x = malloc(sizeof(float) * N);
    tu_fill(x, N, &s, 3.0f);
    double ref = 0, got = 0;
    for (int i = 0; i < N; i++) ref += (double)x[i] * (double)x[i];
    ops_cpu()->sumsq(&c, &got, x, 4000); /* three calls continue one running sum in index order */
    ops_cpu()->sumsq(&c, &got, x + 4000, 1);
    ops_cpu()->sumsq(&c, &got, x + 4001, N - 4001);
    CHECK(tu_bits_eq(&got, &ref, sizeof ref));
    double shuffled = 0; /* the order matters in the last bits: a reordered sum is generally not bit-identical */
    ops_cpu()->sumsq(&c, &shuffled, x + 4001, N - 4001);
    ops_cpu()->sumsq(&c, &shuffled, x, 4001);
    CHECK(fabs(shuffled - ref) <= 1e-12 * ref);
    free(x);
}

enum { NG = 2, NT = 3 };
typedef struct state {
    float *buf;
    adamw_tensor t[NG][NT];
    adamw_group g[NG];
} state;

static void state_make(state *st, uint64_t seed) {
    static const int64_t sizes[NG][NT] = {{17, 1000, 3}, {256, 1, 777}};
    int64_t tot = 0;
    for (int k = 0; k < NG; k++)
        for (int j = 0; j < NT; j++) tot += sizes[k][j];
    st->buf = malloc(sizeof(float) * (size_t)(4 * tot));
    uint64_t s = seed;
    tu_fill(st->buf, 4 * tot, &s, 0.5f);
    float *p = st->buf;
    for (int k = 0; k < NG; k++) {
        for (int j = 0; j < NT; j++) {
            int64_t n = sizes[k][j];
            st->t[k][j] = (adamw_tensor){"t", p, p + n, p + 2 * n, p + 3 * n, n};
            for (int64_t i = 0; i < n; i++) p[3 * n + i] = fabsf(p[3 * n + i]); /* v >= 0 */
            p += 4 * n;
        }
        st->g[k] = (adamw_group){k ? "b" : "a", k ? 2e-3 : 1e-2, k ? 0.0 : 0.1, st->t[k], NT};
    }
}

static void new_grads(state *st, uint64_t *s, float scale) {
    for (int k = 0; k < NG; k++)
        for (int j = 0; j < NT; j++) tu_fill(st->t[k][j].grad, st->t[k][j].n, s, scale);
}

static int same(const state *a, const state *b) {
    int ok = 1;
    for (int k = 0; k < NG; k++)
        for (int j = 0; j < NT; j++) ok &= tu_bits_eq(a->t[k][j].param, b->t[k][j].param, sizeof(float) * 4 * (size_t)a->t[k][j].n);
    return ok;
}

static void test_adamw(int bind) {
    state ref, got;
    state_make(&ref, 5);
    state_make(&got, 5);
    adamw_opt ro, go;
    adamw_init(&ro);
    adamw_init(&go);
    opctx c = {0};
    if (bind) CHECK_EQ_INT(adamw_bind(&go, ops_cpu(), &c), ERR_OK);
    uint64_t s1 = 9, s2 = 9;
    for (int step = 0; step < 4; step++) {
        float scale = step == 2 ? 50.0f : 0.3f; /* step 2 clips */
        new_grads(&ref, &s1, scale);
        new_grads(&got, &s2, scale);
        double nr = ref_norm(ref.g, NG), ng = adamw_grad_norm(&go, got.g, NG);
        CHECK(tu_bits_eq(&ng, &nr, sizeof nr));
        double cr = ref_clip(ref.g, NG, 5.0), cg = adamw_clip(&go, got.g, NG, 5.0);
        CHECK(tu_bits_eq(&cg, &cr, sizeof cr));
        if (step == 2) CHECK(cr > 5.0);
        double f = 1.0 - 0.2 * step;
        ref_step(&ro, ref.g, NG, f);
        CHECK_EQ_INT(adamw_step(&go, got.g, NG, f), ERR_OK);
        CHECK(same(&ref, &got));
    }
    CHECK_EQ_INT(go.step, 4);
    adamw_zero_grad(&go, got.g, NG);
    CHECK(got.t[1][2].grad[776] == 0.0f && got.t[0][0].grad[0] == 0.0f);
    adamw_release(&go);
    CHECK(go.ss == NULL);
    free(ref.buf);
    free(got.buf);
}

static void test_bind_fails(void) {
    /* a context whose sticky error is set: adamw_step reports it at its sync point */
    adamw_opt o;
    adamw_init(&o);
    opctx c = {0};
    CHECK_EQ_INT(adamw_bind(&o, ops_cpu(), &c), ERR_OK);
    size_t live;
    cpu_mem_stats(0, &live, NULL);
    CHECK(live >= sizeof(double));
    opctx_fail(&c, ERR_IO, "a copy failed");
    float p = 1, g = 1, m = 0, v = 0;
    adamw_tensor t = {"x", &p, &g, &m, &v, 1};
    adamw_group gr = {"g", 1e-3, 0, &t, 1};
    CHECK_EQ_INT(adamw_step(&o, &gr, 1, 1.0), ERR_IO);
    CHECK_CONTAINS(err_msg(), "a copy failed");
    err_clear();
    adamw_release(&o);
}

int main(void) {
    test_sumsq();
    test_adamw(0);
    test_adamw(1);
    test_bind_fails();
    TEST_MAIN_END();
}
