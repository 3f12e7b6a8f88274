/* llava_size — the size table: every buffer a training, evaluation or generation run of LLaVA-NeXT allocates,
 * with its dtype, element count, bytes, lifetime and placement, as a function of the config, the LoRA spec, the
 * largest micro-batch (tokens, target rows, image tiles) and the memory strategies. The trainer's allocator
 * (llava_train.c lt_plan) carves its arenas from this table and `orpo-hpc plan` prints it: one code path, the same
 * numbers.
 *
 *   ls_strategy_default(&s, act_dtype)    no recompute, no offload, logits kept, the vision tower run
 *   ls_weights_default(&w, device)        what the weights' dtypes are on a device (CPU: f32 apart from NF4 linears)
 *   ls_build(cfg, spec, wts, dims, strat, &tab)  fill the table (tab.items malloc'ed; ls_free)
 *   ls_total(&tab, place, life)           bytes of the items at a placement (LS_DEVICE / LS_HOST) and lifetime
 *                                         (LS_ANY for all)
 *   ls_find(&tab, name)                   an item by name, or NULL
 *   ls_free(&tab)
 *   ls_trainable_count(cfg, spec)         trainable values (what lt_init lays out), without a model
 *   ls_token_rows(cfg, spec)              trainable embedding rows
 *   ls_nf4_bytes(n)                       bytes of an NF4 tensor of n values as loaded
 *   ls_image_tiles(cfg)                   the most tiles one image gets
 *   ls_dims_pairs(prefix, image, answer, pairs, tiles, &d)  a micro-batch's dims from its longest pair
 *
 * Lifetimes: weights (the frozen model), trainable (LoRA / projector masters, gradients, AdamW moments), micro
 * (buffers of one micro-batch kept from forward to backward), layer (one layer's working set, reused by every
 * layer), workspace (scratch of single ops: dequant buffer, library workspaces, context reserve).
 * Every buffer of the trainer is one item; arrays of per-layer buffers are one item with count = layers * size.
 * In a training plan, generation's device buffers (gen.*) are `shared`: they take the place of the backward buffers
 * (bwd.*, and bwd.generation_extra when they need more), since generation never runs during a backward.
 */
#ifndef ORPO_LLAVA_SIZE_H
#define ORPO_LLAVA_SIZE_H

#include <stddef.h>
#include <stdint.h>

#include "model/llava.h"
#include "model/llava_train.h"

enum { LS_WEIGHTS = 0, LS_TRAINABLE, LS_MICRO, LS_LAYER, LS_WORKSPACE, LS_NLIFE };
enum { LS_DEVICE = 0, LS_HOST = 1 };
#define LS_ANY (-1)

/* the vision features: computed by the tower each step, or read from an on-disk cache (runtime.vision_cache). With
 * the cache the table has no vision-tower item; its last item, host.vision_features, holds one micro-batch's
 * features, which the trainer fills from the cache (llava_train.h lt_feature_buffer) */
enum { LS_VIS_RUN = 0, LS_VIS_CACHE = 1 };

/* rows of lm_head computed at once by default (ls_strategy.logits_chunk) */
#define LS_LOGITS_CHUNK 256

typedef struct ls_dims {
    int64_t max_tok;   /* packed tokens of the largest micro-batch */
    int64_t max_rows;  /* target rows (tokens whose log-prob is needed) */
    int max_tiles;     /* image tiles (336x336 crops incl. the base image) */
    int gen_prompts;   /* generation (eval samples, generate, the hallucination benchmark): prompts at once, at
                        * most; 0: no generation, no KV cache */
    int gen_max_new;   /* new tokens per prompt at most */
} ls_dims;

typedef struct ls_strategy {
    int act_dtype;       /* DT_F32 or DT_BF16: activations and dequantized weights */
    int recompute;       /* per-layer recompute: only each decoder layer's input is kept; the layer runs again in
                          * backward */
    int offload;         /* the kept layer inputs live in host memory; two device buffers, the next prefetched */
    int logits_keep;     /* 1: every target row's logits kept for backward; 0: one chunk, recomputed in backward */
    int logits_chunk;    /* rows of lm_head at once, forward and backward alike, whether the logits are kept or not
                          * (so both give bit-identical gradients): part of a run's numerics, like its BLAS; 0 means
                          * LS_LOGITS_CHUNK */
    int vision;          /* LS_VIS_RUN or LS_VIS_CACHE */
    int forward_only;    /* evaluation, generation, bench: no backward buffers; the layer inputs in two device
                          * buffers used in turn (nothing kept for a backward) */
    size_t ws_cap;       /* library (cuBLASLt / cuDNN) workspace cap, bytes; 0 on the CPU */
    size_t ctx_reserve;  /* CUDA context and driver reserve, bytes; 0 on the CPU */
} ls_strategy;

/* what the frozen weights are stored as on the device */
typedef struct ls_weights {
    int linear_dtype;    /* the decoder's linears: DT_NF4, DT_BF16 or DT_F32 */
    int quant_all;       /* 1: the vision tower's and the projector's linears are stored as linear_dtype too */
    int dtype;           /* the other linears (the tower's, the projector's unless quant_all, lm_head, which is never
                          * NF4): DT_F32 or DT_BF16; norms, biases, position and token embeddings stay DT_F32 */
    int embed_host;      /* 1 (CUDA): the token embedding table stays in pinned host memory, which the GPU reads
                          * directly (a step gathers a few thousand rows of it) */
} ls_weights;

typedef struct ls_item {
    char name[48];
    int dtype;           /* DT_* (DT_NF4: count is values, bytes the packed size with its absmax tables) */
    int64_t count;       /* elements */
    size_t bytes;
    int life;            /* LS_WEIGHTS ... LS_WORKSPACE */
    int place;           /* LS_DEVICE or LS_HOST */
    int shared;          /* 1: lives in the backward buffers' place (generation's KV cache in a training plan:
                          * generation never runs during a backward); not counted again by ls_total */
} ls_item;

typedef struct ls_table {
    ls_item *items;
    int n, cap;
} ls_table;

void ls_strategy_default(ls_strategy *s, int act_dtype);
void ls_weights_default(ls_weights *w, int device);
int ls_build(const llava_config *cfg, const lt_spec *spec, const ls_weights *wts, const ls_dims *dims,
             const ls_strategy *st, ls_table *tab);
size_t ls_total(const ls_table *tab, int place, int life);
const ls_item *ls_find(const ls_table *tab, const char *name);
void ls_free(ls_table *tab);
/* trainable values of a spec (the sum over lt_init's tensors), the trainable embedding rows, NF4 bytes of n values
 * as model.h5's loader lays them out (packed nibbles, 8-bit absmax, fp32 absmax2; each 64-byte aligned) */
int64_t ls_trainable_count(const llava_config *cfg, const lt_spec *spec);
int64_t ls_token_rows(const llava_config *cfg, const lt_spec *spec);
size_t ls_nf4_bytes(int64_t n);
/* the most tiles one image gets (the largest anyres grid + the base image) */
int ls_image_tiles(const llava_config *cfg);
/* the micro-batch dims of `pairs` pairs each as long as the longest prefix (<image> expanded: prefix_ids +
 * image_tokens) plus two of the longest answer, target rows bounded by the tokens (the trainer's sizing; plan's) */
void ls_dims_pairs(int64_t prefix_ids, int64_t image_tokens, int64_t answer_ids, int64_t pairs, int tiles_per_pair,
                   ls_dims *d);

#endif
