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
#include "model/llava.h"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
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

static int parse(const char *file, const cJSON *root, llava_config *c) {
    int rc;
    memset(c, 0, sizeof *c);
    if ((rc = expect_str(file, root, "", "model_type", "llava_next", 1))) return rc;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "vision_config");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (!cJSON_IsObject(v)) return err_set(ERR_DATA, "%s: vision_config: missing or not an object", file);
    if (!cJSON_IsObject(t)) return err_set(ERR_DATA, "%s: text_config: missing or not an object", file);
    if ((rc = expect_str(file, v, "vision_config.", "model_type", "clip_vision_model", 0))) return rc;
    if ((rc = expect_str(file, v, "vision_config.", "hidden_act", "quick_gelu", 0))) return rc;
    if ((rc = expect_str(file, t, "text_config.", "model_type", "mistral", 1))) return rc;
    if ((rc = expect_str(file, t, "text_config.", "hidden_act", "silu", 0))) return rc;
    if ((rc = expect_str(file, root, "", "projector_hidden_act", "gelu", 0))) return rc;
    if ((rc = expect_str(file, root, "", "vision_feature_select_strategy", "default", 0))) return rc;

    /* CLIPVisionConfig defaults */
    if ((rc = get_int(file, v, "vision_config.", "hidden_size", 768, 1, &c->v_hidden)) ||
        (rc = get_int(file, v, "vision_config.", "intermediate_size", 3072, 1, &c->v_inter)) ||
        (rc = get_int(file, v, "vision_config.", "num_hidden_layers", 12, 1, &c->v_layers)) ||
        (rc = get_int(file, v, "vision_config.", "num_attention_heads", 12, 1, &c->v_heads)) ||
        (rc = get_int(file, v, "vision_config.", "image_size", 224, 1, &c->v_image)) ||
        (rc = get_int(file, v, "vision_config.", "patch_size", 32, 1, &c->v_patch)) ||
        (rc = get_float(file, v, "vision_config.", "layer_norm_eps", 1e-5f, &c->v_eps)))
        return rc;
    int nch;
    if ((rc = get_int(file, v, "vision_config.", "num_channels", 3, 1, &nch))) return rc;
    if (nch != 3) return err_set(ERR_DATA, "%s: vision_config.num_channels: %d, expected 3", file, nch);
    if (c->v_hidden % c->v_heads || c->v_image % c->v_patch)
        return err_set(ERR_DATA, "%s: vision_config: hidden_size %% num_attention_heads and image_size %% "
                       "patch_size must be 0", file);

    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(root, "vision_feature_layer");
    c->v_feature_layer = -2;
    if (fl) {
        if (!cJSON_IsNumber(fl))
            return err_set(ERR_DATA, "%s: vision_feature_layer: expected one integer (lists are not supported)", file);
        c->v_feature_layer = (int)fl->valuedouble;
    }
    /* hidden_states has v_layers + 1 entries: 0 = embeddings, i = output of layer i-1 */
    int idx = c->v_feature_layer < 0 ? c->v_layers + 1 + c->v_feature_layer : c->v_feature_layer;
    if (idx < 1 || idx > c->v_layers)
        return err_set(ERR_DATA, "%s: vision_feature_layer: %d is outside the %d layers of the tower", file,
                       c->v_feature_layer, c->v_layers);
    c->v_run_layers = idx;

    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(root, "multimodal_projector_bias");
    c->proj_bias = pb ? cJSON_IsTrue(pb) : 1;

    /* MistralConfig defaults */
    if ((rc = get_int(file, t, "text_config.", "hidden_size", 4096, 1, &c->t_hidden)) ||
        (rc = get_int(file, t, "text_config.", "intermediate_size", 14336, 1, &c->t_inter)) ||
        (rc = get_int(file, t, "text_config.", "num_hidden_layers", 32, 1, &c->t_layers)) ||
        (rc = get_int(file, t, "text_config.", "num_attention_heads", 32, 1, &c->t_heads)) ||
        (rc = get_int(file, t, "text_config.", "num_key_value_heads", 8, 1, &c->t_kv_heads)) ||
        (rc = get_int(file, t, "text_config.", "vocab_size", 32000, 1, &c->vocab)) ||
        (rc = get_float(file, t, "text_config.", "rms_norm_eps", 1e-6f, &c->t_eps)) ||
        (rc = get_int(file, t, "text_config.", "bos_token_id", 1, 0, &c->bos)) ||
        (rc = get_int(file, t, "text_config.", "eos_token_id", 2, 0, &c->eos)))
        return rc;
    if ((rc = get_int(file, t, "text_config.", "head_dim", c->t_hidden / c->t_heads, 1, &c->t_head_dim))) return rc;
    if (c->t_heads % c->t_kv_heads || c->t_head_dim % 2)
        return err_set(ERR_DATA, "%s: text_config: num_attention_heads must be a multiple of num_key_value_heads "
                       "and head_dim even", file);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(t, "rope_parameters");
    if (cJSON_IsObject(rp)) {
        if ((rc = expect_str(file, rp, "text_config.rope_parameters.", "rope_type", "default", 0))) return rc;
        if ((rc = get_float(file, rp, "text_config.rope_parameters.", "rope_theta", 10000.0f, &c->rope_theta))) return rc;
    } else if ((rc = get_float(file, t, "text_config.", "rope_theta", 10000.0f, &c->rope_theta))) {
        return rc;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(t, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) return err_set(ERR_DATA, "%s: text_config.rope_scaling: not supported (expected null)", file);
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(t, "sliding_window");
    if (sw && !cJSON_IsNull(sw))
        return err_set(ERR_DATA, "%s: text_config.sliding_window: %g is not supported (expected null: full causal "
                       "attention)", file, cJSON_IsNumber(sw) ? sw->valuedouble : -1.0);
    if ((rc = get_int(file, t, "text_config.", "pad_token_id", -1, -1, &c->pad_token))) return rc;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, "image_token_index");
    if (!it) it = cJSON_GetObjectItemCaseSensitive(root, "image_token_id");
    if (!cJSON_IsNumber(it)) return err_set(ERR_DATA, "%s: image_token_index: missing", file);
    c->image_token = (int)it->valuedouble;
    if (c->image_token < 0 || c->image_token >= c->vocab)
        return err_set(ERR_DATA, "%s: image_token_index: %d outside the vocabulary of %d", file, c->image_token, c->vocab);

    c->anyres.tile = c->v_image;
    c->anyres.patch = c->v_patch;
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "image_grid_pinpoints");
    if (!cJSON_IsArray(pp) || cJSON_GetArraySize(pp) < 1 || cJSON_GetArraySize(pp) > ANYRES_MAX_PINPOINTS)
        return err_set(ERR_DATA, "%s: image_grid_pinpoints: expected a list of 1..%d [height, width] pairs", file,
                       ANYRES_MAX_PINPOINTS);
    int i = 0;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, pp) {
        if (!cJSON_IsArray(pair) || cJSON_GetArraySize(pair) != 2 || !cJSON_IsNumber(cJSON_GetArrayItem(pair, 0)) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(pair, 1)))
            return err_set(ERR_DATA, "%s: image_grid_pinpoints[%d]: expected [height, width]", file, i);
        c->anyres.pinpoints[i][0] = (int)cJSON_GetArrayItem(pair, 0)->valuedouble;
        c->anyres.pinpoints[i][1] = (int)cJSON_GetArrayItem(pair, 1)->valuedouble;
        i++;
    }
    c->anyres.n_pinpoints = i;
    if ((rc = anyres_config_check(&c->anyres))) return err_push("%s: image_grid_pinpoints", file);
    return ERR_OK;
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
