/* test_ops_util — random inputs and bit comparisons for the tests of the backend ops (tests/unit/test_ops_*.c).
 *
 *   tu_rand(s)                     next uniform value in [-1, 1) of a 64-bit LCG state (deterministic)
 *   tu_fill(x, n, s, scale)        x[i] = scale * tu_rand
 *   tu_bf16_fill(x, n, s, scale)   bf16 bit patterns of scale * tu_rand, rounded to nearest even
 *   tu_bits_eq(a, b, bytes)        1 when the two buffers are bit-identical (else prints the first difference)
 *   tu_rne(x)                      f32 -> bf16 by nearest even, written independently of h5x (nearest by distance in
 *                                  double, ties to the even pattern, NaN stays NaN, beyond the largest bf16 -> inf)
 */
#ifndef ORPO_TEST_OPS_UTIL_H
#define ORPO_TEST_OPS_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static inline float tu_rand(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((double)(*s >> 40) / (double)(1ULL << 23) - 1.0);
}

static inline void tu_fill(float *x, int64_t n, uint64_t *s, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * tu_rand(s);
}

static inline double tu_bf16_value(uint16_t b) {
    if ((b & 0x7f80) == 0x7f80) return (b & 0x8000) ? -ldexp(1.0, 128) : ldexp(1.0, 128); /* inf as 2^128 */
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t tu_rne(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (isnan(x)) return (uint16_t)((u >> 16) | 0x40);
    if (isinf(x)) return (uint16_t)(u >> 16);
    uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* same sign, next magnitude */
    double dl = fabs((double)x - tu_bf16_value(lo)), dh = fabs((double)x - tu_bf16_value(hi));
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}

static inline float tu_widen(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void tu_bf16_fill(uint16_t *x, int64_t n, uint64_t *s, float scale) {
    for (int64_t i = 0; i < n; i++) x[i] = tu_rne(scale * tu_rand(s));
}

static inline int tu_bits_eq(const void *a, const void *b, size_t bytes) {
    const unsigned char *p = a, *q = b;
    for (size_t i = 0; i < bytes; i++)
        if (p[i] != q[i]) {
            fprintf(stderr, "  first difference at byte %zu: 0x%02x != 0x%02x\n", i, p[i], q[i]);
            return 0;
        }
    return 1;
}

#endif
