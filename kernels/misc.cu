// misc — scale, zero, copy, dropout (counter RNG), row gathers / scatters (plain, with a fill row, adding) and the
// f32 <-> bf16 cast on bf16 activations, as src/backend/cpu/cpu_misc.c in bf16 mode (src/backend/cpu/cpu_bf16.c):
//
//   kc_scale, kc_dropout     widen, the reference's fp32 product, round once (nearest even); a dropped value is +0
//   kc_zero, kc_copy         bf16 bits moved unchanged, 16 / 4 / 2 bytes at a time as the alignment allows; copy's
//                            buffers are the same or disjoint (a partial overlap is refused: the sticky error)
//   kc_gather_rows, kc_gather_rows_fill, kc_scatter_rows
//                            rows of D bf16 values moved unchanged, one block per row; a row named twice by
//                            scatter_rows gets the last source row that names it (as the reference's loop)
//   kc_scatter_add_rows      dst[rows[i]] += src[i]: per destination row the widened dst plus every source row that
//                            names it, in index order, in fp32, rounded once (the reference's contract); the block
//                            of the first source row naming a destination row computes it (no atomics)
//   kc_cast                  f32 -> bf16 (nearest even), bf16 -> f32 (exact), same dtype: a copy
// The dropout keep mask is rng.h's stream (key, a, b) at counter c0 + i, the same arithmetic as the CPU's
// (rng_u32_block, rng_u32_float): one Philox block per thread gives the four counters it holds.
// Row indices are int64 device memory, read by the kernels.
#include "simt.h"
#include "kops.h"

extern "C" {
#include "backend/rng.h"
}

enum { MISC_THREADS = 256, ROW_THREADS = 128 };

#define FOR_EACH(i, n)                                                                                               \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)
// one block per row r of n, block-uniform (barriers inside are reached by the whole block)
#define FOR_EACH_ROW(r, n) for (int64_t r = blockIdx.x; r < (n); r += gridDim.x)

// 16 bytes moved as one load / store
struct __align__(16) u128 {
    uint32_t w[4];
};

#define B(p) ((bf16 *)(p))
#define CB(p) ((const bf16 *)(p))

static unsigned misc_grid(int64_t n) { return KMIN(kgrid(n, MISC_THREADS), 4u * 132u * 8u); }
static unsigned row_grid(int64_t nrows) { return (unsigned)KMIN(nrows, (int64_t)65535 * 16); }

// the widest unit (16, 4 or 2 bytes) that divides `bytes` and the alignment of every non-NULL pointer
static int unit_bytes(int64_t bytes, const void *a, const void *b, const void *c) {
    const uintptr_t any = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)bytes;
    return any % 16 == 0 ? 16 : any % 4 == 0 ? 4 : 2;
}

// ---- scale, zero, copy -----------------------------------------------------------------------------------------

__global__ static void scale_k(bf16 *x, int64_t n, float alpha) {
    FOR_EACH(i, n) x[i] = f2bf(bf2f(x[i]) * alpha);
}

// y = x (x NULL: zeros) in units of T
template <class T> __global__ static void move_k(T *y, const T *x, int64_t n) {
    FOR_EACH(i, n) {
        if (x) y[i] = x[i];
        else y[i] = T{};
    }
}

// bytes (a multiple of 2) from x into y, or zeros when x is NULL
static void move_bytes(opctx *c, void *y, const void *x, int64_t bytes) {
    if (bytes <= 0) return;
    const int u = unit_bytes(bytes, y, x, NULL);
    const int64_t n = bytes / u;
    if (u == 16) KLAUNCH(move_k<u128>, misc_grid(n), MISC_THREADS, 0, c, (u128 *)y, (const u128 *)x, n);
    else if (u == 4) KLAUNCH(move_k<uint32_t>, misc_grid(n), MISC_THREADS, 0, c, (uint32_t *)y, (const uint32_t *)x, n);
    else KLAUNCH(move_k<uint16_t>, misc_grid(n), MISC_THREADS, 0, c, (uint16_t *)y, (const uint16_t *)x, n);
}

extern "C" void kc_scale(opctx *c, void *x, int64_t n, float alpha) {
    if (n > 0) KLAUNCH(scale_k, misc_grid(n), MISC_THREADS, 0, c, B(x), n, alpha);
}

extern "C" void kc_zero(opctx *c, void *x, int64_t n) { move_bytes(c, x, NULL, 2 * n); }

// y = x for the copies (copy, a cast to the same dtype): the same buffer is left alone, a partial overlap refused
static void copy_bytes(opctx *c, const char *op, void *y, const void *x, int64_t bytes) {
    if (bytes <= 0 || y == x) return;
    const uintptr_t yb = (uintptr_t)y, xb = (uintptr_t)x, nb = (uintptr_t)bytes;
    if (yb < xb + nb && xb < yb + nb) {
        opctx_fail(c, ERR_INTERNAL, "%s: %lld bytes between overlapping buffers: expected the same or disjoint ones",
                   op, (long long)bytes);
        return;
    }
    move_bytes(c, y, x, bytes);
}

extern "C" void kc_copy(opctx *c, void *y, const void *x, int64_t n) { copy_bytes(c, "copy", y, x, 2 * n); }

// ---- dropout ---------------------------------------------------------------------------------------------------

// counters c0 + i, i < n, in groups of the 4 that share a Philox block: group g holds i in [4g - off, 4g + 4 - off)
// (off = c0 & 3); y[i] = keep ? x[i] * inv : 0 with keep = uniform(c0 + i) >= p
__global__ static void dropout_k(bf16 *y, const bf16 *x, int64_t n, float p, float inv, uint32_t k0, uint32_t k1,
                                 uint32_t a, uint32_t b, uint64_t c0, int64_t ngroups) {
    const int64_t off = (int64_t)(c0 & 3);
    FOR_EACH(g, ngroups) {
        const int64_t i0 = KMAX(4 * g - off, (int64_t)0), i1 = KMIN(4 * g + 4 - off, n);
        uint32_t w[4];
        rng_u32_block(k0, k1, a, b, c0 + (uint64_t)i0, w);
        for (int64_t i = i0; i < i1; i++) {
            const bool keep = rng_u32_float(w[(c0 + (uint64_t)i) & 3]) >= p;
            y[i] = f2bf(keep ? bf2f(x[i]) * inv : 0.0f);
        }
    }
}

extern "C" void kc_dropout(opctx *c, void *y, const void *x, int64_t n, float p, const uint32_t key[2], uint32_t a,
                           uint32_t b, uint64_t c0) {
    if (n <= 0) return;
    const float inv = 1.0f / (1.0f - p); // the reference's expression, on the host
    const int64_t ngroups = (n + (int64_t)(c0 & 3) + 3) / 4;
    KLAUNCH(dropout_k, misc_grid(ngroups), MISC_THREADS, 0, c, B(y), CB(x), n, p, inv, key[0], key[1], a, b, c0,
            ngroups);
}

// ---- rows ------------------------------------------------------------------------------------------------------

// whether rows[lo .. hi) holds r; the whole block calls it and gets the same answer
__device__ static bool block_names(const int64_t *rows, int64_t lo, int64_t hi, int64_t r) {
    __shared__ int hit;
    if (threadIdx.x == 0) hit = 0;
    __syncthreads();
    for (int64_t k = lo + threadIdx.x; k < hi; k += blockDim.x)
        if (rows[k] == r) {
            hit = 1;
            break;
        }
    __syncthreads();
    const int h = hit;
    __syncthreads(); // every thread has read it before a next call resets it
    return h != 0;
}

// dst[i] = rows[i] >= 0 ? src[rows[i]] : fill (NULL: zeros); rows of du units of T
template <class T>
__global__ static void gather_k(T *dst, const T *src, const int64_t *rows, int64_t nrows, int64_t du, const T *fill) {
    FOR_EACH_ROW(i, nrows) {
        const int64_t r = rows[i];
        const T *s = r >= 0 ? src + r * du : fill;
        T *d = dst + i * du;
        for (int64_t j = threadIdx.x; j < du; j += blockDim.x) {
            if (s) d[j] = s[j];
            else d[j] = T{};
        }
    }
}

// dst[rows[i]] = src[i] where no later i names the same row
template <class T>
__global__ static void scatter_k(T *dst, const T *src, const int64_t *rows, int64_t nrows, int64_t du) {
    FOR_EACH_ROW(i, nrows) {
        const int64_t r = rows[i];
        if (block_names(rows, i + 1, nrows, r)) continue;
        T *d = dst + r * du;
        const T *s = src + i * du;
        for (int64_t j = threadIdx.x; j < du; j += blockDim.x) d[j] = s[j];
    }
}

static void gather(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D,
                   const void *fill) {
    if (nrows <= 0 || D <= 0) return;
    const int u = unit_bytes(2 * D, dst, src, fill);
    const int64_t du = 2 * D / u;
    const unsigned g = row_grid(nrows);
    if (u == 16)
        KLAUNCH(gather_k<u128>, g, ROW_THREADS, 0, c, (u128 *)dst, (const u128 *)src, rows, nrows, du,
                (const u128 *)fill);
    else if (u == 4)
        KLAUNCH(gather_k<uint32_t>, g, ROW_THREADS, 0, c, (uint32_t *)dst, (const uint32_t *)src, rows, nrows, du,
                (const uint32_t *)fill);
    else
        KLAUNCH(gather_k<uint16_t>, g, ROW_THREADS, 0, c, (uint16_t *)dst, (const uint16_t *)src, rows, nrows, du,
                (const uint16_t *)fill);
}

extern "C" void kc_gather_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    gather(c, dst, src, rows, nrows, D, NULL);
}

extern "C" void kc_gather_rows_fill(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows,
                                    int64_t D, const void *fill) {
    gather(c, dst, src, rows, nrows, D, fill);
}

extern "C" void kc_scatter_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows, int64_t D) {
    if (nrows <= 0 || D <= 0) return;
    const int u = unit_bytes(2 * D, dst, src, NULL);
    const int64_t du = 2 * D / u;
    const unsigned g = row_grid(nrows);
    if (u == 16) KLAUNCH(scatter_k<u128>, g, ROW_THREADS, 0, c, (u128 *)dst, (const u128 *)src, rows, nrows, du);
    else if (u == 4)
        KLAUNCH(scatter_k<uint32_t>, g, ROW_THREADS, 0, c, (uint32_t *)dst, (const uint32_t *)src, rows, nrows, du);
    else KLAUNCH(scatter_k<uint16_t>, g, ROW_THREADS, 0, c, (uint16_t *)dst, (const uint16_t *)src, rows, nrows, du);
}

// The block of source row i, when i is the first to name r = rows[i]: acc = dst[r] + src[i] + src[k] + ... for every
// later k naming r, in index order, in fp32 (acc: `width` columns of dynamic shared memory, thread t owning columns
// t, t + blockDim, ...), rounded once into dst[r]; wider rows go in tiles of `width` columns. The later rows are
// found a chunk of blockDim indices at a time (hit[t]: index base + t names r).
enum { ADD_TILE = 8192 }; // columns per tile: 32 KB of fp32 accumulators

__global__ static void scatter_add_k(bf16 *dst, const bf16 *src, const int64_t *rows, int64_t nrows, int64_t D,
                                     int width) {
    SMEM_DYN(float, acc);
    __shared__ int hit[ROW_THREADS], any;
    FOR_EACH_ROW(i, nrows) {
        const int64_t r = rows[i];
        if (block_names(rows, 0, i, r)) continue;
        const bool later = block_names(rows, i + 1, nrows, r); // else no chunk has a hit: skip their barriers
        bf16 *d = dst + r * D;
        for (int64_t j0 = 0; j0 < D; j0 += width) {
            const int64_t w = KMIN((int64_t)width, D - j0);
            for (int64_t j = threadIdx.x; j < w; j += blockDim.x) acc[j] = bf2f(d[j0 + j]) + bf2f(src[i * D + j0 + j]);
            for (int64_t base = i + 1; later && base < nrows; base += blockDim.x) {
                const int64_t k = base + threadIdx.x;
                if (threadIdx.x == 0) any = 0;
                __syncthreads();
                hit[threadIdx.x] = k < nrows && rows[k] == r;
                if (hit[threadIdx.x]) any = 1;
                __syncthreads();
                if (any)
                    for (int t = 0; t < (int)blockDim.x; t++)
                        if (hit[t])
                            for (int64_t j = threadIdx.x; j < w; j += blockDim.x)
                                acc[j] += bf2f(src[(base + t) * D + j0 + j]);
                __syncthreads(); // hit and any are read before the next chunk writes them
            }
            for (int64_t j = threadIdx.x; j < w; j += blockDim.x) d[j0 + j] = f2bf(acc[j]);
        }
    }
}

extern "C" void kc_scatter_add_rows(opctx *c, void *dst, const void *src, const int64_t *rows, int64_t nrows,
                                    int64_t D) {
    if (nrows <= 0 || D <= 0) return;
    const int width = (int)KMIN(D, (int64_t)ADD_TILE);
    KLAUNCH(scatter_add_k, row_grid(nrows), ROW_THREADS, sizeof(float) * (size_t)width, c, B(dst), CB(src), rows,
            nrows, D, width);
}

// ---- cast ------------------------------------------------------------------------------------------------------

__global__ static void f32_to_bf16_k(bf16 *y, const float *x, int64_t n) {
    FOR_EACH(i, n) y[i] = f2bf(x[i]);
}

__global__ static void bf16_to_f32_k(float *y, const bf16 *x, int64_t n) {
    FOR_EACH(i, n) y[i] = bf2f(x[i]);
}

extern "C" void kc_cast(opctx *c, void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
    if (dst_dtype == src_dtype && (dst_dtype == DT_F32 || dst_dtype == DT_BF16)) {
        copy_bytes(c, "cast", dst, src, (int64_t)dtype_size(dst_dtype) * n);
    } else if (dst_dtype == DT_BF16 && src_dtype == DT_F32) {
        if (n > 0) KLAUNCH(f32_to_bf16_k, misc_grid(n), MISC_THREADS, 0, c, B(dst), (const float *)src, n);
    } else if (dst_dtype == DT_F32 && src_dtype == DT_BF16) {
        if (n > 0) KLAUNCH(bf16_to_f32_k, misc_grid(n), MISC_THREADS, 0, c, (float *)dst, CB(src), n);
    } else {
        opctx_fail(c, ERR_INTERNAL, "cast: %s -> %s: expected f32 <-> bf16", dtype_name(src_dtype),
                   dtype_name(dst_dtype));
    }
}
