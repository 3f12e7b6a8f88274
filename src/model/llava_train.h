/* llava_train — forward with saved activations and the explicit backward of LLaVA-NeXT for training:
 * LoRA on the decoder linears, the projector and lm_head; the projector fully trained instead
 * (train.full_modules: [mm_projector]); the embedding rows of tokens added to the vocabulary
 * (lora.train_new_token_embeddings); LoRA on the vision tower's linears of its last N layers (vision:* targets),
 * else the vision tower is frozen and run forward only. Frozen NF4
 * weights get no gradient; the input gradient through them uses the dequantized weight.
 *
 * One micro-batch = pairs of (prompt+image prefix, chosen answer, rejected answer), packed flat. With
 * prefix sharing the prefix is one sequence and both answers attend to it (seq_desc.prefix); without,
 * each answer gets its own copy of the prefix (and of the image). Both give the same loss and gradients.
 *
 *   lt_spec_default(&s)                       LoRA rank 8, alpha 16, targets q,k,v,o, no dropout
 *   lt_init(&t, model, &spec)                 create the trainable tensors (LoRA A Kaiming-uniform from the
 *                                             counter RNG, B zero), fp32 masters and gradient buffers, on the
 *                                             backend of spec.device (or spec.ops); on a device the frozen weights
 *                                             are uploaded once (fp32 linears in the activation dtype, rounded to
 *                                             nearest even as the per-use cast would; the rest as loaded) and the
 *                                             model reads those copies until lt_free. Trainable values, gradients
 *                                             (lt_tensor data / grad) live on the backend: the host reads and writes
 *                                             them with t.o->download / upload
 *   lt_free(&t)
 *   lt_plan(&t, max_tok, max_tiles, max_rows) size and allocate the workspace once (no allocation per step), with
 *                                             room to generate for up to 16 prompts of 64 new tokens, and
 *                                             the default strategies (recompute = spec.grad_ckpt)
 *   lt_plan_ex(&t, &dims, &strategy)          the same with explicit memory strategies (llava_size.h): the arenas
 *                                             are carved from the size table, item by item
 *   lt_table(&t)                              that size table (after lt_plan)
 *   lt_feature_buffer(&t, &bytes)             plans with the vision features from a cache: the host buffer (size
 *                                             table item host.vision_features, carved from the host arena) the
 *                                             caller fills with a micro-batch's cached features (lt_pair.features
 *                                             point into it); NULL, 0 otherwise
 *   lt_vision_features(&t, pixels, P, out)   the vision tower alone on one image's P tiles: its selected features
 *                                             [P * np, Dv] in the activation dtype into host memory out (what a
 *                                             vision cache stores; needs a plan that runs the tower)
 *   lt_peek(&t, what, out, cap, &rows, &cols) a buffer of the last forward as fp32 on the host (tests, bench):
 *                                             "vision_features" [tiles*np, Dv], "image_rows" [image rows, D],
 *                                             "embeddings" [ntok, D] (not with offloading or forward-only),
 *                                             "final_hidden" [ntok, D], "logits" [target rows, V] (kept logits
 *                                             only), "row_positions" [target rows] (the packed position each
 *                                             target row is predicted from)
 *   lt_zero_grads(&t)
 *   lt_forward(&t, batch, &fw)                forward: packs the batch, runs vision, projector, decoder, and the
 *                                             log-prob of every target token; fills fw (rows, roles, logp)
 *   lt_backward(&t, dlogp)                    backward from d loss / d logp of those rows; accumulates grads
 *   lt_gen_opts_default(&g)                   greedy, 64 new tokens, top_p 1, no EOS
 *   lt_generate(&t, prompts, n, &g, streams, out, n_out)   autoregressive decoding of n prompts (prefix + image of
 *                                             each lt_pair; answers ignored) with a KV cache, through the same
 *                                             layers as lt_forward (LoRA without dropout); out[b * max_new + i]
 *                                             the new ids of prompt b (EOS included when reached), n_out[b] their
 *                                             count; streams[b] (NULL: b) keys prompt b's sampling stream, so a
 *                                             prompt's answer does not depend on the batch it is in. Needs lt_plan
 *                                             room for the prompts (tokens, tiles) and n rows; allocates the cache
 *   lt_tensor_count / lt_tensor(&t, i)        the trainable tensors (name, group, data, grad, numel), those of
 *                                             one group consecutive: lora, vision_lora, mm_projector,
 *                                             token_embeddings (each present when trained)
 */
#ifndef ORPO_LLAVA_TRAIN_H
#define ORPO_LLAVA_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "model/llava_params.h"
#include "model/lora.h"

/* LoRA target bits */
enum {
    LT_Q = 1 << 0, LT_K = 1 << 1, LT_V = 1 << 2, LT_O = 1 << 3, LT_GATE = 1 << 4, LT_UP = 1 << 5, LT_DOWN = 1 << 6,
    LT_PROJ = 1 << 7, LT_LM_HEAD = 1 << 8
};
#define LT_DEC_MODULES 7

/* vision LoRA target bits (vision:q_proj ... vision:fc2) */
enum { LTV_Q = 1 << 0, LTV_K = 1 << 1, LTV_V = 1 << 2, LTV_OUT = 1 << 3, LTV_FC1 = 1 << 4, LTV_FC2 = 1 << 5 };
#define LT_VIS_MODULES 6

/* roles of a target row (same bits as orpo.h's ORPO_TOK_*) */
enum { LT_ROLE_NLL = 1, LT_ROLE_CHOSEN = 2, LT_ROLE_REJECTED = 4 };

typedef struct lt_spec {
    int rank;
    float alpha, dropout;
    int rslora;
    unsigned targets;       /* LT_* bits */
    unsigned vision_targets; /* LTV_* bits */
    int vision_layers;      /* vision LoRA on the last N layers that feed the projector (0 = all) */
    int full_projector;     /* train the projector's weights instead of LoRA on it */
    int train_token_rows;   /* train the embedding rows of ids >= cfg.src_vocab and the image/pad tokens */
    int grad_ckpt;          /* keep only each decoder layer's input; recompute in backward */
    int share_prefix;       /* one prefix per pair (1) or a copy per answer (0) */
    int nll_prompt;         /* NLL targets include the prompt text tokens (TRL) */
    uint64_t seed;
    int act_dtype;          /* DT_F32 (the CPU reference) or DT_BF16 (runtime.precision: bf16) */
    int device;             /* DEVICE_CPU (0, the default) or DEVICE_CUDA: the backend is ops_for(device, act_dtype) */
    const ops *ops;         /* tests: this backend instead (e.g. ops_simt(), the CUDA kernels run on the CPU); its
                             * fp32 table is ops->f32. NULL: by device */
} lt_spec;

typedef struct lt_pair {
    const float *pixels;    /* [P, 3, T, T] preprocessed tiles, base image first */
    int P, h, w;            /* tiles and original image size */
    const int32_t *prefix;  /* BOS, prompt with <image> expanded, ... */
    int32_t n_prefix;
    const int32_t *chosen, *rejected; /* answer ids incl. </s> */
    int32_t n_chosen, n_rejected;
    const void *features;   /* plans with the vision features from a cache (LS_VIS_CACHE): the image's selected
                             * features [P * np, Dv] in the activation dtype, as lt_vision_features gives them;
                             * pixels are then not read. NULL otherwise */
} lt_pair;

typedef struct lt_batch {
    const lt_pair *pairs;
    int n;
    uint32_t step;          /* optimiser step (dropout stream) */
    int eval;               /* 1: evaluation (no LoRA dropout) */
} lt_batch;

/* generation options (lt_generate) */
typedef struct lt_gen_opts {
    int max_new;            /* new tokens at most per prompt */
    float temperature;      /* 0: greedy (argmax) */
    float top_p;            /* nucleus sampling: the smallest set of tokens reaching this probability */
    uint64_t seed;          /* sampling: u = rng_uniform_d(rng_key(seed, RNG_SAMPLE), stream, step, 0) */
    int32_t eos;            /* stop a prompt at this token (it is kept in the output); -1: none */
} lt_gen_opts;

typedef struct lt_tensor_info {
    char name[160];
    const char *group;      /* optimiser group: "lora" (decoder, lm_head), "vision_lora", "mm_projector" (its LoRA
                             * or its weights), "token_embeddings"; the tensors of a group are consecutive */
    float *data, *grad;
    int64_t numel;
    int ndim;
    int64_t shape[2];
} lt_tensor_info;

typedef struct lt_fwd {
    int64_t nrows;          /* target rows */
    const float *logp;      /* [nrows] */
    const uint8_t *role;    /* [nrows] LT_ROLE_* */
    const int32_t *pair;    /* [nrows] */
    int64_t ntok;           /* packed tokens */
} lt_fwd;

typedef struct lt_ws lt_ws; /* workspace (llava_train.c) */

typedef struct llava_trainer {
    const ops *o;           /* the backend in the run's activation dtype */
    const ops *of;          /* the same backend's fp32 table (fp32 arrays: masters, the embedding table) */
    opctx ctx;
    llava_model *m;
    lt_spec spec;
    lora_ad *dec;           /* [t_layers * LT_DEC_MODULES]; A == NULL when not targeted */
    lora_ad proj[2], head;
    lora_ad *vis;           /* [v_run_layers * LT_VIS_MODULES]; A == NULL when not adapted */
    int vis_first;          /* first adapted vision layer (v_run_layers when none) */
    float *tok_rows;        /* [n_tok_rows, D] trainable embedding rows (masters) */
    float *tok_grad;
    int32_t *tok_ids;       /* their token ids */
    int n_tok_rows;
    float *proj_master[4], *proj_grad[4]; /* full projector: w1, b1, w2, b2 */
    const void *proj_orig[4];               /* the model's own projector arrays, restored by lt_free */
    float *store, *gstore;  /* all trainable values / gradients, contiguous (backend memory) */
    void *act_store;        /* bf16 mode: the trainable values in the activation dtype, cast before each forward */
    float *stage;           /* lt_init: host staging of the initial values */
    int64_t *tok_ids_dev;   /* the trainable embedding rows' ids (backend memory) */
    int64_t nstore;
    lt_tensor_info *tensors;
    int ntensors;
    lt_ws *ws;
    int ctx_opened;         /* o->ctx_open ran: lt_free closes the context */
    /* a device backend (o->host_mem == 0): the frozen weights the step reads, uploaded once; the model's weight
     * pointers point at them while the trainer lives (lt_free puts the model's own back) */
    void *wdev;             /* decoder, projector, final norm, lm_head, image_newline */
    void *wvis;             /* the vision tower (only while a plan runs it: not with the vision features cached) */
    void *wemb;             /* the token embedding table: pinned host memory (MEM_HOST) the device reads */
    llava_weights host_w;   /* the model's own pointers */
    vis_layer *host_vis;
    dec_layer *host_dec;
} llava_trainer;

void lt_spec_default(lt_spec *s);
int lt_init(llava_trainer *t, llava_model *m, const lt_spec *spec);
void lt_free(llava_trainer *t);
int lt_plan(llava_trainer *t, int64_t max_tok, int max_tiles, int64_t max_rows);
struct ls_dims;
struct ls_strategy;
struct ls_table;
int lt_plan_ex(llava_trainer *t, const struct ls_dims *dims, const struct ls_strategy *st);
const struct ls_table *lt_table(const llava_trainer *t);
int lt_peek(llava_trainer *t, const char *what, float *out, int64_t cap, int64_t *n, int64_t *cols);
int lt_vision_features(llava_trainer *t, const float *pixels, int P, void *out);
void *lt_feature_buffer(llava_trainer *t, size_t *bytes);
void lt_zero_grads(llava_trainer *t);
int lt_forward(llava_trainer *t, const lt_batch *b, lt_fwd *fw);
int lt_backward(llava_trainer *t, const float *dlogp);
int lt_tensor_count(const llava_trainer *t);
const lt_tensor_info *lt_tensor(const llava_trainer *t, int i);
void lt_gen_opts_default(lt_gen_opts *g);
int lt_generate(llava_trainer *t, const lt_pair *prompts, int n, const lt_gen_opts *g, const uint32_t *streams,
                int32_t *out, int32_t *n_out);

#endif
