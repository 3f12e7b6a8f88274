/* llava_config — LLaVA-NeXT configuration from a HuggingFace config.json.
 * Missing keys take the defaults of transformers' CLIPVisionConfig / MistralConfig (the 7B config.json
 * lists only non-default values). rope_theta is read from text_config.rope_theta (4.x) or
 * text_config.rope_parameters.rope_theta (5.x). A non-null sliding_window is refused: the decoder
 * implements full causal attention, which is what llava-v1.6-mistral uses (sliding_window: null). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/mem.h"
#include "model/llava.h"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? mem_alloc((size_t)sz + 1, path) : NULL;
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[sz] = '\0';
    *n = (size_t)(sz < 0 ? 0 : sz);
    return buf;
}

/* integer key with default; ERR_DATA when present but not a positive/valid number */
static int get_int(const char *file, const cJSON *obj, const char *prefix, const char *key, int def,
                   int min, int *out) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return ERR_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int)it->valuedouble || it->valuedouble < min)
        return err_set(ERR_DATA, "%s: %s%s: expected an integer >= %d", file, prefix, key, min);
    *out = (int)it->valuedouble;
    return ERR_OK;
}

static int get_float(const char *file, const cJSON *obj, const char *prefix, const char *key, float def,
                     float *out) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return ERR_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0))
        return err_set(ERR_DATA, "%s: %s%s: expected a positive number", file, prefix, key);
    *out = (float)it->valuedouble;
    return ERR_OK;
}

static int expect_str(const char *file, const cJSON *obj, const char *prefix, const char *key,
                      const char *want, int required) {
    const cJSON *it = obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    if (!it) return required ? err_set(ERR_DATA, "%s: %s%s: missing, expected \"%s\"", file, prefix, key, want) : ERR_OK;
    if (!cJSON_IsString(it) || strcmp(it->valuestring, want))
        return err_set(ERR_DATA, "%s: %s%s: unsupported value %s%s%s, expected \"%s\"", file, prefix, key,
                       cJSON_IsString(it) ? "\"" : "", cJSON_IsString(it) ? it->valuestring : "(not a string)",
                       cJSON_IsString(it) ? "\"" : "", want);
    return ERR_OK;
}

/* CLIPVisionConfig keys (defaults of transformers), from v; prefix names the object in messages */
static int parse_vision(const char *file, const cJSON *v, const char *pre, llava_config *c) {
    int rc, nch = 3;
    if ((rc = expect_str(file, v, pre, "model_type", "clip_vision_model", 0))) return rc;
    if ((rc = expect_str(file, v, pre, "hidden_act", "quick_gelu", 0))) return rc;
    if ((rc = get_int(file, v, pre, "hidden_size", 768, 1, &c->v_hidden)) ||
        (rc = get_int(file, v, pre, "intermediate_size", 3072, 1, &c->v_inter)) ||
        (rc = get_int(file, v, pre, "num_hidden_layers", 12, 1, &c->v_layers)) ||
        (rc = get_int(file, v, pre, "num_attention_heads", 12, 1, &c->v_heads)) ||
        (rc = get_int(file, v, pre, "image_size", 224, 1, &c->v_image)) ||
        (rc = get_int(file, v, pre, "patch_size", 32, 1, &c->v_patch)) ||
        (rc = get_float(file, v, pre, "layer_norm_eps", 1e-5f, &c->v_eps)) ||
        (rc = get_int(file, v, pre, "num_channels", 3, 1, &nch)))
        return rc;
    if (nch != 3) return err_set(ERR_DATA, "%s: %snum_channels: %d, expected 3", file, pre, nch);
    if (c->v_hidden % c->v_heads || c->v_image % c->v_patch)
        return err_set(ERR_DATA, "%s: %s: hidden_size %% num_attention_heads and image_size %% patch_size must be 0",
                       file, pre);
    if (c->v_hidden / c->v_heads > OPS_ATTN_MAX_HEAD_DIM)
        return err_set(ERR_DATA, "%s: %s: hidden_size / num_attention_heads = %d, at most %d is supported", file, pre,
                       c->v_hidden / c->v_heads, OPS_ATTN_MAX_HEAD_DIM);
    return ERR_OK;
}

/* MistralConfig keys (defaults of transformers), from t */
static int parse_text(const char *file, const cJSON *t, const char *pre, llava_config *c) {
    int rc;
    if ((rc = expect_str(file, t, pre, "hidden_act", "silu", 0))) return rc;
    if ((rc = get_int(file, t, pre, "hidden_size", 4096, 1, &c->t_hidden)) ||
        (rc = get_int(file, t, pre, "intermediate_size", 14336, 1, &c->t_inter)) ||
        (rc = get_int(file, t, pre, "num_hidden_layers", 32, 1, &c->t_layers)) ||
        (rc = get_int(file, t, pre, "num_attention_heads", 32, 1, &c->t_heads)) ||
        (rc = get_int(file, t, pre, "num_key_value_heads", 8, 1, &c->t_kv_heads)) ||
        (rc = get_int(file, t, pre, "vocab_size", 32000, 1, &c->vocab)) ||
        (rc = get_float(file, t, pre, "rms_norm_eps", 1e-6f, &c->t_eps)) ||
        (rc = get_int(file, t, pre, "bos_token_id", 1, 0, &c->bos)) ||
        (rc = get_int(file, t, pre, "eos_token_id", 2, 0, &c->eos)))
        return rc;
    if ((rc = get_int(file, t, pre, "head_dim", c->t_hidden / c->t_heads, 1, &c->t_head_dim))) return rc;
    if (c->t_heads % c->t_kv_heads || c->t_head_dim % 2)
        return err_set(ERR_DATA, "%s: %s: num_attention_heads must be a multiple of num_key_value_heads and "
                       "head_dim even", file, pre);
    if (c->t_head_dim > OPS_ATTN_MAX_HEAD_DIM)
        return err_set(ERR_DATA, "%s: %shead_dim: %d, at most %d is supported", file, pre, c->t_head_dim,
                       OPS_ATTN_MAX_HEAD_DIM);
    char sub[64];
    snprintf(sub, sizeof sub, "%srope_parameters.", pre);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(t, "rope_parameters");
    if (cJSON_IsObject(rp)) {
        if ((rc = expect_str(file, rp, sub, "rope_type", "default", 0))) return rc;
        if ((rc = get_float(file, rp, sub, "rope_theta", 10000.0f, &c->rope_theta))) return rc;
    } else if ((rc = get_float(file, t, pre, "rope_theta", 10000.0f, &c->rope_theta))) {
        return rc;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(t, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) return err_set(ERR_DATA, "%s: %srope_scaling: not supported (expected null)", file, pre);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(t, "sliding_window");
    if (sw && !cJSON_IsNull(sw))
        return err_set(ERR_DATA, "%s: %ssliding_window: %g is not supported (expected null: full causal attention)",
                       file, pre, cJSON_IsNumber(sw) ? sw->valuedouble : -1.0);
    return get_int(file, t, pre, "pad_token_id", -1, -1, &c->pad_token);
}

/* image_grid_pinpoints; swap = 1 when the list is (width, height) (original LLaVA repo) */
static int parse_pinpoints(const char *file, const cJSON *root, int swap, llava_config *c) {
    c->anyres.tile = c->v_image;
    c->anyres.patch = c->v_patch;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "image_grid_pinpoints");
    if (!cJSON_IsArray(pp) || cJSON_GetArraySize(pp) < 1 || cJSON_GetArraySize(pp) > ANYRES_MAX_PINPOINTS)
        return err_set(ERR_DATA, "%s: image_grid_pinpoints: expected a list of 1..%d pairs", file, ANYRES_MAX_PINPOINTS);
    int i = 0;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, pp) {
        if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(pair, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(pair, 1)))
            return err_set(ERR_DATA, "%s: image_grid_pinpoints[%d]: expected a pair of integers", file, i);
        int a = (int)cJSON_GetArrayItem(pair, 0)->valuedouble, b = (int)cJSON_GetArrayItem(pair, 1)->valuedouble;
        c->anyres.pinpoints[i][0] = swap ? b : a;
        c->anyres.pinpoints[i][1] = swap ? a : b;
        i++;
    }
    c->anyres.n_pinpoints = i;
    if (anyres_config_check(&c->anyres)) return err_push("%s: image_grid_pinpoints", file);
    return ERR_OK;
}

static int feature_layer(const char *file, const char *key, const cJSON *fl, llava_config *c) {
    c->v_feature_layer = -2;
    if (fl) {
        if (!cJSON_IsNumber(fl)) return err_set(ERR_DATA, "%s: %s: expected one integer (lists are not supported)", file, key);
        c->v_feature_layer = (int)fl->valuedouble;
    }
    /* hidden_states has v_layers + 1 entries: 0 = embeddings, i = output of layer i-1 */
    int idx = c->v_feature_layer < 0 ? c->v_layers + 1 + c->v_feature_layer : c->v_feature_layer;
    if (idx < 1 || idx > c->v_layers)
        return err_set(ERR_DATA, "%s: %s: %d is outside the %d layers of the tower", file, key, c->v_feature_layer,
                       c->v_layers);
    c->v_run_layers = idx;
    return ERR_OK;
}

/* llava-hf (transformers) config: model_type llava_next with vision_config and text_config */
static int parse_hf(const char *file, const cJSON *root, llava_config *c) {
    int rc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(v)) return err_set(ERR_DATA, "%s: vision_config: missing or not an object", file);
    if (!cJSON_IsObject(t)) return err_set(ERR_DATA, "%s: text_config: missing or not an object", file);
    if ((rc = expect_str(file, t, "text_config.", "model_type", "mistral", 1))) return rc;
    if ((rc = expect_str(file, root, "", "projector_hidden_act", "gelu", 0))) return rc;
    if ((rc = expect_str(file, root, "", "vision_feature_select_strategy", "default", 0))) return rc;
    if ((rc = parse_vision(file, v, "vision_config.", c))) return rc;
    if ((rc = feature_layer(file, "vision_feature_layer", cJSON_GetObjectItemCaseSensitive(root, "vision_feature_layer"), c)))
        return rc;
    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(root, "multimodal_projector_bias");
    c->proj_bias = pb ? cJSON_IsTrue(pb) : 1;
    if ((rc = parse_text(file, t, "text_config.", c))) return rc;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "image_token_index");
    if (!it) it = cJSON_GetObjectItemCaseSensitive(root, "image_token_id");
    if (!cJSON_IsNumber(it)) return err_set(ERR_DATA, "%s: image_token_index: missing", file);
    c->image_token = (int)it->valuedouble;
    if (c->image_token < 0 || c->image_token >= c->vocab)
        return err_set(ERR_DATA, "%s: image_token_index: %d outside the vocabulary of %d", file, c->image_token, c->vocab);
    c->src_vocab = c->vocab;
    return parse_pinpoints(file, root, 0, c);
}

/* Original LLaVA repo (liuhaotian/llava-v1.6-mistral-7b): model_type llava_mistral, Mistral keys at the top,
 * mm_* keys, the vision tower named by mm_vision_tower (its config is not in the directory: the known
 * CLIP ViT-L/14-336 is built in; any other tower needs a "vision_config" object), pinpoints as (width,
 * height), no <image> token in the vocabulary: <image> and <pad> become rows vocab and vocab+1 (HF's
 * conversion does the same; their embeddings start as the mean of the existing rows). */
static int parse_liuhaotian(const char *file, const cJSON *root, llava_config *c) {
    int rc;
    if ((rc = expect_str(file, root, "", "mm_projector_type", "mlp2x_gelu", 1))) return rc;
    if ((rc = expect_str(file, root, "", "mm_vision_select_feature", "patch", 0))) return rc;
    if ((rc = expect_str(file, root, "", "mm_patch_merge_type", "spatial_unpad", 0))) return rc;
    if ((rc = expect_str(file, root, "", "image_aspect_ratio", "anyres", 0))) return rc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *tower = cJSON_GetObjectItemCaseSensitive(root, "mm_vision_tower");
    if (cJSON_IsObject(v)) {
        if ((rc = parse_vision(file, v, "vision_config.", c))) return rc;
    } else if (cJSON_IsString(tower) && !strcmp(tower->valuestring, "openai/clip-vit-large-patch14-336")) {
        c->v_hidden = 1024, c->v_inter = 4096, c->v_layers = 24, c->v_heads = 16, c->v_image = 336, c->v_patch = 14;
        c->v_eps = 1e-5f;
    } else {
        return err_set(ERR_DATA, "%s: mm_vision_tower: %s%s%s is not built in (only openai/clip-vit-large-patch14-336); "
                       "add a \"vision_config\" object with its CLIPVisionConfig", file,
                       cJSON_IsString(tower) ? "\"" : "", cJSON_IsString(tower) ? tower->valuestring : "(missing)",
                       cJSON_IsString(tower) ? "\"" : "");
    }
    if ((rc = feature_layer(file, "mm_vision_select_layer", cJSON_GetObjectItemCaseSensitive(root, "mm_vision_select_layer"), c)))
        return rc;
    c->proj_bias = 1;
    if ((rc = parse_text(file, root, "", c))) return rc;
    c->src_vocab = c->vocab;
    c->image_token = c->vocab;
    c->pad_token = c->vocab + 1;
    c->vocab += 2;
    return parse_pinpoints(file, root, 1, c);
}

static int parse(const char *file, const cJSON *root, llava_config *c) {
    memset(c, 0, sizeof *c);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (cJSON_IsString(mt) && !strcmp(mt->valuestring, "llava_mistral")) {
        c->layout = LLAVA_LAYOUT_LIUHAOTIAN;
        return parse_liuhaotian(file, root, c);
    }
    int rc = expect_str(file, root, "", "model_type", "llava_next", 1);
    if (rc) return err_push("%s: unknown architecture (supported: llava_next from llava-hf, llava_mistral from the "
                            "original LLaVA repo)", file);
    c->layout = LLAVA_LAYOUT_HF;
    return parse_hf(file, root, c);
}

int llava_config_from_json(const char *label, const char *text, size_t n, llava_config *cfg) {
    cJSON *root = cJSON_ParseWithLength(text, n);
    int rc;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        rc = err_set(ERR_DATA, "%s: invalid JSON near byte %ld", label, at ? (long)(at - text) : -1L);
    } else {
        rc = parse(label, root, cfg);
    }
    cJSON_Delete(root);
    return rc;
}

int llava_config_from_hf(const char *json_path, llava_config *cfg) {
    size_t n = 0;
    char *text = slurp(json_path, &n);
    if (!text) return err_set(ERR_IO, "%s: cannot read the model config", json_path);
    int rc = llava_config_from_json(json_path, text, n, cfg);
    free(text);
    return rc;
}

void llava_config_describe(const llava_config *c, char *buf, size_t n) {
    snprintf(buf, n,
             "LLaVA-NeXT: CLIP %dx%d/%d %d layers (run %d) d=%d | projector %d->%d | Mistral %d layers d=%d "
             "heads %d/%d hd=%d ffn=%d vocab=%d theta=%g | %d pinpoints",
             c->v_image, c->v_image, c->v_patch, c->v_layers, c->v_run_layers, c->v_hidden, c->v_hidden,
             c->t_hidden, c->t_layers, c->t_hidden, c->t_heads, c->t_kv_heads, c->t_head_dim, c->t_inter,
             c->vocab, (double)c->rope_theta, c->anyres.n_pinpoints);
}
