/* selftest — every op of a backend's table (backend/ops.h) against the CPU reference in bf16 mode (ops_cpu_bf16) on
 * the same small random inputs: the inputs are uploaded through the table's own memory functions, the op runs on
 * the device, its outputs are downloaded and compared element by element with a stated tolerance. Run before the
 * first step on a GPU and by `orpo-hpc device --selftest`, so that a new driver or GPU never gives silently wrong
 * numbers.
 *
 *   selftest_shape_default(&s)          the small shapes of the runtime check (a few thousand values per op)
 *   ops_selftest(dev, dc, why, n)       every op at the default shapes; ERR_OK when all agree, else ERR_INTERNAL and
 *                                       `why` names the first op that disagrees, its output, the worst element,
 *                                       both values and the bound (and the other failing ops)
 *   ops_selftest_ex(dev, dc, &shape, seed, &res)  the same at given shapes and seed, with the details in res
 *   SELFTEST_NOPS                       the ops of the table (linear_fwd .. adamw): all are checked, plus the memory
 *                                       functions (upload, download, memset, copy_async / fence / wait)
 *
 * Tolerances (u = 2^-24, "ulp" a bf16 unit in the last place of the larger of the two values):
 *   - data movement, casts, adds of two values, embedding rows, im2col, vis_embed: exact (the same single fp32
 *     operation and the same rounding on both sides);
 *   - element-wise maths (GELU, SwiGLU, RoPE, dropout, scale, NF4 dequant, logprob_bwd): 1 ulp, plus 64 u times the
 *     magnitudes of the element's terms where an accumulation (+=) or a difference may cancel (a GPU's expf/erff/
 *     sincosf differ from glibc's by a few fp32 ulp; FMA contraction removes a rounding);
 *   - reductions and GEMMs (linear, matmul_acc, norms, attention, logprob, embedding and row gradients, sumsq, AdamW):
 *     the summation bound for any order, gamma_n = n u' / (1 - n u') relative to the sum of the magnitudes of the
 *     terms, for the reference (u) and for the device (2u: tensor cores may truncate), with n the terms plus the
 *     element-wise roundings of the formula, plus 1 ulp for a bf16 output. Attention bounds each score, the
 *     probabilities and the weighted sums through the largest |q|, |k|, |v| of the inputs (derivation in
 *     selftest.c). */
#ifndef ORPO_SELFTEST_H
#define ORPO_SELFTEST_H

#include <stddef.h>
#include <stdint.h>

#include "backend/ops.h"

#define SELFTEST_NOPS 37

typedef struct selftest_shape {
    int64_t n;          /* element-wise ops: values */
    int64_t m, k, nout; /* linear: rows, in features, out features */
    int64_t d;          /* norms: row width */
    int64_t vocab;      /* logprob: row width */
    int nq, nkv, hd;    /* attention: query heads, key/value heads, head dimension (even) */
    int prefix;         /* attention: tokens of the shared prefix; the two answers have prefix - 1 and prefix / 2 + 1 */
    int tiles, tile, patch; /* im2col / vis_embed: tiles of tile x tile pixels, patch side */
} selftest_shape;

typedef struct selftest_result {
    int nops;              /* ops checked (SELFTEST_NOPS when every op ran) */
    int nfail;             /* ops beyond their tolerance (or with a device error) */
    double worst_ratio;    /* the largest |difference| / tolerance of any compared value (0: all bit-identical) */
    char worst_op[40];     /* the op of worst_ratio */
    double seconds;        /* wall time of the whole check */
    char why[512];         /* the first failure (empty when none) */
} selftest_result;

void selftest_shape_default(selftest_shape *s);
int ops_selftest(const ops *dev, opctx *dc, char *why, size_t why_len);
int ops_selftest_ex(const ops *dev, opctx *dc, const selftest_shape *shape, uint64_t seed, selftest_result *res);

#endif
