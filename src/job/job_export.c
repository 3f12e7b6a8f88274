/* job_export — PEFT adapters out of a job's checkpoint, and a job's step-0 state out of a PEFT adapter.
 * The key names and adapter_config.json keys follow what PEFT 0.21.2 + transformers 5.25 write
 * (tools/oracle/make_export_fixtures.py); docs/export.md. */
#define _POSIX_C_SOURCE 200809L
#include "job/job_export.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "data/dataset.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"
#include "io/safetensors.h"
#include "io/st_write.h"
#include "job/job_run.h"
#include "model/model_h5.h"
#include "train/ckpt.h"
#include "train/metrics.h"

#define PEFT_PREFIX "base_model.model."
#define PEFT_VERSION_WRITTEN "0.21.2" /* the PEFT version whose adapter_config.json keys are written */
#define TOK_ROWS_NAME "language_model.model.embed_tokens.trainable_rows"

static const char *dec_mod[LT_DEC_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
static const char *vis_mod[LT_VIS_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                              "self_attn.out_proj", "mlp.fc1", "mlp.fc2"};

/* ---- names --------------------------------------------------------------------------------------- */

static int starts(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

static int ends(const char *s, const char *e) {
    size_t n = strlen(s), m = strlen(e);
    return n >= m && !strcmp(s + n - m, e);
}

static int put(char *out, size_t cap, const char *what, const char *fmt, const char *a, const char *b) {
    int n = snprintf(out, cap, fmt, a, b);
    if (n < 0 || (size_t)n >= cap) return err_set(ERR_INTERNAL, "%s: name too long", what);
    return ERR_OK;
}

/* module path (HF, without "base_model.model.") of a LoRA module named in the trainer's (legacy) spelling */
static int module_path(const char *mod, int layout, char *out, size_t cap) {
    if (layout == JX_LAYOUT_LEGACY) return put(out, cap, mod, "%s%s", mod, "");
    if (starts(mod, "language_model.model."))
        return put(out, cap, mod, "%s%s", "model.language_model.", mod + strlen("language_model.model."));
    if (starts(mod, "vision_tower.vision_model."))
        return put(out, cap, mod, "%s%s", "model.vision_tower.", mod + strlen("vision_tower.vision_model."));
    if (starts(mod, "multi_modal_projector.")) return put(out, cap, mod, "%s%s", "model.", mod);
    if (!strcmp(mod, "language_model.lm_head")) return put(out, cap, mod, "%s%s", "lm_head", "");
    return err_set(ERR_INTERNAL, "no PEFT module path for trainer module '%s'", mod);
}

int jx_peft_name(const char *name, int layout, char *out, size_t cap) {
    int legacy = layout == JX_LAYOUT_LEGACY;
    if (starts(name, "lora/")) {
        const char *slash = strrchr(name, '/');
        char mod[200], path[240];
        if (slash == name + 4 || (slash[1] != 'A' && slash[1] != 'B') || slash[2] || (size_t)(slash - name) > 200)
            return err_set(ERR_INTERNAL, "trainer tensor '%s': expected lora/<module>/A|B", name);
        snprintf(mod, sizeof mod, "%.*s", (int)(slash - name - 5), name + 5);
        int rc = module_path(mod, layout, path, sizeof path);
        if (rc) return rc;
        return put(out, cap, name, PEFT_PREFIX "%s.lora_%s.weight", path, slash[1] == 'A' ? "A" : "B");
    }
    if (starts(name, "multi_modal_projector."))
        return put(out, cap, name, PEFT_PREFIX "%s%s", legacy ? "" : "model.", name);
    if (!strcmp(name, TOK_ROWS_NAME))
        return put(out, cap, name, PEFT_PREFIX "%s%s",
                   legacy ? "language_model.model.embed_tokens" : "model.language_model.embed_tokens",
                   ".token_adapter.trainable_tokens_delta");
    return err_set(ERR_INTERNAL, "trainer tensor '%s' has no PEFT name", name);
}

/* PEFT (save_embedding_layers="auto") also saves the frozen base weight of a targeted lm_head */
static const char *head_base_name(int layout) {
    return layout == JX_LAYOUT_LEGACY ? PEFT_PREFIX "language_model.lm_head.base_layer.weight"
                                      : PEFT_PREFIX "lm_head.base_layer.weight";
}

static void esc_dots(char *out, size_t cap, const char *s) {
    size_t k = 0;
    for (; *s && k + 3 < cap; s++) {
        if (*s == '.') out[k++] = '\\';
        out[k++] = *s;
    }
    out[k] = 0;
}

static int has_head(const llava_trainer *t) { return (t->spec.targets & LT_LM_HEAD) != 0; }
static int has_proj_lora(const llava_trainer *t) { return (t->spec.targets & LT_PROJ) && !t->spec.full_projector; }

int jx_target_regex(const llava_trainer *t, int layout, char *out, size_t cap) {
    int legacy = layout == JX_LAYOUT_LEGACY;
    char buf[2048] = "", tmp[128];
    size_t n = 0;
#define ADD(...) n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, __VA_ARGS__)
    int first = 1;
    for (int mi = 0; mi < LT_DEC_MODULES; mi++) {
        if (!(t->spec.targets & (1u << mi))) continue;
        if (first) ADD("%s", legacy ? "language_model\\.model\\.layers\\.\\d+\\.(" : "model\\.language_model\\.layers\\.\\d+\\.(");
        esc_dots(tmp, sizeof tmp, dec_mod[mi]);
        ADD("%s%s", first ? "" : "|", tmp);
        first = 0;
    }
    if (!first) ADD(")");
    if (t->spec.vision_targets) {
        ADD("%s%s", n ? "|" : "", legacy ? "vision_tower\\.vision_model\\.encoder\\.layers\\.(" : "model\\.vision_tower\\.encoder\\.layers\\.(");
        for (int l = t->vis_first; l < t->m->cfg.v_run_layers; l++) ADD("%s%d", l == t->vis_first ? "" : "|", l);
        ADD(")\\.(");
        first = 1;
        for (int mi = 0; mi < LT_VIS_MODULES; mi++) {
            if (!(t->spec.vision_targets & (1u << mi))) continue;
            esc_dots(tmp, sizeof tmp, vis_mod[mi]);
            ADD("%s%s", first ? "" : "|", tmp);
            first = 0;
        }
        ADD(")");
    }
    if (has_proj_lora(t)) ADD("%s%s", n ? "|" : "", legacy ? "multi_modal_projector\\.linear_(1|2)" : "model\\.multi_modal_projector\\.linear_(1|2)");
    if (has_head(t)) ADD("%s%s", n ? "|" : "", legacy ? "language_model\\.lm_head" : "lm_head");
#undef ADD
    if (n >= sizeof buf || n >= cap) return err_set(ERR_INTERNAL, "target_modules regex too long");
    memcpy(out, buf, n + 1);
    return ERR_OK;
}

/* ---- adapter_config.json ------------------------------------------------------------------------ */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* shortest decimal that reads back as the same float (the job's LoRA numbers are floats in the trainer) */
static void json_num(FILE *f, float v) {
    char b[40];
    for (int p = 1; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    fputs(b, f);
}

typedef struct cfg_writer {
    FILE *f;
    int n;
} cfg_writer;

static void key(cfg_writer *w, const char *k) {
    fprintf(w->f, "%s\n  ", w->n++ ? "," : "");
    json_str(w->f, k);
    fputs(": ", w->f);
}
static void kv_raw(cfg_writer *w, const char *k, const char *raw) { key(w, k); fputs(raw, w->f); }
static void kv_str(cfg_writer *w, const char *k, const char *v) { key(w, k); json_str(w->f, v); }
static void kv_bool(cfg_writer *w, const char *k, int v) { kv_raw(w, k, v ? "true" : "false"); }

/* adapter_config.json with the keys (sorted, indent 2) that PEFT 0.21.2 writes; the legacy layout writes only
 * the keys older PEFT releases know, since those reject unknown keys */
static int config_json(const llava_trainer *t, const jx_opts *o, char **text) {
    char regex[2048];
    int rc = jx_target_regex(t, o->layout, regex, sizeof regex);
    if (rc) return rc;
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    if (!f) return err_set(ERR_INTERNAL, "out of memory for adapter_config.json");
    int cur = o->layout == JX_LAYOUT_CURRENT;
    cfg_writer w = {f, 0};
    fputc('{', f);
    if (cur) kv_raw(&w, "alora_invocation_tokens", "null");
    kv_raw(&w, "alpha_pattern", "{}");
    if (cur) kv_raw(&w, "arrow_config", "null");
    key(&w, "auto_mapping");
    fputs("{\n    \"base_model_class\": \"LlavaNextForConditionalGeneration\",\n    \"parent_library\": "
          "\"transformers.models.llava_next.modeling_llava_next\"\n  }", f);
    kv_str(&w, "base_model_name_or_path", o->base_model ? o->base_model : "");
    kv_str(&w, "bias", "none");
    if (cur) {
        kv_raw(&w, "corda_config", "null");
        kv_bool(&w, "ensure_weight_tying", 0);
        kv_raw(&w, "eva_config", "null");
        kv_raw(&w, "exclude_modules", "null");
    }
    kv_bool(&w, "fan_in_fan_out", 0);
    kv_bool(&w, "inference_mode", 1);
    kv_bool(&w, "init_lora_weights", 1);
    if (cur) {
        kv_raw(&w, "kasa_config", "null");
        kv_raw(&w, "layer_replication", "null");
    }
    kv_raw(&w, "layers_pattern", "null");
    kv_raw(&w, "layers_to_transform", "null");
    if (cur) kv_raw(&w, "loftq_config", "{}");
    key(&w, "lora_alpha");
    json_num(f, t->spec.alpha);
    if (cur) kv_bool(&w, "lora_bias", 0);
    key(&w, "lora_dropout");
    json_num(f, t->spec.dropout);
    if (cur) {
        kv_raw(&w, "lora_ga_config", "null");
        kv_raw(&w, "megatron_config", "null");
        kv_str(&w, "megatron_core", "megatron.core");
    }
    kv_raw(&w, "modules_to_save", t->spec.full_projector ? "[\n    \"multi_modal_projector\"\n  ]" : "null");
    if (cur) kv_raw(&w, "monteclora_config", "null");
    kv_str(&w, "peft_type", "LORA");
    if (cur) {
        kv_str(&w, "peft_version", PEFT_VERSION_WRITTEN);
        kv_raw(&w, "qalora_group_size", "16");
    }
    key(&w, "r");
    fprintf(f, "%d", t->spec.rank);
    kv_raw(&w, "rank_pattern", "{}");
    kv_raw(&w, "revision", "null");
    kv_str(&w, "target_modules", regex);
    if (cur) kv_raw(&w, "target_parameters", "null");
    kv_raw(&w, "task_type", "null");
    if (t->n_tok_rows) {
        key(&w, "trainable_token_indices");
        fputs("{\n    \"embed_tokens\": [", f);
        for (int i = 0; i < t->n_tok_rows; i++) fprintf(f, "%s\n      %d", i ? "," : "", t->tok_ids[i]);
        fputs("\n    ]\n  }", f);
    } else if (cur) {
        kv_raw(&w, "trainable_token_indices", "null");
    }
    if (cur) kv_raw(&w, "use_bdlora", "null");
    kv_bool(&w, "use_dora", 0);
    if (cur) kv_bool(&w, "use_qalora", 0);
    kv_bool(&w, "use_rslora", t->spec.rslora);
    if (cur) kv_raw(&w, "velora_config", "null");
    fputs("\n}", f);
    if (fclose(f)) return err_set(ERR_INTERNAL, "out of memory for adapter_config.json");
    return ERR_OK;
}

/* ---- adapter_model.safetensors ------------------------------------------------------------------- */

static uint16_t bf16_rne(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static int add_f32(stw *w, const char *name, int bf16, int ndim, const int64_t *shape, const float *v, int64_t n) {
    if (!bf16) return stw_add(w, name, "F32", ndim, shape, v);
    uint16_t *b = mem_alloc(sizeof(uint16_t) * (size_t)(n ? n : 1), "a bf16 export tensor");
    for (int64_t i = 0; i < n; i++) b[i] = bf16_rne(v[i]);
    int rc = stw_add(w, name, "BF16", ndim, shape, b);
    free(b);
    return rc;
}

/* the PEFT shape of a trainer tensor (biases are 1-D there) */
static int peft_shape(const lt_tensor_info *ti, int64_t *shape) {
    if (ends(ti->name, ".bias")) {
        shape[0] = ti->numel;
        return 1;
    }
    for (int k = 0; k < ti->ndim; k++) shape[k] = ti->shape[k];
    return ti->ndim;
}

int jx_write_peft(const llava_trainer *t, const jx_opts *o, const char *dir) {
    int rc = fs_mkdirs(dir);
    if (rc) return rc;
    char path[4200], name[400];
    stw *w = stw_new();
    if (!w) return err_set(ERR_INTERNAL, "out of memory for the safetensors writer");
    for (int i = 0; !rc && i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        int64_t shape[2];
        int nd = peft_shape(ti, shape);
        if (!(rc = jx_peft_name(ti->name, o->layout, name, sizeof name)))
            rc = add_f32(w, name, o->bf16, nd, shape, ti->data, ti->numel);
    }
    if (!rc && has_head(t)) {
        const lin_w *lh = &t->m->w.lm_head;
        float *scr = lh->dtype == DT_F32 ? NULL : mem_alloc(sizeof(float) * (size_t)(lh->out * lh->in), "lm_head");
        int64_t shape[2] = {lh->out, lh->in};
        rc = add_f32(w, head_base_name(o->layout), o->bf16, 2, shape, lin_f32(lh, scr), lh->out * lh->in);
        free(scr);
    }
    if (!rc) rc = stw_meta(w, "format", "pt");
    if (!rc) rc = fs_join(path, sizeof path, dir, "adapter_model.safetensors");
    if (!rc) rc = stw_write(w, path);
    stw_free(w);
    char *cfg = NULL;
    if (!rc) rc = config_json(t, o, &cfg);
    if (!rc) rc = fs_join(path, sizeof path, dir, "adapter_config.json");
    if (!rc) rc = atomic_write_file(path, cfg, strlen(cfg));
    free(cfg);
    if (!rc && o->card) {
        if (!(rc = fs_join(path, sizeof path, dir, "README.md"))) rc = atomic_write_file(path, o->card, strlen(o->card));
    }
    return rc;
}

/* ---- reading a PEFT adapter ---------------------------------------------------------------------- */

static int cfg_bool(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    return cJSON_IsTrue(v);
}

static int pattern_empty(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, k);
    return !v || cJSON_IsNull(v) || (cJSON_IsObject(v) && !v->child);
}

static int check_config(const llava_trainer *t, const char *path, const cJSON *c) {
    const lt_spec *s = &t->spec;
    if (!cJSON_IsObject(c)) return err_set(ERR_DATA, "%s: expected a JSON object", path);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(c, "peft_type");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        return err_set(ERR_ARGS, "%s: peft_type: expected \"LORA\"", path);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "r");
    if (!cJSON_IsNumber(r)) return err_set(ERR_DATA, "%s: r: expected a number", path);
    if ((int)r->valuedouble != s->rank)
        return err_set(ERR_ARGS, "%s: the adapter has rank r=%g, the job has lora.rank %d", path, r->valuedouble, s->rank);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(c, "lora_alpha");
    double alpha = cJSON_IsNumber(a) ? a->valuedouble : 8.0; /* LoraConfig's default */
    if (fabs(alpha - (double)s->alpha) > 1e-6 * fabs(alpha))
        return err_set(ERR_ARGS, "%s: the adapter has lora_alpha %g, the job has lora.alpha %g", path, alpha, (double)s->alpha);
    if (cfg_bool(c, "use_rslora") != (s->rslora != 0))
        return err_set(ERR_ARGS, "%s: the adapter has use_rslora %s, the job has lora.use_rslora %s", path,
                       cfg_bool(c, "use_rslora") ? "true" : "false", s->rslora ? "true" : "false");
    if (cfg_bool(c, "use_dora")) return err_set(ERR_ARGS, "%s: use_dora: DoRA adapters are not supported", path);
    if (cfg_bool(c, "lora_bias")) return err_set(ERR_ARGS, "%s: lora_bias: LoRA biases are not supported", path);
    if (!pattern_empty(c, "rank_pattern") || !pattern_empty(c, "alpha_pattern"))
        return err_set(ERR_ARGS, "%s: rank_pattern / alpha_pattern: per-module ranks are not supported", path);
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(c, "bias");
    if (cJSON_IsString(bias) && strcmp(bias->valuestring, "none"))
        return err_set(ERR_ARGS, "%s: bias \"%s\": only \"none\" is supported", path, bias->valuestring);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "lora_dropout");
    if (cJSON_IsNumber(d) && fabs(d->valuedouble - (double)s->dropout) > 1e-6)
        log_warn("%s: lora_dropout %g, the job trains with lora.dropout %g", path, d->valuedouble, (double)s->dropout);
    /* modules_to_save: the projector trained fully, nothing else */
    int proj_saved = 0;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(c, "modules_to_save"), *e;
    if (!cJSON_IsArray(ms)) ms = NULL;
    cJSON_ArrayForEach(e, ms) {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, "multi_modal_projector")) proj_saved = 1;
        else
            return err_set(ERR_ARGS, "%s: modules_to_save: '%s' cannot be trained fully (only multi_modal_projector)",
                           path, cJSON_IsString(e) ? e->valuestring : "?");
    }
    if (proj_saved != (s->full_projector != 0))
        return err_set(ERR_ARGS, "%s: modules_to_save %s the projector, the job %s (train.full_modules)", path,
                       proj_saved ? "has" : "does not have", s->full_projector ? "trains it fully" : "does not train it fully");
    /* trainable tokens: the same ids as the job's */
    const cJSON *tti = cJSON_GetObjectItemCaseSensitive(c, "trainable_token_indices");
    const cJSON *ids = NULL;
    if (cJSON_IsArray(tti)) ids = tti;
    else if (cJSON_IsObject(tti)) {
        cJSON_ArrayForEach(e, tti) {
            if (strcmp(e->string, "embed_tokens"))
                return err_set(ERR_ARGS, "%s: trainable_token_indices: '%s': only embed_tokens rows are trained", path,
                               e->string);
            ids = e;
        }
    }
    int n = ids ? cJSON_GetArraySize(ids) : 0;
    int same = n == t->n_tok_rows;
    for (int i = 0; same && i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(ids, i);
        same = cJSON_IsNumber(v) && (int)v->valuedouble == t->tok_ids[i];
    }
    if (!same)
        return err_set(ERR_ARGS, "%s: trainable_token_indices has %d ids, the job trains %d token rows "
                       "(lora.train_new_token_embeddings) with other ids", path, n, t->n_tok_rows);
    return ERR_OK;
}

int jx_read_peft(llava_trainer *t, const char *dir) {
    char path[4200], name[400], legacy[400];
    char *text = NULL;
    size_t n = 0;
    int rc = fs_join(path, sizeof path, dir, "adapter_config.json");
    if (!rc) rc = fs_read_all(path, &text, &n);
    if (rc) return rc;
    cJSON *c = cJSON_ParseWithLength(text, n);
    free(text);
    if (!c) return err_set(ERR_DATA, "%s: not valid JSON", path);
    rc = check_config(t, path, c);
    cJSON_Delete(c);
    if (rc) return rc;
    st_file *f = NULL;
    if ((rc = fs_join(path, sizeof path, dir, "adapter_model.safetensors")) || (rc = st_open(path, &f))) return rc;
    int nt = lt_tensor_count(t), nf = st_count(f);
    const st_tensor **src = mem_calloc((size_t)(nt ? nt : 1), sizeof *src, "adapter tensor list");
    uint8_t *used = mem_calloc((size_t)(nf ? nf : 1), 1, "adapter tensor flags");
    /* every tensor the job trains is there with its shape, in either key layout */
    for (int i = 0; !rc && i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        if ((rc = jx_peft_name(ti->name, JX_LAYOUT_CURRENT, name, sizeof name)) ||
            (rc = jx_peft_name(ti->name, JX_LAYOUT_LEGACY, legacy, sizeof legacy)))
            break;
        const st_tensor *s = st_find(f, name);
        if (!s) s = st_find(f, legacy);
        if (!s) {
            rc = err_set(ERR_ARGS, "%s: tensor %s is not in the adapter, but the job trains it (%s; check "
                         "lora.targets, lora.vision_layers, train.full_modules)", path, name, ti->name);
            break;
        }
        int64_t shape[2];
        int nd = peft_shape(ti, shape);
        int ok = s->ndim == nd;
        for (int k = 0; ok && k < nd; k++) ok = s->shape[k] == shape[k];
        if (!ok) {
            char got[96] = "", want[96] = "";
            for (int k = 0; k < s->ndim; k++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? ", " : "", (long long)s->shape[k]);
            for (int k = 0; k < nd; k++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", k ? ", " : "", (long long)shape[k]);
            rc = err_set(ERR_DATA, "%s: tensor %s: shape [%s], the job's model and lora.rank expect [%s]", path,
                         s->name, got, want);
            break;
        }
        if (s->dtype != ST_F32 && s->dtype != ST_BF16 && s->dtype != ST_F16) {
            rc = err_set(ERR_DATA, "%s: tensor %s: dtype %s, expected F32, BF16 or F16", path, s->name,
                         st_dtype_name(s->dtype));
            break;
        }
        src[i] = s;
        for (int k = 0; k < nf; k++)
            if (st_at(f, k) == s) used[k] = 1;
    }
    /* ... and nothing else (the frozen base weight PEFT saves beside an lm_head adapter is skipped) */
    for (int k = 0; !rc && k < nf; k++) {
        const st_tensor *s = st_at(f, k);
        if (used[k] || !strcmp(s->name, head_base_name(JX_LAYOUT_CURRENT)) ||
            !strcmp(s->name, head_base_name(JX_LAYOUT_LEGACY)))
            continue;
        rc = err_set(ERR_ARGS, "%s: tensor %s is not trained by this job (check lora.targets, "
                     "lora.vision_layers, train.full_modules, lora.train_new_token_embeddings)", path, s->name);
    }
    for (int i = 0; !rc && i < nt; i++) rc = st_to_f32(f, src[i], lt_tensor(t, i)->data);
    free(src);
    free(used);
    st_close(f);
    return rc;
}

/* ---- the job's trainer --------------------------------------------------------------------------- */

int jx_open(const job_config *j, jx_job *x) {
    memset(x, 0, sizeof *x);
    x->j = j;
    lt_spec sp;
    int rc = job_run_spec(j, &sp);
    if (rc) return rc;
    if ((rc = mh5_load(j->model.path, &x->m))) return rc;
    x->have_model = 1;
    if ((rc = lt_init(&x->t, &x->m, &sp))) return rc;
    x->have_trainer = 1;
    return ERR_OK;
}

void jx_close(jx_job *x) {
    if (x->have_trainer) lt_free(&x->t);
    if (x->have_model) llava_model_free(&x->m);
    x->have_trainer = x->have_model = 0;
}

/* checkpoint views of the trainer's tensors ('/' in names becomes ':', as the trainer stores them) */
static ckpt_tensor *ckpt_views(const llava_trainer *t, char (**names)[CKPT_MAX_NAME], float *m, float *v,
                               int with_groups) {
    int nt = lt_tensor_count(t);
    int lists = m ? 3 : 1;
    ckpt_tensor *ck = mem_calloc((size_t)(lists * nt + 1), sizeof *ck, "checkpoint tensor list");
    *names = mem_calloc((size_t)(nt + 1), sizeof **names, "checkpoint tensor names");
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        snprintf((*names)[i], CKPT_MAX_NAME, "%s", ti->name);
        for (char *c = (*names)[i]; *c; c++)
            if (*c == '/') *c = ':';
        for (int k = 0; k < lists; k++) {
            ckpt_tensor *ct = &ck[k * nt + i];
            ct->name = (*names)[i];
            ct->group = with_groups ? ti->group : NULL; /* reading: names and shapes identify a tensor */
            ct->data = k == 0 ? ti->data : (k == 1 ? m + off : v + off);
            ct->numel = ti->numel;
            ct->ndim = ti->ndim;
            ct->shape[0] = ti->shape[0];
            ct->shape[1] = ti->shape[1];
        }
        off += ti->numel;
    }
    return ck;
}

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

int jx_load_checkpoint(jx_job *x, const char *which, char *path, size_t cap, int64_t *step) {
    const char *dir = x->j->job.output_dir;
    int rc;
    if (!which || !strcmp(which, "latest")) {
        /* the newest that verifies; nothing is moved or removed (export only reads) */
        int n = 0;
        if ((rc = ckpt_list(dir, NULL, 0, &n))) return rc;
        int64_t *steps = mem_calloc((size_t)(n + 1), sizeof *steps, "checkpoint list");
        rc = ckpt_list(dir, steps, n, &n);
        int found = 0;
        for (int i = n - 1; !rc && i >= 0 && !found; i--) {
            if ((rc = ckpt_path(dir, steps[i], path, cap))) break;
            int64_t s;
            if (ckpt_verify(path, &s) == ERR_OK) found = 1;
            else log_warn("%s", err_msg()), err_clear();
        }
        free(steps);
        if (rc) return rc;
        if (!found)
            return err_set(ERR_ARGS, "%s/checkpoints: no checkpoint that verifies (%d found); train the job first",
                           dir, n);
    } else if (all_digits(which)) {
        if ((rc = ckpt_path(dir, strtoll(which, NULL, 10), path, cap))) return rc;
        if (!fs_exists(path)) return err_set(ERR_ARGS, "--checkpoint %s: %s does not exist", which, path);
    } else {
        if (strlen(which) >= cap) return err_set(ERR_ARGS, "--checkpoint: path too long");
        snprintf(path, cap, "%s", which);
    }
    char (*names)[CKPT_MAX_NAME] = NULL;
    ckpt_state s;
    memset(&s, 0, sizeof s);
    s.params = ckpt_views(&x->t, &names, NULL, NULL, 0);
    s.ntensors = lt_tensor_count(&x->t);
    rc = ckpt_read(path, &s);
    free(s.loaded_yaml);
    free(s.params);
    free(names);
    if (rc) return rc;
    *step = s.step;
    return ERR_OK;
}

/* ---- model card ---------------------------------------------------------------------------------- */

static void list_text(FILE *f, const job_list *l) {
    for (int i = 0; i < l->n; i++) fprintf(f, "%s%s", i ? ", " : "", l->v[i]);
    if (!l->n) fputs("(none)", f);
}

/* a string attribute of model.h5's root ("" when absent) */
static void model_attr(const char *model, const char *name, char *out, size_t cap) {
    hid_t h;
    out[0] = 0;
    if (h5x_open(model, 0, &h) == ERR_OK) {
        char *v = NULL;
        if (h5x_attr_get_str(h, ".", name, &v) == ERR_OK) snprintf(out, cap, "%s", v);
        free(v);
        h5x_close(&h);
    }
    err_clear();
}

void jx_base_model(const job_config *j, char *out, size_t cap) { model_attr(j->model.path, "source_dir", out, cap); }

int jx_model_card(const job_config *j, const char *ckpt, int64_t step, char **text) {
    char base[4096], quant[64];
    jx_base_model(j, base, sizeof base);
    model_attr(j->model.path, "quantization", quant, sizeof quant);
    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    if (!f) return err_set(ERR_INTERNAL, "out of memory for the model card");
    fprintf(f, "---\nbase_model: %s\nlibrary_name: peft\npipeline_tag: image-text-to-text\ntags:\n- orpo\n- lora\n"
               "- qlora\n- llava-next\n- orpo-hpc\n---\n\n", base[0] ? fs_basename(base) : "llava-hf/llava-v1.6-mistral-7b-hf");
    fprintf(f, "# %s\n\nA LoRA adapter for `LlavaNextForConditionalGeneration`, aligned with ORPO (odds-ratio "
               "preference optimization) by orpo-hpc on a frozen %s base. Checkpoint: step %lld (`%s`).\n\n",
            j->job.name, quant[0] ? quant : "NF4", (long long)step, ckpt);
    fprintf(f, "## Training settings\n\n| setting | value |\n|---|---|\n");
    fprintf(f, "| LoRA rank / alpha / dropout | %lld / %g / %g |\n", (long long)j->lora.rank, j->lora.alpha, j->lora.dropout);
    fprintf(f, "| rsLoRA | %s |\n| LoRA targets | ", j->lora.use_rslora ? "yes" : "no");
    list_text(f, &j->lora.targets);
    fprintf(f, " |\n| trained fully | ");
    list_text(f, &j->train.full_modules);
    fprintf(f, " |\n| new token embeddings trained | %s |\n", j->lora.train_new_token_embeddings ? "yes" : "no");
    fprintf(f, "| learning rate / schedule / warm-up | %g / %s / %lld steps |\n", j->train.lr,
            job_enum_name(job_find_key("train.schedule"), j->train.schedule), (long long)j->train.warmup_steps);
    fprintf(f, "| epochs / max steps | %lld / %lld |\n", (long long)j->train.epochs, (long long)j->train.max_steps);
    fprintf(f, "| pairs per micro-batch x accumulation | %lld x %lld |\n", (long long)j->train.micro_batch_pairs,
            (long long)j->train.grad_accum);
    fprintf(f, "| ORPO beta (lambda) / NLL targets | %g / %s |\n", j->train.orpo_beta,
            job_enum_name(job_find_key("train.nll"), j->train.nll));
    fprintf(f, "| weight decay / max grad norm / seed | %g / %g / %lld |\n", j->train.weight_decay,
            j->train.max_grad_norm, (long long)j->train.seed);
    fprintf(f, "| data | `%s` |\n\n", j->data.path);
    /* final metrics: the last rows at or before the checkpoint's step */
    char mpath[4200];
    met_train *tr = NULL;
    met_val *va = NULL;
    int64_t ntr = 0, nva = 0;
    fprintf(f, "## Results\n\n");
    if (fs_join(mpath, sizeof mpath, j->job.output_dir, "metrics.h5") == ERR_OK && fs_exists(mpath) &&
        met_read_train(mpath, &tr, &ntr) == ERR_OK) {
        const met_train *r = NULL;
        for (int64_t i = 0; i < ntr; i++)
            if (tr[i].step <= step) r = &tr[i];
        if (r)
            fprintf(f, "Training, step %lld: loss %.4f, NLL %.4f, log odds ratio %.4f, reward accuracy %.3f, "
                       "reward margin %.4f, chosen/rejected log-probs %.4f / %.4f.\n\n", (long long)r->step, r->loss,
                    r->nll_loss, r->log_odds_ratio, r->reward_accuracy, r->reward_margin, r->chosen_logps,
                    r->rejected_logps);
        if (met_read_val(mpath, &va, &nva) == ERR_OK) {
            const met_val *v = NULL;
            for (int64_t i = 0; i < nva; i++)
                if (va[i].step <= step) v = &va[i];
            if (v)
                fprintf(f, "Validation, step %lld: loss %.4f, NLL %.4f, preference accuracy %.3f, chosen/rejected "
                           "log-probs %.4f / %.4f.\n\n", (long long)v->step, v->loss, v->nll_loss, v->accuracy,
                        v->chosen_logps, v->rejected_logps);
        }
    } else {
        fprintf(f, "No metrics file (%s).\n\n", mpath);
    }
    err_clear();
    free(tr);
    free(va);
    fprintf(f, "## Use\n\n```python\nfrom peft import PeftModel\nfrom transformers import "
               "LlavaNextForConditionalGeneration\nbase = LlavaNextForConditionalGeneration.from_pretrained(\"%s\")\n"
               "model = PeftModel.from_pretrained(base, \"THIS_DIRECTORY\")\n```\n\n",
            base[0] ? base : "llava-hf/llava-v1.6-mistral-7b-hf");
    char *y = job_run_yaml(j);
    fprintf(f, "## The job\n\n```yaml\n%s```\n", y ? y : "");
    free(y);
    if (fclose(f)) return err_set(ERR_INTERNAL, "out of memory for the model card");
    return ERR_OK;
}

/* ---- step-0 state ------------------------------------------------------------------------------- */

int jx_write_step0(jx_job *x) {
    const job_config *j = x->j;
    const char *dir = j->job.output_dir;
    int n = 0, rc = ckpt_list(dir, NULL, 0, &n);
    if (rc) return rc;
    if (n > 0)
        return err_set(ERR_ARGS, "%s/checkpoints already holds %d checkpoint(s): import-adapter starts a job; use "
                       "another job.output_dir, or move the old one away", dir, n);
    ckpt_state s;
    memset(&s, 0, sizeof s);
    if ((rc = job_run_input_hashes(j, &s.model_hash, &s.data_hash))) return rc;
    if ((rc = fs_mkdirs(dir))) return rc;
    float *mom = mem_calloc((size_t)(2 * x->t.nstore + 1), sizeof(float), "zero AdamW moments");
    char (*names)[CKPT_MAX_NAME] = NULL;
    int nt = lt_tensor_count(&x->t);
    ckpt_tensor *ck = ckpt_views(&x->t, &names, mom, mom + x->t.nstore, 1);
    s.step = 0;
    s.perm_seed = s.rng_seed = (uint64_t)j->train.seed;
    s.sched_lr_factor = j->train.warmup_steps > 0 ? 0.0 : 1.0;
    s.world_size = 1;
    s.job_hash = job_hash(j);
    char *y = job_run_yaml(j);
    s.job_yaml = y;
    s.params = ck;
    s.adam_m = ck + nt;
    s.adam_v = ck + 2 * nt;
    s.ntensors = nt;
    rc = ckpt_write(dir, &s);
    free(y);
    free(ck);
    free(names);
    free(mom);
    return rc;
}

/* ---- merged HF directory ------------------------------------------------------------------------- */

/* the trainer's adapter on linear lw, or NULL */
static const lora_ad *adapter_of(const llava_trainer *t, const lin_w *lw) {
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    for (int l = 0; l < c->t_layers; l++) {
        const lin_w *d[LT_DEC_MODULES] = {&w->dec[l].q, &w->dec[l].k, &w->dec[l].v, &w->dec[l].o,
                                          &w->dec[l].gate, &w->dec[l].up, &w->dec[l].down};
        for (int mi = 0; mi < LT_DEC_MODULES; mi++)
            if (d[mi] == lw) return t->dec[l * LT_DEC_MODULES + mi].A ? &t->dec[l * LT_DEC_MODULES + mi] : NULL;
    }
    for (int l = t->vis_first; l < c->v_run_layers; l++) {
        const lin_w *v[LT_VIS_MODULES] = {&w->vis[l].q, &w->vis[l].k, &w->vis[l].v, &w->vis[l].o,
                                          &w->vis[l].fc1, &w->vis[l].fc2};
        for (int mi = 0; mi < LT_VIS_MODULES; mi++)
            if (v[mi] == lw) return t->vis[l * LT_VIS_MODULES + mi].A ? &t->vis[l * LT_VIS_MODULES + mi] : NULL;
    }
    if (lw == &w->proj1) return t->proj[0].A ? &t->proj[0] : NULL;
    if (lw == &w->proj2) return t->proj[1].A ? &t->proj[1] : NULL;
    if (lw == &w->lm_head) return t->head.A ? &t->head : NULL;
    return NULL;
}

/* W[out, in] += scale * B[out, r] A[r, in] (PEFT's merge), in fp32 */
static void merge_lora(float *W, const lora_ad *ad) {
    float *row = mem_alloc(sizeof(float) * (size_t)ad->in, "a LoRA merge row");
    for (int64_t o = 0; o < ad->out; o++) {
        memset(row, 0, sizeof(float) * (size_t)ad->in);
        for (int r = 0; r < ad->r; r++) {
            float b = ad->B[o * ad->r + r];
            const float *a = ad->A + (int64_t)r * ad->in;
            for (int64_t i = 0; i < ad->in; i++) row[i] += b * a[i];
        }
        float *wr = W + o * ad->in;
        for (int64_t i = 0; i < ad->in; i++) wr[i] += ad->scale * row[i];
    }
    free(row);
}

typedef struct mtensor {
    char name[160];
    int ndim;
    int64_t shape[4], numel;
    const llava_param *p; /* NULL: CLIP post_layernorm (ones / zeros) */
    const void *const *live_slot; /* p's slot in the model's own weights */
    int ones;
    int shard;
} mtensor;

/* the merged value of one parameter, fp32, into out[numel] */
static void merged_value(const llava_trainer *t, const mtensor *mt, float *out, float *scr) {
    if (!mt->p) {
        for (int64_t i = 0; i < mt->numel; i++) out[i] = mt->ones ? 1.0f : 0.0f;
        return;
    }
    const llava_param *p = mt->p;
    if (p->is_linear && ends(p->name, ".weight")) {
        /* the slot is &lin_w.w of its linear (llava_params_build's add_lin) */
        const lin_w *lw = (const lin_w *)(const void *)((const char *)mt->live_slot - offsetof(lin_w, w));
        memcpy(out, lin_f32(lw, scr), sizeof(float) * (size_t)p->numel);
        const lora_ad *ad = adapter_of(t, lw);
        if (ad) merge_lora(out, ad);
        return;
    }
    memcpy(out, *mt->live_slot, sizeof(float) * (size_t)p->numel);
    if (!strcmp(p->name, "language_model.model.embed_tokens.weight"))
        for (int j = 0; j < t->n_tok_rows; j++)
            memcpy(out + (int64_t)t->tok_ids[j] * t->m->cfg.t_hidden, t->tok_rows + (int64_t)j * t->m->cfg.t_hidden,
                   sizeof(float) * (size_t)t->m->cfg.t_hidden);
}

/* config.json of the merged model: bf16; when model.h5 holds only the vision layers that feed the projector,
 * a vision tower of that many layers whose last output is the feature layer (the same features) */
static int merged_config(const llava_config *c, const char *blob, size_t n, char **out) {
    cJSON *j = cJSON_ParseWithLength(blob, n);
    if (!j) return err_set(ERR_DATA, "model.h5 source/config.json: not valid JSON");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "dtype");
    cJSON_AddStringToObject(j, "dtype", "bfloat16");
    if (c->v_run_layers < c->v_layers) {
        cJSON *vc = cJSON_GetObjectItemCaseSensitive(j, "vision_config");
        if (!cJSON_IsObject(vc)) {
            cJSON_Delete(j);
            return err_set(ERR_DATA, "model.h5 source/config.json: no vision_config object");
        }
        cJSON_DeleteItemFromObjectCaseSensitive(vc, "num_hidden_layers");
        cJSON_AddNumberToObject(vc, "num_hidden_layers", c->v_run_layers);
        cJSON_DeleteItemFromObjectCaseSensitive(j, "vision_feature_layer");
        cJSON_AddNumberToObject(j, "vision_feature_layer", -1);
    }
    *out = cJSON_Print(j);
    cJSON_Delete(j);
    return *out ? ERR_OK : err_set(ERR_INTERNAL, "out of memory for config.json");
}

static const char *merged_sources[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                       "special_tokens_map.json", "added_tokens.json", "chat_template.json",
                                       "preprocessor_config.json", "processor_config.json", "generation_config.json"};

int jx_write_merged(const llava_trainer *t, const char *model_path, int64_t max_shard_bytes, const char *dir) {
    const llava_config *c = &t->m->cfg;
    if (c->layout != LLAVA_LAYOUT_HF)
        return err_set(ERR_ARGS, "%s: --merged needs a model imported from a llava-hf directory (this one came "
                       "from the original liuhaotian layout)", model_path);
    /* llava_params_build resets the linears it lists to fp32: run it on a copy of the weight tables and map
     * each slot back to the model's own */
    llava_weights *live = &t->m->w, tmp = *live;
    tmp.vis = mem_calloc((size_t)c->v_run_layers + 1, sizeof *tmp.vis, "vision layer table");
    tmp.dec = mem_calloc((size_t)c->t_layers + 1, sizeof *tmp.dec, "decoder layer table");
    memcpy(tmp.vis, live->vis, sizeof *tmp.vis * (size_t)c->v_run_layers);
    memcpy(tmp.dec, live->dec, sizeof *tmp.dec * (size_t)c->t_layers);
    llava_param *ps = NULL;
    int np = 0;
    int rc = llava_params_build(c, &tmp, &ps, &np);
    if (rc) {
        free(tmp.vis);
        free(tmp.dec);
        return rc;
    }
    mtensor *mt = mem_calloc((size_t)np + 2, sizeof *mt, "merged tensor list");
    int nt = 0;
    int64_t biggest = 0;
    for (int i = 0; i < np; i++, nt++) {
        snprintf(mt[nt].name, sizeof mt[nt].name, "%s", ps[i].name);
        mt[nt].p = &ps[i];
        const char *sl = (const char *)ps[i].slot;
        if (sl >= (const char *)tmp.vis && sl < (const char *)(tmp.vis + c->v_run_layers))
            mt[nt].live_slot = (const void *const *)(const void *)((const char *)live->vis + (sl - (const char *)tmp.vis));
        else if (sl >= (const char *)tmp.dec && sl < (const char *)(tmp.dec + c->t_layers))
            mt[nt].live_slot = (const void *const *)(const void *)((const char *)live->dec + (sl - (const char *)tmp.dec));
        else
            mt[nt].live_slot = (const void *const *)(const void *)((const char *)live + (sl - (const char *)&tmp));
        mt[nt].ndim = ps[i].ndim;
        memcpy(mt[nt].shape, ps[i].shape, sizeof mt[nt].shape);
        mt[nt].numel = ps[i].numel;
        if (ps[i].numel > biggest) biggest = ps[i].numel;
    }
    if (c->v_run_layers < c->v_layers) /* unused by the features, present so that loaders find every weight */
        for (int k = 0; k < 2; k++, nt++) {
            snprintf(mt[nt].name, sizeof mt[nt].name, "vision_tower.vision_model.post_layernorm.%s", k ? "bias" : "weight");
            mt[nt].ndim = 1;
            mt[nt].shape[0] = mt[nt].numel = c->v_hidden;
            mt[nt].ones = !k;
        }
    /* shards: consecutive tensors up to max_shard_bytes of bf16 each */
    int nshards = 1;
    int64_t in_shard = 0, total = 0;
    for (int i = 0; i < nt; i++) {
        int64_t b = 2 * mt[i].numel;
        if (in_shard > 0 && in_shard + b > max_shard_bytes) nshards++, in_shard = 0;
        in_shard += b;
        total += b;
        mt[i].shard = nshards;
    }
    if ((rc = fs_mkdirs(dir))) goto done;
    float *val = mem_alloc(sizeof(float) * (size_t)(biggest ? biggest : 1), "a merged weight");
    float *scr = mem_alloc(sizeof(float) * (size_t)(biggest ? biggest : 1), "a dequantized weight");
    uint16_t *b16 = mem_alloc(sizeof(uint16_t) * (size_t)(biggest ? biggest : 1), "a bf16 weight");
    char path[4200], file[64];
    for (int s = 1; !rc && s <= nshards; s++) {
        stw *w = stw_new();
        if (!w) { rc = err_set(ERR_INTERNAL, "out of memory for the safetensors writer"); break; }
        for (int i = 0; !rc && i < nt; i++) {
            if (mt[i].shard != s) continue;
            merged_value(t, &mt[i], val, scr);
            for (int64_t k = 0; k < mt[i].numel; k++) b16[k] = bf16_rne(val[k]);
            rc = stw_add(w, mt[i].name, "BF16", mt[i].ndim, mt[i].shape, b16);
        }
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s, nshards);
        if (!rc) rc = stw_meta(w, "format", "pt");
        if (!rc) rc = fs_join(path, sizeof path, dir, file);
        if (!rc) rc = stw_write(w, path);
        stw_free(w);
    }
    free(val);
    free(scr);
    free(b16);
    /* the index */
    if (!rc) {
        char *ix = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&ix, &len);
        if (!f) { rc = err_set(ERR_INTERNAL, "out of memory for the index"); goto done; }
        fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %lld\n  },\n  \"weight_map\": {", (long long)total);
        for (int i = 0; i < nt; i++)
            fprintf(f, "%s\n    \"%s\": \"model-%05d-of-%05d.safetensors\"", i ? "," : "", mt[i].name, mt[i].shard, nshards);
        fputs("\n  }\n}\n", f);
        fclose(f);
        if (!(rc = fs_join(path, sizeof path, dir, "model.safetensors.index.json"))) rc = atomic_write_file(path, ix, len);
        free(ix);
    }
    /* config.json and the tokenizer / processor files that came with the model */
    char *blob = NULL, *cfg = NULL;
    size_t n = 0;
    if (!rc) rc = mh5_read_blob(model_path, "source/config.json", &blob, &n);
    if (!rc) rc = merged_config(c, blob, n, &cfg);
    if (!rc && !(rc = fs_join(path, sizeof path, dir, "config.json"))) rc = atomic_write_file(path, cfg, strlen(cfg));
    free(blob);
    free(cfg);
    for (size_t i = 0; !rc && i < sizeof merged_sources / sizeof merged_sources[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "source/%s", merged_sources[i]);
        blob = NULL;
        if (mh5_read_blob(model_path, name, &blob, &n) != ERR_OK) { err_clear(); continue; }
        if (!(rc = fs_join(path, sizeof path, dir, merged_sources[i]))) rc = atomic_write_file(path, blob, n);
        free(blob);
    }
done:
    free(mt);
    free(ps);
    free(tmp.vis);
    free(tmp.dec);
    return rc;
}
