/* nf4_tables — the two constant tables of bitsandbytes' NF4 with double quantisation, bit-exact (docs/nf4.md):
 * shared by the quantiser (model/nf4.c), the CPU dequantisation op (cpu/cpu_nf4.c) and the CUDA kernels.
 *
 *   nf4_code[16]           get_4bit_type("nf4") as fp32 (bit patterns bf800000 ... 3f800000)
 *   nf4_dynamic_map[256]   create_dynamic_map(signed=True) of bitsandbytes 0.50.2 / torch 2.15 (the 8-bit absmax codes)
 */
#ifndef ORPO_NF4_TABLES_H
#define ORPO_NF4_TABLES_H

extern const float nf4_code[16];
extern const float nf4_dynamic_map[256];

#endif
