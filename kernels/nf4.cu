// nf4 — NF4 dequantisation (bitsandbytes layout with double-quantised absmax, docs/nf4.md) into f32 or bf16, as
// src/backend/cpu/cpu_nf4.c:
//
//   absmax of block b = dynamic_map[qabsmax[b]] * absmax2[b / bs2] + offset    (two fp32 roundings, in that order)
//   w[e] = code[nibble e] * absmax[e / bs]                                       (one fp32 rounding; bf16: then RNE)
//   element 2j is the high nibble of byte j, 2j + 1 its low nibble
//
// One thread per 4 packed bytes (one 4-byte load, its 8 values as 16-byte stores) where the buffers are aligned for
// it, else one thread per byte (its two values). The two tables come from src/backend/nf4_tables.h (their one
// source) into __constant__ memory; the 16 codes, which the lanes of a warp index divergently, are copied to shared
// memory first (the 256-entry map is indexed by the quantisation block: a few distinct entries per warp). The
// product of the absmax is __fmul_rn so that nvcc does not contract it and the offset into one FMA (the reference
// rounds twice). Index arithmetic is 32-bit when n < 2^31 (the 7B weights: 58.7M values), else 64-bit.
#include "simt.h"
#include "kops.h"

extern "C" {
#include "backend/nf4_tables.h"
}

enum { NF4_THREADS = 256 };

static __constant__ float k_nf4_code[16] = NF4_CODE_INIT;
static __constant__ float k_nf4_map[256] = NF4_DYNAMIC_MAP_INIT;

// 8 values as one 16-byte (bf16) or two 16-byte (f32) stores
struct __align__(16) bf16x8 {
    bf16 v[8];
};
struct __align__(16) f32x4 {
    float v[4];
};

__device__ static __forceinline__ void put1(float *o, float v) { *o = v; }
__device__ static __forceinline__ void put1(bf16 *o, float v) { *o = f2bf(v); }
__device__ static __forceinline__ void put8(float *o, const float v[8]) {
    f32x4 p, q;
    for (int k = 0; k < 4; k++) p.v[k] = v[k], q.v[k] = v[4 + k];
    reinterpret_cast<f32x4 *>(o)[0] = p;
    reinterpret_cast<f32x4 *>(o)[1] = q;
}
__device__ static __forceinline__ void put8(bf16 *o, const float v[8]) {
    bf16x8 p;
    for (int k = 0; k < 8; k++) p.v[k] = f2bf(v[k]);
    *reinterpret_cast<bf16x8 *>(o) = p;
}

template <class I>
__device__ static __forceinline__ float block_absmax(const uint8_t *qabsmax, const float *absmax2, float offset, I b,
                                                     I bs2) {
    return __fmul_rn(k_nf4_map[qabsmax[b]], absmax2[b / bs2]) + offset;
}

// O: float or bf16; I: the index type; VEC: packed is 4-byte and out 16-byte aligned, so that thread q takes the 8
// values of bytes 4q .. 4q + 3 (one 4-byte load, 16 or 32 bytes of stores) for every whole group of 8 values; the
// values after the last whole group (all of them without VEC) go one byte per thread
template <class O, class I, bool VEC>
__global__ static void nf4_k(O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2,
                             float offset, I n, I bs, I bs2) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = k_nf4_code[threadIdx.x];
    __syncthreads();
    const I stride = (I)blockDim.x * gridDim.x, first = (I)blockIdx.x * blockDim.x + threadIdx.x;
    I j0 = 0; // the first byte of the one-byte-per-thread part
    if constexpr (VEC) {
        const I ngroups = n / 8;
        for (I q = first; q < ngroups; q += stride) {
            // byte k in bits 8k .. 8k + 7 (little-endian, as the GPU and x86-64)
            const uint32_t word = reinterpret_cast<const uint32_t *>(packed)[q];
            I b = 8 * q / bs, rem = 8 * q - b * bs;
            float a = block_absmax(qabsmax, absmax2, offset, b, bs2), v[8];
            for (int k = 0; k < 8; k++, rem++) {
                if (rem == bs) { // a block of fewer than 8 values ends inside the group
                    b++, rem = 0;
                    a = block_absmax(qabsmax, absmax2, offset, b, bs2);
                }
                v[k] = code[(word >> (8 * (k >> 1) + ((k & 1) ? 0 : 4))) & 15] * a;
            }
            put8(out + 8 * q, v);
        }
        j0 = 4 * ngroups;
    }
    const I nbytes = n / 2 + n % 2; // element 2j is the high nibble of byte j, 2j + 1 the low
    for (I j = j0 + first; j < nbytes; j += stride) {
        const I e = 2 * j, b = e / bs;
        const unsigned byte = packed[j];
        const float a0 = block_absmax(qabsmax, absmax2, offset, b, bs2);
        put1(out + e, code[byte >> 4] * a0);
        if (e + 1 < n) {
            const I b1 = e + 1 == (b + 1) * bs ? b + 1 : b; // the low nibble may start the next block (odd bs)
            put1(out + e + 1, code[byte & 15] * (b1 == b ? a0 : block_absmax(qabsmax, absmax2, offset, b1, bs2)));
        }
    }
}

template <class O, class I>
static void launch(opctx *c, O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                   int64_t n, int bs, int bs2) {
    if ((uintptr_t)out % 16 == 0 && (uintptr_t)packed % 4 == 0) {
        const unsigned grid = KMIN(kgrid(KMAX(n / 8, (int64_t)1), NF4_THREADS), 4u * 132u * 8u);
        KLAUNCH((nf4_k<O, I, true>), grid, NF4_THREADS, 0, c, out, packed, qabsmax, absmax2, offset, (I)n, (I)bs,
                (I)bs2);
    } else {
        const unsigned grid = KMIN(kgrid((n + 1) / 2, NF4_THREADS), 4u * 132u * 8u);
        KLAUNCH((nf4_k<O, I, false>), grid, NF4_THREADS, 0, c, out, packed, qabsmax, absmax2, offset, (I)n, (I)bs,
                (I)bs2);
    }
}

template <class O>
static void launch(opctx *c, O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                   int64_t n, int bs, int bs2) {
    if (n < ((int64_t)1 << 31)) launch<O, uint32_t>(c, out, packed, qabsmax, absmax2, offset, n, bs, bs2);
    else launch<O, int64_t>(c, out, packed, qabsmax, absmax2, offset, n, bs, bs2);
}

extern "C" void kc_nf4_dequant(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                               const float *absmax2, float offset, int64_t n, int bs, int bs2) {
    if (!nf4_dequant_args_ok(c, out_dtype, n, bs, bs2)) return;
    if (n == 0) return;
    if (out_dtype == DT_F32) launch(c, (float *)out, packed, qabsmax, absmax2, offset, n, bs, bs2);
    else launch(c, (bf16 *)out, packed, qabsmax, absmax2, offset, n, bs, bs2);
}
