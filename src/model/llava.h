/* llava — the LLaVA-NeXT graph's description (CLIP vision tower, 2-layer GELU projector, anyres packing with
 * unpad and image_newline, Mistral decoder): its config, its weights, and the host-side helpers (llava_host.c).
 * The forward and backward themselves exist once, in the trainer (llava_train.h), for training, evaluation,
 * generation and bench alike.
 *
 *   llava_config_from_hf(json_path, &cfg)        read a HuggingFace config.json (llava_next); ERR_DATA on
 *                                                an unknown architecture or a bad value, naming the key
 *   llava_config_from_json(label, text, n, &cfg) the same from config.json text held in memory
 *   llava_config_describe(&cfg, buf, n)          one line for logs
 *   lin_f32(&w, scratch)                         the fp32 weight of a linear (NF4 dequantized into scratch)
 *   llava_pack_index(cfg, P, h, w, idx)          row map of the packing of one image's P tiles (base, unpadded grid
 *                                                rows + newline): idx[i] = tile*np + within, or -1 for a newline row
 *                                                (NULL idx: count only); the trainer packs and scatters with it
 */
#ifndef ORPO_LLAVA_H
#define ORPO_LLAVA_H

#include <stddef.h>
#include <stdint.h>

#include "backend/ops.h"
#include "data/anyres.h"

enum { LLAVA_LAYOUT_HF = 0, LLAVA_LAYOUT_LIUHAOTIAN = 1 };

typedef struct llava_config {
    /* vision tower (CLIP ViT) */
    int v_hidden, v_inter, v_layers, v_heads, v_image, v_patch;
    int v_feature_layer;  /* as in config (-2) */
    int v_run_layers;     /* layers actually run: the one whose output is selected */
    float v_eps;
    /* projector */
    int proj_bias;
    /* Mistral decoder */
    int t_hidden, t_inter, t_layers, t_heads, t_kv_heads, t_head_dim, vocab;
    float t_eps, rope_theta;
    int image_token, pad_token, bos, eos;
    int src_vocab;        /* rows of embed/lm_head in the source checkpoint (vocab - 2 for liuhaotian) */
    int layout;           /* LLAVA_LAYOUT_HF or LLAVA_LAYOUT_LIUHAOTIAN: where the config came from */
    anyres_config anyres; /* tile = v_image, patch = v_patch, pinpoints in (height, width) */
} llava_config;

/* A linear layer's weight [out, in] (+ optional fp32 bias [out]). DT_F32 weights are used in place;
 * DT_NF4 weights (bitsandbytes layout, double-quantized absmax) are dequantized by lin_f32 into a
 * per-layer scratch buffer of out*in floats. */
typedef struct lin_w {
    int dtype;               /* DT_F32 or DT_NF4 */
    const void *w;           /* f32 [out, in], or packed NF4 nibbles */
    const float *b;
    int64_t out, in;
    const uint8_t *qabsmax;  /* NF4: 8-bit absmax per 64-block */
    const float *absmax2;    /* NF4: fp32 scale per 256 absmax */
    float offset;            /* NF4: mean absmax added back */
} lin_w;

typedef struct vis_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    lin_w q, k, v, o, fc1, fc2;
} vis_layer;

typedef struct dec_layer {
    const float *in_norm, *post_norm;
    lin_w q, k, v, o, gate, up, down;
} dec_layer;

typedef struct llava_weights {
    const float *patch_w;  /* [Dv, 3, p, p] (no bias) */
    const float *cls, *pos; /* [Dv], [np+1, Dv] */
    const float *pre_ln_w, *pre_ln_b;
    vis_layer *vis;         /* v_run_layers entries */
    lin_w proj1, proj2;
    const float *newline;   /* [D] */
    const float *embed;     /* [vocab, D] */
    dec_layer *dec;         /* t_layers entries */
    const float *norm;      /* [D] */
    lin_w lm_head;          /* [vocab, D] */
} llava_weights;

int llava_config_from_hf(const char *json_path, llava_config *cfg);
int llava_config_from_json(const char *label, const char *text, size_t n, llava_config *cfg);
void llava_config_describe(const llava_config *cfg, char *buf, size_t n);

const float *lin_f32(const lin_w *w, float *scratch);

/* the number of packed rows (anyres_num_image_tokens), or -1 when P does not match the grid of an (h, wd) image */
int64_t llava_pack_index(const llava_config *cfg, int P, int h, int wd, int64_t *idx);

#endif
