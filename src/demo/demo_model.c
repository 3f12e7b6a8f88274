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
 *     that leaves the image signal too weak to learn from in a CPU demo (docs/demo.md). */
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
        if (has(name, "vision_tower") && (has(name, "out_proj") || has(name, "fc2"))) std *= VISION_RESIDUAL_GAIN;
        fill_normal(seed, name, std, x, n);
    }
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
