#include "model/lora.h"

#include <math.h>
#include <stddef.h>

float lora_scale(float alpha, int r, int rslora) { return rslora ? alpha / sqrtf((float)r) : alpha / (float)r; }

/* the input of A: x itself, or x with the step's dropout mask applied into xd */
static const void *lora_input(const ops *o, opctx *c, const lora_ad *ad, const void *x, int64_t M, void *xd,
                              uint32_t step, int64_t row0) {
    if (ad->dropout <= 0.0f) return x;
    o->dropout(c, xd, x, M * ad->in, ad->dropout, ad->key, step, ad->module, (uint64_t)(row0 * ad->in));
    return xd;
}

void lora_fwd(const ops *o, opctx *c, const lora_ad *ad, void *y, const void *x, int64_t M, void *t, void *xd,
              uint32_t step, int64_t row0) {
    const void *xin = lora_input(o, c, ad, x, M, xd, step, row0);
    o->linear_fwd(c, t, xin, ad->Aw, NULL, M, ad->in, ad->r);
    o->matmul_acc(c, y, t, ad->Bw, M, ad->r, ad->out, ad->scale);
}

/* y = s t B^T, t = xin A^T:  dB += s dy^T t;  dt = s dy B;  dA += dt^T xin;  dx += mask(dt A) */
void lora_bwd(const ops *o, opctx *c, lora_ad *ad, void *dx, const void *dy, const void *x, const void *t,
              int64_t M, void *dt, void *xd, uint32_t step, int64_t row0) {
    const void *xin = lora_input(o, c, ad, x, M, xd, step, row0);
    o->zero(c, dt, M * ad->r);
    o->add_inplace(c, dt, t, M * ad->r);
    o->scale(c, dt, M * ad->r, ad->scale);
    o->linear_bwd(c, NULL, ad->dB, NULL, dy, dt, ad->Bw, M, ad->r, ad->out); /* dB += dy^T (s t) */
    o->zero(c, dt, M * ad->r);
    o->linear_bwd(c, dt, NULL, NULL, dy, NULL, ad->Bw, M, ad->r, ad->out);   /* dt = dy B */
    o->scale(c, dt, M * ad->r, ad->scale);                                   /* dt = s dy B */
    o->linear_bwd(c, NULL, ad->dA, NULL, dt, xin, ad->Aw, M, ad->in, ad->r);  /* dA += dt^T xin */
    if (!dx) return;
    if (ad->dropout <= 0.0f) {
        o->linear_bwd(c, dx, NULL, NULL, dt, xin, ad->Aw, M, ad->in, ad->r);
    } else {
        o->zero(c, xd, M * ad->in);
        o->linear_bwd(c, xd, NULL, NULL, dt, xin, ad->Aw, M, ad->in, ad->r);
        o->dropout(c, xd, xd, M * ad->in, ad->dropout, ad->key, step, ad->module, (uint64_t)(row0 * ad->in));
        o->add_inplace(c, dx, xd, M * ad->in);
    }
}
