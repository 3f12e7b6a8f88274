/* rng — counter-based random numbers (Philox4x32-10) and the PEFT LoRA initialisation.
 *
 * A number is a pure function of (key, a, b, c): the same value whatever the order of execution,
 * the thread or rank that computes it, or a restart. Nothing is stateful. Typical keying:
 *   dropout      key = rng_key(seed, RNG_DROPOUT), a = step, b = layer*64 + module, c = element
 *   shuffling    rng_permutation(seed, epoch, n, out)        (key RNG_SHUFFLE, a = epoch)
 *   LoRA init    rng_lora_init(seed, tensor_id, ...)          (key RNG_INIT,    a = tensor_id)
 *   sampling     key = rng_key(seed, RNG_SAMPLE), a = prompt stream, b = generated token index, c = 0
 * A stream (key, a, b) yields u32 words at c = 0, 1, 2, ... ; the normal deviates of the same stream
 * are drawn from a disjoint part of the counter space, so mixing both kinds is safe.
 *
 *   rng_philox(ctr, key, out)                      one Philox4x32-10 block (Random123 reference)
 *   rng_key(seed, domain)                          key of a domain (RNG_DROPOUT, RNG_SHUFFLE, ...)
 *   rng_u32(key, a, b, c)                          32 random bits
 *   rng_uniform(key, a, b, c)                      float in [0, 1) (24 bits)
 *   rng_uniform_d(key, a, b, c)                    double in [0, 1) (53 bits)
 *   rng_normal(key, a, b, c)                       standard normal deviate (Box-Muller, double)
 *   rng_fill_uniform(key, a, b, c0, n, out)        out[i] = rng_uniform(key, a, b, c0 + i), block-wise
 *   rng_bounded(key, a, b, c, bound)               unbiased integer in [0, bound) (Lemire), bound >= 1
 *   rng_permutation(seed, epoch, n, out)           Fisher-Yates permutation of 0..n-1 for an epoch
 *   rng_kaiming_bound(fan_in, a)                   torch kaiming_uniform_ bound gain*sqrt(3/fan_in)
 *   rng_lora_init(seed, tensor_id, init, rows, cols, out)   PEFT LoRA weights with our generator
 *
 * The arithmetic of the u32 / uniform stream exists once, as static inline functions of this header that C and the
 * CUDA kernels (kernels/misc.cu: dropout) both compile (RNG_HD is __host__ __device__ under nvcc, empty otherwise):
 *   rng_philox_block(ctr, key, out)                the Philox4x32-10 rounds (rng_philox)
 *   rng_u32_block(k0, k1, a, b, c, out)            the block of stream (k0, k1, a, b) that holds u32 element c
 *   rng_u32_float(x)                               the 24-bit float in [0, 1) of a word (rng_uniform)
 *   rng_uniform_at(k0, k1, a, b, c)                rng_uniform with the key as two words
 */
#ifndef ORPO_RNG_H
#define ORPO_RNG_H

#include <stdint.h>

typedef struct rng_key_t {
    uint32_t k[2];
} rng_key_t;

/* domains keep the streams of different purposes apart even with the same seed */
enum { RNG_DROPOUT = 1, RNG_SHUFFLE = 2, RNG_INIT = 3, RNG_SAMPLE = 4, RNG_USER = 16 };

/* PEFT initialisations (tuners/lora/layer.py reset_lora_parameters) */
enum {
    RNG_INIT_ZERO = 0,        /* B of a Linear LoRA, A of an Embedding LoRA */
    RNG_INIT_KAIMING_A = 1,   /* A [r, in] of a Linear LoRA: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)) */
    RNG_INIT_GAUSSIAN_A = 2,  /* init_lora_weights="gaussian": A [r, in] ~ N(0, (1/r)^2) */
    RNG_INIT_NORMAL = 3       /* B [dim, r] of an Embedding LoRA ~ N(0, 1) */
};

#if defined(__CUDACC__)
#define RNG_HD __host__ __device__
#else
#define RNG_HD
#endif

#define RNG_PHILOX_M0 0xD2511F53u
#define RNG_PHILOX_M1 0xCD9E8D57u
#define RNG_PHILOX_W0 0x9E3779B9u
#define RNG_PHILOX_W1 0xBB67AE85u

static inline RNG_HD void rng_philox_block(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)RNG_PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)RNG_PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += RNG_PHILOX_W0;
        k1 += RNG_PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* u32 element c of stream (key, a, b) is word c & 3 of this block (counter {lo32(q), hi32(q), a, b}, q = c >> 2) */
static inline RNG_HD void rng_u32_block(uint32_t k0, uint32_t k1, uint32_t a, uint32_t b, uint64_t c,
                                        uint32_t out[4]) {
    const uint64_t q = (c >> 2) & ((1ull << 62) - 1);
    const uint32_t ctr[4] = {(uint32_t)q, (uint32_t)(q >> 32), a, b}, key[2] = {k0, k1};
    rng_philox_block(ctr, key, out);
}

static inline RNG_HD float rng_u32_float(uint32_t x) { return (float)(x >> 8) * (1.0f / 16777216.0f); }

static inline RNG_HD float rng_uniform_at(uint32_t k0, uint32_t k1, uint32_t a, uint32_t b, uint64_t c) {
    uint32_t w[4];
    rng_u32_block(k0, k1, a, b, c, w);
    return rng_u32_float(w[c & 3]);
}

void rng_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
rng_key_t rng_key(uint64_t seed, uint32_t domain);
uint32_t rng_u32(rng_key_t key, uint32_t a, uint32_t b, uint64_t c);
float rng_uniform(rng_key_t key, uint32_t a, uint32_t b, uint64_t c);
double rng_uniform_d(rng_key_t key, uint32_t a, uint32_t b, uint64_t c);
double rng_normal(rng_key_t key, uint32_t a, uint32_t b, uint64_t c);
void rng_fill_uniform(rng_key_t key, uint32_t a, uint32_t b, uint64_t c0, int64_t n, float *out);
uint32_t rng_bounded(rng_key_t key, uint32_t a, uint32_t b, uint64_t c, uint32_t bound);
int rng_permutation(uint64_t seed, uint32_t epoch, int64_t n, int64_t *out);
double rng_kaiming_bound(int64_t fan_in, double a);
int rng_lora_init(uint64_t seed, uint32_t tensor_id, int init, int64_t rows, int64_t cols, float *out);

#endif
