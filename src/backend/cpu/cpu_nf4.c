/* cpu_nf4 — NF4 dequantisation (bitsandbytes layout, docs/nf4.md) into fp32 or bf16: the one implementation of the
 * tree (model/nf4.c's nf4_dequantize* call it).
 *
 * absmax of block b = nf4_dynamic_map[qabsmax[b]] * absmax2[b / bs2] + offset (two fp32 roundings, in that order);
 * w = nf4_code[nibble] * absmax (one fp32 rounding); bf16 output: that fp32 value rounded to nearest even. */
#include "backend/cpu/cpu_ops.h"
#include "backend/nf4_tables.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/h5x.h" /* the bf16 conversion */

float cpu_nf4_absmax(const uint8_t *qabsmax, const float *absmax2, float offset, int64_t b, int bs2) {
    float a = nf4_dynamic_map[qabsmax[b]] * absmax2[b / bs2];
    return a + offset;
}

/* elements [e0, e1) in fp32 into out[0 .. e1-e0); element 2j is the high nibble of byte j */
static void deq_f32(float *out, const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                    int bs, int bs2, int64_t e0, int64_t e1) {
    int64_t e = e0;
    while (e < e1) {
        int64_t b = e / bs, bend = (b + 1) * bs < e1 ? (b + 1) * bs : e1;
        const float a = cpu_nf4_absmax(qabsmax, absmax2, offset, b, bs2);
        float *o = out + (e - e0);
        if (e & 1) {
            *o++ = nf4_code[packed[e >> 1] & 15] * a;
            e++;
        }
        for (; e + 1 < bend; e += 2) {
            uint8_t byte = packed[e >> 1];
            o[0] = nf4_code[byte >> 4] * a;
            o[1] = nf4_code[byte & 15] * a;
            o += 2;
        }
        if (e < bend) {
            *o = nf4_code[packed[e >> 1] >> 4] * a;
            e++;
        }
    }
}

void cpu_nf4_dequant_range(void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                           const float *absmax2, float offset, int bs, int bs2, int64_t e0, int64_t e1) {
    if (out_dtype == DT_F32) {
        deq_f32(out, packed, qabsmax, absmax2, offset, bs, bs2, e0, e1);
        return;
    }
    uint16_t *o = out;
    float buf[1024];
    for (int64_t s = e0; s < e1; s += 1024) {
        int64_t e = s + 1024 < e1 ? s + 1024 : e1;
        deq_f32(buf, packed, qabsmax, absmax2, offset, bs, bs2, s, e);
        for (int64_t i = s; i < e; i++) o[i - e0] = h5x_f32_to_bf16(buf[i - s]);
    }
}

void cpu_nf4_dequant(opctx *c, void *out, int out_dtype, const uint8_t *packed, const uint8_t *qabsmax,
                     const float *absmax2, float offset, int64_t n, int bs, int bs2) {
    if (!nf4_dequant_args_ok(c, out_dtype, n, bs, bs2)) return;
    cpu_nf4_dequant_range(out, out_dtype, packed, qabsmax, absmax2, offset, bs, bs2, 0, n);
}
