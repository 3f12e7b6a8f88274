/* attn_fused — the host side of the fused (cuDNN) attention, issue 12 point 2(b): how one attn_fwd / attn_bwd call
 * over packed sequences (backend/ops.h seq_desc) maps onto cuDNN's scaled-dot-product attention, and which attention
 * a CUDA run uses (runtime.attention, `bench step --attention`). Plain C, no CUDA: the mapping and the choice are
 * tested on the CPU (tests/unit/test_attn_fused.c); kernels/attn_fused.cu runs the segments.
 *
 * The mapping. cuDNN's SDPA takes Q [b, nq, sq, hd] and K/V [b, nkv, skv, hd] (GQA: nq a multiple of nkv) with a
 * padding mask (the valid lengths lq <= sq, lkv <= skv as device tensors) and a causal mask aligned bottom right
 * (query i sees keys j <= i + lkv - lq). Every computed sequence s of a call becomes one or more segments, each one
 * cuDNN call with b = 1:
 *     queries   rows [q0, q0 + lq) of s (a chunk of s's rows when s is long, see below)
 *     keys      part A: the rows of s's prefix sequence (all of them), then part B: s's own rows from its start up to
 *               the chunk's last row (causal) or all of them (not causal); lkv = |A| + |B|
 * gathered into a scratch [A; B] so that query row r of s sees, bottom right aligned, the whole prefix and its own
 * rows up to r — the shared-prefix mask of kernels/attn.cu and the CPU reference exactly. sq and skv are lq and lkv
 * rounded up to a bucket (afz_bucket: 64, then 8 steps per octave, at most 12.5 % padding), so that a few graphs
 * serve every length (cuDNN builds a graph per shape, and building is slow); the padded rows are zeros and masked.
 * A sequence whose segment would not fit the byte budget is split into query chunks (halving until it fits, at
 * least 64 rows a chunk); a chunk sees the keys its last row sees, the causal mask hides the rest.
 *
 *   afz_bucket(n)                   the padded length of n rows
 *   afz_seg_bytes(sq, skv, nq, nkv, hd, bwd, &L)  the scratch layout of one segment (each part 256-byte aligned):
 *                                   lens (lq, lkv), q, k, v, o, stats [nq, sq] f32, and backward also do, dq, dk,
 *                                   dv, and the estimate of cuDNN's workspace (AFZ_WS_EST); L.total the bytes
 *   afz_plan(hs, nseq, ndesc, ntok, nq, nkv, hd, causal, bwd, budget, &segs, &n, why, len)
 *                                   the segments of a call (malloc'd, *segs; free() it), or nonzero with `why` when
 *                                   cuDNN cannot express the call and attn.cu's version must run: descriptors outside
 *                                   the tokens, computed sequences that overlap (attn.cu lets the last one own a
 *                                   row), a prefix that is itself or out of range, a head dimension that is not a
 *                                   multiple of 8 or over 128, or a segment of 64 query rows over the budget
 *   AFZ_MIN_BUDGET                  the least budget of a call (the kernel scratch may grow to it, beyond the plan's
 *                                   reservation, on tiny models only)
 *
 * The choice (runtime.attention, `bench step --attention`):
 *   afz_mode_parse(s, &mode)        "auto", "cudnn", "kernels" -> AFZ_AUTO, AFZ_CUDNN, AFZ_KERNELS; ERR_ARGS else
 *   afz_mode_name(mode)
 *   afz_choose(mode, built, check, arg, &use, msg, len)
 *                                   kernels: use 0, no message. auto: use 1 when cuDNN attention is built and
 *                                   check(arg, why) passes (its self-test against attn.cu's version on this GPU),
 *                                   else use 0 and msg the one line saying why. cudnn: use 1 when both hold, else
 *                                   ERR_ARGS and msg why (the caller exits 2). check is called only when built.
 *   afz_ops_cuda()                  the CUDA op table with the fused attention (kernels/cuda_ops.cu), NULL when this
 *                                   binary has no cuDNN attention (ORPO_HAVE_CUDNN)
 *   afz_selftest(ref, dev, c, nq, nkv, hd, prefix, seed, why, n, &worst)
 *                                   dev's attention (the fused table) against ref's (attn.cu's) on context c, both
 *                                   tables of one device: forward and backward of a causal shared-prefix layout
 *                                   (GQA, packed, padding rows) and of two tiles (not causal), on random inputs;
 *                                   ERR_OK, or ERR_INTERNAL with `why` naming the output, the element, both values
 *                                   and the bound (derived in attn_selftest.c); worst: the largest |diff| / bound
 *   afz_check_gpu(ctx, why, n)      the run-time check of afz_choose on a CUDA context (opctx *ctx): afz_selftest of
 *                                   afz_ops_cuda() against ops_for(cuda) with 8 / 2 heads of 128 and 4 / 4 of 64,
 *                                   and every one of its 8 attention calls run by cuDNN (none fallen back: else
 *                                   nonzero with the fallback's reason, e.g. libcudnn missing at run time)
 *   afz_counts(&fused, &fell, why, n)  the fused table's attention calls so far: run by cuDNN, fallen back to the
 *                                   kernels, and the latest fallback's reason (zeros and "" without CUDA)
 */
#ifndef ORPO_ATTN_FUSED_H
#define ORPO_ATTN_FUSED_H

#include <stddef.h>
#include <stdint.h>

#include "backend/ops.h"

#define AFZ_MIN_BUDGET ((size_t)8 << 20)
#define AFZ_MIN_CHUNK 64
#define AFZ_MAX_HEAD_DIM 128

typedef struct afz_seg {
    int64_t q0, lq;     /* query rows [q0, q0 + lq) of the packed buffer (also the rows of out, lse and dq) */
    int64_t a0, alen;   /* keys part A: rows [a0, a0 + alen) (the prefix; alen 0: none) */
    int64_t b0, blen;   /* keys part B: rows [b0, b0 + blen) (the sequence's own) */
    int sq, skv;        /* padded lengths: afz_bucket(lq), afz_bucket(alen + blen) */
} afz_seg;

typedef struct afz_layout {
    size_t lens, q, k, v, o, stats, dout, dq, dk, dv, ws, ws_est, total;
} afz_layout;

int afz_bucket(int64_t n);
afz_layout afz_seg_bytes(int sq, int skv, int nq, int nkv, int hd, int bwd);
int afz_plan(const seq_desc *hs, int nseq, int ndesc, int64_t ntok, int nq, int nkv, int hd, int causal, int bwd,
             size_t budget, afz_seg **segs, int *nsegs, char *why, size_t why_len);

enum { AFZ_AUTO = 0, AFZ_CUDNN = 1, AFZ_KERNELS = 2 };
int afz_mode_parse(const char *s, int *mode);
const char *afz_mode_name(int mode);
typedef int (*afz_check_fn)(void *arg, char *why, size_t why_len);
int afz_choose(int mode, int built, afz_check_fn check, void *arg, int *use, char *msg, size_t msg_len);

const ops *afz_ops_cuda(void);
int afz_selftest(const ops *ref, const ops *dev, opctx *c, int nq, int nkv, int hd, int prefix, uint64_t seed,
                 char *why, size_t why_len, double *worst);
int afz_check_gpu(void *ctx, char *why, size_t why_len);
void afz_counts(long *fused, long *fell_back, char *why, size_t why_len);

#endif
