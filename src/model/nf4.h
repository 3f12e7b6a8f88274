/* nf4 — bitsandbytes-compatible NF4 quantisation with double (nested) quantisation, fp32 reference.
 *
 *   nf4_quantize(w, n, bs, packed, absmax)                  fp32 -> packed NF4 + fp32 absmax (CUDA flavor)
 *   nf4_quantize_ex(w, n, bs, flavor, packed, absmax)       same, choosing the bnb flavor (CUDA or CPU)
 *   nf4_quantize_bf16_ex(w, n, bs, flavor, packed, absmax)  bf16 source (bnb upcasts exactly, then as fp32)
 *   nf4_double_quant(absmax, nb, bs2, qabsmax, absmax2, offset)          nested 8-bit absmax (CUDA flavor)
 *   nf4_double_quant_ex(absmax, nb, bs2, flavor, qabsmax, absmax2, offset)  same, choosing the flavor
 *   nf4_double_quant_offset(absmax, nb, bs2, flavor, offset, qabsmax, absmax2)  nested quant, given offset
 *   nf4_mean_offset(absmax, nb)                             offset = mean(absmax) (double sum, fp32 result)
 *   nf4_absmax_dequant(qabsmax, absmax2, offset, b0, b1, bs2, out)  absmax of 64-blocks b0..b1-1
 *   nf4_dequantize(packed, qabsmax, absmax2, offset, n, bs, bs2, out)   whole tensor -> fp32
 *   nf4_dequantize_rows(packed, qabsmax, absmax2, offset, rows, cols, bs, bs2, r0, r1, out)  rows r0..r1-1
 *   nf4_dequantize_bf16(packed, qabsmax, absmax2, offset, n, bs, bs2, out_bits)  -> bf16 (RNE, as bnb)
 * bf16 <-> fp32 is h5x_bf16_to_f32 / h5x_f32_to_bf16 (io/h5x.h), the one converter of the tree.
 *   nf4_quantize_full(w, n, bs, bs2, flavor, packed, qabsmax, absmax2, offset)  quantize + double quant
 *   nf4_nblocks(n, bs)                                      ceil(n / bs)
 *   nf4_cpu_lut()                                           the 65536-entry 8-bit LUT of bnb's CPU kernel
 *
 * Constants: nf4_code[16] (get_4bit_type("nf4"), fp32) and nf4_dynamic_map[256]
 * (create_dynamic_map(signed=True) of bitsandbytes 0.50.2 / torch 2.15), both bit-exact, in backend/nf4_tables.h.
 * Dequantisation is the backend's op (backend/cpu/cpu_nf4.c, ops->nf4_dequant); the nf4_dequantize* functions
 * here check their arguments and call it.
 *
 * Layout (docs/nf4.md): element e of the flattened row-major tensor is nibble e of `packed`,
 * element 2j in the HIGH nibble of byte j, 2j+1 in the LOW nibble; an odd n leaves one pad
 * nibble (bnb writes code 7 there, or 0 in an all-zero block on CUDA). absmax is per `bs`-block
 * (64); after double quantisation absmax_b = dynamic_map[qabsmax_b] * absmax2[b / bs2] + offset
 * (two fp32 roundings, in that order) and w = nf4_code[nibble] * absmax_b (one fp32 rounding).
 *
 * Flavors: bitsandbytes gives different bytes on its two back ends (docs/nf4.md, "flavors"):
 *   NF4_FLAVOR_CUDA  kQuantizeBlockwise (csrc): w * (1/absmax) everywhere, all-zero 64-block -> code 0
 *                    (NaN path), 8-bit codes by binary search + fp32 midpoint test (exact nearest).
 *   NF4_FLAVOR_CPU   bnb's CPU back end: pure-torch quantize_4bit (last partial block divides by
 *                    absmax, absmax clamped to 1e-38 there, zero block -> code 7) and the native
 *                    8-bit quantizer with a 65536-cell lookup table (not the exact nearest code).
 * Dequantisation is identical for both.
 *
 * Errors: NaN/Inf input, n < 1, a block size bnb rejects -> ERR_DATA / ERR_ARGS with the element
 * index; nothing is written to the outputs in that case (the scan happens first).
 */
#ifndef ORPO_MODEL_NF4_H
#define ORPO_MODEL_NF4_H

#include <stdint.h>

#include "backend/nf4_tables.h" /* nf4_code, nf4_dynamic_map */

enum { NF4_FLAVOR_CUDA = 0, NF4_FLAVOR_CPU = 1 };
enum { NF4_BLOCKSIZE = 64, NF4_BLOCKSIZE2 = 256 };

int64_t nf4_nblocks(int64_t n, int blocksize);

int nf4_quantize(const float *w, int64_t n, int blocksize, uint8_t *packed, float *absmax);
int nf4_quantize_ex(const float *w, int64_t n, int blocksize, int flavor, uint8_t *packed, float *absmax);
int nf4_quantize_bf16_ex(const uint16_t *w, int64_t n, int blocksize, int flavor, uint8_t *packed,
                         float *absmax);

float nf4_mean_offset(const float *absmax, int64_t nblocks);
int nf4_double_quant(const float *absmax, int64_t nblocks, int blocksize2, uint8_t *qabsmax, float *absmax2,
                     float *offset);
int nf4_double_quant_ex(const float *absmax, int64_t nblocks, int blocksize2, int flavor, uint8_t *qabsmax,
                        float *absmax2, float *offset);
int nf4_double_quant_offset(const float *absmax, int64_t nblocks, int blocksize2, int flavor, float offset,
                            uint8_t *qabsmax, float *absmax2);

int nf4_quantize_full(const float *w, int64_t n, int blocksize, int blocksize2, int flavor, uint8_t *packed,
                      uint8_t *qabsmax, float *absmax2, float *offset);

void nf4_absmax_dequant(const uint8_t *qabsmax, const float *absmax2, float offset, int64_t b0, int64_t b1,
                        int blocksize2, float *out);
int nf4_dequantize(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset, int64_t n,
                   int blocksize, int blocksize2, float *out);
int nf4_dequantize_rows(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                        int64_t rows, int64_t cols, int blocksize, int blocksize2, int64_t r0, int64_t r1,
                        float *out);
int nf4_dequantize_bf16(const uint8_t *packed, const uint8_t *qabsmax, const float *absmax2, float offset,
                        int64_t n, int blocksize, int blocksize2, uint16_t *out);

const uint8_t *nf4_cpu_lut(void);

#endif
