/* lora — PEFT-style LoRA adapters on linear layers: y = x W^T + b + scale * (drop(x) A^T) B^T.
 * A [r, in] Kaiming-uniform (bound 1/sqrt(in)), B [out, r] zero, scale = alpha / r (rsLoRA: alpha / sqrt(r)),
 * dropout on the input of A only. Dropout masks come from the counter RNG keyed by (seed, step, module id,
 * element), so a recomputed forward (gradient checkpointing) sees the same mask.
 *
 *   lora_scale(alpha, r, rslora)                      the PEFT scaling factor
 *   lora_fwd(o, c, ad, y, x, M, t, xd, step, row0)    y += scale * drop(x) A^T B^T; saves t = drop(x) A^T [M, r]
 *                                                     (xd [M, in] scratch, used only when dropout > 0). x is rows
 *                                                     row0.. of the whole input: the dropout mask of a chunk of rows
 *                                                     is the whole input's
 *   lora_bwd(o, c, ad, dx, dy, x, t, M, dt, xd, step, row0)  dA, dB += ...; dx += (scale * dy B) A (masked);
 *                                                     dt [M, r] and xd [M, in] are scratch
 * Activations (x, y, t, dx, dy, dt, xd) have the context's activation dtype; the GEMMs read Aw/Bw; dA/dB are fp32.
 */
#ifndef ORPO_LORA_H
#define ORPO_LORA_H

#include <stdint.h>

#include "backend/ops.h"

typedef struct lora_ad {
    int64_t in, out;
    int r;
    float scale, dropout;
    uint32_t module;   /* stream id for dropout: layer * 64 + module */
    uint32_t key[2];   /* dropout key (rng_key(seed, RNG_DROPOUT)) */
    float *A, *B;      /* fp32 master weights */
    const void *Aw, *Bw; /* what the GEMMs read: A, B themselves, or their activation-dtype copies (bf16 mode) */
    float *dA, *dB;    /* gradients (accumulated) */
} lora_ad;

float lora_scale(float alpha, int r, int rslora);
void lora_fwd(const ops *o, opctx *c, const lora_ad *ad, void *y, const void *x, int64_t M, void *t, void *xd,
              uint32_t step, int64_t row0);
void lora_bwd(const ops *o, opctx *c, lora_ad *ad, void *dx, const void *dy, const void *x, const void *t,
              int64_t M, void *dt, void *xd, uint32_t step, int64_t row0);

#endif
