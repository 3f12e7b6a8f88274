/* model_h5 — import a HuggingFace LLaVA-NeXT directory into model.h5, and load it back. */
#include "model/model_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "io/atomic.h"
#include "io/content_hash.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/interrupt.h"
#include "io/log.h"
#include "io/mem.h"
#include "io/safetensors.h"
#include "model/llava_size.h"
#include "model/nf4.h"
#include "data/import.h"
#include "data/tok.h"

static const char *quant_names[] = {"nf4", "bf16", "fp32"};
static const char *scope_names[] = {"decoder", "all-linear"};

static int check_source_tokenizer(const char *dir, const llava_config *cfg);

/* source files that travel inside model.h5 (group /source) */
static const char *source_files[] = {"config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                     "special_tokens_map.json", "added_tokens.json", "chat_template.json",
                                     "preprocessor_config.json", "processor_config.json", "generation_config.json"};

void mh5_opts_default(mh5_opts *o) {
    memset(o, 0, sizeof *o);
    o->quant = MH5_QUANT_NF4;
    o->scope = MH5_SCOPE_DECODER;
    o->nf4_flavor = NF4_FLAVOR_CUDA;
}

static int is_nf4(const mh5_opts *o, const llava_param *p) {
    if (o->quant != MH5_QUANT_NF4 || !p->is_linear) return 0;
    if (!strcmp(p->name, "language_model.lm_head.weight")) return 0; /* lm_head stays bf16 */
    return p->is_decoder || o->scope == MH5_SCOPE_ALL_LINEAR;
}

static int write_param(hid_t f, const mh5_opts *o, const llava_param *p, const float *data) {
    char path[200];
    snprintf(path, sizeof path, "params/%s", p->name);
    if (is_nf4(o, p)) {
        int64_t n = p->numel, nb = nf4_nblocks(n, NF4_BLOCKSIZE), nb2 = nf4_nblocks(nb, NF4_BLOCKSIZE2);
        int64_t nbytes = (n + 1) / 2;
        uint8_t *packed = mem_alloc((size_t)nbytes, p->name), *qabs = mem_alloc((size_t)nb, p->name);
        float *absmax2 = mem_alloc(sizeof(float) * (size_t)nb2, p->name), offset = 0.0f;
        char sub[256];
        int rc = nf4_quantize_full(data, n, NF4_BLOCKSIZE, NF4_BLOCKSIZE2, o->nf4_flavor, packed, qabs, absmax2, &offset);
        if (rc) err_push("tensor %s", p->name);
        if (!rc) { snprintf(sub, sizeof sub, "%s/packed", path); rc = h5x_write(f, sub, H5X_U8, 1, &nbytes, packed); }
        if (!rc) { snprintf(sub, sizeof sub, "%s/qabsmax", path); rc = h5x_write(f, sub, H5X_U8, 1, &nb, qabs); }
        if (!rc) { snprintf(sub, sizeof sub, "%s/absmax2", path); rc = h5x_write(f, sub, H5X_F32, 1, &nb2, absmax2); }
        if (!rc) rc = h5x_attr_set_str(f, path, "quant_type", "nf4");
        if (!rc) rc = h5x_attr_set_i64s(f, path, "shape", p->shape, p->ndim);
        if (!rc) rc = h5x_attr_set_i64(f, path, "blocksize", NF4_BLOCKSIZE);
        if (!rc) rc = h5x_attr_set_i64(f, path, "blocksize2", NF4_BLOCKSIZE2);
        if (!rc) rc = h5x_attr_set_f64(f, path, "offset", (double)offset);
        free(packed);
        free(qabs);
        free(absmax2);
        return rc;
    }
    if (o->quant == MH5_QUANT_FP32) return h5x_write(f, path, H5X_F32, p->ndim, p->shape, data);
    uint16_t *bits = mem_alloc(sizeof(uint16_t) * (size_t)(p->numel ? p->numel : 1), p->name);
    h5x_f32_to_bf16_n(data, bits, (size_t)p->numel);
    int rc = h5x_write(f, path, H5X_BF16, p->ndim, p->shape, bits);
    free(bits);
    return rc;
}

typedef struct import_ctx {
    hid_t f;
    const llava_config *cfg;
    const mh5_opts *o;
    llava_param *ps;
    progress *pg;
    int done;
    const char *out; /* for messages */
} import_ctx;

/* one checkpoint tensor: to fp32 (one tensor in memory at a time), quantized or converted, written */
static int import_one(void *ctx, const st_file *sf, const st_tensor *t, int k) {
    import_ctx *c = ctx;
    llava_param *p = &c->ps[k];
    float *buf = mem_alloc(sizeof(float) * (size_t)(p->numel ? p->numel : 1), p->name);
    int rc = llava_read_tensor(c->cfg, sf, t, p, buf);
    if (!rc && (rc = write_param(c->f, c->o, p, buf))) err_push("writing %s", c->out);
    free(buf);
    progress_update(c->pg, (uint64_t)++c->done);
    return rc;
}

static int write_sources(hid_t f, const char *dir) {
    for (size_t i = 0; i < sizeof source_files / sizeof source_files[0]; i++) {
        char path[4096], ds[128];
        if (fs_join(path, sizeof path, dir, source_files[i])) return err_code();
        if (!fs_exists(path)) continue;
        char *buf = NULL;
        size_t n = 0;
        int rc = fs_read_all(path, &buf, &n);
        int64_t len = (int64_t)n;
        snprintf(ds, sizeof ds, "source/%s", source_files[i]);
        if (!rc) rc = h5x_write(f, ds, H5X_U8, 1, &len, buf);
        free(buf);
        if (rc) return rc;
    }
    return ERR_OK;
}

static int write_config_attrs(hid_t f, const llava_config *c, const mh5_opts *o, const char *dir) {
    int rc = h5x_attr_set_str(f, ".", "format", MH5_FORMAT);
    if (!rc) rc = h5x_attr_set_i64(f, ".", "format_version", MH5_VERSION);
    if (!rc) rc = h5x_attr_set_str(f, ".", "quantization", quant_names[o->quant]);
    if (!rc) rc = h5x_attr_set_str(f, ".", "quant_scope", scope_names[o->scope]);
    if (!rc) rc = h5x_attr_set_str(f, ".", "nf4_flavor", o->nf4_flavor == NF4_FLAVOR_CPU ? "cpu" : "cuda");
    if (!rc) rc = h5x_attr_set_str(f, ".", "source_dir", dir);
    if (!rc) rc = h5x_attr_set_str(f, ".", "created_by", "orpo-hpc " ORPO_VERSION);
    hid_t g;
    if (!rc) rc = h5x_group(f, "config", &g);
    if (rc) return rc;
    H5Gclose(g);
    struct { const char *k; int64_t v; } ints[] = {
        {"vision_hidden_size", c->v_hidden}, {"vision_intermediate_size", c->v_inter},
        {"vision_num_layers", c->v_layers}, {"vision_layers_run", c->v_run_layers},
        {"vision_num_heads", c->v_heads}, {"vision_image_size", c->v_image}, {"vision_patch_size", c->v_patch},
        {"vision_feature_layer", c->v_feature_layer}, {"hidden_size", c->t_hidden},
        {"intermediate_size", c->t_inter}, {"num_layers", c->t_layers}, {"num_heads", c->t_heads},
        {"num_kv_heads", c->t_kv_heads}, {"head_dim", c->t_head_dim}, {"vocab_size", c->vocab},
        {"image_token_id", c->image_token}, {"pad_token_id", c->pad_token}, {"bos_token_id", c->bos},
        {"eos_token_id", c->eos}};
    for (size_t i = 0; !rc && i < sizeof ints / sizeof ints[0]; i++) rc = h5x_attr_set_i64(f, "config", ints[i].k, ints[i].v);
    if (!rc) rc = h5x_attr_set_f64(f, "config", "rope_theta", (double)c->rope_theta);
    if (!rc) rc = h5x_attr_set_f64(f, "config", "rms_norm_eps", (double)c->t_eps);
    int64_t pp[2 * ANYRES_MAX_PINPOINTS];
    for (int i = 0; i < c->anyres.n_pinpoints; i++) {
        pp[2 * i] = c->anyres.pinpoints[i][0];
        pp[2 * i + 1] = c->anyres.pinpoints[i][1];
    }
    if (!rc) rc = h5x_attr_set_i64s(f, "config", "image_grid_pinpoints", pp, 2 * c->anyres.n_pinpoints);
    if (!rc) rc = h5x_attr_set_str(f, "config", "image_grid_pinpoints_order", "height,width");
    return rc;
}

int mh5_import(const char *dir, const char *out, const mh5_opts *o) {
    char path[4096];
    llava_config cfg;
    if (fs_join(path, sizeof path, dir, "config.json")) return err_code();
    int rc = llava_config_from_hf(path, &cfg);
    if (!rc) rc = check_source_tokenizer(dir, &cfg);
    if (rc) return rc;
    /* the parameter list, built against a throw-away weights struct */
    llava_weights w;
    memset(&w, 0, sizeof w);
    w.vis = mem_calloc((size_t)cfg.v_run_layers, sizeof *w.vis, "vision layers");
    w.dec = mem_calloc((size_t)cfg.t_layers, sizeof *w.dec, "decoder layers");
    llava_param *ps = NULL;
    int np = 0;
    llava_params_build(&cfg, &w, &ps, &np);
    char *seen = mem_calloc((size_t)(np > 0 ? np : 1), 1, "import-model tensor list");

    /* shard list: the index when there is one, else model.safetensors */
    st_index *ix = NULL;
    int nshards = 1;
    char single[4096];
    fs_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (fs_exists(path)) {
        rc = st_index_open(path, &ix);
        if (!rc) nshards = st_index_nshards(ix);
        for (int s = 0; !rc && s < nshards; s++) {
            fs_join(single, sizeof single, dir, st_index_shard_at(ix, s));
            if (!fs_exists(single))
                rc = err_set(ERR_DATA, "%s: shard %s named by model.safetensors.index.json is missing", dir,
                             st_index_shard_at(ix, s));
        }
    } else {
        fs_join(single, sizeof single, dir, "model.safetensors");
        if (!fs_exists(single))
            rc = err_set(ERR_DATA, "%s: no model.safetensors and no model.safetensors.index.json", dir);
    }

    atomic_file af;
    hid_t f = -1;
    if (!rc) { /* temporaries of this file left by an import that died (kill -9, node failure) */
        int nstale = 0;
        if (atomic_cleanup_stale(out, &nstale)) log_warn("%s", err_msg());
        else if (nstale) log_info("removed %d temporary file%s of %s left by an import that died", nstale,
                                  nstale > 1 ? "s" : "", out);
        err_clear();
    }
    if (!rc) rc = atomic_begin(&af, out);
    int begun = !rc;
    if (begun) intr_guard(af.tmp, out);
    if (!rc && (rc = h5x_create(af.tmp, &f))) err_push("writing %s", out);
    if (!rc && (rc = write_config_attrs(f, &cfg, o, dir))) err_push("writing %s", out);
    if (!rc) rc = write_sources(f, dir);
    progress pg;
    progress_begin(&pg, "import-model: tensors", (uint64_t)np);
    if (!o->progress) pg.tty = 0;
    import_ctx ic = {f, &cfg, o, ps, &pg, 0, out};
    for (int s = 0; !rc && s < nshards; s++) {
        if (ix) fs_join(single, sizeof single, dir, st_index_shard_at(ix, s));
        rc = llava_shard_visit(&cfg, single, ps, np, seen, import_one, &ic);
    }
    for (int i = 0; !rc && i < np; i++)
        if (!seen[i]) rc = err_set(ERR_DATA, "%s: tensor %s is missing from the checkpoint", dir, ps[i].name);
    if (f >= 0 && rc) { /* the first error is the one to report, not the close of the abandoned temporary */
        char first[4096];
        snprintf(first, sizeof first, "%s", err_msg());
        h5x_close(&f);
        err_set(rc, "%s", first);
    } else if (f >= 0 && h5x_close(&f)) {
        rc = err_push("writing %s", out);
    }
    if (!rc) rc = chash_record(af.tmp, NULL); /* content_hash: checked by train / resume / eval */
    if (!rc) rc = atomic_commit(&af);
    else if (begun) atomic_abort(&af);
    if (begun) intr_release();
    if (!rc && o->progress) progress_end(&pg);
    st_index_close(ix);
    free(seen);
    free(ps);
    free(w.vis);
    free(w.dec);
    return rc;
}

int mh5_read_blob(const char *path, const char *name, char **buf, size_t *n) {
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    int ndim;
    int64_t dims[H5X_MAX_DIMS];
    void *data = NULL;
    rc = h5x_read_alloc(f, name, H5X_U8, &ndim, dims, &data);
    h5x_close(&f);
    if (rc) return rc;
    *n = (size_t)dims[0];
    *buf = mem_realloc(data, *n + 1, name);
    (*buf)[*n] = '\0';
    return ERR_OK;
}

static int load_param(hid_t f, const char *file, llava_param *p, float *dst, lin_w *lin, uint8_t **qcur) {
    char path[200], sub[256];
    snprintf(path, sizeof path, "params/%s", p->name);
    if (!h5x_exists(f, path)) return err_set(ERR_DATA, "%s: /%s: missing", file, path);
    if (h5x_attr_exists(f, path, "quant_type")) {
        if (!lin) return err_set(ERR_DATA, "%s: /%s: quantized, but it is not a linear weight", file, path);
        int64_t nb = nf4_nblocks(p->numel, NF4_BLOCKSIZE), nb2 = nf4_nblocks(nb, NF4_BLOCKSIZE2);
        int64_t nbytes = (p->numel + 1) / 2, bs = 0, bs2 = 0, shape[4];
        int nsh = 0;
        double off = 0;
        int rc = h5x_attr_get_i64(f, path, "blocksize", &bs);
        if (!rc) rc = h5x_attr_get_i64(f, path, "blocksize2", &bs2);
        if (!rc) rc = h5x_attr_get_f64(f, path, "offset", &off);
        if (!rc) rc = h5x_attr_get_i64s(f, path, "shape", shape, 4, &nsh);
        if (rc) return rc;
        if (bs != NF4_BLOCKSIZE || bs2 != NF4_BLOCKSIZE2 || nsh != 2 || shape[0] != p->shape[0] || shape[1] != p->shape[1])
            return err_set(ERR_DATA, "%s: /%s: NF4 blocksize %lld/%lld shape [%lld,%lld], expected 64/256 [%lld,%lld]",
                           file, path, (long long)bs, (long long)bs2, (long long)shape[0], (long long)(nsh > 1 ? shape[1] : 0),
                           (long long)p->shape[0], (long long)p->shape[1]);
        uint8_t *packed = *qcur, *qabs = packed + ((nbytes + 63) & ~63LL);
        float *absmax2 = (float *)(qabs + ((nb + 63) & ~63LL));
        *qcur = (uint8_t *)(absmax2 + ((nb2 + 15) & ~15LL));
        snprintf(sub, sizeof sub, "%s/packed", path);
        if ((rc = h5x_read(f, sub, H5X_U8, 1, &nbytes, packed))) return rc;
        snprintf(sub, sizeof sub, "%s/qabsmax", path);
        if ((rc = h5x_read(f, sub, H5X_U8, 1, &nb, qabs))) return rc;
        snprintf(sub, sizeof sub, "%s/absmax2", path);
        if ((rc = h5x_read(f, sub, H5X_F32, 1, &nb2, absmax2))) return rc;
        lin->dtype = DT_NF4;
        lin->w = packed;
        lin->qabsmax = qabs;
        lin->absmax2 = absmax2;
        lin->offset = (float)off;
        return ERR_OK;
    }
    h5x_dsinfo info;
    int rc = h5x_info(f, path, &info);
    if (rc) return rc;
    if (info.dtype == H5X_F32) return h5x_read(f, path, H5X_F32, p->ndim, p->shape, dst);
    if (info.dtype != H5X_BF16) return err_set(ERR_DATA, "%s: /%s: dtype %s, expected float32 or bfloat16", file, path, h5x_dtype_name(info.dtype));
    uint16_t *bits = mem_alloc(sizeof(uint16_t) * (size_t)(p->numel ? p->numel : 1), p->name);
    rc = h5x_read(f, path, H5X_BF16, p->ndim, p->shape, bits);
    if (!rc) h5x_bf16_to_f32_n(bits, dst, (size_t)p->numel);
    free(bits);
    return rc;
}

/* the linear whose weight slot is p->slot, if p is a linear weight */
static lin_w *lin_of(const llava_param *p) {
    if (!p->is_linear) return NULL;
    return (lin_w *)((char *)p->slot - offsetof(lin_w, w));
}

/* check format/version and parse /source/config.json of an open model.h5 */
static int read_config(hid_t f, const char *path, llava_config *cfg) {
    char *fmt = NULL;
    int64_t ver = 0;
    int rc = h5x_attr_get_str(f, ".", "format", &fmt);
    if (rc || strcmp(fmt, MH5_FORMAT))
        rc = err_set(ERR_DATA, "%s: not an orpo-hpc model file (attribute format = %s, expected %s)", path,
                     fmt ? fmt : "missing", MH5_FORMAT);
    free(fmt);
    if (!rc) rc = h5x_attr_get_i64(f, ".", "format_version", &ver);
    if (!rc && ver != MH5_VERSION)
        rc = err_set(ERR_DATA, "%s: model format version %lld, this orpo-hpc reads version %d", path, (long long)ver,
                     MH5_VERSION);
    if (rc) return rc;
    int ndim;
    int64_t dims[H5X_MAX_DIMS];
    void *data = NULL;
    rc = h5x_read_alloc(f, "source/config.json", H5X_U8, &ndim, dims, &data);
    if (!rc) {
        char label[4200];
        snprintf(label, sizeof label, "%s:/source/config.json", path);
        rc = llava_config_from_json(label, data, (size_t)dims[0], cfg);
    }
    free(data);
    return rc;
}

int mh5_read_config(const char *path, llava_config *cfg) {
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    rc = read_config(f, path, cfg);
    int crc = h5x_close(&f);
    return rc ? rc : crc;
}

int mh5_load(const char *path, llava_model *m) {
    memset(m, 0, sizeof *m);
    hid_t f;
    int rc = h5x_open(path, 0, &f);
    if (rc) return rc;
    rc = read_config(f, path, &m->cfg);
    if (rc) {
        h5x_close(&f);
        return rc;
    }
    llava_param *ps = NULL;
    int np = 0;
    if ((rc = llava_model_setup(m, &ps, &np))) {
        h5x_close(&f);
        return rc;
    }
    /* first pass: which linears are NF4 on disk; they get no fp32 space */
    char *quant = mem_calloc((size_t)(np > 0 ? np : 1), 1, "model parameter list");
    size_t qtotal = 0;
    for (int i = 0; i < np; i++) {
        char path_i[200];
        snprintf(path_i, sizeof path_i, "params/%s", ps[i].name);
        quant[i] = ps[i].is_linear && h5x_exists(f, path_i) && h5x_attr_exists(f, path_i, "quant_type") == 1;
        if (!quant[i]) continue;
        qtotal += ls_nf4_bytes(ps[i].numel); /* the size table's number (llava_size.c) */
    }
    llava_model_arena(m, ps, np, quant);
    m->qarena = mem_calloc(qtotal ? qtotal : 1, 1, "model weights (NF4)");
    m->qbytes = qtotal;
    uint8_t *qcur = m->qarena;
    for (int i = 0; !rc && i < np; i++)
        rc = load_param(f, path, &ps[i], quant[i] ? NULL : (float *)*ps[i].slot, lin_of(&ps[i]), &qcur);
    free(quant);
    free(ps);
    int crc = h5x_close(&f);
    if (!rc) rc = crc;
    if (rc) llava_model_free(m);
    return rc;
}

/* The tokenizer of a model from the bytes of its tokenizer.json (is_json) or tokenizer.model: loaded fully, a
 * SentencePiece model given <image>/<pad> as llava-hf adds them, and checked against the config
 * (imp_check_tokenizer). Errors are ERR_DATA (ERR_INTERNAL for out of memory) and start with label. */
static int model_tokenizer(const char *label, const char *buf, size_t n, int is_json, const llava_config *cfg,
                           tok **out) {
    tok *t = NULL;
    *out = NULL;
    int rc = tok_load_from_memory(buf, n, label, &t);
    if (!rc && !is_json) { /* a SentencePiece model has no <image>/<pad>: llava-hf adds them as special tokens */
        if (tok_piece_id(t, "<image>", 7) < 0) rc = tok_add_special(t, "<image>", cfg->image_token);
        if (!rc && cfg->pad_token >= 0 && tok_piece_id(t, "<pad>", 5) < 0)
            rc = tok_add_special(t, "<pad>", cfg->pad_token);
        if (rc) {
            err_push("%s", label);
            rc = err_recode(ERR_DATA);
        }
    }
    if (!rc) rc = imp_check_tokenizer(label, cfg->vocab, cfg->image_token, t);
    if (rc) {
        if (err_code() != ERR_INTERNAL) err_recode(ERR_DATA); /* whatever the tokenizer says, the file is bad */
        tok_free(t);
        return err_code();
    }
    *out = t;
    return ERR_OK;
}

/* import-model: the directory's tokenizer (tokenizer.json preferred, as mh5_data_ref reads it back), loaded and
 * checked now, so that a truncated or mismatched file stops the import instead of a later import-data. A
 * directory without a tokenizer imports (a model for the forward tests), with a warning. */
static int check_source_tokenizer(const char *dir, const llava_config *cfg) {
    char path[4096];
    int is_json = 1;
    if (fs_join(path, sizeof path, dir, "tokenizer.json")) return err_code();
    if (!fs_exists(path)) {
        is_json = 0;
        if (fs_join(path, sizeof path, dir, "tokenizer.model")) return err_code();
        if (!fs_exists(path)) {
            log_warn("%s: no tokenizer.json or tokenizer.model: the model imports, but import-data will refuse it", dir);
            return ERR_OK;
        }
    }
    char *buf = NULL;
    size_t n = 0;
    int rc = fs_read_all(path, &buf, &n);
    tok *t = NULL;
    if (!rc) rc = model_tokenizer(path, buf, n, is_json, cfg, &t);
    free(buf);
    tok_free(t);
    if (rc) err_push("import-model: the tokenizer cannot be used; nothing written");
    return rc;
}

/* The data layer's view of a model: configuration bits and the tokenizer stored in model.h5 (tokenizer.json
 * preferred; a tokenizer.model gets <image>/<pad> as llava-hf adds them), checked with imp_check_tokenizer. */
int mh5_data_ref(const char *model_h5, ds_model_ref *ref, tok **tok_out) {
    llava_config cfg;
    memset(ref, 0, sizeof *ref);
    *tok_out = NULL;
    int rc = mh5_read_config(model_h5, &cfg);
    if (rc) return rc;
    hid_t f;
    if ((rc = h5x_open(model_h5, 0, &f))) return rc;
    int has_json = h5x_exists(f, "source/tokenizer.json"), has_model = h5x_exists(f, "source/tokenizer.model");
    h5x_close(&f);
    if (!has_json && !has_model)
        return err_set(ERR_DATA,
                       "%s: holds no tokenizer (/source/tokenizer.json or /source/tokenizer.model): import the model "
                       "from a directory that has the tokenizer files",
                       model_h5);
    const char *name = has_json ? "source/tokenizer.json" : "source/tokenizer.model";
    char *buf = NULL, label[1200];
    size_t n = 0;
    snprintf(label, sizeof label, "%s:/%s", model_h5, name);
    if ((rc = mh5_read_blob(model_h5, name, &buf, &n))) return rc;
    tok *t = NULL;
    rc = model_tokenizer(label, buf, n, has_json, &cfg, &t);
    free(buf);
    if (rc) return rc;
    ref->tok_hash = tok_hash(t);
    snprintf(ref->tok_kind, sizeof ref->tok_kind, "%s", tok_kind(t));
    ref->vocab = cfg.vocab;
    ref->image_token = cfg.image_token;
    ref->bos = tok_bos_id(t);
    ref->eos = tok_eos_id(t);
    ref->anyres = cfg.anyres;
    *tok_out = t;
    return ERR_OK;
}

