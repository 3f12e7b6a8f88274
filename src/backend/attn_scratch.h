/* attn_scratch — the scratch layout of the CUDA attention (kernels/attn.cu: query chunks of all heads, materialised
 * scores), in one place for the kernel that carves it and the memory plan that reserves it (model/llava_size.c).
 *
 *   attn_layout_of(entries, ntok, nq, nkv, hd, bwd, want_dk, want_dv)
 *       the offsets of each part and the total bytes, with P = ntok rounded up to 16, R = rows per chunk =
 *       clamp(entries / (nq P), 1, ntok), each part rounded up to 256 bytes:
 *         forward   4 ntok (row owners) + 2 nq R hd (q rows) + 4 nq R P (scores) + 2 nq R P (P) + 4 nq R hd (P V)
 *                   + 2 * 4 nq R (running max and sum)
 *         backward  the first five, + 2 nq R hd (dout rows) + 4 nq R P (dout v^T) + 2 nq R P (dS)
 *                   + 4 ntok nkv hd for each of dk, dv that is wanted (fp32 sums over the chunks)
 *   ATTN_CHUNK_ENTRIES   the score entries of one chunk, all heads (2^23: 32 MiB of fp32 scores)
 * Plain C, also compiled as C++ (kernels). */
#ifndef ORPO_ATTN_SCRATCH_H
#define ORPO_ATTN_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

#define ATTN_CHUNK_ENTRIES ((int64_t)1 << 23)

typedef struct attn_layout {
    int64_t pitch, rows;
    size_t owner, q, dout, s, dp, p, ds, o, m, l, dk, dv, total;
} attn_layout;

static inline size_t attn_up256(size_t b) { return (b + 255) & ~(size_t)255; }

static inline attn_layout attn_layout_of(int64_t entries, int64_t ntok, int nq, int nkv, int hd, int bwd, int want_dk,
                                         int want_dv) {
    attn_layout L;
    L.pitch = (ntok + 15) & ~(int64_t)15;
    int64_t r = entries / ((int64_t)nq * L.pitch);
    L.rows = r < 1 ? 1 : r > ntok ? ntok : r;
    if (L.rows < 1) L.rows = 1;
    const size_t HR = (size_t)nq * (size_t)L.rows, HRP = HR * (size_t)L.pitch, HRD = HR * (size_t)hd;
    const size_t kv = (size_t)ntok * (size_t)nkv * (size_t)hd;
    size_t o = 0;
#define ATTN_TAKE(f, bytes) (L.f = o, o += attn_up256(bytes))
    ATTN_TAKE(owner, 4 * (size_t)ntok);
    ATTN_TAKE(q, 2 * HRD);
    ATTN_TAKE(s, 4 * HRP);
    ATTN_TAKE(p, 2 * HRP);
    ATTN_TAKE(o, 4 * HRD);
    if (!bwd) {
        ATTN_TAKE(m, 4 * HR);
        ATTN_TAKE(l, 4 * HR);
        L.dout = L.dp = L.ds = L.dk = L.dv = 0;
    } else {
        ATTN_TAKE(dout, 2 * HRD);
        ATTN_TAKE(dp, 4 * HRP);
        ATTN_TAKE(ds, 2 * HRP);
        ATTN_TAKE(dk, want_dk ? 4 * kv : 0);
        ATTN_TAKE(dv, want_dv ? 4 * kv : 0);
        L.m = L.l = 0;
    }
#undef ATTN_TAKE
    L.total = o;
    return L;
}

#endif
