/* kcheck — the kernels' tests: the CUDA kernels (kernels/<family>.cu) run by the CPU executor (kernels/simt) against the CPU
 * reference in bf16 mode (ops_cpu_bf16), on the same inputs.
 *
 *   kc_ref()                         the reference table (ops_cpu_bf16) and kc_rctx / kc_kctx, the two contexts
 *   kc_bf16(n, s, scale)             n random bf16 values (malloc'd; scale * uniform[-1, 1), rounded to nearest even)
 *   kc_f32(n, s, scale)              n random floats
 *   kc_dup(p, bytes)                 a copy
 *   kc_same_bf16(what, got, want, n, ulps)
 *                                    1 when every value is within `ulps` bf16 units in the last place (0: bit-identical;
 *                                    NaN must match NaN); else prints the worst and returns 0
 *   kc_same_f32(what, got, want, n, rel, abs)   |got - want| <= abs + rel |want| for every value
 *   KC_RAN(before)                   the CPU executor launched at least one kernel since `before` (simt_launches())
 * Tolerances are stated and derived at each check: 0 where the kernel evaluates the reference's formula in the same
 * order (both are IEEE fp32 on this CPU, rounded once to bf16).
 */
#ifndef ORPO_TEST_KCHECK_H
#define ORPO_TEST_KCHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/tensor.h"
#include "kops.h"
#include "test.h"
#include "unit/test_ops_util.h"

static opctx kc_rctx = {.device = 0, .act_dtype = DT_BF16, .threads = 1};
static opctx kc_kctx = {.device = 0, .act_dtype = DT_BF16, .threads = 1};

static inline const ops *kc_ref(void) { return ops_cpu_bf16(); }

static inline uint16_t *kc_bf16(int64_t n, uint64_t *s, float scale) {
    uint16_t *p = malloc(sizeof(uint16_t) * (size_t)(n ? n : 1));
    tu_bf16_fill(p, n, s, scale);
    return p;
}

static inline float *kc_f32(int64_t n, uint64_t *s, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    tu_fill(p, n, s, scale);
    return p;
}

static inline void *kc_dup(const void *p, size_t bytes) {
    void *q = malloc(bytes ? bytes : 1);
    memcpy(q, p, bytes);
    return q;
}

/* the distance in bf16 steps between two finite patterns (ordered as sign-magnitude integers) */
static inline int64_t kc_ulp_dist(uint16_t a, uint16_t b) {
    int64_t ia = (a & 0x8000) ? -(int64_t)(a & 0x7fff) : (int64_t)a;
    int64_t ib = (b & 0x8000) ? -(int64_t)(b & 0x7fff) : (int64_t)b;
    return ia > ib ? ia - ib : ib - ia;
}

static inline int kc_same_bf16(const char *what, const void *got_, const void *want_, int64_t n, int ulps) {
    const uint16_t *got = got_, *want = want_;
    int64_t worst = -1, bad = 0, dmax = 0;
    for (int64_t i = 0; i < n; i++) {
        int gn = (got[i] & 0x7fff) > 0x7f80, wn = (want[i] & 0x7fff) > 0x7f80;
        int64_t d = gn || wn ? (gn == wn ? 0 : INT64_MAX) : kc_ulp_dist(got[i], want[i]);
        if (d > ulps) {
            bad++;
            if (d > dmax) dmax = d, worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld values beyond %d bf16 ulp; worst at %lld: %g (0x%04x) vs reference %g "
                "(0x%04x)\n", what, (long long)bad, (long long)n, ulps, (long long)worst, tu_widen(got[worst]),
                got[worst], tu_widen(want[worst]), want[worst]);
    return bad == 0;
}

static inline int kc_same_f32(const char *what, const float *got, const float *want, int64_t n, double rel,
                              double abs) {
    int64_t bad = 0, worst = -1;
    double wmax = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]), tol = abs + rel * fabs((double)want[i]);
        int nan_ok = isnan(got[i]) && isnan(want[i]);
        if (!nan_ok && !(d <= tol)) {
            bad++;
            if (!(d / (tol > 0 ? tol : 1) <= wmax)) wmax = d / (tol > 0 ? tol : 1), worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %lld of %lld values beyond abs %g + rel %g; worst at %lld: %.9g vs reference %.9g\n",
                what, (long long)bad, (long long)n, abs, rel, (long long)worst, (double)got[worst],
                (double)want[worst]);
    return bad == 0;
}

#define KC_RAN(before) CHECK(simt_launches() > (before))

#endif
