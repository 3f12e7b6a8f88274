// nf4 — NF4 dequantisation (bitsandbytes layout with double-quantised absmax, docs/nf4.md) into f32 or bf16, as
// src/backend/cpu/cpu_nf4.c:
//
//   absmax of block b = dynamic_map[qabsmax[b]] * absmax2[b / bs2] + offset    (two fp32 roundings, in that order)
//   w[e] = code[nibble e] * absmax[e / bs]                                       (one fp32 rounding; bf16: then RNE)
//   element 2j is the high nibble of byte j, 2j + 1 its low nibble
//
// One thread per packed byte: its two values, stored as one 8-byte (f32) or 4-byte (bf16) pair where the output is
// aligned for it. The two tables come from src/backend/nf4_tables.h (their one source) into __constant__ memory; the
// 16 codes, which the lanes of a warp index divergently, are copied to shared memory first (the 256-entry map is
// indexed by the quantisation block, uniform across a warp for blocks of 64 values). The product of the absmax is
// __fmul_rn so that nvcc does not contract it and the offset into one FMA (the reference rounds twice). Index
// arithmetic is 32-bit when n < 2^31 (the 7B weights: 58.7M values), else 64-bit.
#include "simt.h"
#include "kops.h"

extern "C" {
#include "backend/nf4_tables.h"
}

enum { NF4_THREADS = 256 };

static __constant__ float k_nf4_code[16] = NF4_CODE_INIT;
static __constant__ float k_nf4_map[256] = NF4_DYNAMIC_MAP_INIT;

struct __align__(8) f32x2 {
    float a, b;
};
struct __align__(4) bf16x2 {
    bf16 a, b;
};

__device__ static __forceinline__ void put1(float *o, float v) { *o = v; }
__device__ static __forceinline__ void put1(bf16 *o, float v) { *o = f2bf(v); }
__device__ static __forceinline__ void put2(float *o, float v0, float v1) {
    f32x2 p;
    p.a = v0, p.b = v1;
    *reinterpret_cast<f32x2 *>(o) = p;
}
__device__ static __forceinline__ void put2(bf16 *o, float v0, float v1) {
    bf16x2 p;
    p.a = f2bf(v0), p.b = f2bf(v1);
    *reinterpret_cast<bf16x2 *>(o) = p;
}

template <class I>
__device__ static __forceinline__ float block_absmax(const uint8_t *qabsmax, const float *absmax2, float offset, I b,
                                                     I bs2) {
    return __fmul_rn(k_nf4_map[qabsmax[b]], absmax2[b / bs2]) + offset;
}

// O: float or bf16; I: the index type; PAIR: out is aligned for a pair at every even element
template <class O, class I, bool PAIR>
__global__ static void nf4_k(O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2,
                             float offset, I n, I bs, I bs2) {
    __shared__ float code[16];
    if (threadIdx.x < 16) code[threadIdx.x] = k_nf4_code[threadIdx.x];
    __syncthreads();
    const I nbytes = n / 2 + n % 2, stride = (I)blockDim.x * gridDim.x;
    for (I j = (I)blockIdx.x * blockDim.x + threadIdx.x; j < nbytes; j += stride) {
        const I e = 2 * j, b = e / bs;
        const unsigned byte = packed[j];
        const float a0 = block_absmax(qabsmax, absmax2, offset, b, bs2), v0 = code[byte >> 4] * a0;
        if (e + 1 < n) {
            const I b1 = e + 1 == (b + 1) * bs ? b + 1 : b; // the low nibble may start the next block (odd bs)
            const float a1 = b1 == b ? a0 : block_absmax(qabsmax, absmax2, offset, b1, bs2);
            const float v1 = code[byte & 15] * a1;
            if (PAIR) put2(out + e, v0, v1);
            else put1(out + e, v0), put1(out + e + 1, v1);
        } else {
            put1(out + e, v0);
        }
    }
}

template <class O, class I>
static void launch(opctx *c, O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                   int64_t n, int bs, int bs2) {
    const unsigned grid = KMIN(kgrid((n + 1) / 2, NF4_THREADS), 4u * 132u * 8u);
    if ((uintptr_t)out % sizeof(O[2]) == 0)
        KLAUNCH((nf4_k<O, I, true>), grid, NF4_THREADS, 0, c, out, packed, qabsmax, absmax2, offset, (I)n, (I)bs,
                (I)bs2);
    else
        KLAUNCH((nf4_k<O, I, false>), grid, NF4_THREADS, 0, c, out, packed, qabsmax, absmax2, offset, (I)n, (I)bs,
                (I)bs2);
}

template <class O>
static void launch(opctx *c, O *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                   int64_t n, int bs, int bs2) {
    if (n < ((int64_t)1 << 31)) launch<O, uint32_t>(c, out, packed, qabsmax, absmax2, offset, n, bs, bs2);
    else launch<O, int64_t>(c, out, packed, qabsmax, absmax2, offset, n, bs, bs2);
}

extern "C" void kc_nf4_dequant(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                               const float *absmax2, float offset, int64_t n, int bs, int bs2) {
    if (out_dtype != DT_F32 && out_dtype != DT_BF16) {
        opctx_fail(c, ERR_INTERNAL, "nf4_dequant: output dtype %d: expected f32 or bf16", out_dtype);
        return;
    }
    if (n < 0 || bs < 1 || bs2 < 1) {
        opctx_fail(c, ERR_INTERNAL, "nf4_dequant: %lld values in blocks of %d / %d: expected n >= 0 and blocks >= 1",
                   (long long)n, bs, bs2);
        return;
    }
    if (n == 0) return;
    if (out_dtype == DT_F32) launch(c, (float *)out, packed, qabsmax, absmax2, offset, n, bs, bs2);
    else launch(c, (bf16 *)out, packed, qabsmax, absmax2, offset, n, bs, bs2);
}
