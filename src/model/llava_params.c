#include "model/llava_params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "io/safetensors.h"
#include "model/llava_size.h"

static int starts(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* dst = a + b, truncated to n - 1 bytes (names are far shorter than the buffers) */
static void join(char *dst, size_t n, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > n - 1) la = n - 1;
    if (lb > n - 1 - la) lb = n - 1 - la;
    memcpy(dst, a, la);
    memcpy(dst + la, b, lb);
    dst[la + lb] = '\0';
}

int llava_canonical_name(const char *name, char *out, size_t n) {
    const char *s = name;
    char tmp[256];
    /* original liuhaotian layout */
    if (starts(s, "model.vision_tower.vision_tower.")) {
        snprintf(out, n, "vision_tower.%s", s + strlen("model.vision_tower.vision_tower."));
        return 1;
    }
    if (starts(s, "model.mm_projector.0.")) {
        snprintf(out, n, "multi_modal_projector.linear_1.%s", s + strlen("model.mm_projector.0."));
        return 1;
    }
    if (starts(s, "model.mm_projector.2.")) {
        snprintf(out, n, "multi_modal_projector.linear_2.%s", s + strlen("model.mm_projector.2."));
        return 1;
    }
    /* transformers 5: model.<submodule>.* */
    if (starts(s, "model.language_model.") || starts(s, "model.vision_tower.") ||
        starts(s, "model.multi_modal_projector.") || !strcmp(s, "model.image_newline"))
        s += strlen("model.");
    else if (starts(s, "model.embed_tokens.") || starts(s, "model.layers.") || starts(s, "model.norm.")) {
        snprintf(tmp, sizeof tmp, "language_model.%s", s); /* liuhaotian decoder */
        snprintf(out, n, "%s", tmp);
        return 1;
    }
    if (starts(s, "lm_head.")) {
        snprintf(out, n, "language_model.%s", s);
        return 1;
    }
    if (starts(s, "language_model.")) {
        const char *rest = s + strlen("language_model.");
        if (starts(rest, "model.") || starts(rest, "lm_head.")) snprintf(out, n, "%s", s);
        else snprintf(out, n, "language_model.model.%s", rest);
        return 1;
    }
    if (starts(s, "vision_tower.")) {
        const char *rest = s + strlen("vision_tower.");
        if (starts(rest, "vision_model.")) snprintf(out, n, "%s", s);
        else snprintf(out, n, "vision_tower.vision_model.%s", rest);
        return 1;
    }
    if (starts(s, "multi_modal_projector.") || !strcmp(s, "image_newline")) {
        snprintf(out, n, "%s", s);
        return 1;
    }
    return 0;
}

typedef struct plist {
    llava_param *p;
    int n, cap;
} plist;

static void add(plist *l, const char *name, const void **slot, int is_linear, int is_decoder, int ndim, int64_t d0,
                int64_t d1, int64_t d2, int64_t d3) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->p = mem_realloc(l->p, sizeof *l->p * (size_t)l->cap, "model parameter list");
    }
    llava_param *p = &l->p[l->n++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = d[i];
        p->numel *= d[i];
    }
    p->slot = slot;
    p->is_linear = is_linear;
    p->is_decoder = is_decoder;
}

static void add_lin(plist *l, const char *prefix, lin_w *w, int64_t out, int64_t in, int bias, int is_decoder) {
    char name[128];
    w->dtype = 0; /* DT_F32 */
    w->out = out;
    w->in = in;
    join(name, sizeof name, prefix, ".weight");
    add(l, name, &w->w, 1, is_decoder, 2, out, in, 0, 0);
    if (bias) {
        join(name, sizeof name, prefix, ".bias");
        add(l, name, (const void **)&w->b, 0, is_decoder, 1, out, 0, 0, 0);
    }
}

int llava_params_build(const llava_config *c, llava_weights *w, llava_param **list, int *n) {
    plist l = {NULL, 0, 0};
    const int64_t Dv = c->v_hidden, g = c->v_image / c->v_patch, D = c->t_hidden;
    const int64_t Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    char p[128];
    const char *V = "vision_tower.vision_model.";
    join(p, sizeof p, V, "embeddings.patch_embedding.weight");
    add(&l, p, (const void **)&w->patch_w, 0, 0, 4, Dv, 3, c->v_patch, c->v_patch);
    join(p, sizeof p, V, "embeddings.class_embedding");
    add(&l, p, (const void **)&w->cls, 0, 0, 1, Dv, 0, 0, 0);
    join(p, sizeof p, V, "embeddings.position_embedding.weight");
    add(&l, p, (const void **)&w->pos, 0, 0, 2, g * g + 1, Dv, 0, 0);
    join(p, sizeof p, V, "pre_layrnorm.weight");
    add(&l, p, (const void **)&w->pre_ln_w, 0, 0, 1, Dv, 0, 0, 0);
    join(p, sizeof p, V, "pre_layrnorm.bias");
    add(&l, p, (const void **)&w->pre_ln_b, 0, 0, 1, Dv, 0, 0, 0);
    for (int i = 0; i < c->v_run_layers; i++) {
        vis_layer *ly = &w->vis[i];
        char b[128];
        snprintf(b, sizeof b, "%sencoder.layers.%d.", V, i);
        join(p, sizeof p, b, "layer_norm1.weight"); add(&l, p, (const void **)&ly->ln1_w, 0, 0, 1, Dv, 0, 0, 0);
        join(p, sizeof p, b, "layer_norm1.bias");   add(&l, p, (const void **)&ly->ln1_b, 0, 0, 1, Dv, 0, 0, 0);
        join(p, sizeof p, b, "layer_norm2.weight"); add(&l, p, (const void **)&ly->ln2_w, 0, 0, 1, Dv, 0, 0, 0);
        join(p, sizeof p, b, "layer_norm2.bias");   add(&l, p, (const void **)&ly->ln2_b, 0, 0, 1, Dv, 0, 0, 0);
        join(p, sizeof p, b, "self_attn.q_proj");   add_lin(&l, p, &ly->q, Dv, Dv, 1, 0);
        join(p, sizeof p, b, "self_attn.k_proj");   add_lin(&l, p, &ly->k, Dv, Dv, 1, 0);
        join(p, sizeof p, b, "self_attn.v_proj");   add_lin(&l, p, &ly->v, Dv, Dv, 1, 0);
        join(p, sizeof p, b, "self_attn.out_proj"); add_lin(&l, p, &ly->o, Dv, Dv, 1, 0);
        join(p, sizeof p, b, "mlp.fc1");            add_lin(&l, p, &ly->fc1, c->v_inter, Dv, 1, 0);
        join(p, sizeof p, b, "mlp.fc2");            add_lin(&l, p, &ly->fc2, Dv, c->v_inter, 1, 0);
    }
    add_lin(&l, "multi_modal_projector.linear_1", &w->proj1, D, Dv, c->proj_bias, 0);
    add_lin(&l, "multi_modal_projector.linear_2", &w->proj2, D, D, c->proj_bias, 0);
    add(&l, "image_newline", (const void **)&w->newline, 0, 0, 1, D, 0, 0, 0);
    add(&l, "language_model.model.embed_tokens.weight", (const void **)&w->embed, 0, 0, 2, c->vocab, D, 0, 0);
    for (int i = 0; i < c->t_layers; i++) {
        dec_layer *ly = &w->dec[i];
        char b[128];
        snprintf(b, sizeof b, "language_model.model.layers.%d.", i);
        join(p, sizeof p, b, "input_layernorm.weight");
        add(&l, p, (const void **)&ly->in_norm, 0, 1, 1, D, 0, 0, 0);
        join(p, sizeof p, b, "post_attention_layernorm.weight");
        add(&l, p, (const void **)&ly->post_norm, 0, 1, 1, D, 0, 0, 0);
        join(p, sizeof p, b, "self_attn.q_proj"); add_lin(&l, p, &ly->q, Q, D, 0, 1);
        join(p, sizeof p, b, "self_attn.k_proj"); add_lin(&l, p, &ly->k, KV, D, 0, 1);
        join(p, sizeof p, b, "self_attn.v_proj"); add_lin(&l, p, &ly->v, KV, D, 0, 1);
        join(p, sizeof p, b, "self_attn.o_proj"); add_lin(&l, p, &ly->o, D, Q, 0, 1);
        join(p, sizeof p, b, "mlp.gate_proj");    add_lin(&l, p, &ly->gate, c->t_inter, D, 0, 1);
        join(p, sizeof p, b, "mlp.up_proj");      add_lin(&l, p, &ly->up, c->t_inter, D, 0, 1);
        join(p, sizeof p, b, "mlp.down_proj");    add_lin(&l, p, &ly->down, D, c->t_inter, 0, 1);
    }
    add(&l, "language_model.model.norm.weight", (const void **)&w->norm, 0, 0, 1, D, 0, 0, 0);
    add_lin(&l, "language_model.lm_head", &w->lm_head, c->vocab, D, 0, 0);
    *list = l.p;
    *n = l.n;
    return ERR_OK;
}

static int is_vocab_param(const llava_param *p) {
    return !strcmp(p->name, "language_model.model.embed_tokens.weight") || !strcmp(p->name, "language_model.lm_head.weight");
}

int llava_match_tensor(const llava_config *cfg, const llava_param *p, const st_tensor *t, const char *file) {
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++)
        same = t->shape[d] == p->shape[d] || (d == 0 && is_vocab_param(p) && t->shape[0] == cfg->src_vocab);
    if (same) return ERR_OK;
    char got[96] = "", want[96] = "";
    for (int d = 0; d < t->ndim; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
    for (int d = 0; d < p->ndim; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)p->shape[d]);
    return err_set(ERR_DATA, "%s: tensor %s: shape [%s], expected [%s] from config.json", file, t->name, got, want);
}

int llava_read_tensor(const llava_config *cfg, const st_file *f, const st_tensor *t, const llava_param *p, float *dst) {
    (void)cfg;
    int rc = st_to_f32(f, t, dst);
    if (rc || t->shape[0] == p->shape[0] || p->ndim != 2) return rc;
    /* rows the source lacks (tokens added on import): the mean of the source rows */
    int64_t have = t->shape[0], rows = p->shape[0], D = p->shape[1];
    for (int64_t j = 0; j < D; j++) {
        double s = 0;
        for (int64_t r = 0; r < have; r++) s += dst[r * D + j];
        for (int64_t r = have; r < rows; r++) dst[r * D + j] = (float)(s / (double)(have ? have : 1));
    }
    return ERR_OK;
}

static int find_param(const llava_param *ps, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ps[i].name, name)) return i;
    return -1;
}

int llava_shard_visit(const llava_config *cfg, const char *path, llava_param *ps, int np, char *seen,
                      llava_visit_fn visit, void *ctx) {
    st_file *f = NULL;
    int rc = st_open(path, &f);
    if (rc) return rc;
    for (int i = 0; i < st_count(f) && !rc; i++) {
        const st_tensor *t = st_at(f, i);
        char canon[256];
        if (!llava_canonical_name(t->name, canon, sizeof canon)) continue;
        int k = find_param(ps, np, canon);
        if (k < 0) continue; /* unused: post_layernorm, vision layers past the selected one, ... */
        if ((rc = llava_match_tensor(cfg, &ps[k], t, path))) break;
        if (seen[k]) {
            rc = err_set(ERR_DATA, "%s: tensor %s: a second copy of %s in the checkpoint", path, t->name, canon);
            break;
        }
        if ((rc = visit(ctx, f, t, k))) break;
        seen[k] = 1;
    }
    st_close(f);
    return rc;
}

int llava_model_setup(llava_model *m, llava_param **ps, int *np) {
    m->vis = mem_calloc((size_t)m->cfg.v_run_layers, sizeof *m->vis, "vision layers");
    m->dec = mem_calloc((size_t)m->cfg.t_layers, sizeof *m->dec, "decoder layers");
    m->w.vis = m->vis;
    m->w.dec = m->dec;
    llava_params_build(&m->cfg, &m->w, ps, np);
    if (*np > 0) return ERR_OK;
    free(*ps);
    *ps = NULL;
    llava_model_free(m);
    return err_set(ERR_INTERNAL, "llava: empty parameter list");
}

void llava_model_arena(llava_model *m, llava_param *ps, int np, const char *skip) {
    size_t total = 0;
    for (int i = 0; i < np; i++)
        if (!skip || !skip[i]) total += (size_t)ps[i].numel;
    m->arena = mem_calloc(total ? total : 1, sizeof(float), "model weights (fp32)");
    m->arena_floats = total;
    size_t off = 0;
    for (int i = 0; i < np; i++)
        if (!skip || !skip[i]) {
            *ps[i].slot = m->arena + off;
            off += (size_t)ps[i].numel;
        }
}

typedef struct load_ctx {
    const llava_config *cfg;
    llava_param *ps;
} load_ctx;

static int load_one(void *ctx, const st_file *f, const st_tensor *t, int k) {
    load_ctx *c = ctx;
    return llava_read_tensor(c->cfg, f, t, &c->ps[k], (float *)*c->ps[k].slot);
}

static int load_shard(const llava_config *cfg, const char *path, llava_param *ps, int np, char *seen) {
    load_ctx c = {cfg, ps};
    return llava_shard_visit(cfg, path, ps, np, seen, load_one, &c);
}

int llava_model_load_hf(const char *dir, llava_model *m) {
    memset(m, 0, sizeof *m);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = llava_config_from_hf(path, &m->cfg);
    if (rc) return rc;
    llava_param *ps = NULL;
    int np = 0;
    if ((rc = llava_model_setup(m, &ps, &np))) return rc;
    llava_model_arena(m, ps, np, NULL);
    char *seen = mem_calloc((size_t)np, 1, "model parameter list");
    /* sharded (index) or single file */
    struct stat sb;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (stat(path, &sb) == 0) {
        st_index *ix = NULL;
        rc = st_index_open(path, &ix);
        for (int s = 0; !rc && s < st_index_nshards(ix); s++) {
            char shard[4096];
            snprintf(shard, sizeof shard, "%s/%s", dir, st_index_shard_at(ix, s));
            rc = load_shard(&m->cfg, shard, ps, np, seen);
        }
        st_index_close(ix);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (stat(path, &sb) != 0)
            rc = err_set(ERR_DATA, "%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
        else
            rc = load_shard(&m->cfg, path, ps, np, seen);
    }
    for (int i = 0; !rc && i < np; i++)
        if (!seen[i]) rc = err_set(ERR_DATA, "%s: tensor %s is missing from the checkpoint", dir, ps[i].name);
    free(seen);
    free(ps);
    if (rc) llava_model_free(m);
    return rc;
}

void llava_model_free(llava_model *m) {
    free(m->arena);
    free(m->qarena);
    free(m->vis);
    free(m->dec);
    memset(m, 0, sizeof *m);
}

size_t llava_model_tower_bytes(const llava_model *m) {
    const llava_config *cfg = &m->cfg;
    llava_weights w;
    memset(&w, 0, sizeof w);
    w.vis = mem_calloc((size_t)(cfg->v_run_layers > 0 ? cfg->v_run_layers : 1), sizeof *w.vis, "tower size");
    w.dec = mem_calloc((size_t)(cfg->t_layers > 0 ? cfg->t_layers : 1), sizeof *w.dec, "tower size");
    llava_param *ps = NULL;
    int np = 0;
    size_t n = 0;
    const int nf4 = cfg->v_run_layers > 0 && m->w.vis[0].q.dtype == DT_NF4;
    if (llava_params_build(cfg, &w, &ps, &np) == ERR_OK)
        for (int i = 0; i < np; i++)
            if (!strncmp(ps[i].name, "vision_tower.", 13))
                n += ps[i].is_linear && nf4 ? ls_nf4_bytes(ps[i].numel) : sizeof(float) * (size_t)ps[i].numel;
    free(ps);
    free(w.vis);
    free(w.dec);
    return n;
}
