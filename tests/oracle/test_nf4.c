/* Oracle test for src/model/nf4.c against bitsandbytes 0.50.2 (CPU back end) fixtures written by
 * tools/oracle/make_nf4_fixtures.py. Everything is compared bit for bit except the mean offset we
 * compute ourselves. Bit for bit is what the maths gives: no value involves a sum; each is a max (exact), one
 * IEEE-rounded division or product of the same fp32 operands (correctly rounded, so identical on any CPU), or a
 * comparison with the same thresholds. The offset is a mean of nb values: within nb + 1 ulp (at the check). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5x.h"
#include "model/nf4.h"
#include "test.h"

static uint8_t *slurp(const char *rel, size_t *len) {
    const char *path = test_fixture(rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "missing fixture %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)sz + 1);
    if (!buf || fread(buf, 1, (size_t)sz, f) != (size_t)sz) exit(1);
    fclose(f);
    *len = (size_t)sz;
    return buf;
}

/* a cursor over a fixture file */
struct cur {
    const uint8_t *p, *end;
    const char *name;
};

static const void *take(struct cur *c, size_t bytes) {
    if ((size_t)(c->end - c->p) < bytes) {
        fprintf(stderr, "%s: truncated fixture\n", c->name);
        exit(1);
    }
    const void *r = c->p;
    c->p += bytes;
    return r;
}

static int64_t take_i64(struct cur *c) { int64_t v; memcpy(&v, take(c, 8), 8); return v; }
static int32_t take_i32(struct cur *c) { int32_t v; memcpy(&v, take(c, 4), 4); return v; }
static float take_f32(struct cur *c) { float v; memcpy(&v, take(c, 4), 4); return v; }
static float *take_f32s(struct cur *c, int64_t n) {
    float *v = malloc((size_t)n * 4 + 4);
    memcpy(v, take(c, (size_t)n * 4), (size_t)n * 4);
    return v;
}

static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

static int64_t count_ne_bits(const void *a, const void *b, size_t elems, size_t esz) {
    int64_t k = 0;
    for (size_t i = 0; i < elems; i++) k += memcmp((const char *)a + i * esz, (const char *)b + i * esz, esz) != 0;
    return k;
}

static void check_case(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "nf4/%s.bin", name);
    size_t len;
    uint8_t *buf = slurp(rel, &len);
    struct cur c = {buf, buf + len, name};
    CHECK(memcmp(take(&c, 8), "NF4FIX01", 8) == 0);
    int64_t n = take_i64(&c), rows = take_i64(&c), cols = take_i64(&c);
    int bs = take_i32(&c), bs2 = take_i32(&c), bf16 = take_i32(&c);
    (void)take_i32(&c);
    int64_t nb = take_i64(&c), nb2 = take_i64(&c);
    CHECK_EQ_INT(nb, nf4_nblocks(n, bs));
    CHECK_EQ_INT(nb2, nf4_nblocks(nb, bs2));
    int64_t np = (n + 1) / 2;
    const void *src = take(&c, (size_t)n * (bf16 ? 2 : 4));
    const uint8_t *bnb_packed = take(&c, (size_t)np);
    float *bnb_am1 = take_f32s(&c, nb);
    const uint8_t *bnb_q = take(&c, (size_t)nb);
    float *bnb_am2 = take_f32s(&c, nb2);
    float bnb_off = take_f32(&c);
    float *bnb_amdeq = take_f32s(&c, nb);
    float *bnb_deq = take_f32s(&c, n);
    const uint16_t *bnb_deq_bf16 = bf16 ? take(&c, (size_t)n * 2) : NULL;
    const uint8_t *cu_packed = take(&c, (size_t)np);
    float *cu_am1 = take_f32s(&c, nb);
    const uint8_t *cu_q = take(&c, (size_t)nb);
    float *cu_am2 = take_f32s(&c, nb2);
    float cu_off = take_f32(&c);
    CHECK(c.p == c.end);

    float *w = malloc((size_t)n * 4);
    if (bf16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t b;
            memcpy(&b, (const char *)src + 2 * i, 2);
            w[i] = h5x_bf16_to_f32(b);
        }
    } else {
        memcpy(w, src, (size_t)n * 4);
    }
    uint8_t *packed = malloc((size_t)np), *q = malloc((size_t)nb);
    float *am1 = malloc((size_t)nb * 4), *am2 = malloc((size_t)nb2 * 4), *amdeq = malloc((size_t)nb * 4);
    float *deq = malloc((size_t)n * 4);
    uint16_t *deqb = malloc((size_t)n * 2);

    /* --- CPU flavor == bitsandbytes (bit for bit) --- */
    int rc = bf16 ? nf4_quantize_bf16_ex(src, n, bs, NF4_FLAVOR_CPU, packed, am1)
                  : nf4_quantize_ex(w, n, bs, NF4_FLAVOR_CPU, packed, am1);
    CHECK_EQ_INT(rc, 0);
    int64_t bad_pk = count_ne_bits(packed, bnb_packed, (size_t)np, 1);
    int64_t bad_am = count_ne_bits(am1, bnb_am1, (size_t)nb, 4);
    CHECK_EQ_INT(bad_pk, 0);
    CHECK_EQ_INT(bad_am, 0);
    CHECK_EQ_INT(nf4_double_quant_offset(bnb_am1, nb, bs2, NF4_FLAVOR_CPU, bnb_off, q, am2), 0);
    CHECK_EQ_INT(count_ne_bits(q, bnb_q, (size_t)nb, 1), 0);
    CHECK_EQ_INT(count_ne_bits(am2, bnb_am2, (size_t)nb2, 4), 0);
    /* our own offset: the mean in fp64 (exact to 2^-53), rounded to fp32: 0.5 ulp. torch's (the reference) is an
     * fp32 sum of nb positive absmax values, whose order depends on torch's reduction and the CPU it ran on (vector
     * width): any order, all terms > 0, so relative error <= gamma_(nb-1) <= (nb-1) u, i.e. <= nb-1 ulp, and one
     * more for the division: |off - bnb_off| <= nb + 1 ulp (was 2 ulp, which held only for the order of the
     * machine that made the fixture). A wrong mean (count, a missing block) is off by >= 1/nb relative, i.e.
     * >= 2^23/nb ulp, far outside. */
    float off;
    CHECK_EQ_INT(nf4_double_quant_ex(bnb_am1, nb, bs2, NF4_FLAVOR_CPU, q, am2, &off), 0);
    CHECK(ulps(off, bnb_off) <= nb + 1);
    CHECK_EQ_INT(count_ne_bits(q, bnb_q, (size_t)nb, 1), 0);
    /* dequantisation of bnb's own state, bit for bit */
    nf4_absmax_dequant(bnb_q, bnb_am2, bnb_off, 0, nb, bs2, amdeq);
    CHECK_EQ_INT(count_ne_bits(amdeq, bnb_amdeq, (size_t)nb, 4), 0);
    CHECK_EQ_INT(nf4_dequantize(bnb_packed, bnb_q, bnb_am2, bnb_off, n, bs, bs2, deq), 0);
    int64_t bad_deq = count_ne_bits(deq, bnb_deq, (size_t)n, 4);
    CHECK_EQ_INT(bad_deq, 0);
    if (bf16) {
        CHECK_EQ_INT(nf4_dequantize_bf16(bnb_packed, bnb_q, bnb_am2, bnb_off, n, bs, bs2, deqb), 0);
        CHECK_EQ_INT(count_ne_bits(deqb, bnb_deq_bf16, (size_t)n, 2), 0);
    }
    /* row ranges of the [rows, cols] matrix equal the matching slice of the full dequantisation */
    int64_t ranges[3][2] = {{0, 1}, {rows / 3, rows / 3 + (rows > 1 ? 2 : 1)}, {rows - 1, rows}};
    for (int k = 0; k < 3; k++) {
        int64_t r0 = ranges[k][0], r1 = ranges[k][1] > rows ? rows : ranges[k][1];
        CHECK_EQ_INT(nf4_dequantize_rows(bnb_packed, bnb_q, bnb_am2, bnb_off, rows, cols, bs, bs2, r0, r1, deq), 0);
        CHECK_EQ_INT(count_ne_bits(deq, bnb_deq + r0 * cols, (size_t)((r1 - r0) * cols), 4), 0);
    }

    /* --- CUDA flavor == this project's emulation of kQuantizeBlockwise (no GPU in the oracle) --- */
    rc = bf16 ? nf4_quantize_bf16_ex(src, n, bs, NF4_FLAVOR_CUDA, packed, am1)
              : nf4_quantize_ex(w, n, bs, NF4_FLAVOR_CUDA, packed, am1);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(count_ne_bits(packed, cu_packed, (size_t)np, 1), 0);
    CHECK_EQ_INT(count_ne_bits(am1, cu_am1, (size_t)nb, 4), 0);
    CHECK_EQ_INT(nf4_double_quant_offset(cu_am1, nb, bs2, NF4_FLAVOR_CUDA, cu_off, q, am2), 0);
    CHECK_EQ_INT(count_ne_bits(q, cu_q, (size_t)nb, 1), 0);
    CHECK_EQ_INT(count_ne_bits(am2, cu_am2, (size_t)nb2, 4), 0);

    printf("%-20s n=%-6lld blocks=%lld/%lld %s: packed diff %lld, absmax diff %lld, deq diff %lld, offset %lld ulp\n",
           name, (long long)n, (long long)nb, (long long)nb2, bf16 ? "bf16" : "fp32", (long long)bad_pk,
           (long long)bad_am, (long long)bad_deq, (long long)ulps(off, bnb_off));
    free(w); free(packed); free(q); free(am1); free(am2); free(amdeq); free(deq); free(deqb);
    free(bnb_am1); free(bnb_am2); free(bnb_amdeq); free(bnb_deq); free(cu_am1); free(cu_am2);
    free(buf);
}

static void check_dq_case(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "nf4/%s.bin", name);
    size_t len;
    uint8_t *buf = slurp(rel, &len);
    struct cur c = {buf, buf + len, name};
    CHECK(memcmp(take(&c, 8), "NF4DQ001", 8) == 0);
    int64_t nb = take_i64(&c);
    int bs2 = take_i32(&c);
    (void)take_i32(&c);
    int64_t nb2 = nf4_nblocks(nb, bs2);
    float *a = take_f32s(&c, nb);
    float off = take_f32(&c);
    const uint8_t *bnb_q = take(&c, (size_t)nb);
    float *bnb_am2 = take_f32s(&c, nb2);
    float *bnb_deq = take_f32s(&c, nb);
    const uint8_t *cu_q = take(&c, (size_t)nb);
    float *cu_am2 = take_f32s(&c, nb2);
    CHECK(c.p == c.end);
    uint8_t *q = malloc((size_t)nb);
    float *am2 = malloc((size_t)nb2 * 4), *deq = malloc((size_t)nb * 4);
    CHECK_EQ_INT(nf4_double_quant_offset(a, nb, bs2, NF4_FLAVOR_CPU, off, q, am2), 0);
    int64_t bad_cpu = count_ne_bits(q, bnb_q, (size_t)nb, 1);
    CHECK_EQ_INT(bad_cpu, 0);
    CHECK_EQ_INT(count_ne_bits(am2, bnb_am2, (size_t)nb2, 4), 0);
    nf4_absmax_dequant(bnb_q, bnb_am2, off, 0, nb, bs2, deq);
    CHECK_EQ_INT(count_ne_bits(deq, bnb_deq, (size_t)nb, 4), 0);
    CHECK_EQ_INT(nf4_double_quant_offset(a, nb, bs2, NF4_FLAVOR_CUDA, off, q, am2), 0);
    CHECK_EQ_INT(count_ne_bits(q, cu_q, (size_t)nb, 1), 0);
    CHECK_EQ_INT(count_ne_bits(am2, cu_am2, (size_t)nb2, 4), 0);
    /* the two flavors really differ on these inputs (otherwise the flavor switch is untested) */
    CHECK(count_ne_bits(bnb_q, cu_q, (size_t)nb, 1) > 0);
    printf("%-20s nblocks=%lld: cpu qabsmax diff %lld, cpu-vs-cuda codes differ in %lld\n", name, (long long)nb,
           (long long)bad_cpu, (long long)count_ne_bits(bnb_q, cu_q, (size_t)nb, 1));
    free(q); free(am2); free(deq); free(a); free(bnb_am2); free(bnb_deq); free(cu_am2); free(buf);
}

int main(void) {
    size_t len;
    uint8_t *b = slurp("nf4/code_nf4.bin", &len);
    CHECK_EQ_INT(len, sizeof nf4_code);
    CHECK(memcmp(b, nf4_code, sizeof nf4_code) == 0);
    free(b);
    b = slurp("nf4/dynamic_map.bin", &len);
    CHECK_EQ_INT(len, sizeof nf4_dynamic_map);
    CHECK(memcmp(b, nf4_dynamic_map, sizeof nf4_dynamic_map) == 0);
    free(b);
    b = slurp("nf4/cpu_lut.bin", &len);
    CHECK_EQ_INT(len, 65536);
    CHECK_EQ_INT(count_ne_bits(b, nf4_cpu_lut(), 65536, 1), 0);
    free(b);

    const char *cases[] = {"normal_outliers", "nested_partial_odd", "zero_blocks", "zero_tail", "bf16_src",
                           "ties", "n1", "n3"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(cases[i]);
    check_dq_case("dq_random");
    check_dq_case("dq_ties");
    TEST_MAIN_END();
}
