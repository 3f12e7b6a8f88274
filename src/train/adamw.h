/* adamw — torch.optim.AdamW (fp32 params and moments) with parameter groups, and torch's
 * clip_grad_norm_ over all groups.
 *
 * Per step t (1-based) and tensor, in fp32 with the scalars computed in double as torch does:
 *   lr   = group.lr * lr_factor                      (lr_factor from sched_factor: LambdaLR)
 *   p   *= 1 - lr*wd                                 (decoupled weight decay, before the Adam update)
 *   m    = m + (1-beta1)(g - m)                      (lerp)
 *   v    = v*beta2 + (1-beta2) g^2
 *   p   -= lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
 * Memory belongs to the caller (the trainer's arenas); nothing is allocated in a step.
 * The arithmetic runs through a backend's ops (sumsq, scale, adamw), so the tensors may live on the device: the host
 * reads back only the norm (one double). Without adamw_bind the fp32 CPU reference runs on host tensors.
 *
 *   adamw_init(o)                          betas (0.9, 0.999), eps 1e-8, step 0, the fp32 CPU reference
 *   adamw_bind(o, ops, ctx)                run on a backend: `ops` is the fp32 table of the tensors' device
 *                                          (ops_for(device, DT_F32): params, gradients and moments are all fp32);
 *                                          allocates the norm's accumulator there (ERR_IO when it cannot)
 *   adamw_release(o)                       frees what adamw_bind allocated
 *   adamw_grad_norm(o, groups, n)          global L2 norm of all gradients (fp64 accumulation in index order)
 *   adamw_clip(o, groups, n, max_norm)     clip_grad_norm_: returns the norm before clipping; max_norm <= 0: no clip
 *   adamw_step(o, groups, n, lr_factor)    one optimiser step of every tensor of every group (o->step += 1); returns
 *                                          the backend's sticky error too (ops->sync)
 *   adamw_zero_grad(o, groups, n)           gradients := 0
 *   adamw_group_index(groups, n, name)     index of a group by name, -1 if absent
 */
#ifndef ORPO_ADAMW_H
#define ORPO_ADAMW_H

#include <stdint.h>

#include "backend/ops.h"

typedef struct adamw_tensor {
    const char *name; /* for messages, e.g. "layers.3.q_proj.lora_A" */
    float *param, *grad, *m, *v;
    int64_t n;
} adamw_tensor;

typedef struct adamw_group {
    const char *name;    /* "lora", "vision_lora", "mm_projector", "token_embeddings", ... */
    double lr;           /* peak learning rate of the group (the schedule multiplies it) */
    double weight_decay; /* decoupled weight decay */
    adamw_tensor *t;
    int nt;
} adamw_group;

typedef struct adamw_opt {
    double beta1, beta2, eps;
    int64_t step; /* optimiser steps taken (torch state["step"], the same for every tensor) */
    const ops *o; /* backend of the tensors (NULL: the fp32 CPU reference, with a context of its own) */
    opctx *c;
    double *ss;   /* one double of backend memory: the norm's sum of squares (NULL: a host variable) */
} adamw_opt;

void adamw_init(adamw_opt *o);
int adamw_bind(adamw_opt *o, const ops *backend, opctx *c);
void adamw_release(adamw_opt *o);
double adamw_grad_norm(const adamw_opt *o, const adamw_group *g, int ng);
double adamw_clip(const adamw_opt *o, adamw_group *g, int ng, double max_norm);
int adamw_step(adamw_opt *o, adamw_group *g, int ng, double lr_factor);
void adamw_zero_grad(const adamw_opt *o, adamw_group *g, int ng);
int adamw_group_index(const adamw_group *g, int ng, const char *name);

#endif
