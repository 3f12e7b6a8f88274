/* demo_model — the demo's LLaVA-NeXT model directory: config.json with the key layout of
 * llava-hf/llava-v1.6-mistral-7b-hf (transformers 4.x) but tiny dimensions, and model.safetensors with a
 * seeded random initialisation. Tensor names are the llava-hf 4.x names; every tensor of the checkpoint is
 * written, including the vision layers past the selected one and post_layernorm, which the model never
 * uses. Stored as F32.
 *
 * Initialisation (norm weights 1, biases 0, image_newline ~ N(0, 1/hidden) as LlavaNextModel, always):
 *   DEMO_INIT_SCALED (default): every linear weight ~ N(0, 1/fan_in), token embeddings ~ N(0, 1), patch
 *     embedding ~ N(0, 1/(3*14*14)), position and class embeddings ~ N(0, 0.25); the vision tower's residual
 *     branches (out_proj, fc2) 10x smaller, so that the frozen random tower passes the colour and position
 *     of each patch through rather than scrambling them (a trained CLIP keeps them too).
 *   DEMO_INIT_HF: everything else ~ N(0, 0.02^2), HF's _init_weights for large models; in a model this small
 *     that leaves the image signal too weak to learn from in a CPU demo (docs/demo.md).
 *   DEMO_INIT_BUILT: DEMO_INIT_SCALED with a constructed vision tower (below, "DEMO_INIT_BUILT"): its features say
 *     which colours each patch and each tile hold, and how many. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo/demo.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/mem.h"
#include "io/st_write.h"
#include "model/llava.h"
#include "model/llava_params.h"

/* the tiny dimensions (docs/demo.md) */
enum {
    V_HIDDEN = 64, V_LAYERS = 4, V_HEADS = 4, V_INTER = 256, V_IMAGE = 56, V_PATCH = 14,
    T_HIDDEN = 128, T_LAYERS = 2, T_HEADS = 4, T_KV_HEADS = 2, T_HEAD_DIM = 32, T_INTER = 256
};
#define PINPOINTS "[[56, 112], [112, 56], [112, 112], [56, 168], [168, 56]]"
#define INIT_STD 0.02

int demo_model_config_json(const demo_tok_info *info, char **out) {
    char *s = mem_alloc(4096, "the demo config.json");
    *out = s;
    snprintf(s, 4096,
             "{\n"
             "  \"architectures\": [\n    \"LlavaNextForConditionalGeneration\"\n  ],\n"
             "  \"ignore_index\": -100,\n"
             "  \"image_grid_pinpoints\": " PINPOINTS ",\n"
             "  \"image_token_index\": %d,\n"
             "  \"model_type\": \"llava_next\",\n"
             "  \"pad_token_id\": %d,\n"
             "  \"projector_hidden_act\": \"gelu\",\n"
             "  \"text_config\": {\n"
             "    \"_name_or_path\": \"orpo-hpc/demo-mistral-tiny\",\n"
             "    \"architectures\": [\n      \"MistralForCausalLM\"\n    ],\n"
             "    \"head_dim\": %d,\n"
             "    \"hidden_size\": %d,\n"
             "    \"intermediate_size\": %d,\n"
             "    \"max_position_embeddings\": 4096,\n"
             "    \"model_type\": \"mistral\",\n"
             "    \"num_attention_heads\": %d,\n"
             "    \"num_hidden_layers\": %d,\n"
             "    \"num_key_value_heads\": %d,\n"
             "    \"pad_token_id\": %d,\n"
             "    \"rms_norm_eps\": 1e-05,\n"
             "    \"rope_theta\": 1000000.0,\n"
             "    \"sliding_window\": null,\n"
             "    \"torch_dtype\": \"float32\",\n"
             "    \"vocab_size\": %d\n"
             "  },\n"
             "  \"tie_word_embeddings\": false,\n"
             "  \"torch_dtype\": \"float32\",\n"
             "  \"transformers_version\": \"4.41.2\",\n"
             "  \"use_image_newline_parameter\": true,\n"
             "  \"vision_config\": {\n"
             "    \"hidden_size\": %d,\n"
             "    \"image_size\": %d,\n"
             "    \"intermediate_size\": %d,\n"
             "    \"model_type\": \"clip_vision_model\",\n"
             "    \"num_attention_heads\": %d,\n"
             "    \"num_hidden_layers\": %d,\n"
             "    \"patch_size\": %d,\n"
             "    \"projection_dim\": %d,\n"
             "    \"vocab_size\": %d\n"
             "  },\n"
             "  \"vision_feature_layer\": -2,\n"
             "  \"vision_feature_select_strategy\": \"default\",\n"
             "  \"vocab_size\": %d\n"
             "}\n",
             info->image_token, info->pad_token, T_HEAD_DIM, T_HIDDEN, T_INTER, T_HEADS, T_LAYERS, T_KV_HEADS,
             info->pad_token, info->vocab, V_HIDDEN, V_IMAGE, V_INTER, V_HEADS, V_LAYERS, V_PATCH, V_HIDDEN, info->vocab, info->vocab);
    return ERR_OK;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

/* N(0, std^2) deviates from a splitmix64 stream (Box-Muller on 53-bit uniforms) */
static void fill_normal(uint64_t seed, const char *name, double std, float *x, int64_t n) {
    uint64_t st = demo_hash(seed, 3, name_hash(name));
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = ((double)(demo_next(&st) >> 11) + 1.0) * (1.0 / 9007199254740993.0); /* (0, 1] */
        double u2 = (double)(demo_next(&st) >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        x[i] = (float)(std * r * cos(a));
        if (i + 1 < n) x[i + 1] = (float)(std * r * sin(a));
    }
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* the residual branches of the (frozen) vision tower start this much smaller than 1/sqrt(fan_in) */
#define VISION_RESIDUAL_GAIN 0.1

static int has(const char *s, const char *part) { return strstr(s, part) != NULL; }

/* ---- DEMO_INIT_BUILT: a vision tower constructed to see which colours are where --------------------------------
 *
 * The demo's tower is frozen, so what it passes on is all the projector and the decoder can learn from; a random one
 * keeps a patch's mean colour and little else (docs/demo.md). Built instead, channel by channel of the 64-wide
 * residual stream (a patch: 3 x 14 x 14 CLIP-normalised pixels, i.e. 2 x 2 sub-blocks of 7 x 7):
 *   B_CONST          a constant K (through the position embedding), and B_BAL = minus the sum of every other channel
 *                    but B_CONST: every token's channels add up to K, so every LayerNorm of the tower subtracts the
 *                    same mean and (K dominating) divides by the same deviation: the LayerNorms are linear maps
 *   B_MEAN + c       the patch's mean of colour channel c
 *   B_SUB + 3 b + c  sub-block b's mean of channel c
 *   B_POS, +1        the patch's column and row in its tile, -1 .. 1
 *   B_D + 6 b + X    layer 0's MLP: the L1 distance of sub-block b's mean colour from palette colour X (two quick_gelu
 *                    units u = +-g (v - X_c) per colour channel: (qg(u) + qg(-u)) / g = |v - X_c| tanh(0.85 u))
 *   B_M + X          layer 1's MLP: how much of the patch is colour X, the mean over its sub-blocks of
 *                    max(0, 1 - d / DELTA) (DELTA half the closest two colours' distance: yellow and orange), and
 *                    B_D cancelled (qg(u) - qg(-u) = u exactly)
 *   B_F + X          layer 2's attention (head 0: no query, so it averages the tile's 17 tokens): how much of the
 *                    tile is colour X, on every token of the tile (the base image: the whole image)
 *   B_P + X, B_N     layer 2's MLP: colour X is in the tile (min(1, max(0, (F - EPS) / EPS)), EPS half a
 *                    sub-block's share), and how many colours are (their sum); B_BAL cancelled, B_CONST down to 1
 * Every other weight of the tower is random with residual branches VISION_BUILT_GAIN small, so they barely touch the
 * stream; layer 3 (not run: feature layer -2) is left random. */
enum {
    B_CONST = 0, B_BAL = 1, B_MEAN = 2, B_SUB = 5, B_POS = 17, B_D = 19, B_M = 43, B_F = 49, B_P = DEMO_VF_PRESENT, B_N = DEMO_VF_COUNT
};
#define B_RAW_CONST 2000.0 /* the constant before pre_layrnorm */
#define B_K 2000.0         /* after it, through layers 0..2 */
#define B_ABS_GAIN 8.0     /* g of the |v - X_c| units */
#define B_DELTA 0.6        /* the colour distance (CLIP-normalised, L1) at which membership reaches 0 */
#define B_M_GAIN 6.0       /* slope of the membership units (quick_gelu close to relu) */
#define B_F_GAIN 4.0       /* B_F = 4 x the tile's share of the colour */
#define VISION_BUILT_GAIN 0.01

static const double clip_mean[3] = {0.48145466, 0.4578275, 0.40821073}, clip_std[3] = {0.26862954, 0.26130258, 0.27577711};

static double palette_norm(int x, int c) {
    uint8_t rgb[3];
    demo_colour_rgb(x, rgb);
    return (rgb[c] / 255.0 - clip_mean[c]) / clip_std[c];
}

/* patch embedding [64, 3, 14, 14]: B_MEAN, B_SUB and B_BAL (minus their sum) */
static void built_patch(float *x) {
    const int P = V_PATCH, PP = V_PATCH * V_PATCH, H = V_PATCH / 2;
    memset(x, 0, sizeof *x * (size_t)(V_HIDDEN * 3 * PP));
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < P; y++)
            for (int xx = 0; xx < P; xx++) {
                int sb = (y >= H) * 2 + (xx >= H), i = y * P + xx;
                float m = 1.0f / (float)PP, q = 1.0f / (float)(H * H);
                x[((size_t)(B_MEAN + c) * 3 + (size_t)c) * PP + (size_t)i] = m;
                x[((size_t)(B_SUB + 3 * sb + c) * 3 + (size_t)c) * PP + (size_t)i] = q;
                x[((size_t)B_BAL * 3 + (size_t)c) * PP + (size_t)i] = -(m + q);
            }
}

/* a unit reading the stream through a LayerNorm (weight 1, bias 0) of a token whose channels add up to B_K: u =
 * sum_k a[k] x[k] + b becomes weights a[k] sigma and bias b + mu sum_k a[k] */
static void ln_row(float *row, float *bias, const int *ch, const double *a, int n, double b) {
    const double mu = B_K / V_HIDDEN, sigma = B_K * sqrt(V_HIDDEN - 1.0) / V_HIDDEN;
    double sa = 0;
    for (int i = 0; i < V_HIDDEN; i++) row[i] = 0.0f;
    for (int i = 0; i < n; i++) row[ch[i]] += (float)(a[i] * sigma), sa += a[i];
    *bias = (float)(b + mu * sa);
}

/* a residual write [64, in]: B_BAL's row minus the sum of the other rows but B_CONST's, so the channels still add up to
 * B_K */
static void balance(float *w, int64_t in) {
    for (int64_t j = 0; j < in; j++) {
        double s = 0;
        for (int r = 0; r < V_HIDDEN; r++)
            if (r != B_BAL && r != B_CONST) s += w[r * in + j];
        w[B_BAL * in + j] = (float)-s;
    }
}

/* one of layers 0..2's MLP, whole: each of its four tensors is built from all of them (the units' rows, columns and
 * biases go together), then the one being written is copied out */
typedef struct {
    float fc1w[V_INTER * V_HIDDEN], fc1b[V_INTER], fc2w[V_HIDDEN * V_INTER], fc2b[V_HIDDEN];
} built_mlp;

/* random rows [rows, 64] that read a LayerNorm's output but not the constant: no weight on B_CONST, and weights adding up to
 * 0 (LayerNorm turns the channels that hold nothing into one constant): they see only what differs between tokens, so
 * the tower's random parts add no offset to the built channels */
static void quiet_rows(float *w, int64_t rows) {
    for (int64_t r = 0; r < rows; r++) {
        float *row = w + r * V_HIDDEN;
        row[B_CONST] = 0.0f;
        double m = 0;
        for (int i = 1; i < V_HIDDEN; i++) m += row[i];
        m /= V_HIDDEN - 1;
        for (int i = 1; i < V_HIDDEN; i++) row[i] = (float)(row[i] - m);
    }
}

/* fills the constructed units of layer l's MLP (returns how many); fc1/fc2 hold the random init, whose constructed
 * units are overwritten */
static int built_mlp_units(int l, built_mlp *m) {
    int u = 0;
    const double g = B_ABS_GAIN, s = B_M_GAIN;
    if (l == 0) { /* B_D + 6 b + X = sum_c |sub_bc - X_c| */
        for (int sb = 0; sb < 4; sb++)
            for (int X = 0; X < DEMO_NCOLOURS; X++)
                for (int c = 0; c < 3; c++)
                    for (int sign = 1; sign >= -1; sign -= 2, u++) {
                        int ch = B_SUB + 3 * sb + c;
                        double a = sign * g;
                        ln_row(m->fc1w + u * V_HIDDEN, &m->fc1b[u], &ch, &a, 1, -sign * g * palette_norm(X, c));
                        for (int r = 0; r < V_HIDDEN; r++) m->fc2w[r * V_INTER + u] = 0.0f;
                        m->fc2w[(B_D + 6 * sb + X) * V_INTER + u] = (float)(1.0 / g);
                    }
    } else if (l == 1) { /* B_M + X = mean_b max(0, 1 - d_bX / DELTA); B_D cancelled */
        for (int sb = 0; sb < 4; sb++)
            for (int X = 0; X < DEMO_NCOLOURS; X++) {
                int ch = B_D + 6 * sb + X;
                double a = -s / B_DELTA;
                ln_row(m->fc1w + u * V_HIDDEN, &m->fc1b[u], &ch, &a, 1, s);
                for (int r = 0; r < V_HIDDEN; r++) m->fc2w[r * V_INTER + u] = 0.0f;
                m->fc2w[(B_M + X) * V_INTER + u] = (float)(0.25 / s);
                u++;
                for (int sign = 1; sign >= -1; sign -= 2, u++) {
                    a = sign;
                    ln_row(m->fc1w + u * V_HIDDEN, &m->fc1b[u], &ch, &a, 1, 0.0);
                    for (int r = 0; r < V_HIDDEN; r++) m->fc2w[r * V_INTER + u] = 0.0f;
                    m->fc2w[ch * V_INTER + u] = (float)-sign;
                }
            }
    } else if (l == 2) { /* B_P + X, B_N from B_F; B_BAL cancelled */
        const double eps = 0.5 * B_F_GAIN * 0.25 / (1.0 + (V_IMAGE / V_PATCH) * (V_IMAGE / V_PATCH));
        for (int X = 0; X < DEMO_NCOLOURS; X++)
            for (int k = 0; k < 2; k++, u++) { /* relu(s (F - eps) / eps) - relu(s (F - eps) / eps - s), / s */
                int ch = B_F + X;
                double a = s / eps;
                ln_row(m->fc1w + u * V_HIDDEN, &m->fc1b[u], &ch, &a, 1, -s - k * s);
                for (int r = 0; r < V_HIDDEN; r++) m->fc2w[r * V_INTER + u] = 0.0f;
                m->fc2w[(B_P + X) * V_INTER + u] = m->fc2w[B_N * V_INTER + u] = (float)((k ? -1.0 : 1.0) / s);
            }
        for (int sign = 1; sign >= -1; sign -= 2, u++) {
            int ch = B_BAL;
            double a = sign;
            ln_row(m->fc1w + u * V_HIDDEN, &m->fc1b[u], &ch, &a, 1, 0.0);
            for (int r = 0; r < V_HIDDEN; r++) m->fc2w[r * V_INTER + u] = 0.0f;
            m->fc2w[B_BAL * V_INTER + u] = (float)-sign;
        }
    }
    return u;
}

/* DEMO_INIT_BUILT: overwrites the constructed parts of a vision tensor that the scaled init has drawn into x (an MLP
 * tensor is redrawn with its three siblings, from the same seeded streams) */
static void built_vision(uint64_t seed, const llava_param *p, float *x) {
    const char *name = p->name;
    const int64_t n = p->numel;
    const double mu = B_RAW_CONST / V_HIDDEN, sigma = B_RAW_CONST * sqrt(V_HIDDEN - 1.0) / V_HIDDEN;
    const char *l = strstr(name, "encoder.layers.");
    int layer = l ? atoi(l + strlen("encoder.layers.")) : -1;
    if (has(name, "patch_embedding")) {
        built_patch(x);
    } else if (has(name, "class_embedding")) {
        memset(x, 0, sizeof *x * (size_t)n);
    } else if (has(name, "position_embedding")) { /* [1 + 16, 64]: row 0 the CLS token's */
        const int gr = V_IMAGE / V_PATCH;
        memset(x, 0, sizeof *x * (size_t)n);
        for (int r = 0; r < 1 + gr * gr; r++) {
            float *row = x + r * V_HIDDEN;
            row[B_CONST] = (float)B_RAW_CONST;
            if (r == 0) continue;
            row[B_POS] = (float)(2.0 * ((r - 1) % gr) / (gr - 1) - 1.0);
            row[B_POS + 1] = (float)(2.0 * ((r - 1) / gr) / (gr - 1) - 1.0);
            row[B_BAL] = -(row[B_POS] + row[B_POS + 1]);
        }
    } else if (has(name, "pre_layrnorm")) { /* (x - mu) / sigma * w + b = x for every channel but the constant */
        int w = ends_with(name, ".weight");
        for (int64_t i = 0; i < n; i++) x[i] = (float)(w ? sigma : mu);
        x[B_CONST] = (float)(w ? B_K / ((B_RAW_CONST - mu) / sigma) : 0.0);
    } else if (layer >= 0 && layer <= 2 && has(name, "mlp.")) {
        /* the whole MLP, random as init_tensor draws it, then its units */
        char base[160];
        snprintf(base, sizeof base, "%.*s", (int)(strstr(name, "mlp.") - name), name);
        built_mlp *m = mem_calloc(1, sizeof *m, "the demo's built MLP");
        char nm[200];
        snprintf(nm, sizeof nm, "%smlp.fc1.weight", base);
        fill_normal(seed, nm, 1.0 / sqrt((double)V_HIDDEN), m->fc1w, V_INTER * V_HIDDEN);
        snprintf(nm, sizeof nm, "%smlp.fc2.weight", base);
        fill_normal(seed, nm, VISION_BUILT_GAIN / sqrt((double)V_INTER), m->fc2w, V_HIDDEN * V_INTER);
        int used = built_mlp_units(layer, m);
        quiet_rows(m->fc1w + used * V_HIDDEN, V_INTER - used);
        if (layer < 2) balance(m->fc2w, V_INTER);
        if (layer == 2) m->fc2b[B_CONST] = (float)(1.0 - B_K);
        const float *src = has(name, "fc1.weight") ? m->fc1w : has(name, "fc1.bias") ? m->fc1b
                         : has(name, "fc2.weight") ? m->fc2w : m->fc2b;
        memcpy(x, src, sizeof *x * (size_t)n);
        free(m);
    } else if (layer >= 0 && layer <= 2 && has(name, "out_proj.weight")) {
        if (layer == 2) { /* head 0 (columns 0..15): v's first 6 dims, B_M's average, into B_F */
            for (int r = 0; r < V_HIDDEN; r++)
                for (int j = 0; j < V_HIDDEN / V_HEADS; j++) x[r * V_HIDDEN + j] = 0.0f;
            for (int X = 0; X < DEMO_NCOLOURS; X++) x[(B_F + X) * V_HIDDEN + X] = (float)B_F_GAIN;
        }
        balance(x, V_HIDDEN);
    } else if (layer >= 0 && layer <= 2 && (has(name, "q_proj") || has(name, "k_proj") || has(name, "v_proj"))) {
        const int hd = V_HIDDEN / V_HEADS;
        int w = ends_with(name, ".weight");
        if (w) quiet_rows(x, V_HIDDEN);
        if (layer < 2 || has(name, "k_proj")) {
            /* random */
        } else if (has(name, "q_proj")) { /* head 0 asks nothing: uniform attention */
            if (w) memset(x, 0, sizeof *x * (size_t)(hd * V_HIDDEN));
        } else if (w) { /* v rows 0..5 = B_M + X (bias below) */
            for (int X = 0; X < DEMO_NCOLOURS; X++) {
                int ch = B_M + X;
                double a = 1.0;
                float b;
                ln_row(x + X * V_HIDDEN, &b, &ch, &a, 1, 0.0);
            }
        } else {
            for (int X = 0; X < DEMO_NCOLOURS; X++) x[X] = (float)(B_K / V_HIDDEN);
        }
    }
}

static void init_tensor(uint64_t seed, int init, const llava_param *p, float *x) {
    const char *name = p->name;
    const int64_t n = p->numel;
    if (ends_with(name, ".bias")) {
        memset(x, 0, sizeof *x * (size_t)n);
    } else if (p->ndim == 1 && has(name, "norm") && ends_with(name, ".weight")) {
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f;
    } else if (!strcmp(name, "image_newline")) {
        fill_normal(seed, name, 1.0 / sqrt((double)T_HIDDEN), x, n);
    } else if (init == DEMO_INIT_HF) {
        fill_normal(seed, name, INIT_STD, x, n);
    } else if (has(name, "patch_embedding")) { /* a conv over 3 x 14 x 14 inputs */
        fill_normal(seed, name, 1.0 / sqrt(3.0 * V_PATCH * V_PATCH), x, n);
    } else if (has(name, "position_embedding") || has(name, "class_embedding")) {
        fill_normal(seed, name, 0.5, x, n);
    } else if (has(name, "embed_tokens")) {
        fill_normal(seed, name, 1.0, x, n);
    } else { /* a linear layer's [out, in] weight */
        double std = 1.0 / sqrt((double)p->shape[1]);
        if (has(name, "vision_tower") && (has(name, "out_proj") || has(name, "fc2")))
            std *= init == DEMO_INIT_BUILT ? VISION_BUILT_GAIN : VISION_RESIDUAL_GAIN;
        fill_normal(seed, name, std, x, n);
    }
    if (init == DEMO_INIT_BUILT && has(name, "vision_tower")) built_vision(seed, p, x);
}

static int write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    int rc = fs_join(path, sizeof path, dir, name);
    if (!rc) rc = atomic_write_file(path, text, strlen(text));
    return rc;
}

int demo_model_write(const char *dir, uint64_t seed, int init, const demo_tok_info *info) {
    char *cfg_text = NULL;
    int rc = demo_model_config_json(info, &cfg_text);
    if (rc) return rc;
    llava_config cfg;
    rc = llava_config_from_json("demo config.json", cfg_text, strlen(cfg_text), &cfg);
    if (!rc) rc = write_text(dir, "config.json", cfg_text);
    free(cfg_text);
    if (rc) return rc;

    /* every tensor of the checkpoint: all vision layers (not only those the model runs) + post_layernorm */
    cfg.v_run_layers = cfg.v_layers;
    llava_weights w;
    memset(&w, 0, sizeof w);
    vis_layer *vis = mem_calloc((size_t)cfg.v_layers, sizeof *vis, "the demo vision layers");
    dec_layer *dec = mem_calloc((size_t)cfg.t_layers, sizeof *dec, "the demo decoder layers");
    llava_param *list = NULL;
    int n = 0;
    stw *sw = stw_new();
    w.vis = vis;
    w.dec = dec;
    if (!rc) rc = llava_params_build(&cfg, &w, &list, &n);
    int64_t maxn = V_HIDDEN;
    for (int i = 0; !rc && i < n; i++)
        if (list[i].numel > maxn) maxn = list[i].numel;
    float *buf = rc ? NULL : mem_alloc(sizeof *buf * (size_t)maxn, "a demo tensor");
    for (int i = 0; !rc && i < n; i++) {
        init_tensor(seed, init, &list[i], buf);
        rc = stw_add(sw, list[i].name, "F32", list[i].ndim, list[i].shape, buf);
    }
    const char *post[2] = {"vision_tower.vision_model.post_layernorm.weight",
                           "vision_tower.vision_model.post_layernorm.bias"};
    for (int i = 0; !rc && i < 2; i++) {
        int64_t shape[1] = {cfg.v_hidden};
        llava_param pp = {.ndim = 1, .shape = {cfg.v_hidden}, .numel = cfg.v_hidden};
        snprintf(pp.name, sizeof pp.name, "%s", post[i]);
        init_tensor(seed, init, &pp, buf);
        rc = stw_add(sw, post[i], "F32", 1, shape, buf);
    }
    if (!rc) rc = stw_meta(sw, "format", "pt");
    char path[4096];
    if (!rc) rc = fs_join(path, sizeof path, dir, "model.safetensors");
    if (!rc) rc = stw_write(sw, path);
    free(buf);
    free(list);
    free(vis);
    free(dec);
    stw_free(sw);
    if (rc) return rc;

    char text[2048];
    snprintf(text, sizeof text,
             "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
             "  \"pad_token_id\": %d,\n  \"transformers_version\": \"4.41.2\"\n}\n",
             info->bos, info->eos, info->pad_token);
    if ((rc = write_text(dir, "generation_config.json", text))) return rc;
    snprintf(text, sizeof text,
             "{\n  \"crop_size\": {\n    \"height\": %d,\n    \"width\": %d\n  },\n  \"do_center_crop\": true,\n"
             "  \"do_convert_rgb\": true,\n  \"do_normalize\": true,\n  \"do_pad\": true,\n  \"do_rescale\": true,\n"
             "  \"do_resize\": true,\n  \"image_grid_pinpoints\": " PINPOINTS ",\n"
             "  \"image_mean\": [\n    0.48145466,\n    0.4578275,\n    0.40821073\n  ],\n"
             "  \"image_processor_type\": \"LlavaNextImageProcessor\",\n"
             "  \"image_std\": [\n    0.26862954,\n    0.26130258,\n    0.27577711\n  ],\n"
             "  \"processor_class\": \"LlavaNextProcessor\",\n  \"resample\": 3,\n"
             "  \"rescale_factor\": 0.00392156862745098,\n  \"size\": {\n    \"shortest_edge\": %d\n  }\n}\n",
             V_IMAGE, V_IMAGE, V_IMAGE);
    if ((rc = write_text(dir, "preprocessor_config.json", text))) return rc;
    snprintf(text, sizeof text,
             "{\n  \"image_token\": \"<image>\",\n  \"num_additional_image_tokens\": 1,\n  \"patch_size\": %d,\n"
             "  \"processor_class\": \"LlavaNextProcessor\",\n  \"vision_feature_select_strategy\": \"default\"\n}\n",
             V_PATCH);
    return write_text(dir, "processor_config.json", text);
}
