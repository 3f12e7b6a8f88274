/* rng — Philox4x32-10 (Salmon et al., SC'11) used as a pure function of (key, counter).
 *
 * Counter layout of one 128-bit block: {lo32(q), hi32(q), a, b}; q selects the block inside the
 * stream (key, a, b); its two top bits select the kind of number, so kinds never share a block:
 *   00  u32 / uniform element c     q = c >> 2, word c & 3
 *   01  bounded element c, try k    q = 2^62 | (k >> 2) << 40 | c, word k & 3   (c < 2^40)
 *   10  normal element c            q = 2^63 | c, all four words                 (c < 2^62)
 *   11  uniform_d element c         q = 3*2^62 | c >> 1, words 2(c&1), 2(c&1)+1 */
#include "backend/rng.h"

#include <math.h>
#include <string.h>

#include "io/err.h"

void rng_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) { rng_philox_block(ctr, key, out); }

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

rng_key_t rng_key(uint64_t seed, uint32_t domain) {
    /* a bijection of the seed for each domain; different domains give unrelated keys */
    uint64_t k = splitmix64(seed ^ splitmix64(0x6F72706F00000000ull | domain));
    rng_key_t key = {{(uint32_t)k, (uint32_t)(k >> 32)}};
    return key;
}

static void block(rng_key_t key, uint32_t a, uint32_t b, uint64_t q, uint32_t out[4]) {
    uint32_t ctr[4] = {(uint32_t)q, (uint32_t)(q >> 32), a, b};
    rng_philox(ctr, key.k, out);
}

uint32_t rng_u32(rng_key_t key, uint32_t a, uint32_t b, uint64_t c) {
    uint32_t w[4];
    rng_u32_block(key.k[0], key.k[1], a, b, c, w);
    return w[c & 3];
}

float rng_uniform(rng_key_t key, uint32_t a, uint32_t b, uint64_t c) {
    return rng_uniform_at(key.k[0], key.k[1], a, b, c);
}

double rng_uniform_d(rng_key_t key, uint32_t a, uint32_t b, uint64_t c) {
    /* 53 bits from two words of block 3*2^62 | c>>1 */
    uint32_t w[4];
    block(key, a, b, (3ull << 62) | ((c >> 1) & ((1ull << 62) - 1)), w);
    unsigned j = (unsigned)(c & 1) * 2;
    uint64_t m = ((uint64_t)(w[j] >> 5) << 26) | (w[j + 1] >> 6);
    return (double)m * (1.0 / 9007199254740992.0);
}

double rng_normal(rng_key_t key, uint32_t a, uint32_t b, uint64_t c) {
    uint32_t w[4];
    block(key, a, b, (2ull << 62) | (c & ((1ull << 62) - 1)), w);
    uint64_t m1 = ((uint64_t)(w[0] >> 5) << 26) | (w[1] >> 6);
    uint64_t m2 = ((uint64_t)(w[2] >> 5) << 26) | (w[3] >> 6);
    double u1 = ((double)m1 + 1.0) * (1.0 / 9007199254740992.0); /* (0, 1]: log never sees 0 */
    double u2 = (double)m2 * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_fill_uniform(rng_key_t key, uint32_t a, uint32_t b, uint64_t c0, int64_t n, float *out) {
    int64_t i = 0;
    while (i < n) {
        uint64_t c = c0 + (uint64_t)i;
        uint32_t w[4];
        rng_u32_block(key.k[0], key.k[1], a, b, c, w);
        for (unsigned j = (unsigned)(c & 3); j < 4 && i < n; j++, i++) out[i] = rng_u32_float(w[j]);
    }
}

uint32_t rng_bounded(rng_key_t key, uint32_t a, uint32_t b, uint64_t c, uint32_t bound) {
    /* Lemire's multiply-shift with rejection; try k uses word k&3 of block k>>2 */
    if (bound <= 1) return 0;
    uint32_t threshold = (uint32_t)(-bound) % bound;
    uint32_t w[4];
    for (uint64_t k = 0;; k++) {
        if ((k & 3) == 0) block(key, a, b, (1ull << 62) | ((k >> 2) << 40) | (c & ((1ull << 40) - 1)), w);
        uint64_t m = (uint64_t)w[k & 3] * bound;
        if ((uint32_t)m >= threshold) return (uint32_t)(m >> 32);
    }
}

int rng_permutation(uint64_t seed, uint32_t epoch, int64_t n, int64_t *out) {
    if (n < 0 || n > (int64_t)UINT32_MAX)
        return err_set(ERR_ARGS, "rng_permutation: n = %lld, expected 0 <= n <= %u", (long long)n, UINT32_MAX);
    rng_key_t key = rng_key(seed, RNG_SHUFFLE);
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = rng_bounded(key, epoch, 0, (uint64_t)i, (uint32_t)(i + 1));
        int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
    return ERR_OK;
}

double rng_kaiming_bound(int64_t fan_in, double a) {
    /* torch.nn.init.kaiming_uniform_(mode="fan_in", nonlinearity="leaky_relu"), same operation order */
    double gain = sqrt(2.0 / (1.0 + a * a));
    double std = gain / sqrt((double)fan_in);
    return sqrt(3.0) * std;
}

int rng_lora_init(uint64_t seed, uint32_t tensor_id, int init, int64_t rows, int64_t cols, float *out) {
    if (rows <= 0 || cols <= 0)
        return err_set(ERR_ARGS, "rng_lora_init: tensor %u has shape [%lld, %lld], expected positive dimensions",
                       tensor_id, (long long)rows, (long long)cols);
    int64_t n = rows * cols;
    rng_key_t key = rng_key(seed, RNG_INIT);
    switch (init) {
    case RNG_INIT_ZERO:
        memset(out, 0, sizeof(float) * (size_t)n);
        return ERR_OK;
    case RNG_INIT_KAIMING_A: {
        double bound = rng_kaiming_bound(cols, sqrt(5.0));
        for (int64_t i = 0; i < n; i++) {
            double u = rng_uniform_d(key, tensor_id, 0, (uint64_t)i);
            out[i] = (float)(-bound + 2.0 * bound * u);
        }
        return ERR_OK;
    }
    case RNG_INIT_GAUSSIAN_A:
    case RNG_INIT_NORMAL: {
        double std = init == RNG_INIT_GAUSSIAN_A ? 1.0 / (double)rows : 1.0;
        for (int64_t i = 0; i < n; i++) out[i] = (float)(std * rng_normal(key, tensor_id, 0, (uint64_t)i));
        return ERR_OK;
    }
    default:
        return err_set(ERR_ARGS, "rng_lora_init: tensor %u: init kind %d, expected 0..3 (zero, kaiming_a, "
                       "gaussian_a, normal)", tensor_id, init);
    }
}
