/* rng: Philox4x32-10 known answers (Random123 kat_vectors), purity / order independence, disjoint
 * streams, uniformity (chi-square), normal moments, unbiased bounded integers, permutations, LoRA init. */
#include <stdint.h>
#include <string.h>

#include "io/err.h"
#include "test.h"
#include "backend/rng.h"

static void test_kat(void) {
    static const uint32_t cases[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        rng_philox(cases[i], cases[i] + 4, out);
        for (int j = 0; j < 4; j++) CHECK_EQ_INT(out[j], cases[i][6 + j]);
    }
}

static void test_purity(void) {
    rng_key_t k = rng_key(42, RNG_DROPOUT);
    enum { N = 1000 };
    float fill[N], fwd[N], rev[N], chunk[N];
    rng_fill_uniform(k, 7, 3, 5, N, fill);
    for (int i = 0; i < N; i++) fwd[i] = rng_uniform(k, 7, 3, 5 + (uint64_t)i);
    for (int i = N - 1; i >= 0; i--) rev[i] = rng_uniform(k, 7, 3, 5 + (uint64_t)i);
    /* chunks starting at odd offsets (not aligned to the 4-word block) */
    for (int i = 0; i < N;) {
        int len = 1 + (i * 7) % 13;
        if (i + len > N) len = N - i;
        rng_fill_uniform(k, 7, 3, 5 + (uint64_t)i, len, chunk + i);
        i += len;
    }
    CHECK(!memcmp(fill, fwd, sizeof fill));
    CHECK(!memcmp(fill, rev, sizeof fill));
    CHECK(!memcmp(fill, chunk, sizeof fill));
    /* the same key from the same seed/domain; u32 words repeat on a second call */
    rng_key_t k2 = rng_key(42, RNG_DROPOUT);
    CHECK_EQ_INT(k.k[0], k2.k[0]);
    CHECK_EQ_INT(k.k[1], k2.k[1]);
    CHECK_EQ_INT(rng_u32(k, 1, 2, 123456789), rng_u32(k2, 1, 2, 123456789));
    CHECK(rng_normal(k, 1, 2, 99) == rng_normal(k2, 1, 2, 99));
    /* the float is the top 24 bits of the word */
    uint32_t w = rng_u32(k, 9, 9, 17);
    CHECK(rng_uniform(k, 9, 9, 17) == (float)(w >> 8) / 16777216.0f);
}

static int count_equal(rng_key_t k1, uint32_t a1, uint32_t b1, rng_key_t k2, uint32_t a2, uint32_t b2) {
    int eq = 0;
    for (uint64_t c = 0; c < 2000; c++) eq += rng_u32(k1, a1, b1, c) == rng_u32(k2, a2, b2, c);
    return eq;
}

static void test_streams(void) {
    rng_key_t d = rng_key(42, RNG_DROPOUT), s = rng_key(42, RNG_SHUFFLE), d43 = rng_key(43, RNG_DROPOUT);
    CHECK(d.k[0] != s.k[0] || d.k[1] != s.k[1]);
    CHECK(count_equal(d, 0, 0, s, 0, 0) <= 1);
    CHECK(count_equal(d, 0, 0, d43, 0, 0) <= 1);
    CHECK(count_equal(d, 0, 0, d, 1, 0) <= 1); /* next step */
    CHECK(count_equal(d, 0, 0, d, 0, 1) <= 1); /* next layer/module */
    /* u32 element c and c+1 differ; word 4 starts a new block */
    int eq = 0;
    for (uint64_t c = 0; c < 2000; c++) eq += rng_u32(d, 0, 0, c) == rng_u32(d, 0, 0, c + 1);
    CHECK(eq <= 1);
    /* uniform_d and normal use other blocks than u32: no word of them equals the u32 stream's */
    double u = rng_uniform_d(d, 0, 0, 0);
    CHECK(u >= 0 && u < 1);
}

static double chi2_uniform(rng_key_t k, int bins, int n) {
    int *cnt = calloc((size_t)bins, sizeof(int));
    for (int i = 0; i < n; i++) {
        float u = rng_uniform(k, 3, 1, (uint64_t)i);
        CHECK(u >= 0.0f && u < 1.0f);
        cnt[(int)(u * bins)]++;
    }
    double e = (double)n / bins, x2 = 0;
    for (int b = 0; b < bins; b++) x2 += (cnt[b] - e) * (cnt[b] - e) / e;
    free(cnt);
    return x2;
}

static void test_uniformity(void) {
    /* 99 degrees of freedom: mean 99, sd 14; a broken generator (constant, stuck bits) gives >> 1000 */
    double x2 = chi2_uniform(rng_key(1, RNG_DROPOUT), 100, 200000);
    printf("chi-square (99 dof) of 200000 uniforms: %.1f\n", x2);
    CHECK(x2 > 40 && x2 < 170);
    x2 = chi2_uniform(rng_key(2, RNG_USER), 100, 200000);
    CHECK(x2 > 40 && x2 < 170);
    /* each of the 32 bits is set about half the time */
    rng_key_t k = rng_key(5, RNG_USER);
    int bits[32] = {0};
    for (uint64_t c = 0; c < 20000; c++) {
        uint32_t w = rng_u32(k, 0, 0, c);
        for (int b = 0; b < 32; b++) bits[b] += (w >> b) & 1;
    }
    for (int b = 0; b < 32; b++) CHECK(bits[b] > 9500 && bits[b] < 10500);
    /* double uniforms: mean 1/2, variance 1/12 */
    double s = 0, s2 = 0;
    for (uint64_t c = 0; c < 100000; c++) {
        double u = rng_uniform_d(k, 1, 0, c);
        CHECK(u >= 0 && u < 1);
        s += u;
        s2 += u * u;
    }
    CHECK_NEAR(s / 1e5, 0.5, 0.005);
    CHECK_NEAR(s2 / 1e5 - (s / 1e5) * (s / 1e5), 1.0 / 12, 0.002);
    /* a dropout mask with p = 0.1 keeps ~90 % */
    int kept = 0;
    rng_key_t dk = rng_key(42, RNG_DROPOUT);
    for (uint64_t c = 0; c < 100000; c++) kept += rng_uniform(dk, 12, 3 * 64 + 2, c) >= 0.1f;
    CHECK(kept > 89500 && kept < 90500);
}

static void test_normal(void) {
    rng_key_t k = rng_key(7, RNG_INIT);
    int n = 200000, tail = 0;
    double s = 0, s2 = 0, s4 = 0;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(k, 0, 0, (uint64_t)i);
        CHECK(isfinite(x));
        s += x;
        s2 += x * x;
        s4 += x * x * x * x;
        tail += fabs(x) > 1.959963985;
    }
    CHECK_NEAR(s / n, 0.0, 0.012);
    CHECK_NEAR(s2 / n, 1.0, 0.015);
    CHECK_NEAR(s4 / n, 3.0, 0.1);
    CHECK_NEAR((double)tail / n, 0.05, 0.003);
}

static void test_bounded(void) {
    rng_key_t k = rng_key(11, RNG_USER);
    CHECK_EQ_INT(rng_bounded(k, 0, 0, 5, 1), 0);
    CHECK_EQ_INT(rng_bounded(k, 0, 0, 5, 0), 0);
    int cnt[7] = {0};
    for (uint64_t c = 0; c < 70000; c++) {
        uint32_t v = rng_bounded(k, 0, 0, c, 7);
        CHECK(v < 7);
        if (v < 7) cnt[v]++;
    }
    double x2 = 0;
    for (int b = 0; b < 7; b++) x2 += (cnt[b] - 10000.0) * (cnt[b] - 10000.0) / 10000.0;
    CHECK(x2 < 25); /* 6 dof */
    /* a bound just above 2^31 rejects almost half of the words: still in range, still ~ uniform halves */
    uint32_t big = 0x80000001u;
    int low = 0;
    for (uint64_t c = 0; c < 20000; c++) {
        uint32_t v = rng_bounded(k, 1, 0, c, big);
        CHECK(v < big);
        low += v < big / 2;
    }
    CHECK(low > 9600 && low < 10400);
}

static int is_perm(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)(n ? n : 1), 1);
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) ok = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_permutation(void) {
    int64_t sizes[] = {0, 1, 2, 3, 17, 1000, 100003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int64_t n = sizes[s];
        int64_t *a = malloc(sizeof(int64_t) * (size_t)(n + 1)), *b = malloc(sizeof(int64_t) * (size_t)(n + 1));
        CHECK_EQ_INT(rng_permutation(42, 0, n, a), ERR_OK);
        CHECK(is_perm(a, n));
        CHECK_EQ_INT(rng_permutation(42, 0, n, b), ERR_OK);
        CHECK(!memcmp(a, b, sizeof(int64_t) * (size_t)n));
        if (n >= 17) {
            CHECK_EQ_INT(rng_permutation(42, 1, n, b), ERR_OK);
            CHECK(is_perm(b, n));
            CHECK(memcmp(a, b, sizeof(int64_t) * (size_t)n) != 0); /* another epoch, another order */
            CHECK_EQ_INT(rng_permutation(43, 0, n, b), ERR_OK);
            CHECK(memcmp(a, b, sizeof(int64_t) * (size_t)n) != 0); /* another seed */
            int fixed = 0;
            for (int64_t i = 0; i < n; i++) fixed += a[i] == i;
            CHECK(fixed < 8); /* expected 1 fixed point */
        }
        free(a);
        free(b);
    }
    /* all 24 orders of 4 items appear equally often over 24000 epochs */
    int cnt[24] = {0};
    for (uint32_t e = 0; e < 24000; e++) {
        int64_t p[4];
        rng_permutation(9, e, 4, p);
        int code = 0;
        int64_t rest[4] = {0, 1, 2, 3};
        int nrest = 4;
        for (int i = 0; i < 4; i++) { /* Lehmer code */
            int j = 0;
            while (rest[j] != p[i]) j++;
            code = code * (4 - i) + j;
            for (int q = j; q < nrest - 1; q++) rest[q] = rest[q + 1];
            nrest--;
        }
        cnt[code]++;
    }
    double x2 = 0;
    for (int i = 0; i < 24; i++) x2 += (cnt[i] - 1000.0) * (cnt[i] - 1000.0) / 1000.0;
    printf("chi-square (23 dof) of 24000 permutations of 4: %.1f\n", x2);
    CHECK(x2 < 60);
    int64_t dummy;
    CHECK_EQ_INT(rng_permutation(1, 0, -1, &dummy), ERR_ARGS);
    CHECK_EQ_INT(rng_permutation(1, 0, (int64_t)1 << 33, NULL), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "expected 0 <= n");
}

static void test_lora_init(void) {
    /* kaiming_uniform_(a = sqrt 5) gives bound 1/sqrt(fan_in) */
    CHECK_NEAR(rng_kaiming_bound(4096, sqrt(5.0)), 1.0 / 64, 1e-17);
    CHECK_NEAR(rng_kaiming_bound(100, sqrt(5.0)), 0.1, 1e-16);
    CHECK_NEAR(rng_kaiming_bound(3, 0.0), 1.0 * sqrt(2.0), 1e-15); /* relu gain sqrt 2, sqrt(3/3) */
    int64_t r = 16, in = 4096, n = r * in;
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    CHECK_EQ_INT(rng_lora_init(42, 5, RNG_INIT_KAIMING_A, r, in, a), ERR_OK);
    double bound = 1.0 / 64, mx = 0, s = 0, s2 = 0;
    int out = 0;
    for (int64_t i = 0; i < n; i++) {
        out += !(fabsf(a[i]) <= (float)bound);
        if (fabs(a[i]) > mx) mx = fabs(a[i]);
        s += a[i];
        s2 += (double)a[i] * a[i];
    }
    CHECK_EQ_INT(out, 0);
    CHECK(mx > 0.999 * bound);
    CHECK_NEAR(s / n, 0.0, 3e-4 * bound * 100);
    CHECK_NEAR(s2 / n, bound * bound / 3, 0.02 * bound * bound / 3);
    CHECK_EQ_INT(rng_lora_init(42, 5, RNG_INIT_KAIMING_A, r, in, b), ERR_OK);
    CHECK(!memcmp(a, b, sizeof(float) * (size_t)n)); /* deterministic */
    CHECK_EQ_INT(rng_lora_init(42, 6, RNG_INIT_KAIMING_A, r, in, b), ERR_OK);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)n) != 0); /* another tensor, other values */
    CHECK_EQ_INT(rng_lora_init(42, 6, RNG_INIT_ZERO, r, in, b), ERR_OK);
    int nz = 0;
    for (int64_t i = 0; i < n; i++) nz += b[i] != 0.0f;
    CHECK_EQ_INT(nz, 0);
    CHECK_EQ_INT(rng_lora_init(42, 7, RNG_INIT_GAUSSIAN_A, r, in, b), ERR_OK);
    s2 = 0;
    for (int64_t i = 0; i < n; i++) s2 += (double)b[i] * b[i];
    CHECK_NEAR(sqrt(s2 / n), 1.0 / r, 0.01 / r);
    CHECK_EQ_INT(rng_lora_init(42, 8, RNG_INIT_NORMAL, r, in, b), ERR_OK);
    s2 = 0;
    for (int64_t i = 0; i < n; i++) s2 += (double)b[i] * b[i];
    CHECK_NEAR(sqrt(s2 / n), 1.0, 0.01);
    CHECK_EQ_INT(rng_lora_init(42, 8, 9, r, in, b), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "init kind 9");
    CHECK_EQ_INT(rng_lora_init(42, 8, RNG_INIT_ZERO, 0, in, b), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "[0, 4096]");
    free(a);
    free(b);
}

int main(void) {
    test_kat();
    test_purity();
    test_streams();
    test_uniformity();
    test_normal();
    test_bounded();
    test_permutation();
    test_lora_init();
    TEST_MAIN_END();
}
