// rope — split-half ("rotate_half") rotary embedding at given positions, in place, forward and backward (the
// transposed rotation), as src/backend/cpu/cpu_rope.c in bf16 mode: each value widened, rotated in fp32 with the
// reference's expressions, rounded once (nearest even).
//
//   x'_j = x_j cos - x_{j+h} sin,  x'_{j+h} = x_{j+h} cos + x_j sin   (h = hd / 2; backward: sin -> -sin)
//
// The frequencies inv_i = 1 / theta^(2i / hd) are computed by the launcher on the host with the reference's fp32
// expression and the host's powf (the device's powf differs by a few ulps, which the angle pos * inv_i would carry to
// ~0.01 rad at position 32k), so the angle, one fp32 product, is the reference's bit for bit. The products are
// __fmul_rn: nvcc would otherwise contract a*cos - b*sin into an FMA, which the reference does not round like.
// One block per token: its (cos, sin) pairs into shared memory once, then every (head, i) pair of the row.
//
// Against the CPU reference on a GPU, cosf / sinf are the one difference (CUDA: <= 2 ulp, glibc: < 1 ulp, so
// cos, sin within 3 ulp = 3 * 2^-23 relative of the reference's): an output differs by at most 2^-21 (|a| + |b|)
// before its bf16 rounding, i.e. by 1 bf16 ulp plus that absolute amount. Through the CPU executor (tests/kernels)
// both use the same libm: bit-identical.
#include "simt.h"
#include "kops.h"

// at most ROPE_BLOCKS blocks (one wave of 16 blocks of 128 threads per SM of an H100), each taking every
// ROPE_BLOCKS-th token
enum { ROPE_MAX_HALF = OPS_ATTN_MAX_HEAD_DIM / 2, ROPE_THREADS = 128, ROPE_BLOCKS = 2048 };

// inv_i for i < hd / 2, passed by value (at most 1 KB of kernel parameters)
struct rope_freqs {
    float inv[ROPE_MAX_HALF];
};

__global__ static void rope_k(bf16 *x, const int32_t *pos, int64_t ntok, int nhead, int hd, rope_freqs f,
                              float sign) {
    __shared__ float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    const int h2 = hd / 2;
    for (int64_t t = blockIdx.x; t < ntok; t += gridDim.x) {
        const float p = (float)pos[t];
        for (int i = threadIdx.x; i < h2; i += blockDim.x) {
            const float ang = p * f.inv[i];
            cs[i] = cosf(ang);
            sn[i] = sign * sinf(ang);
        }
        __syncthreads();
        bf16 *row = x + t * nhead * hd;
        for (int k = threadIdx.x; k < nhead * h2; k += blockDim.x) {
            const int h = k / h2, i = k - h * h2;
            bf16 *r = row + (int64_t)h * hd;
            const float a = bf2f(r[i]), b = bf2f(r[i + h2]);
            r[i] = f2bf(__fmul_rn(a, cs[i]) - __fmul_rn(b, sn[i]));
            r[i + h2] = f2bf(__fmul_rn(b, cs[i]) + __fmul_rn(a, sn[i]));
        }
        __syncthreads(); // cs and sn are read before the next token's are written
    }
}

static void rope(opctx *c, const char *op, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta,
                 float sign) {
    if (hd / 2 > ROPE_MAX_HALF) {
        opctx_fail(c, ERR_INTERNAL, "%s: head dimension %d: expected at most %d", op, hd, OPS_ATTN_MAX_HEAD_DIM);
        return;
    }
    if (ntok <= 0 || nhead <= 0 || hd < 2) return;
    rope_freqs f;
    for (int i = 0; i < hd / 2; i++) f.inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd); // as cpu_rope.c
    KLAUNCH(rope_k, (unsigned)KMIN(ntok, (int64_t)ROPE_BLOCKS), ROPE_THREADS, 0, c, (bf16 *)x, pos, ntok, nhead, hd, f,
            sign);
}

extern "C" void kc_rope_fwd(opctx *c, void *x, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    rope(c, "rope_fwd", x, pos, ntok, nhead, hd, theta, 1.0f);
}

extern "C" void kc_rope_bwd(opctx *c, void *dx, const int32_t *pos, int64_t ntok, int nhead, int hd, float theta) {
    rope(c, "rope_bwd", dx, pos, ntok, nhead, hd, theta, -1.0f);
}
