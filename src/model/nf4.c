/* nf4 — bitsandbytes-compatible NF4 + double quantisation (see nf4.h and docs/nf4.md).
 *
 * Written from the behaviour of bitsandbytes 0.50.2 as read in csrc/cuda/blockwise_quantization.cu,
 * bitsandbytes/backends/default/ops.py, bitsandbytes/functional.py and measured against the
 * installed CPU back end (tools/oracle/make_nf4_fixtures.py). No code copied.
 */
#include "model/nf4.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu_ops.h" /* the dequantisation (one implementation, the backend's) */
#include "backend/tensor.h"
#include "io/err.h"
#include "io/h5x.h" /* the bf16 conversions */
#include "io/mem.h"

/* Decision thresholds of dQuantizeNF4 (the double literals of kernels.cu rounded to fp32; they
 * equal the fp32 midpoints (c[i]+c[i+1])/2 that the torch back end bucketizes with). A value
 * goes to the upper code only when x > threshold: a tie goes to the lower code. */
static const float nf4_thr[15] = {
    -0x1.b239bp-1f,  -0x1.38a4ep-1f,  -0x1.d709p-2f,   -0x1.5bd4ecp-2f, -0x1.e079d8p-3f,
    -0x1.1a7178p-3f, -0x1.74f0e2p-5f, 0x1.45f5fep-5f,  0x1.ec90c4p-4f,  0x1.a0cfcp-3f,
    0x1.2b05a8p-2f,  0x1.8ea7f2p-2f,  0x1.00da08p-1f,  0x1.491b5ep-1f,  0x1.b913b4p-1f,
};

int64_t nf4_nblocks(int64_t n, int blocksize) {
    return blocksize > 0 && n > 0 ? (n + blocksize - 1) / blocksize : 0;
}

static int valid_blocksize(int bs) {
    return bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0;
}

static int check_flavor(int flavor) {
    if (flavor != NF4_FLAVOR_CUDA && flavor != NF4_FLAVOR_CPU)
        return err_set(ERR_ARGS, "nf4: flavor %d: expected NF4_FLAVOR_CUDA (0) or NF4_FLAVOR_CPU (1)", flavor);
    return ERR_OK;
}

static int check_4bit_args(int64_t n, int blocksize, int flavor) {
    if (n < 1) return err_set(ERR_ARGS, "nf4: tensor of %lld elements: expected at least 1", (long long)n);
    if (!valid_blocksize(blocksize))
        return err_set(ERR_ARGS, "nf4: blocksize %d: expected a power of two in 32..4096 (bitsandbytes)", blocksize);
    return check_flavor(flavor);
}

/* Quantise one block x[0..cnt) whose first element has even global index; writes (cnt+1)/2 bytes.
 * `last` tells whether this is the tensor's final, partial block (the torch back end treats it apart). */
static void quant_block(const float *x, int64_t cnt, float am, int last_partial, int flavor, uint8_t *out,
                        float *absmax_out) {
    float r, stored = am;
    int divide = 0;
    if (flavor == NF4_FLAVOR_CUDA) {
        r = 1.0f / am; /* am == 0 -> inf; 0 * inf = NaN -> code 0, as in kQuantizeBlockwise */
    } else if (last_partial) {
        stored = am > 1e-38f ? am : 1e-38f; /* absmax.clamp(min=1e-38), kept in the state */
        r = stored;
        divide = 1; /* A[full:] / am */
    } else {
        r = 1.0f / (am > 1e-38f ? am : 1e-38f); /* 1.0 / absmax.clamp(min=1e-38); state keeps am */
    }
    *absmax_out = stored;
    float sc[4096 + 1];
    uint8_t code[4096 + 1];
    if (divide)
        for (int64_t j = 0; j < cnt; j++) sc[j] = x[j] / r;
    else
        for (int64_t j = 0; j < cnt; j++) sc[j] = x[j] * r;
    int64_t m = cnt;
    if (cnt & 1) /* odd tail: pad nibble is the code of a scaled 0 (7, or 0 in a CUDA zero block) */
        sc[m++] = flavor == NF4_FLAVOR_CUDA ? 0.0f * r : 0.0f;
    /* code = number of thresholds exceeded (NaN exceeds none); threshold-major so it vectorises */
    memset(code, 0, (size_t)m);
    for (int i = 0; i < 15; i++) {
        const float t = nf4_thr[i];
        for (int64_t j = 0; j < m; j++) code[j] = (uint8_t)(code[j] + (sc[j] > t));
    }
    for (int64_t j = 0; j < m; j += 2) out[j >> 1] = (uint8_t)(code[j] << 4 | code[j + 1]);
}

/* absmax of a block, or -1 with *bad = index of the first non-finite value. */
static float block_absmax(const float *x, int64_t cnt, int64_t *bad) {
    float am = 0.0f;
    int ok = 1;
    for (int64_t j = 0; j < cnt; j++) { /* no early exit: lets the compiler vectorise */
        float a = fabsf(x[j]);
        ok &= a <= FLT_MAX;
        am = a > am ? a : am;
    }
    if (ok) return am;
    for (int64_t j = 0; j < cnt; j++)
        if (!(fabsf(x[j]) <= FLT_MAX)) {
            *bad = j;
            break;
        }
    return -1.0f;
}

static int nonfinite_error(const float *w, int64_t i, int64_t n, const char *what) {
    return err_set(ERR_DATA, "nf4: %s element %lld of %lld is %s: expected a finite value", what, (long long)i,
                   (long long)n, isnan(w[i]) ? "NaN" : "infinite");
}

int nf4_quantize_ex(const float *w, int64_t n, int blocksize, int flavor, uint8_t *packed, float *absmax) {
    int rc = check_4bit_args(n, blocksize, flavor);
    if (rc) return rc;
    int64_t nb = nf4_nblocks(n, blocksize);
    for (int64_t b = 0; b < nb; b++) {
        int64_t s = b * blocksize, cnt = n - s < blocksize ? n - s : blocksize, bad = 0;
        float am = block_absmax(w + s, cnt, &bad);
        if (am < 0.0f) return nonfinite_error(w, s + bad, n, "weight");
        quant_block(w + s, cnt, am, cnt < blocksize, flavor, packed + s / 2, absmax + b);
    }
    return ERR_OK;
}

int nf4_quantize(const float *w, int64_t n, int blocksize, uint8_t *packed, float *absmax) {
    return nf4_quantize_ex(w, n, blocksize, NF4_FLAVOR_CUDA, packed, absmax);
}

int nf4_quantize_bf16_ex(const uint16_t *w, int64_t n, int blocksize, int flavor, uint8_t *packed, float *absmax) {
    int rc = check_4bit_args(n, blocksize, flavor);
    if (rc) return rc;
    float buf[4096];
    int64_t nb = nf4_nblocks(n, blocksize);
    for (int64_t b = 0; b < nb; b++) {
        int64_t s = b * blocksize, cnt = n - s < blocksize ? n - s : blocksize, bad = 0;
        for (int64_t j = 0; j < cnt; j++) buf[j] = h5x_bf16_to_f32(w[s + j]);
        float am = block_absmax(buf, cnt, &bad);
        if (am < 0.0f)
            return err_set(ERR_DATA, "nf4: bf16 weight element %lld of %lld is %s (bits 0x%04x): expected a finite value",
                           (long long)(s + bad), (long long)n, isnan(buf[bad]) ? "NaN" : "infinite",
                           (unsigned)w[s + bad]);
        quant_block(buf, cnt, am, cnt < blocksize, flavor, packed + s / 2, absmax + b);
    }
    return ERR_OK;
}

/* ---- 8-bit dynamic quantisation of the absmax vector ------------------------------------------- */

/* CUDA dQuantize<0>: 7-step binary search over the 256 codes, then a midpoint test in fp32. */
static uint8_t dyn_code_cuda(float x) {
    const float *c = nf4_dynamic_map;
    int pivot = 127, up = 255, lo = 0;
    float lower = -1.0f, upper = 1.0f, val = c[pivot];
    for (int step = 64; step > 0; step >>= 1) {
        if (x > val) {
            lo = pivot;
            lower = val;
            pivot += step;
        } else {
            up = pivot;
            upper = val;
            pivot -= step;
        }
        val = c[pivot];
    }
    if (up == 255) upper = c[255];
    if (lo == 0) lower = c[0];
    if (x > val) {
        float mid = (upper + val) * 0.5f;
        return (uint8_t)(x > mid ? up : pivot);
    }
    float mid = (lower + val) * 0.5f;
    return (uint8_t)(x < mid ? lo : pivot);
}

/* bnb's CPU kernel maps a scaled value x in [-1,1] to cell k = trunc((x+1)*0.5*65535 + 0.5) of a
 * table holding, per cell, the code nearest to k/65535*2-1 (ties to the lower code). */
static uint8_t cpu_lut[65536];
static pthread_once_t cpu_lut_once = PTHREAD_ONCE_INIT;

static void build_cpu_lut(void) {
    int i = 0;
    for (int k = 0; k < 65536; k++) {
        double v = (double)k / 65535.0 * 2.0 - 1.0;
        while (i < 255 && (double)nf4_dynamic_map[i + 1] <= v) i++;
        int q = i;
        if (i < 255) {
            double dl = fabs(v - (double)nf4_dynamic_map[i]), dr = fabs(v - (double)nf4_dynamic_map[i + 1]);
            if (dr < dl) q = i + 1;
        }
        cpu_lut[k] = (uint8_t)q;
    }
}

const uint8_t *nf4_cpu_lut(void) {
    pthread_once(&cpu_lut_once, build_cpu_lut);
    return cpu_lut;
}

static inline uint8_t dyn_code_cpu(const uint8_t *lut, float x) {
    x = x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x;
    float t = (x + 1.0f) * 0.5f;
    t = t * 65535.0f;
    t = t + 0.5f;
    return lut[(int32_t)t];
}

float nf4_mean_offset(const float *absmax, int64_t nblocks) {
    double s = 0.0;
    for (int64_t i = 0; i < nblocks; i++) s += absmax[i];
    return nblocks > 0 ? (float)(s / (double)nblocks) : 0.0f;
}

static int check_absmax(const float *absmax, int64_t nblocks, int blocksize2, int flavor) {
    if (nblocks < 1) return err_set(ERR_ARGS, "nf4: absmax of %lld blocks: expected at least 1", (long long)nblocks);
    if (!valid_blocksize(blocksize2))
        return err_set(ERR_ARGS, "nf4: nested blocksize %d: expected a power of two in 32..4096 (bitsandbytes uses 256)",
                       blocksize2);
    int rc = check_flavor(flavor);
    if (rc) return rc;
    for (int64_t i = 0; i < nblocks; i++)
        if (!(absmax[i] >= 0.0f && absmax[i] <= FLT_MAX))
            return err_set(ERR_DATA, "nf4: absmax[%lld] = %g: expected a finite value >= 0", (long long)i,
                           (double)absmax[i]);
    return ERR_OK;
}

int nf4_double_quant_offset(const float *absmax, int64_t nblocks, int blocksize2, int flavor, float offset,
                            uint8_t *qabsmax, float *absmax2) {
    int rc = check_absmax(absmax, nblocks, blocksize2, flavor);
    if (rc) return rc;
    if (!(fabsf(offset) <= FLT_MAX)) return err_set(ERR_DATA, "nf4: nested offset %g: expected a finite value", (double)offset);
    const uint8_t *lut = flavor == NF4_FLAVOR_CPU ? nf4_cpu_lut() : NULL;
    int64_t nb2 = nf4_nblocks(nblocks, blocksize2);
    for (int64_t k = 0; k < nb2; k++) {
        int64_t s = k * blocksize2, e = s + blocksize2 < nblocks ? s + blocksize2 : nblocks;
        float am = 0.0f;
        for (int64_t i = s; i < e; i++) {
            float a = fabsf(absmax[i] - offset);
            am = a > am ? a : am;
        }
        absmax2[k] = am;
        if (am == 0.0f) { /* CPU: explicit zero codes; CUDA: 0*inf = NaN walks down to code 0 */
            memset(qabsmax + s, 0, (size_t)(e - s));
            continue;
        }
        float r = 1.0f / am;
        for (int64_t i = s; i < e; i++) {
            float x = (absmax[i] - offset) * r;
            qabsmax[i] = lut ? dyn_code_cpu(lut, x) : dyn_code_cuda(x);
        }
    }
    return ERR_OK;
}

int nf4_double_quant_ex(const float *absmax, int64_t nblocks, int blocksize2, int flavor, uint8_t *qabsmax,
                        float *absmax2, float *offset) {
    int rc = check_absmax(absmax, nblocks, blocksize2, flavor);
    if (rc) return rc;
    float c = nf4_mean_offset(absmax, nblocks);
    rc = nf4_double_quant_offset(absmax, nblocks, blocksize2, flavor, c, qabsmax, absmax2);
    if (rc == ERR_OK) *offset = c;
    return rc;
}

int nf4_double_quant(const float *absmax, int64_t nblocks, int blocksize2, uint8_t *qabsmax, float *absmax2,
                     float *offset) {
    return nf4_double_quant_ex(absmax, nblocks, blocksize2, NF4_FLAVOR_CUDA, qabsmax, absmax2, offset);
}

int nf4_quantize_full(const float *w, int64_t n, int blocksize, int blocksize2, int flavor, uint8_t *packed,
                      uint8_t *qabsmax, float *absmax2, float *offset) {
    int rc = check_4bit_args(n, blocksize, flavor);
    if (rc) return rc;
    int64_t nb = nf4_nblocks(n, blocksize);
    float stack[1024];
    float *am = nb <= 1024 ? stack : NULL;
    if (!am) am = mem_alloc((size_t)nb * sizeof(float), "NF4 block absmax values");
    rc = nf4_quantize_ex(w, n, blocksize, flavor, packed, am);
    if (rc == ERR_OK) rc = nf4_double_quant_ex(am, nb, blocksize2, flavor, qabsmax, absmax2, offset);
    if (am != stack) free(am);
    return rc;
}

/* ---- dequantisation ---------------------------------------------------------------------------- */

void nf4_absmax_dequant(const uint8_t *qabsmax, const float *absmax2, float offset, int64_t b0, int64_t b1,
                        int blocksize2, float *out) {
    for (int64_t b = b0; b < b1; b++) out[b - b0] = cpu_nf4_absmax(qabsmax, absmax2, offset, b, blocksize2);
}

static int check_deq_args(int64_t n, int blocksize, int blocksize2) {
    if (n < 1) return err_set(ERR_ARGS, "nf4: dequantize %lld elements: expected at least 1", (long long)n);
    if (!valid_blocksize(blocksize) || !valid_blocksize(blocksize2))
        return err_set(ERR_ARGS, "nf4: dequantize with blocksizes %d/%d: expected powers of two in 32..4096",
                       blocksize, blocksize2);
    return ERR_OK;
}

int nf4_dequantize(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset, int64_t n,
                   int blocksize, int blocksize2, float *out) {
    int rc = check_deq_args(n, blocksize, blocksize2);
    if (rc) return rc;
    cpu_nf4_dequant_range(out, DT_F32, packed, qabsmax, absmax2, offset, blocksize, blocksize2, 0, n);
    return ERR_OK;
}

int nf4_dequantize_rows(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                        int64_t rows, int64_t cols, int blocksize, int blocksize2, int64_t r0, int64_t r1,
                        float *out) {
    if (rows < 1 || cols < 1 || r0 < 0 || r1 > rows || r0 >= r1)
        return err_set(ERR_ARGS, "nf4: rows %lld..%lld of a [%lld, %lld] matrix: expected 0 <= r0 < r1 <= rows",
                       (long long)r0, (long long)r1, (long long)rows, (long long)cols);
    int rc = check_deq_args(rows * cols, blocksize, blocksize2);
    if (rc) return rc;
    cpu_nf4_dequant_range(out, DT_F32, packed, qabsmax, absmax2, offset, blocksize, blocksize2, r0 * cols, r1 * cols);
    return ERR_OK;
}

int nf4_dequantize_bf16(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                        int64_t n, int blocksize, int blocksize2, uint16_t *out) {
    int rc = check_deq_args(n, blocksize, blocksize2);
    if (rc) return rc;
    cpu_nf4_dequant_range(out, DT_BF16, packed, qabsmax, absmax2, offset, blocksize, blocksize2, 0, n);
    return ERR_OK;
}
