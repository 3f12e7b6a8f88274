/* llava_train — training forward (saving what backward needs) and the explicit backward of LLaVA-NeXT.
 * Read lt_forward and lt_backward top to bottom: they mirror each other. */
#include "model/llava_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "model/llava_size.h"
#include "model/nf4.h"
#include "backend/rng.h"

static const char *dec_module_names[LT_DEC_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                       "mlp.down_proj"};
enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN };

/* Activations have the run's activation dtype (void *: f32 on the fp32 CPU reference, bf16 in bf16 mode and on
 * CUDA); statistics saved for backward (rstd, mean, lse) are f32. Pointer arithmetic on activations goes through
 * AT(t, p, i): element i of an activation buffer. */
#define AT(t, p, i) ((void *)((char *)(p) + (size_t)(i) * (size_t)(t)->ws->es))

/* saved activations of one decoder layer */
typedef struct dec_acts {
    void *a1, *q, *k, *v, *att, *x_mid, *a2, *g, *u, *h;
    float *rstd1, *lse, *rstd2;
    void *t[LT_DEC_MODULES]; /* LoRA x A^T per module */
} dec_acts;

/* saved activations of one vision layer */
typedef struct vis_acts {
    void *a1, *q, *k, *v, *att, *h_mid, *a2, *f1, *g;
    float *mean1, *rstd1, *mean2, *rstd2, *lse;
    void *t[LT_VIS_MODULES];
} vis_acts;

static const char *vis_module_names[LT_VIS_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.out_proj", "mlp.fc1", "mlp.fc2"};
enum { V_Q, V_K, V_V, V_OUT, V_FC1, V_FC2 };

typedef struct img_inst {   /* one encoded image in the packed batch */
    int pair, P, h, w;
    int64_t sel_off;        /* first row in the per-tile feature buffers (rows of np) */
    int64_t nrows;          /* packed rows (incl. newlines) */
} img_inst;
_Static_assert(sizeof(img_inst) == 32, "llava_size.c counts img_inst as 32 bytes (host.inst)");

/* The KV cache of a generation (lt_generate): item b owns rows [start[b], start[b] + cap[b]) of every layer's K
 * and V (after RoPE), of which the first len[b] are filled. The new tokens' queries are put at the rows their keys
 * take, so that the op table's attention (attn_fwd) runs unchanged: a descriptor per new-token run whose prefix
 * descriptor (after the nseq computed ones) names the item's cached rows. Host arrays are uploaded to their device
 * copies (d_seqs, d_row) before each use. */
typedef struct lt_kv {
    int nb;
    int64_t rows;                     /* sum of cap */
    int64_t *start, *cap, *len;       /* host */
    void **K, **V;                    /* [t_layers] of [rows, kv_heads * head_dim] (device) */
    void *q, *att;                    /* [rows, heads * head_dim] (device) */
    float *lse;                       /* [rows, heads] (device) */
    seq_desc *seqs, *d_seqs;          /* [2 * nb]: runs of new tokens, then the cached rows they see */
    int nseq;
    int64_t *row, *d_row;             /* [max_tok] cache row of each new (packed) token */
    float *logits;                    /* [nb, vocab] host: the rows the next tokens are picked from */
    void *raw;                        /* [logits_chunk, vocab] host: a chunk as downloaded (bf16 runs) */
} lt_kv;

/* the packed micro-batch's index arrays: built on the host by pack(), uploaded to their device copies */
typedef struct lt_index {
    int32_t *ids, *pos;
    seq_desc *seqs;
    int64_t *img_src;                 /* per packed image row: its projector row, or -1 for image_newline */
    int64_t *img_pos;                 /* packed positions of <image> tokens, in order */
    int64_t *nn_pos, *nn_dst;         /* non-newline image rows: packed position -> projector row */
    int64_t *tok_pos, *tok_slot;      /* positions of trainable token ids and their slot in the masters */
    int64_t *row_h;                   /* target rows: the hidden row each is predicted from */
    int32_t *row_label;
    seq_desc *vseqs;                  /* vision batch: one sequence per tile */
    int64_t *vrows;                   /* vision batch: the rows of the patch tokens (CLS dropped) */
} lt_index;

struct lt_ws {
    ls_dims dims;
    ls_strategy st;
    ls_table tab;
    char *dev, *host;                 /* the two arenas (ops mem_alloc), carved from the size table */
    size_t dev_bytes, host_bytes;
    int es;                           /* bytes per activation element */
    int keep_h;                       /* the MLP product h is kept in the layer's activations (else in dH) */
    int64_t wscr_n;                   /* elements of the dequant / cast buffer */
    int vis_nadapt;                   /* adapted vision layers (vision LoRA) */
    lt_index h, d;                    /* host and device copies */
    int nseq;
    int64_t ntok;
    img_inst *inst;
    int ninst;
    int64_t n_img_pos;
    int64_t *pidx;                    /* packing index of one image (llava_pack_index) */
    int64_t n_tiles;
    int64_t n_nn, n_tok_pos;
    int32_t *row_pair;
    uint8_t *row_role;
    int64_t nrows;
    float *logp_host, *dlogp;         /* host log-probs (downloaded), device d loss / d logp (uploaded) */
    /* vision + projector */
    float *pixels;
    void *vpatch, *vhid, *vtmp;
    vis_acts fz;                      /* scratch activations of the frozen layers */
    void *sel, *h1, *g1, *pout, *pt1, *pt2, *img_rows, *newline;
    /* decoder */
    void *xin;                        /* [(L + 1) * max_tok * D]: input of every layer, then the final norm input;
                                       * host memory when offloaded */
    void *xbuf;                       /* offload: two device buffers of [max_tok * D] */
    dec_acts *acts;                   /* t_layers sets, or 1 with per-layer recompute */
    float *rstd_f;
    void *hfin;
    /* target rows */
    void *rsel, *logits, *thead;
    float *lse, *logp;
    /* backward scratch */
    void *dX, *dMid, *dA, *dQ, *dK, *dV, *dAtt, *dG, *dU, *dH, *dsel, *dP, *dG1, *dH1, *tmp;
    float *tok_rows_f32;              /* bf16 runs: gradients of the trainable embedding rows, widened */
    void *wscr, *ldt, *lxd;
    uint32_t step;
    int eval;                         /* no LoRA dropout */
    lt_kv *kv;                        /* generation: attention reads and extends this KV cache (else NULL) */
    lt_kv kvb;                        /* the cache's buffers, carved when the plan has generation (dims.gen_*) */
    void *gen_kv;                     /* [2][t_layers][G rows][kv_heads * head_dim]: K then V of every layer */
    int gen;                          /* generation: pack prompts only, one logits row per prompt */
    /* vision LoRA: the adapted layers' inputs and activations */
    int64_t vtok;                     /* tokens of the vision batch (of one image while the frozen tower runs) */
    const seq_desc *vseq_cur;         /* its sequences (device) */
    int vnseq;
    void *vxin;                       /* inputs of layers vis_first.. and the output */
    vis_acts *vacts;                  /* one per adapted layer */
    void *vdX, *vdMid, *vdA, *vdQ, *vdK, *vdV, *vdAtt, *vdF, *vdG;
    void *dvsel;                      /* d loss / d selected vision features */
    void *vfeat;                      /* host.vision_features (LS_VIS_CACHE): lt_feature_buffer */
};

/* ---- init ------------------------------------------------------------------------------------ */

void lt_spec_default(lt_spec *s) {
    memset(s, 0, sizeof *s);
    s->rank = 8;
    s->alpha = 16.0f;
    s->targets = LT_Q | LT_K | LT_V | LT_O;
    s->share_prefix = 1;
    s->nll_prompt = 1;
    s->seed = 42;
}

static lin_w *dec_lin(dec_layer *ly, int m) {
    lin_w *l[LT_DEC_MODULES] = {&ly->q, &ly->k, &ly->v, &ly->o, &ly->gate, &ly->up, &ly->down};
    return l[m];
}

/* where lt_init writes the initial value of a trainable (device) array: the host staging copy it uploads */
static float *stage_of(llava_trainer *t, const float *dev) { return t->stage + (dev - t->store); }

/* count pass (store == NULL) and fill pass */
static int64_t add_tensor(llava_trainer *t, int64_t *off, const char *name, const char *group, int64_t rows,
                          int64_t cols, float **data, float **grad) {
    int64_t n = rows * cols;
    if (t->store) {
        lt_tensor_info *ti = &t->tensors[t->ntensors++];
        snprintf(ti->name, sizeof ti->name, "%.*s", (int)sizeof ti->name - 1, name);
        ti->group = group;
        ti->data = t->store + *off;
        ti->grad = t->gstore + *off;
        ti->numel = n;
        ti->ndim = cols > 1 || rows > 1 ? 2 : 1;
        ti->shape[0] = rows;
        ti->shape[1] = cols;
        if (data) *data = ti->data;
        if (grad) *grad = ti->grad;
    } else {
        t->ntensors++;
    }
    *off += n;
    return n;
}

/* LoRA A/B of one linear, in optimiser group `group`; A gets Kaiming-uniform values from the counter RNG keyed by
 * init_id, B zeros */
static void setup_lora(llava_trainer *t, lora_ad *ad, const lin_w *lw, const char *name, const char *group,
                       uint32_t module, int64_t *off, uint32_t init_id) {
    char n[176]; /* "lora/" + a name of up to 159 bytes + "/A" */
    if (t->store) {
        ad->in = lw->in;
        ad->out = lw->out;
        ad->r = t->spec.rank;
        ad->scale = lora_scale(t->spec.alpha, t->spec.rank, t->spec.rslora);
        ad->dropout = t->spec.dropout;
        ad->module = module;
        rng_key_t k = rng_key(t->spec.seed, RNG_DROPOUT);
        ad->key[0] = k.k[0];
        ad->key[1] = k.k[1];
    }
    snprintf(n, sizeof n, "lora/%s/A", name);
    add_tensor(t, off, n, group, t->spec.rank, lw->in, &ad->A, &ad->dA);
    snprintf(n, sizeof n, "lora/%s/B", name);
    add_tensor(t, off, n, group, lw->out, t->spec.rank, &ad->B, &ad->dB);
    if (t->store) {
        rng_lora_init(t->spec.seed, init_id, RNG_INIT_KAIMING_A, ad->r, ad->in, stage_of(t, ad->A));
        ad->Aw = ad->A;  /* the weights the GEMMs read: the masters, or their activation-dtype copies */
        ad->Bw = ad->B;
        if (t->act_store) {
            ad->Aw = (char *)t->act_store + (size_t)(ad->A - t->store) * dtype_size(t->spec.act_dtype);
            ad->Bw = (char *)t->act_store + (size_t)(ad->B - t->store) * dtype_size(t->spec.act_dtype);
        }
    }
}

static int popcount(unsigned x) {
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

/* Walk every trainable tensor; called twice (count, then fill).
 *
 * The tensors of one optimiser group are laid out together, whatever the targets (the trainer builds one AdamW
 * group per run of tensors of the same group; docs/jobs.md, train.lr_groups):
 *   lora              LoRA of the decoder linears, then of lm_head
 *   vision_lora       LoRA of the vision tower's linears (vision:* targets)
 *   mm_projector      LoRA of the two projector linears, or the projector's weights and biases (full_modules)
 *   token_embeddings  the trainable embedding rows
 * The LoRA A initialisation is keyed by the adapter's number in a fixed order (decoder, vision, projector,
 * lm_head), independent of this layout. */
static void layout(llava_trainer *t) {
    llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    int64_t off = 0;
    t->ntensors = 0;
    char name[160];
    const int proj_lora = (t->spec.targets & LT_PROJ) && !t->spec.full_projector;
    const uint32_t n_dec = (uint32_t)(c->t_layers * popcount(t->spec.targets & ((1u << LT_DEC_MODULES) - 1)));
    const uint32_t n_vis = (uint32_t)((c->v_run_layers - t->vis_first) * popcount(t->spec.vision_targets));
    const uint32_t id_proj = n_dec + n_vis, id_head = id_proj + (proj_lora ? 2 : 0);
    uint32_t id = 0;
    /* group lora */
    for (int l = 0; l < c->t_layers; l++)
        for (int mi = 0; mi < LT_DEC_MODULES; mi++) {
            if (!(t->spec.targets & (1u << mi))) continue;
            snprintf(name, sizeof name, "language_model.model.layers.%d.%s", l, dec_module_names[mi]);
            setup_lora(t, &t->dec[l * LT_DEC_MODULES + mi], dec_lin(&w->dec[l], mi), name, "lora",
                       (uint32_t)(l * 64 + mi), &off, id++);
        }
    if (t->spec.targets & LT_LM_HEAD)
        setup_lora(t, &t->head, &w->lm_head, "language_model.lm_head", "lora", 61 * 64, &off, id_head);
    /* group vision_lora */
    for (int l = t->vis_first; l < c->v_run_layers; l++) {
        vis_layer *vl = &w->vis[l];
        lin_w *vlin[LT_VIS_MODULES] = {&vl->q, &vl->k, &vl->v, &vl->o, &vl->fc1, &vl->fc2};
        for (int mi = 0; mi < LT_VIS_MODULES; mi++) {
            if (!(t->spec.vision_targets & (1u << mi))) continue;
            snprintf(name, sizeof name, "vision_tower.vision_model.encoder.layers.%d.%s", l, vis_module_names[mi]);
            setup_lora(t, &t->vis[l * LT_VIS_MODULES + mi], vlin[mi], name, "vision_lora",
                       (uint32_t)((1000 + l) * 64 + mi), &off, id++);
        }
    }
    /* group mm_projector */
    if (proj_lora) {
        setup_lora(t, &t->proj[0], &w->proj1, "multi_modal_projector.linear_1", "mm_projector", 60 * 64 + 0, &off,
                   id_proj);
        setup_lora(t, &t->proj[1], &w->proj2, "multi_modal_projector.linear_2", "mm_projector", 60 * 64 + 1, &off,
                   id_proj + 1);
    }
    if (t->spec.full_projector) {
        const lin_w *p1 = &w->proj1, *p2 = &w->proj2;
        add_tensor(t, &off, "multi_modal_projector.linear_1.weight", "mm_projector", p1->out, p1->in,
                   &t->proj_master[0], &t->proj_grad[0]);
        add_tensor(t, &off, "multi_modal_projector.linear_1.bias", "mm_projector", p1->out, 1, &t->proj_master[1],
                   &t->proj_grad[1]);
        add_tensor(t, &off, "multi_modal_projector.linear_2.weight", "mm_projector", p2->out, p2->in,
                   &t->proj_master[2], &t->proj_grad[2]);
        add_tensor(t, &off, "multi_modal_projector.linear_2.bias", "mm_projector", p2->out, 1, &t->proj_master[3],
                   &t->proj_grad[3]);
        if (t->store) {
            memcpy(stage_of(t, t->proj_master[0]), p1->w, sizeof(float) * (size_t)(p1->out * p1->in));
            memcpy(stage_of(t, t->proj_master[1]), p1->b, sizeof(float) * (size_t)p1->out);
            memcpy(stage_of(t, t->proj_master[2]), p2->w, sizeof(float) * (size_t)(p2->out * p2->in));
            memcpy(stage_of(t, t->proj_master[3]), p2->b, sizeof(float) * (size_t)p2->out);
            /* the model now reads the trainable masters (lt_free puts its own arrays back) */
            t->proj_orig[0] = w->proj1.w;
            t->proj_orig[1] = w->proj1.b;
            t->proj_orig[2] = w->proj2.w;
            t->proj_orig[3] = w->proj2.b;
            w->proj1.w = t->proj_master[0];
            w->proj1.b = t->proj_master[1];
            w->proj2.w = t->proj_master[2];
            w->proj2.b = t->proj_master[3];
        }
    }
    if (t->n_tok_rows) {
        add_tensor(t, &off, "language_model.model.embed_tokens.trainable_rows", "token_embeddings", t->n_tok_rows,
                   c->t_hidden, &t->tok_rows, &t->tok_grad);
        if (t->store)
            for (int i = 0; i < t->n_tok_rows; i++)
                memcpy(stage_of(t, t->tok_rows) + (int64_t)i * c->t_hidden, w->embed + (int64_t)t->tok_ids[i] * c->t_hidden,
                       sizeof(float) * (size_t)c->t_hidden);
    }
    t->nstore = off;
}

/* ---- the frozen weights on a device ----------------------------------------------------------- */

/* the device copy being laid out (base NULL: counting) */
typedef struct wup {
    llava_trainer *t;
    char *base;
    size_t used;
} wup;

/* n bytes of host array *p: room counted, or uploaded and *p pointed at the copy */
static void up_bytes(wup *u, const void **p, size_t n) {
    if (!*p || !n) return;
    const size_t at = u->used;
    u->used += (n + 63) & ~(size_t)63;
    if (!u->base) return;
    u->t->o->upload(&u->t->ctx, u->base + at, *p, n);
    *p = u->base + at;
}

static void up_f32(wup *u, const float **p, int64_t n) { up_bytes(u, (const void **)p, sizeof(float) * (size_t)n); }

/* a linear: NF4 as loaded (nibbles, 8-bit absmax, fp32 absmax2); an fp32 weight in the activation dtype of a bf16
 * run (rounded once to nearest even, what lin_weight's cast before every GEMM gives), so that its GEMMs read it in
 * place; the bias fp32 */
static void up_lin(wup *u, lin_w *l) {
    const int64_t n = l->out * l->in;
    const int act = u->t->spec.act_dtype;
    if (l->dtype == DT_NF4) {
        const int64_t nb = nf4_nblocks(n, NF4_BLOCKSIZE);
        up_bytes(u, &l->w, (size_t)((n + 1) / 2));
        up_bytes(u, (const void **)&l->qabsmax, (size_t)nb);
        up_f32(u, &l->absmax2, nf4_nblocks(nb, NF4_BLOCKSIZE2));
    } else if (l->dtype == DT_F32 && act != DT_F32 && l->w) {
        const size_t bytes = dtype_size(act) * (size_t)n;
        const size_t at = u->used;
        u->used += (bytes + 63) & ~(size_t)63;
        if (u->base) {
            void *tmp = mem_alloc(bytes ? bytes : 1, "a linear weight in the activation dtype (upload)");
            opctx host = {.device = DEVICE_CPU, .act_dtype = act, .threads = 1};
            ops_cpu()->cast(&host, tmp, act, l->w, DT_F32, n);
            u->t->o->upload(&u->t->ctx, u->base + at, tmp, bytes);
            free(tmp);
            l->w = u->base + at;
            l->dtype = act;
        }
    } else {
        up_bytes(u, &l->w, dtype_size(l->dtype) * (size_t)n);
    }
    up_f32(u, &l->b, l->out);
}

/* the decoder, projector (unless it is trained: its arrays are then the trainable masters), image_newline, final
 * norm and lm_head */
static void walk_main(wup *u) {
    llava_trainer *t = u->t;
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    const int64_t D = c->t_hidden;
    if (!t->spec.full_projector) {
        up_lin(u, &w->proj1);
        up_lin(u, &w->proj2);
    }
    up_f32(u, &w->newline, D); /* (the embedding table: weights_to_device, pinned host memory) */
    for (int l = 0; l < c->t_layers; l++) {
        dec_layer *ly = &w->dec[l];
        up_f32(u, &ly->in_norm, D);
        up_f32(u, &ly->post_norm, D);
        for (int mi = 0; mi < LT_DEC_MODULES; mi++) up_lin(u, dec_lin(ly, mi));
    }
    up_f32(u, &w->norm, D);
    up_lin(u, &w->lm_head);
}

/* the vision tower's embeddings, pre-norm and the layers that run */
static void walk_vis(wup *u) {
    const llava_config *c = &u->t->m->cfg;
    llava_weights *w = &u->t->m->w;
    const int64_t Dv = c->v_hidden, g = c->v_image / c->v_patch;
    up_f32(u, &w->patch_w, Dv * 3 * c->v_patch * c->v_patch);
    up_f32(u, &w->cls, Dv);
    up_f32(u, &w->pos, (g * g + 1) * Dv);
    up_f32(u, &w->pre_ln_w, Dv);
    up_f32(u, &w->pre_ln_b, Dv);
    for (int l = 0; l < c->v_run_layers; l++) {
        vis_layer *ly = &w->vis[l];
        up_f32(u, &ly->ln1_w, Dv);
        up_f32(u, &ly->ln1_b, Dv);
        up_f32(u, &ly->ln2_w, Dv);
        up_f32(u, &ly->ln2_b, Dv);
        lin_w *lins[] = {&ly->q, &ly->k, &ly->v, &ly->o, &ly->fc1, &ly->fc2};
        for (int i = 0; i < LT_VIS_MODULES; i++) up_lin(u, lins[i]);
    }
}

/* one device arena for what walk visits, filled; *arena its base */
static int upload_weights(llava_trainer *t, void (*walk)(wup *), void **arena, const char *what) {
    wup u = {t, NULL, 0};
    walk(&u);
    u.base = t->o->mem_alloc(&t->ctx, u.used ? u.used : 64, MEM_DEVICE, what);
    int rc = t->o->sync(&t->ctx);
    if (rc) return rc;
    *arena = u.base;
    u.used = 0;
    walk(&u);
    return t->o->sync(&t->ctx);
}

/* the model's own vision-tower pointers back, the tower's device copy freed */
static void release_tower(llava_trainer *t) {
    if (!t->wvis) return;
    llava_weights *w = &t->m->w;
    const llava_weights *h = &t->host_w;
    w->patch_w = h->patch_w;
    w->cls = h->cls;
    w->pos = h->pos;
    w->pre_ln_w = h->pre_ln_w;
    w->pre_ln_b = h->pre_ln_b;
    memcpy(w->vis, t->host_vis, sizeof *w->vis * (size_t)t->m->cfg.v_run_layers);
    t->o->mem_free(&t->ctx, t->wvis, MEM_DEVICE);
    t->wvis = NULL;
}

/* a device backend: the model's own pointers saved, the weights a step reads (but the tower: lt_plan_ex, when its
 * plan runs it) uploaded */
static int weights_to_device(llava_trainer *t) {
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    t->host_w = *w;
    t->host_vis = mem_calloc((size_t)(c->v_run_layers > 0 ? c->v_run_layers : 1), sizeof *t->host_vis,
                             "the model's vision weights (host)");
    t->host_dec = mem_calloc((size_t)(c->t_layers > 0 ? c->t_layers : 1), sizeof *t->host_dec,
                             "the model's decoder weights (host)");
    if (c->v_run_layers > 0) memcpy(t->host_vis, w->vis, sizeof *w->vis * (size_t)c->v_run_layers);
    if (c->t_layers > 0) memcpy(t->host_dec, w->dec, sizeof *w->dec * (size_t)c->t_layers);
    int rc = upload_weights(t, walk_main, &t->wdev, "the frozen weights");
    if (rc) return rc;
    /* the token embedding table (the size table's weights.embed_tokens, LS_HOST): pinned host memory, which the GPU
     * reads directly; a step gathers a few thousand of its rows (and writes the trainable ones) */
    const size_t eb = sizeof(float) * (size_t)c->vocab * (size_t)c->t_hidden;
    t->wemb = t->o->mem_alloc(&t->ctx, eb ? eb : 64, MEM_HOST, "the token embedding table (pinned host memory)");
    if ((rc = t->o->sync(&t->ctx))) return rc;
    memcpy(t->wemb, t->host_w.embed, eb);
    w->embed = t->wemb;
    return ERR_OK;
}

int lt_init(llava_trainer *t, llava_model *m, const lt_spec *spec) {
    memset(t, 0, sizeof *t);
    t->o = spec->ops ? spec->ops : ops_for(spec->device, spec->act_dtype);
    if (!t->o && spec->device == DEVICE_CUDA)
        return err_set(ERR_ARGS, "runtime.device cuda: %s", spec->act_dtype != DT_BF16 && ops_for(DEVICE_CUDA, DT_BF16)
                       ? "the CUDA backend runs bf16 activations: set runtime.precision: bf16 (or auto)"
                       : "this orpo-hpc was built without the CUDA backend");
    if (!t->o)
        return err_set(ERR_ARGS, "runtime.precision: no CPU backend for %s activations", dtype_name(spec->act_dtype));
    t->of = t->o->f32 ? t->o->f32 : ops_cpu();
    t->ctx.device = spec->ops && spec->device != DEVICE_CUDA ? DEVICE_CPU : spec->device; /* a CUDA table given:
                                                                                             * the fused attention */
    t->ctx.act_dtype = spec->act_dtype;
    if (t->o->ctx_open) {
        int rc = t->o->ctx_open(&t->ctx);
        if (rc) return rc;
        t->ctx_opened = 1;
    }
    t->m = m;
    t->spec = *spec;
    const llava_config *c = &m->cfg;
    if (spec->rank < 1) return err_set(ERR_ARGS, "lora.rank: %d, expected >= 1", spec->rank);
    if (spec->dropout < 0.0f || spec->dropout >= 1.0f) return err_set(ERR_ARGS, "lora.dropout: %g, expected [0, 1)", (double)spec->dropout);
    if (spec->full_projector && (m->w.proj1.dtype != DT_F32 || m->w.proj2.dtype != DT_F32))
        return err_set(ERR_ARGS, "train.full_modules: mm_projector cannot be trained fully when it is NF4 "
                       "(re-import with --quant-scope decoder)");
    t->dec = mem_calloc((size_t)c->t_layers * LT_DEC_MODULES, sizeof *t->dec, "decoder LoRA adapters");
    t->vis = mem_calloc((size_t)c->v_run_layers * LT_VIS_MODULES, sizeof *t->vis, "vision LoRA adapters");
    t->vis_first = c->v_run_layers;
    if (spec->vision_targets) {
        int n = spec->vision_layers > 0 && spec->vision_layers < c->v_run_layers ? spec->vision_layers : c->v_run_layers;
        t->vis_first = c->v_run_layers - n;
    }
    if (spec->train_token_rows) {
        /* ids added to the vocabulary: beyond the source vocabulary, plus <image> and <pad> */
        t->tok_ids = mem_calloc((size_t)c->vocab + 2, sizeof(int32_t), "trainable token ids");
        for (int id = 0; id < c->vocab; id++)
            if (id >= c->src_vocab || id == c->image_token || id == c->pad_token) t->tok_ids[t->n_tok_rows++] = id;
    }
    layout(t); /* count */
    if (t->nstore != ls_trainable_count(c, spec))
        return err_set(ERR_INTERNAL, "trainable values: %lld laid out, the size table counts %lld", (long long)t->nstore,
                       (long long)ls_trainable_count(c, spec));
    /* the trainable arena (the size table's trainable.params, .grads, .params_act, .token_ids): masters and
     * gradients fp32, their activation-dtype copy in bf16 mode, the device ids of the trainable embedding rows */
    const ops *o = t->o;
    const size_t nb = sizeof(float) * (size_t)(t->nstore ? t->nstore : 1);
    t->store = o->mem_alloc(&t->ctx, nb, MEM_DEVICE, "trainable parameters");
    t->gstore = o->mem_alloc(&t->ctx, nb, MEM_DEVICE, "gradients");
    if (spec->act_dtype != DT_F32)
        t->act_store = o->mem_alloc(&t->ctx, dtype_size(spec->act_dtype) * (size_t)(t->nstore ? t->nstore : 1),
                                    MEM_DEVICE, "trainable parameters (activation dtype)");
    if (t->n_tok_rows)
        t->tok_ids_dev = o->mem_alloc(&t->ctx, sizeof(int64_t) * (size_t)t->n_tok_rows, MEM_DEVICE,
                                      "trainable embedding row ids");
    int rc = o->sync(&t->ctx);
    if (rc) return rc;
    t->stage = mem_calloc((size_t)(t->nstore ? t->nstore : 1), sizeof(float), "trainable parameters (staging)");
    t->tensors = mem_calloc((size_t)(t->ntensors ? t->ntensors : 1), sizeof *t->tensors, "trainable tensor list");
    layout(t); /* fill: initial values into the staging copy */
    o->upload(&t->ctx, t->store, t->stage, nb);
    o->memset(&t->ctx, t->gstore, 0, nb);
    if (t->n_tok_rows) {
        int64_t *ids = mem_alloc(sizeof(int64_t) * (size_t)t->n_tok_rows, "trainable embedding row ids");
        for (int i = 0; i < t->n_tok_rows; i++) ids[i] = t->tok_ids[i];
        o->upload(&t->ctx, t->tok_ids_dev, ids, sizeof(int64_t) * (size_t)t->n_tok_rows);
        free(ids);
    }
    free(t->stage);
    t->stage = NULL;
    if ((rc = o->sync(&t->ctx))) return rc;
    return o->host_mem ? ERR_OK : weights_to_device(t);
}

int lt_tensor_count(const llava_trainer *t) { return t->ntensors; }
const lt_tensor_info *lt_tensor(const llava_trainer *t, int i) { return &t->tensors[i]; }
void lt_zero_grads(llava_trainer *t) { t->o->memset(&t->ctx, t->gstore, 0, sizeof(float) * (size_t)t->nstore); }

/* ---- workspace: the arenas, carved from the size table --------------------------------------- */

/* the next item of the table, which must be `name` (the table and this walk list the same buffers in the same
 * order); its place in the device or host arena */
typedef struct carver {
    const ls_table *tab;
    int i;
    char *base[2];
    size_t used[2];
    int bad;
    const char *bad_name; /* the item whose buffers do not fit it */
    size_t shared_at;   /* device offset of the backward buffers: where shared items go, in turn */
    int have_shared;
} carver;

static void *take(carver *cv, const char *name) {
    const ls_table *tab = cv->tab;
    while (cv->i < tab->n && tab->items[cv->i].life <= LS_TRAINABLE) cv->i++; /* weights, trainable: elsewhere */
    if (cv->i >= tab->n || strcmp(tab->items[cv->i].name, name)) {
        /* an item the table leaves out (count 0) is not there: hand out nothing */
        const ls_item *it = ls_find(tab, name);
        if (it) cv->bad = 1;
        return NULL;
    }
    const ls_item *it = &tab->items[cv->i++];
    if (!strncmp(it->name, "bwd.", 4) && !cv->have_shared) { /* the first backward buffer: the shared place */
        cv->shared_at = cv->used[LS_DEVICE];
        cv->have_shared = 1;
    }
    if (it->shared) { /* in the backward buffers' place */
        void *p = cv->base[LS_DEVICE] ? cv->base[LS_DEVICE] + cv->shared_at : NULL;
        cv->shared_at += it->bytes;
        return p;
    }
    void *p = cv->base[it->place] ? cv->base[it->place] + cv->used[it->place] : NULL;
    cv->used[it->place] += it->bytes;
    return p;
}

/* an item the plan counts on the device but the arena does not hold: the library's workspace (the context's
 * ctx_open allocates it), the kernels' scratch (kgemm.h kscratch grows it) and the CUDA context itself. Its place in
 * the table's order is taken, no bytes. */
static void take_outside(carver *cv, const char *name) {
    const size_t used[2] = {cv->used[0], cv->used[1]};
    take(cv, name);
    cv->used[0] = used[0];
    cv->used[1] = used[1];
}

/* an item cut into several buffers: cut checks that they stay inside it (else the walk is bad: lt_plan_ex refuses
 * a size table and a carve that disagree) */
typedef struct piece {
    char *p;
    size_t left;
    carver *cv;
    const char *name;
    int absent;         /* the plan has no such item (e.g. backward buffers in a forward-only plan): nothing to cut */
} piece;

static piece take_piece(carver *cv, const char *name) {
    int i = cv->i;
    void *p = take(cv, name);
    while (i < cv->tab->n && cv->tab->items[i].life <= LS_TRAINABLE) i++;
    size_t bytes = cv->i > i ? cv->tab->items[i].bytes : 0;
    return (piece){p, bytes, cv, name, cv->i == i};
}

static void *cut(piece *pc, int64_t count, size_t size) {
    const size_t n = (size_t)count * size;
    void *r = pc->p;
    if (n > pc->left && !pc->absent && !pc->cv->bad) {
        pc->cv->bad = 1;
        pc->cv->bad_name = pc->name;
    }
    pc->left = n > pc->left ? 0 : pc->left - n;
    if (r) pc->p += n;
    return r;
}

/* a vision layer's activations (t: LoRA saves, or NULL) and statistics for n tokens */
static void cut_vis_acts(vis_acts *a, piece *p, piece *q, int64_t n, int64_t Dv, int64_t VI, int heads, int64_t r,
                         int with_t, size_t es) {
    void **big[] = {&a->a1, &a->q, &a->k, &a->v, &a->att, &a->h_mid, &a->a2};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) *big[i] = cut(p, n * Dv, es);
    a->f1 = cut(p, n * VI, es);
    a->g = cut(p, n * VI, es);
    for (int mi = 0; with_t && mi < LT_VIS_MODULES; mi++) a->t[mi] = cut(p, n * r, es);
    a->mean1 = cut(q, n, sizeof(float));
    a->rstd1 = cut(q, n, sizeof(float));
    a->mean2 = cut(q, n, sizeof(float));
    a->rstd2 = cut(q, n, sizeof(float));
    a->lse = cut(q, n * heads, sizeof(float));
}

static void carve_ws(llava_trainer *t, lt_ws *s, carver *cv) {
    const llava_config *c = &t->m->cfg;
    const size_t es = (size_t)s->es, f4 = sizeof(float);
    const int64_t T = s->dims.max_tok, D = c->t_hidden, Q = (int64_t)c->t_heads * c->t_head_dim;
    const int64_t KV = (int64_t)c->t_kv_heads * c->t_head_dim, I = c->t_inter, r = t->spec.rank;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), R = s->dims.max_rows;
    const int64_t P = s->dims.max_tiles, NR = P * np, NT = P * (np + 1), Dv = c->v_hidden, VI = c->v_inter;
    /* the packed batch: host arrays, then their device copies */
    for (int place = LS_HOST; place >= LS_DEVICE; place--) {
        lt_index *x = place == LS_HOST ? &s->h : &s->d;
        const char *pre = place == LS_HOST ? "host." : "batch.";
        char n[48];
#define IX(field, nm) (snprintf(n, sizeof n, "%s%s", pre, nm), x->field = take(cv, n))
        IX(ids, "ids");
        IX(pos, "pos");
        IX(seqs, "seqs");
        IX(img_src, "img_src");
        IX(img_pos, "img_pos");
        IX(nn_pos, "nn_pos");
        IX(nn_dst, "nn_dst");
        IX(tok_pos, "tok_pos");
        IX(tok_slot, "tok_slot");
        IX(row_h, "row_h");
        IX(row_label, "row_label");
        IX(vseqs, "vseqs");
        IX(vrows, "vrows");
#undef IX
    }
    s->inst = take(cv, "host.inst");
    s->pidx = take(cv, "host.pidx");
    s->row_pair = take(cv, "host.row_pair");
    s->row_role = take(cv, "host.row_role");
    s->logp_host = take(cv, "host.logp");
    s->dlogp = take(cv, "batch.dlogp");
    /* vision */
    if (s->st.vision == LS_VIS_RUN) {
        s->pixels = take(cv, "vision.pixels");
        s->vpatch = take(cv, "vision.patches");
        s->vhid = take(cv, "vision.hidden");
        s->vtmp = take(cv, "vision.tmp");
        /* the frozen tower runs image by image: one image's tiles */
        const int64_t NTi = (P < ls_image_tiles(c) ? P : ls_image_tiles(c)) * (np + 1);
        piece p = take_piece(cv, "vision.frozen_acts"), q = take_piece(cv, "vision.frozen_stats");
        cut_vis_acts(&s->fz, &p, &q, NTi, Dv, VI, c->v_heads, r, 0, es);
    }
    const int nad = s->vis_nadapt;
    if (nad) {
        s->vxin = take(cv, "vision.layer_inputs");
        piece p = take_piece(cv, "vision.acts"), q = take_piece(cv, "vision.act_stats");
        for (int l = 0; l < nad; l++) cut_vis_acts(&s->vacts[l], &p, &q, NT, Dv, VI, c->v_heads, r, 1, es);
        p = take_piece(cv, "vision.grads");
        void **g[] = {&s->vdX, &s->vdMid, &s->vdA, &s->vdQ, &s->vdK, &s->vdV, &s->vdAtt};
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) *g[i] = cut(&p, NT * Dv, es);
        s->vdF = cut(&p, NT * VI, es);
        s->vdG = cut(&p, NT * VI, es);
        s->dvsel = take(cv, "vision.dsel");
    }
    /* projector */
    s->sel = take(cv, "proj.features");
    s->h1 = take(cv, "proj.h1");
    s->g1 = take(cv, "proj.g1");
    s->pout = take(cv, "proj.out");
    piece p = take_piece(cv, "proj.lora_t");
    s->pt1 = cut(&p, NR * r, es);
    s->pt2 = cut(&p, NR * r, es);
    s->img_rows = take(cv, "proj.image_rows");
    s->newline = take(cv, "proj.newline");
    /* decoder */
    s->xin = take(cv, "dec.layer_inputs");
    s->xbuf = take(cv, "dec.layer_input_bufs");
    const int na = s->st.recompute || s->st.forward_only ? 1 : c->t_layers;
    p = take_piece(cv, "dec.acts");
    piece q = take_piece(cv, "dec.act_stats");
    for (int l = 0; l < na; l++) {
        dec_acts *a = &s->acts[l];
        a->a1 = cut(&p, T * D, es);
        a->q = cut(&p, T * Q, es);
        a->k = cut(&p, T * KV, es);
        a->v = cut(&p, T * KV, es);
        a->att = cut(&p, T * Q, es);
        a->x_mid = cut(&p, T * D, es);
        a->a2 = cut(&p, T * D, es);
        a->g = cut(&p, T * I, es);
        a->u = cut(&p, T * I, es);
        a->h = s->keep_h ? cut(&p, T * I, es) : NULL; /* else in the backward buffers, below */
        for (int mi = 0; mi < LT_DEC_MODULES; mi++) a->t[mi] = cut(&p, T * r, es);
        a->rstd1 = cut(&q, T, f4);
        a->lse = cut(&q, T * c->t_heads, f4);
        a->rstd2 = cut(&q, T, f4);
    }
    s->rstd_f = take(cv, "dec.final_rstd");
    s->hfin = take(cv, "dec.final_hidden");
    /* head */
    s->rsel = take(cv, "head.rows");
    s->logits = take(cv, "head.logits");
    q = take_piece(cv, "head.lse_logp");
    s->lse = cut(&q, R, f4);
    s->logp = cut(&q, R, f4);
    s->thead = take(cv, "head.lora_t");
    /* backward */
    p = take_piece(cv, "bwd.layer");
    void **bl[] = {&s->dX, &s->dMid, &s->dA};
    for (size_t i = 0; i < 3; i++) *bl[i] = cut(&p, T * D, es);
    piece ph = p; /* the attention's gradients, then the MLP's in the same place */
    s->dQ = cut(&p, T * Q, es);
    s->dAtt = cut(&p, T * Q, es);
    s->dK = cut(&p, T * KV, es);
    s->dV = cut(&p, T * KV, es);
    s->dG = cut(&ph, T * I, es);
    s->dU = cut(&ph, T * I, es);
    s->dH = cut(&ph, T * I, es);
    if (!s->keep_h)
        for (int l = 0; l < na; l++) s->acts[l].h = s->dH; /* h is not read by backward (no LoRA on down_proj) */
    s->dsel = take(cv, "bwd.head_rows");
    s->tok_rows_f32 = take(cv, "bwd.token_rows_f32");
    p = take_piece(cv, "bwd.proj");
    s->dP = cut(&p, NR * D, es);
    s->dG1 = cut(&p, NR * D, es);
    s->dH1 = cut(&p, NR * D, es);
    take(cv, "bwd.generation_extra");
    /* workspace */
    s->tmp = take(cv, "ws.tmp");
    s->wscr = take(cv, "ws.dequant");
    const ls_item *dq = ls_find(&s->tab, "ws.dequant");
    s->wscr_n = dq ? dq->count : 0;
    s->ldt = take(cv, "ws.lora_t");
    s->lxd = take(cv, "ws.lora_dropout");
    if (s->dims.gen_prompts > 0) {
        lt_kv *kv = &s->kvb;
        s->gen_kv = take(cv, "gen.kv");
        piece qa = take_piece(cv, "gen.q_att");
        const int64_t G = T + (int64_t)s->dims.gen_prompts * s->dims.gen_max_new;
        kv->q = cut(&qa, G * Q, es);
        kv->att = cut(&qa, G * Q, es);
        kv->lse = take(cv, "gen.lse");
        kv->d_seqs = take(cv, "gen.seqs");
        kv->d_row = take(cv, "gen.rows");
        kv->seqs = take(cv, "host.gen_seqs");
        kv->row = take(cv, "host.gen_rows");
        piece bk = take_piece(cv, "host.gen_books");
        kv->start = cut(&bk, s->dims.gen_prompts, sizeof(int64_t));
        kv->cap = cut(&bk, s->dims.gen_prompts, sizeof(int64_t));
        kv->len = cut(&bk, s->dims.gen_prompts, sizeof(int64_t));
        kv->logits = take(cv, "host.gen_logits");
        kv->raw = take(cv, "host.gen_raw");
        for (int l = 0; s->gen_kv && l < c->t_layers; l++) {
            kv->K[l] = AT(t, s->gen_kv, (int64_t)l * G * KV);
            kv->V[l] = AT(t, s->gen_kv, (int64_t)(c->t_layers + l) * G * KV);
        }
    }
    take_outside(cv, "ws.library");
    take_outside(cv, "ws.kernel_scratch");
    take_outside(cv, "ws.context_reserve");
    s->vfeat = take(cv, "host.vision_features");
}

static void free_ws(llava_trainer *t) {
    lt_ws *s = t->ws;
    if (!s) return;
    t->o->mem_free(&t->ctx, s->dev, MEM_DEVICE);
    t->o->mem_free(&t->ctx, s->host, MEM_HOST);
    ls_free(&s->tab);
    free(s->acts);
    free(s->vacts);
    free(s->kvb.K);
    free(s->kvb.V);
    free(s);
    t->ws = NULL;
}

/* what the loaded model's weights are (the size table's ls_weights): on the CPU everything not NF4 is fp32 */
static void weights_of(const llava_trainer *t, ls_weights *wt) {
    const llava_weights *w = &t->m->w;
    ls_weights_default(wt, DEVICE_CPU);
    wt->linear_dtype = t->m->cfg.t_layers > 0 ? w->dec[0].q.dtype : DT_F32;
    wt->quant_all = w->proj1.dtype == DT_NF4;
}

/* every linear whose GEMM reads the dequant / cast buffer (lin_weight) fits it: the size table's rule */
static int check_weight_buffer(llava_trainer *t) {
    const llava_config *c = &t->m->cfg;
    const llava_weights *w = &t->m->w;
    const int cast = t->spec.act_dtype != DT_F32;
    const lin_w *big = NULL;
    for (int l = 0; l < c->t_layers; l++) {
        const lin_w *d[] = {&w->dec[l].q, &w->dec[l].k, &w->dec[l].v, &w->dec[l].o, &w->dec[l].gate, &w->dec[l].up,
                            &w->dec[l].down};
        for (int i = 0; i < 7; i++)
            if ((d[i]->dtype == DT_NF4 || cast) && (!big || d[i]->out * d[i]->in > big->out * big->in)) big = d[i];
    }
    for (int l = 0; t->ws->st.vision == LS_VIS_RUN && l < c->v_run_layers; l++) {
        const lin_w *v[] = {&w->vis[l].q, &w->vis[l].k, &w->vis[l].v, &w->vis[l].o, &w->vis[l].fc1, &w->vis[l].fc2};
        for (int i = 0; i < 6; i++)
            if ((v[i]->dtype == DT_NF4 || cast) && (!big || v[i]->out * v[i]->in > big->out * big->in)) big = v[i];
    }
    const lin_w *o[] = {&w->proj1, &w->proj2, &w->lm_head};
    for (int i = 0; i < 3; i++)
        if ((o[i]->dtype == DT_NF4 || cast) && (!big || o[i]->out * o[i]->in > big->out * big->in)) big = o[i];
    if (big && big->out * big->in > t->ws->wscr_n)
        return err_set(ERR_INTERNAL, "training workspace: a linear of %lld x %lld values needs the weight buffer, the "
                       "size table gave it %lld", (long long)big->out, (long long)big->in, (long long)t->ws->wscr_n);
    return ERR_OK;
}

int lt_plan(llava_trainer *t, int64_t max_tok, int max_tiles, int64_t max_rows) {
    ls_dims d = {max_tok, max_rows, max_tiles, max_rows < 16 ? (int)max_rows : 16, 64}; /* generation: 16 x 64 */
    ls_strategy st;
    ls_strategy_default(&st, t->spec.act_dtype);
    st.recompute = t->spec.grad_ckpt;
    return lt_plan_ex(t, &d, &st);
}

int lt_plan_ex(llava_trainer *t, const ls_dims *dims, const ls_strategy *st) {
    const llava_config *c = &t->m->cfg;
    if (st->act_dtype != t->spec.act_dtype)
        return err_set(ERR_INTERNAL, "lt_plan_ex: strategy for %s activations, trainer for %s",
                       dtype_name(st->act_dtype), dtype_name(t->spec.act_dtype));
    free_ws(t);
    lt_ws *s = mem_calloc(1, sizeof *s, "training workspace");
    t->ws = s;
    s->dims = *dims;
    s->st = *st;
    if (s->st.logits_chunk <= 0) s->st.logits_chunk = LS_LOGITS_CHUNK;
    s->es = (int)dtype_size(st->act_dtype);
    s->keep_h = st->forward_only || (t->spec.targets & LT_DOWN);
    s->vis_nadapt = c->v_run_layers - t->vis_first;
    ls_weights wt;
    weights_of(t, &wt);
    int rc = ls_build(c, &t->spec, &wt, dims, st, &s->tab);
    if (rc) return rc;
    /* a device: the vision tower's weights there while the plan runs it */
    if (!t->o->host_mem && st->vision == LS_VIS_RUN && !t->wvis &&
        (rc = upload_weights(t, walk_vis, &t->wvis, "the vision tower's weights")))
        return rc;
    if (st->vision != LS_VIS_RUN) release_tower(t);
    s->acts = mem_calloc((size_t)(st->recompute || st->forward_only ? 1 : c->t_layers), sizeof *s->acts,
                         "decoder activation list");
    s->vacts = mem_calloc((size_t)(s->vis_nadapt > 0 ? s->vis_nadapt : 1), sizeof *s->vacts, "vision activation list");
    s->kvb.K = mem_calloc((size_t)c->t_layers, sizeof(void *), "KV cache layer list");
    s->kvb.V = mem_calloc((size_t)c->t_layers, sizeof(void *), "KV cache layer list");
    carver probe = {&s->tab, 0, {NULL, NULL}, {0, 0}, 0, NULL, 0, 0};
    carve_ws(t, s, &probe);
    if (probe.bad || probe.i != s->tab.n)
        return err_set(ERR_INTERNAL, "training workspace: the size table and the trainer's buffers disagree at item %d "
                       "(%s)", probe.i, probe.bad_name ? probe.bad_name : probe.i < s->tab.n ? s->tab.items[probe.i].name
                                                                                              : "end");
    s->dev_bytes = probe.used[LS_DEVICE];
    s->host_bytes = probe.used[LS_HOST];
    s->dev = t->o->mem_alloc(&t->ctx, s->dev_bytes ? s->dev_bytes : 64, MEM_DEVICE, "training workspace");
    s->host = t->o->mem_alloc(&t->ctx, s->host_bytes ? s->host_bytes : 64, MEM_HOST, "training workspace (host)");
    if ((rc = t->o->sync(&t->ctx))) return rc;
    carver real = {&s->tab, 0, {s->dev, s->host}, {0, 0}, 0, NULL, 0, 0};
    carve_ws(t, s, &real);
    if ((rc = check_weight_buffer(t))) return rc;
    /* image_newline in the activation dtype, once */
    if (st->act_dtype == DT_F32)
        t->of->copy(&t->ctx, s->newline, t->m->w.newline, c->t_hidden);
    else
        t->o->cast(&t->ctx, s->newline, st->act_dtype, t->m->w.newline, DT_F32, c->t_hidden);
    return t->o->sync(&t->ctx);
}

const ls_table *lt_table(const llava_trainer *t) { return t->ws ? &t->ws->tab : NULL; }

void *lt_feature_buffer(llava_trainer *t, size_t *bytes) {
    const ls_item *it = t->ws ? ls_find(&t->ws->tab, "host.vision_features") : NULL;
    *bytes = it && t->ws->vfeat ? it->bytes : 0;
    return *bytes ? t->ws->vfeat : NULL;
}

void lt_free(llava_trainer *t) {
    if (t->host_vis) { /* a device: the model's own weight pointers back (the projector's below) */
        release_tower(t);
        llava_weights *w = &t->m->w;
        if (t->m->cfg.t_layers > 0) memcpy(w->dec, t->host_dec, sizeof *w->dec * (size_t)t->m->cfg.t_layers);
        vis_layer *vis = w->vis;
        dec_layer *dec = w->dec;
        *w = t->host_w;
        w->vis = vis;
        w->dec = dec;
        if (t->o) t->o->mem_free(&t->ctx, t->wdev, MEM_DEVICE);
        if (t->o && t->wemb) t->o->mem_free(&t->ctx, t->wemb, MEM_HOST);
        free(t->host_vis);
        free(t->host_dec);
    }
    if (t->proj_orig[0]) {
        llava_weights *w = &t->m->w;
        w->proj1.w = t->proj_orig[0];
        w->proj1.b = t->proj_orig[1];
        w->proj2.w = t->proj_orig[2];
        w->proj2.b = t->proj_orig[3];
    }
    free_ws(t);
    if (t->o) {
        t->o->mem_free(&t->ctx, t->store, MEM_DEVICE);
        t->o->mem_free(&t->ctx, t->gstore, MEM_DEVICE);
        t->o->mem_free(&t->ctx, t->act_store, MEM_DEVICE);
        t->o->mem_free(&t->ctx, t->tok_ids_dev, MEM_DEVICE);
    }
    if (t->ctx_opened && t->o->ctx_close) t->o->ctx_close(&t->ctx);
    opctx_release(&t->ctx); /* the backend's scratch (the CPU bf16 mode's widened operands) */
    free(t->dec);
    free(t->vis);
    free(t->stage);
    free(t->tensors);
    free(t->tok_ids);
    memset(t, 0, sizeof *t);
}

/* ---- linear with optional LoRA ------------------------------------------------------------------ */

static int has_lora(const lora_ad *ad) { return ad && ad->A; }

/* the weight of a linear as its GEMM reads it: NF4 dequantised into the one reused buffer (activation dtype), an
 * fp32 weight used in place (fp32 runs) or cast into that buffer (bf16 runs) */
static const void *lin_weight(llava_trainer *t, const lin_w *w) {
    if (w->dtype == DT_NF4) {
        t->o->nf4_dequant(&t->ctx, t->ws->wscr, t->spec.act_dtype, w->w, w->qabsmax, w->absmax2, w->offset,
                          w->out * w->in, NF4_BLOCKSIZE, NF4_BLOCKSIZE2);
        return t->ws->wscr;
    }
    if (t->spec.act_dtype == DT_F32 || w->dtype == t->spec.act_dtype) return w->w; /* a device's bf16 copy */
    t->o->cast(&t->ctx, t->ws->wscr, t->spec.act_dtype, w->w, DT_F32, w->out * w->in);
    return t->ws->wscr;
}

static void lin_fwd_at(llava_trainer *t, void *y, const void *x, const lin_w *w, const lora_ad *ad, void *tsave,
                       int64_t M, int64_t row0) {
    t->o->linear_fwd(&t->ctx, y, x, lin_weight(t, w), w->b, M, w->in, w->out);
    if (!has_lora(ad)) return;
    if (t->ws->eval && ad->dropout > 0.0f) {
        lora_ad nodrop = *ad;
        nodrop.dropout = 0.0f;
        lora_fwd(t->o, &t->ctx, &nodrop, y, x, M, tsave, t->ws->lxd, t->ws->step, row0);
    } else {
        lora_fwd(t->o, &t->ctx, ad, y, x, M, tsave, t->ws->lxd, t->ws->step, row0);
    }
}

static void lin_fwd(llava_trainer *t, void *y, const void *x, const lin_w *w, const lora_ad *ad, void *tsave,
                    int64_t M) {
    lin_fwd_at(t, y, x, w, ad, tsave, M, 0);
}

/* dx += dy W (+ LoRA path); LoRA dA/dB accumulate. dW of the base is never needed (frozen) except for the
 * fully trained projector, handled by the caller. */
static void lin_bwd_at(llava_trainer *t, void *dx, const void *dy, const void *x, const lin_w *w, lora_ad *ad,
                       const void *tsave, int64_t M, int64_t row0) {
    if (dx) t->o->linear_bwd(&t->ctx, dx, NULL, NULL, dy, x, lin_weight(t, w), M, w->in, w->out);
    if (has_lora(ad)) lora_bwd(t->o, &t->ctx, ad, dx, dy, x, tsave, M, t->ws->ldt, t->ws->lxd, t->ws->step, row0);
}

static void lin_bwd(llava_trainer *t, void *dx, const void *dy, const void *x, const lin_w *w, lora_ad *ad,
                    const void *tsave, int64_t M) {
    lin_bwd_at(t, dx, dy, x, w, ad, tsave, M, 0);
}

/* ---- packing (host) ------------------------------------------------------------------------------ */

static void add_row(lt_ws *s, int64_t h, int32_t label, uint8_t role, int32_t pair) {
    s->h.row_h[s->nrows] = h;
    s->h.row_label[s->nrows] = label;
    s->row_role[s->nrows] = role;
    s->row_pair[s->nrows] = pair;
    s->nrows++;
}

/* append one sequence of ids at position offset pos0; returns its start */
static int64_t put_seq(lt_ws *s, const int32_t *ids, int32_t n, int32_t pos0, int32_t prefix) {
    int64_t start = s->ntok;
    for (int32_t i = 0; i < n; i++) {
        s->h.ids[s->ntok + i] = ids[i];
        s->h.pos[s->ntok + i] = pos0 + i;
    }
    s->h.seqs[s->nseq++] = (seq_desc){(int32_t)start, n, pos0, prefix};
    s->ntok += n;
    return start;
}

/* the packed batch's index arrays to the device */
static void upload_index(llava_trainer *t) {
    lt_ws *s = t->ws;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const llava_config *c = &t->m->cfg;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    o->upload(cx, s->d.ids, s->h.ids, sizeof(int32_t) * (size_t)s->ntok);
    o->upload(cx, s->d.pos, s->h.pos, sizeof(int32_t) * (size_t)s->ntok);
    o->upload(cx, s->d.seqs, s->h.seqs, sizeof(seq_desc) * (size_t)s->nseq);
    o->upload(cx, s->d.img_src, s->h.img_src, sizeof(int64_t) * (size_t)s->n_img_pos);
    o->upload(cx, s->d.img_pos, s->h.img_pos, sizeof(int64_t) * (size_t)s->n_img_pos);
    o->upload(cx, s->d.nn_pos, s->h.nn_pos, sizeof(int64_t) * (size_t)s->n_nn);
    o->upload(cx, s->d.nn_dst, s->h.nn_dst, sizeof(int64_t) * (size_t)s->n_nn);
    o->upload(cx, s->d.tok_pos, s->h.tok_pos, sizeof(int64_t) * (size_t)s->n_tok_pos);
    o->upload(cx, s->d.tok_slot, s->h.tok_slot, sizeof(int64_t) * (size_t)s->n_tok_pos);
    o->upload(cx, s->d.row_h, s->h.row_h, sizeof(int64_t) * (size_t)s->nrows);
    o->upload(cx, s->d.row_label, s->h.row_label, sizeof(int32_t) * (size_t)s->nrows);
    if (s->vis_nadapt || s->st.vision == LS_VIS_RUN) {
        o->upload(cx, s->d.vseqs, s->h.vseqs, sizeof(seq_desc) * (size_t)s->n_tiles);
        o->upload(cx, s->d.vseqs + s->dims.max_tiles, s->h.vseqs + s->dims.max_tiles,
                  sizeof(seq_desc) * (size_t)s->n_tiles);
        o->upload(cx, s->d.vrows, s->h.vrows, sizeof(int64_t) * (size_t)(s->n_tiles * np));
    }
}

/* the vision batch: one sequence of CLS + patches per tile; the patch rows (CLS dropped). Without vision LoRA the
 * tower runs image by image (as a vision cache is built, so that cached features are the same bits): vseqs[g]
 * starts from its image's first row, vseqs[max_tiles + g] from the first row of all tiles (vision LoRA's adapted
 * layers run over every tile at once) */
static void vision_index(llava_trainer *t) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    for (int k = 0; k < s->ninst; k++)
        for (int64_t tl = 0; tl < s->inst[k].P; tl++) {
            int64_t g = s->inst[k].sel_off + tl;
            s->h.vseqs[g] = (seq_desc){(int32_t)(tl * (np + 1)), (int32_t)(np + 1), 0, -1}; /* in its image */
            s->h.vseqs[s->dims.max_tiles + g] = (seq_desc){(int32_t)(g * (np + 1)), (int32_t)(np + 1), 0, -1};
        }
    for (int64_t tl = 0; tl < s->n_tiles; tl++)
        for (int64_t i = 0; i < np; i++) s->h.vrows[tl * np + i] = tl * (np + 1) + 1 + i;
}

static int pack(llava_trainer *t, const lt_batch *b) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    s->ntok = s->nseq = s->ninst = 0;
    s->n_tiles = 0;
    s->nrows = 0;
    int64_t need = 0, tiles = 0, rows = 0;
    for (int i = 0; i < b->n; i++) {
        const lt_pair *p = &b->pairs[i];
        if (s->gen) { /* generation: the prompt only, one logits row (its last token) */
            if (p->n_prefix < 1) return err_set(ERR_DATA, "prompt %d of the batch: empty", i);
            need += p->n_prefix;
            tiles += p->P;
            rows += 1;
            continue;
        }
        if (p->n_chosen < 1 || p->n_rejected < 1 || p->n_prefix < 1)
            return err_set(ERR_DATA, "pair %d of the micro-batch: empty prompt or answer", i);
        int copies = t->spec.share_prefix ? 1 : 2;
        need += (int64_t)copies * p->n_prefix + p->n_chosen + p->n_rejected;
        tiles += (int64_t)copies * p->P;
        rows += p->n_prefix + p->n_chosen + p->n_rejected;
    }
    if (need > s->dims.max_tok || tiles > s->dims.max_tiles || rows > s->dims.max_rows)
        return err_set(ERR_INTERNAL, "micro-batch of %lld tokens, %lld tiles, %lld rows exceeds the planned "
                       "%lld / %d / %lld", (long long)need, (long long)tiles, (long long)rows,
                       (long long)s->dims.max_tok, s->dims.max_tiles, (long long)s->dims.max_rows);
    int64_t sel_off = 0;
    for (int i = 0; i < b->n; i++) {
        const lt_pair *p = &b->pairs[i];
        for (int copy = 0; copy < (t->spec.share_prefix || s->gen ? 1 : 2); copy++) {
            int prefix_seq = s->nseq;
            int64_t ps = put_seq(s, p->prefix, p->n_prefix, 0, -1);
            img_inst *in = &s->inst[s->ninst++];
            in->pair = i;
            in->P = p->P;
            in->h = p->h;
            in->w = p->w;
            in->sel_off = sel_off;
            in->nrows = llava_pack_index(c, p->P, p->h, p->w, NULL);
            if (in->nrows < 0) return err_set(ERR_DATA, "pair %d: %d tiles do not match an image of %dx%d", i, p->P, p->h, p->w);
            sel_off += p->P;
            s->n_tiles = sel_off;
            if (s->gen) {
                add_row(s, ps + p->n_prefix - 1, 0, 0, i);
                continue;
            }
            /* prompt text targets (NLL, TRL): every prefix token after BOS that is not an image token */
            if (copy == 0 && t->spec.nll_prompt)
                for (int32_t j = 1; j < p->n_prefix; j++)
                    if (p->prefix[j] != c->image_token) add_row(s, ps + j - 1, p->prefix[j], LT_ROLE_NLL, i);
            int64_t last = ps + p->n_prefix - 1;
            int do_chosen = t->spec.share_prefix || copy == 0, do_rejected = t->spec.share_prefix || copy == 1;
            if (do_chosen) {
                int64_t cs = put_seq(s, p->chosen, p->n_chosen, p->n_prefix, t->spec.share_prefix ? prefix_seq : -1);
                if (!t->spec.share_prefix) { /* one sequence: prefix then answer */
                    s->nseq--;
                    s->h.seqs[s->nseq - 1].len += p->n_chosen;
                }
                for (int32_t j = 0; j < p->n_chosen; j++)
                    add_row(s, j == 0 ? last : cs + j - 1, p->chosen[j], LT_ROLE_CHOSEN | LT_ROLE_NLL, i);
            }
            if (do_rejected) {
                int64_t rs = put_seq(s, p->rejected, p->n_rejected, p->n_prefix, t->spec.share_prefix ? prefix_seq : -1);
                if (!t->spec.share_prefix) {
                    s->nseq--;
                    s->h.seqs[s->nseq - 1].len += p->n_rejected;
                }
                for (int32_t j = 0; j < p->n_rejected; j++)
                    add_row(s, j == 0 ? last : rs + j - 1, p->rejected[j], LT_ROLE_REJECTED, i);
            }
        }
    }
    /* image token positions, in packed order; instances own consecutive runs of them */
    s->n_img_pos = 0;
    s->n_tok_pos = 0;
    for (int64_t k = 0; k < s->ntok; k++) {
        if (s->h.ids[k] == c->image_token) s->h.img_pos[s->n_img_pos++] = k;
        else if (t->n_tok_rows)
            for (int j = 0; j < t->n_tok_rows; j++)
                if (t->tok_ids[j] == s->h.ids[k]) {
                    s->h.tok_pos[s->n_tok_pos] = k;
                    s->h.tok_slot[s->n_tok_pos++] = j;
                }
    }
    int64_t expect = 0;
    for (int k = 0; k < s->ninst; k++) expect += s->inst[k].nrows;
    if (expect != s->n_img_pos)
        return err_set(ERR_DATA, "micro-batch: %lld <image> tokens but the images give %lld feature rows",
                       (long long)s->n_img_pos, (long long)expect);
    /* where every packed image row comes from (a projector row, or image_newline); where the non-newline ones go */
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    int64_t row = 0;
    s->n_nn = 0;
    for (int k = 0; k < s->ninst; k++) {
        const img_inst *in = &s->inst[k];
        llava_pack_index(c, in->P, in->h, in->w, s->pidx);
        for (int64_t r = 0; r < in->nrows; r++, row++) {
            s->h.img_src[row] = s->pidx[r] >= 0 ? in->sel_off * np + s->pidx[r] : -1;
            if (s->pidx[r] >= 0) {
                s->h.nn_pos[s->n_nn] = s->h.img_pos[row];
                s->h.nn_dst[s->n_nn++] = in->sel_off * np + s->pidx[r];
            }
        }
    }
    vision_index(t);
    upload_index(t);
    return ERR_OK;
}

/* generation: the new tokens' q, k, v (rows of the packed batch) go to their cache rows; attention of each new token
 * over its item's cached tokens and the new ones up to itself; the outputs come back to the packed rows */
static void kv_attention(llava_trainer *t, int l, dec_acts *a) {
    lt_ws *s = t->ws;
    lt_kv *kv = s->kv;
    const llava_config *c = &t->m->cfg;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    o->scatter_rows(cx, kv->q, a->q, kv->d_row, s->ntok, Q);
    o->scatter_rows(cx, kv->K[l], a->k, kv->d_row, s->ntok, KV);
    o->scatter_rows(cx, kv->V[l], a->v, kv->d_row, s->ntok, KV);
    o->attn_fwd(cx, kv->att, kv->lse, kv->q, kv->K[l], kv->V[l], kv->d_seqs, kv->nseq, kv->rows, c->t_heads,
                c->t_kv_heads, c->t_head_dim, 1);
    o->gather_rows(cx, a->att, kv->att, kv->d_row, s->ntok, Q);
}

/* ---- decoder layer ---------------------------------------------------------------------------- */

static void layer_fwd(llava_trainer *t, int l, const void *x, dec_acts *a, void *out) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    dec_layer *ly = &t->m->w.dec[l];
    lora_ad *ad = &t->dec[l * LT_DEC_MODULES];
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t T = s->ntok, D = c->t_hidden;
    o->rmsnorm_fwd(cx, a->a1, a->rstd1, x, ly->in_norm, T, D, c->t_eps);
    lin_fwd(t, a->q, a->a1, &ly->q, &ad[M_Q], a->t[M_Q], T);
    lin_fwd(t, a->k, a->a1, &ly->k, &ad[M_K], a->t[M_K], T);
    lin_fwd(t, a->v, a->a1, &ly->v, &ad[M_V], a->t[M_V], T);
    o->rope_fwd(cx, a->q, s->d.pos, T, c->t_heads, c->t_head_dim, c->rope_theta);
    o->rope_fwd(cx, a->k, s->d.pos, T, c->t_kv_heads, c->t_head_dim, c->rope_theta);
    if (s->kv)
        kv_attention(t, l, a);
    else
        o->attn_fwd(cx, a->att, a->lse, a->q, a->k, a->v, s->d.seqs, s->nseq, T, c->t_heads, c->t_kv_heads,
                    c->t_head_dim, 1);
    lin_fwd(t, s->tmp, a->att, &ly->o, &ad[M_O], a->t[M_O], T);
    o->add(cx, a->x_mid, x, s->tmp, T * D);
    o->rmsnorm_fwd(cx, a->a2, a->rstd2, a->x_mid, ly->post_norm, T, D, c->t_eps);
    lin_fwd(t, a->g, a->a2, &ly->gate, &ad[M_GATE], a->t[M_GATE], T);
    lin_fwd(t, a->u, a->a2, &ly->up, &ad[M_UP], a->t[M_UP], T);
    o->swiglu_fwd(cx, a->h, a->g, a->u, T * c->t_inter);
    lin_fwd(t, s->tmp, a->h, &ly->down, &ad[M_DOWN], a->t[M_DOWN], T); /* also saves down's LoRA input */
    if (!out) return; /* recomputed for backward: the layer output itself is not needed */
    o->add(cx, out, a->x_mid, s->tmp, T * D);
}

/* dX: gradient of the layer output on entry, of the layer input on exit */
static void layer_bwd(llava_trainer *t, int l, const void *x, dec_acts *a, void *dX) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    dec_layer *ly = &t->m->w.dec[l];
    lora_ad *ad = &t->dec[l * LT_DEC_MODULES];
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t T = s->ntok, D = c->t_hidden, I = c->t_inter;
    const int64_t Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    /* MLP: out = x_mid + down(silu(gate(a2)) * up(a2)) */
    o->zero(cx, s->dH, T * I);
    lin_bwd(t, s->dH, dX, a->h, &ly->down, &ad[M_DOWN], a->t[M_DOWN], T);
    o->zero(cx, s->dG, T * I);
    o->zero(cx, s->dU, T * I);
    o->swiglu_bwd(cx, s->dG, s->dU, s->dH, a->g, a->u, T * I);
    o->zero(cx, s->dA, T * D);
    lin_bwd(t, s->dA, s->dG, a->a2, &ly->gate, &ad[M_GATE], a->t[M_GATE], T);
    lin_bwd(t, s->dA, s->dU, a->a2, &ly->up, &ad[M_UP], a->t[M_UP], T);
    o->copy(cx, s->dMid, dX, T * D);
    o->rmsnorm_bwd(cx, s->dMid, NULL, s->dA, a->x_mid, ly->post_norm, a->rstd2, T, D);
    /* attention: x_mid = x + o_proj(attn(rope(q(a1)), rope(k(a1)), v(a1))) */
    o->zero(cx, s->dAtt, T * Q);
    lin_bwd(t, s->dAtt, s->dMid, a->att, &ly->o, &ad[M_O], a->t[M_O], T);
    o->zero(cx, s->dQ, T * Q);
    o->zero(cx, s->dK, T * KV);
    o->zero(cx, s->dV, T * KV);
    o->attn_bwd(cx, s->dQ, s->dK, s->dV, s->dAtt, a->att, a->lse, a->q, a->k, a->v, s->d.seqs, s->nseq, T, c->t_heads,
                c->t_kv_heads, c->t_head_dim, 1);
    o->rope_bwd(cx, s->dQ, s->d.pos, T, c->t_heads, c->t_head_dim, c->rope_theta);
    o->rope_bwd(cx, s->dK, s->d.pos, T, c->t_kv_heads, c->t_head_dim, c->rope_theta);
    o->zero(cx, s->dA, T * D);
    lin_bwd(t, s->dA, s->dQ, a->a1, &ly->q, &ad[M_Q], a->t[M_Q], T);
    lin_bwd(t, s->dA, s->dK, a->a1, &ly->k, &ad[M_K], a->t[M_K], T);
    lin_bwd(t, s->dA, s->dV, a->a1, &ly->v, &ad[M_V], a->t[M_V], T);
    o->copy(cx, dX, s->dMid, T * D);
    o->rmsnorm_bwd(cx, dX, NULL, s->dA, x, ly->in_norm, a->rstd1, T, D);
}

/* ---- vision tower ------------------------------------------------------------------------------- */

static void vis_layer_fwd(llava_trainer *t, int l, const void *x, vis_acts *a, void *out) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    vis_layer *vl = &t->m->w.vis[l];
    lora_ad *ad = &t->vis[l * LT_VIS_MODULES];
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t NT = s->vtok, Dv = c->v_hidden;
    o->layernorm_fwd(cx, a->a1, a->mean1, a->rstd1, x, vl->ln1_w, vl->ln1_b, NT, Dv, c->v_eps);
    lin_fwd(t, a->q, a->a1, &vl->q, &ad[V_Q], a->t[V_Q], NT);
    lin_fwd(t, a->k, a->a1, &vl->k, &ad[V_K], a->t[V_K], NT);
    lin_fwd(t, a->v, a->a1, &vl->v, &ad[V_V], a->t[V_V], NT);
    o->attn_fwd(cx, a->att, a->lse, a->q, a->k, a->v, s->vseq_cur, s->vnseq, NT, c->v_heads, c->v_heads,
                (int)(Dv / c->v_heads), 0);
    lin_fwd(t, s->vtmp, a->att, &vl->o, &ad[V_OUT], a->t[V_OUT], NT);
    o->add(cx, a->h_mid, x, s->vtmp, NT * Dv);
    o->layernorm_fwd(cx, a->a2, a->mean2, a->rstd2, a->h_mid, vl->ln2_w, vl->ln2_b, NT, Dv, c->v_eps);
    lin_fwd(t, a->f1, a->a2, &vl->fc1, &ad[V_FC1], a->t[V_FC1], NT);
    o->quick_gelu_fwd(cx, a->g, a->f1, NT * c->v_inter);
    lin_fwd(t, s->vtmp, a->g, &vl->fc2, &ad[V_FC2], a->t[V_FC2], NT);
    o->add(cx, out, a->h_mid, s->vtmp, NT * Dv);
}

static void vis_layer_bwd(llava_trainer *t, int l, const void *x, vis_acts *a, void *dX) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    vis_layer *vl = &t->m->w.vis[l];
    lora_ad *ad = &t->vis[l * LT_VIS_MODULES];
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t NT = s->vtok, Dv = c->v_hidden, VI = c->v_inter;
    o->zero(cx, s->vdG, NT * VI);
    lin_bwd(t, s->vdG, dX, a->g, &vl->fc2, &ad[V_FC2], a->t[V_FC2], NT);
    o->zero(cx, s->vdF, NT * VI);
    o->quick_gelu_bwd(cx, s->vdF, s->vdG, a->f1, NT * VI);
    o->zero(cx, s->vdA, NT * Dv);
    lin_bwd(t, s->vdA, s->vdF, a->a2, &vl->fc1, &ad[V_FC1], a->t[V_FC1], NT);
    o->copy(cx, s->vdMid, dX, NT * Dv);
    o->layernorm_bwd(cx, s->vdMid, NULL, NULL, s->vdA, a->h_mid, vl->ln2_w, a->mean2, a->rstd2, NT, Dv);
    o->zero(cx, s->vdAtt, NT * Dv);
    lin_bwd(t, s->vdAtt, s->vdMid, a->att, &vl->o, &ad[V_OUT], a->t[V_OUT], NT);
    o->zero(cx, s->vdQ, NT * Dv);
    o->zero(cx, s->vdK, NT * Dv);
    o->zero(cx, s->vdV, NT * Dv);
    o->attn_bwd(cx, s->vdQ, s->vdK, s->vdV, s->vdAtt, a->att, a->lse, a->q, a->k, a->v, s->d.vseqs + s->dims.max_tiles,
                (int)s->n_tiles,
                NT, c->v_heads, c->v_heads, (int)(Dv / c->v_heads), 0); /* vision LoRA: all tiles at once */
    o->zero(cx, s->vdA, NT * Dv);
    lin_bwd(t, s->vdA, s->vdQ, a->a1, &vl->q, &ad[V_Q], a->t[V_Q], NT);
    lin_bwd(t, s->vdA, s->vdK, a->a1, &vl->k, &ad[V_K], a->t[V_K], NT);
    lin_bwd(t, s->vdA, s->vdV, a->a1, &vl->v, &ad[V_V], a->t[V_V], NT);
    o->copy(cx, dX, s->vdMid, NT * Dv);
    o->layernorm_bwd(cx, dX, NULL, NULL, s->vdA, x, vl->ln1_w, a->mean1, a->rstd1, NT, Dv);
}

/* the frozen tower over tiles [t0, t0 + P) (their rows of vhid): patch embedding (im2col + one GEMM with the conv
 * weight), CLS and positions, pre-LayerNorm, layers 0 .. vis_first - 1 with scratch activations; returns the buffer
 * (of the two halves of vhid) that holds their output */
static void *vis_frozen(llava_trainer *t, const float *pixels, int64_t t0, int64_t P) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int g = c->v_image / c->v_patch, p = c->v_patch, T = c->v_image;
    const int64_t np = (int64_t)g * g, L = np + 1, Dv = c->v_hidden, pk = 3LL * p * p;
    const int64_t NTall = s->n_tiles * L, NT = P * L, tile = 3LL * T * T;
    s->vtok = NT;
    s->vseq_cur = s->d.vseqs + t0;
    s->vnseq = (int)P;
    o->upload(cx, s->pixels, pixels, sizeof(float) * (size_t)(P * tile));
    o->im2col(cx, s->vpatch, s->pixels, (int)P, T, p);
    lin_w patch = {DT_F32, w->patch_w, NULL, Dv, pk, NULL, NULL, 0.0f};
    o->linear_fwd(cx, s->vtmp, s->vpatch, lin_weight(t, &patch), NULL, P * np, pk, Dv);
    void *h = AT(t, s->vhid, t0 * L * Dv), *h2 = AT(t, s->vhid, NTall * Dv + t0 * L * Dv); /* ping-pong */
    o->vis_embed(cx, h, s->vtmp, w->cls, w->pos, P, np, Dv);
    o->layernorm_fwd(cx, h2, s->fz.mean1, s->fz.rstd1, h, w->pre_ln_w, w->pre_ln_b, NT, Dv, c->v_eps);
    void *cur = h2, *nxt = h;
    for (int l = 0; l < t->vis_first; l++) {
        vis_layer_fwd(t, l, cur, &s->fz, nxt);
        void *tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    return cur;
}

/* the vision tower: without vision LoRA image by image (the frozen tower); with it, the frozen layers image by image
 * and then the adapted layers over every tile of the micro-batch at once, keeping their activations; the selected
 * layer's patch rows (CLS dropped) into sel */
static void vis_forward(llava_trainer *t, const lt_batch *b) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), Dv = c->v_hidden;
    const int64_t NT = s->n_tiles * (np + 1);
    void *cur = NULL;
    for (int k = 0; k < s->ninst; k++)
        cur = vis_frozen(t, b->pairs[s->inst[k].pair].pixels, s->inst[k].sel_off, s->inst[k].P);
    cur = (char *)cur - (size_t)(s->inst[s->ninst - 1].sel_off * (np + 1) * Dv) * (size_t)s->es; /* its half */
    s->vtok = NT;
    if (s->vis_nadapt) {
        s->vseq_cur = s->d.vseqs + s->dims.max_tiles;
        s->vnseq = (int)s->n_tiles;
        o->copy(cx, s->vxin, cur, NT * Dv);
        for (int l = t->vis_first; l < c->v_run_layers; l++) {
            int k = l - t->vis_first;
            vis_layer_fwd(t, l, AT(t, s->vxin, k * NT * Dv), &s->vacts[k], AT(t, s->vxin, (k + 1) * NT * Dv));
        }
        cur = AT(t, s->vxin, s->vis_nadapt * NT * Dv);
    }
    o->gather_rows(cx, s->sel, cur, s->d.vrows, s->n_tiles * np, Dv);
}

static void vis_backward(llava_trainer *t) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), Dv = c->v_hidden;
    o->zero(cx, s->vdX, s->vtok * Dv);
    o->scatter_rows(cx, s->vdX, s->dvsel, s->d.vrows, s->n_tiles * np, Dv);
    for (int l = c->v_run_layers - 1; l >= t->vis_first; l--) {
        int k = l - t->vis_first;
        vis_layer_bwd(t, l, AT(t, s->vxin, k * s->vtok * Dv), &s->vacts[k], s->vdX);
    }
}

/* ---- the step's forward and backward ---------------------------------------------------------- */

static int forward(llava_trainer *t, const lt_batch *b, lt_fwd *fw);

/* the device buffer holding decoder layer l's input (with offloading: one of two, the host keeping them all) */
static void *layer_input(llava_trainer *t, int l) {
    lt_ws *s = t->ws;
    const int64_t TD = s->ntok * t->m->cfg.t_hidden;
    return s->xbuf ? AT(t, s->xbuf, (l & 1) * TD) : AT(t, s->xin, l * TD);
}

/* offloading: layer l's input, just computed in its device buffer, to its place in host memory */
static void offload_input(llava_trainer *t, int l) {
    lt_ws *s = t->ws;
    if (!s->st.offload) return;
    const int64_t TD = s->ntok * t->m->cfg.t_hidden;
    t->o->copy_async(&t->ctx, AT(t, s->xin, l * TD), layer_input(t, l), (size_t)TD * (size_t)s->es, MEM_D2H);
}

/* offloading: layer l's input back from host memory into its device buffer, on the copy stream */
static uint64_t prefetch_input(llava_trainer *t, int l) {
    lt_ws *s = t->ws;
    const int64_t TD = s->ntok * t->m->cfg.t_hidden;
    t->o->copy_async(&t->ctx, layer_input(t, l), AT(t, s->xin, l * TD), (size_t)TD * (size_t)s->es, MEM_H2D);
    return t->o->copy_fence(&t->ctx);
}

/* lm_head and the log-probs of target rows [r0, r0 + n): rows of the final hidden states gathered, logits into
 * their chunk of s->logits (all rows kept) or its one chunk (recomputed in backward) */
static void *head_chunk_fwd(llava_trainer *t, int64_t r0, int64_t n, int logprob) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const int64_t D = c->t_hidden, V = c->vocab, r = t->spec.rank;
    void *logits = s->st.logits_keep ? AT(t, s->logits, r0 * V) : s->logits;
    void *rows = AT(t, s->rsel, r0 * D);
    lin_fwd_at(t, logits, rows, &t->m->w.lm_head, &t->head, AT(t, s->thead, r0 * r), n, r0);
    if (logprob)
        t->o->logprob_fwd(&t->ctx, s->logp + r0, s->lse + r0, logits, s->d.row_label + r0, n, V);
    return logits;
}

/* 3. decoder layers over the packed tokens; every layer input is kept (the checkpoints; in host memory when
 * offloaded); 4. lm_head on the target rows only, LS_LOGITS_CHUNK rows at a time (generation: s->kv set, the
 * logits of each chunk downloaded for picking) */
static void decoder_and_head(llava_trainer *t) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t D = c->t_hidden, T = s->ntok, V = c->vocab;
    /* with offloading, layer l writes its output over layer l - 1's input (two device buffers): the copy of that
     * input to host memory, issued one layer earlier, must be done first; the copy of layer l's own input runs
     * beside layer l */
    uint64_t copied[2] = {0, 0}; /* the fence after the copy of the input in each buffer */
    offload_input(t, 0);
    if (s->st.offload) copied[0] = o->copy_fence(cx);
    for (int l = 0; l < c->t_layers; l++) {
        dec_acts *a = &s->acts[s->st.recompute || s->st.forward_only ? 0 : l];
        if (s->st.offload) o->copy_wait(cx, copied[(l + 1) & 1]); /* layer l - 1's input is in host memory */
        layer_fwd(t, l, layer_input(t, l), a, layer_input(t, l + 1));
        offload_input(t, l + 1);
        if (s->st.offload) copied[(l + 1) & 1] = o->copy_fence(cx);
    }
    o->rmsnorm_fwd(cx, s->hfin, s->rstd_f, layer_input(t, c->t_layers), w->norm, T, D, c->t_eps);
    o->gather_rows(cx, s->rsel, s->hfin, s->d.row_h, s->nrows, D);
    const int64_t ch = s->st.logits_chunk;
    for (int64_t r0 = 0; r0 < s->nrows; r0 += ch) {
        int64_t n = s->nrows - r0 < ch ? s->nrows - r0 : ch;
        void *logits = head_chunk_fwd(t, r0, n, !s->gen);
        if (s->gen) { /* the rows to pick the next tokens from, as fp32 on the host */
            float *dst = s->kv->logits + r0 * V;
            if (s->es == (int)sizeof(float)) {
                o->download(cx, dst, logits, sizeof(float) * (size_t)(n * V));
            } else {
                o->download(cx, s->kv->raw, logits, (size_t)s->es * (size_t)(n * V));
                ops_cpu()->cast(cx, dst, DT_F32, s->kv->raw, t->spec.act_dtype, n * V); /* host memory */
            }
        }
    }
}

int lt_forward(llava_trainer *t, const lt_batch *b, lt_fwd *fw) {
    if (!t->ws) return err_set(ERR_INTERNAL, "lt_forward before lt_plan");
    t->ws->gen = 0;
    return forward(t, b, fw);
}

/* lt_forward, or with ws->gen set the prefill of lt_generate */
static int forward(llava_trainer *t, const lt_batch *b, lt_fwd *fw) {
    lt_ws *s = t->ws;
    s->step = b->step;
    s->eval = b->eval;
    int rc = pack(t, b);
    if (rc) return rc;
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t D = c->t_hidden, T = s->ntok;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    /* 0. bf16 runs: the GEMMs read the trainable values cast to the activation dtype */
    if (t->act_store) o->cast(cx, t->act_store, t->spec.act_dtype, t->store, DT_F32, t->nstore);

    /* 1. vision tower over every tile, the projector once over all their patch rows */
    if (s->st.vision == LS_VIS_RUN) {
        vis_forward(t, b);
    } else { /* the features from the cache: each instance's rows */
        for (int k = 0; k < s->ninst; k++) {
            const lt_pair *p = &b->pairs[s->inst[k].pair];
            if (!p->features) return err_set(ERR_INTERNAL, "pair %d of the micro-batch: no cached vision features",
                                             s->inst[k].pair);
            o->upload(cx, AT(t, s->sel, s->inst[k].sel_off * np * c->v_hidden), p->features,
                      (size_t)s->es * (size_t)(s->inst[k].P * np * c->v_hidden));
        }
    }
    const int64_t NR = s->n_tiles * np;
    lin_fwd(t, s->h1, s->sel, &w->proj1, &t->proj[0], s->pt1, NR);
    o->gelu_fwd(cx, s->g1, s->h1, NR * D);
    lin_fwd(t, s->pout, s->g1, &w->proj2, &t->proj[1], s->pt2, NR);
    /* anyres packing: each image's rows (base tile, unpadded grid with image_newline) in packed order */
    o->gather_rows_fill(cx, s->img_rows, s->pout, s->d.img_src, s->n_img_pos, D, s->newline);
    /* 2. embeddings: token rows (the trainable rows from their masters), image rows at the <image> positions */
    if (t->n_tok_rows) t->of->scatter_rows(cx, (void *)w->embed, t->tok_rows, t->tok_ids_dev, t->n_tok_rows, D);
    void *x0 = layer_input(t, 0);
    o->embed_fwd(cx, x0, w->embed, s->d.ids, T, D);
    o->scatter_rows(cx, x0, s->img_rows, s->d.img_pos, s->n_img_pos, D);
    decoder_and_head(t);
    if (s->gen) return o->sync(cx); /* lt_generate reads the logits */
    o->download(cx, s->logp_host, s->logp, sizeof(float) * (size_t)s->nrows);
    if ((rc = o->sync(cx))) return rc;
    fw->nrows = s->nrows;
    fw->logp = s->logp_host;
    fw->role = s->row_role;
    fw->pair = s->row_pair;
    fw->ntok = T;
    return ERR_OK;
}

int lt_backward(llava_trainer *t, const float *dlogp) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t D = c->t_hidden, T = s->ntok, R = s->nrows, V = c->vocab, L = c->t_layers;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    if (s->st.forward_only) return err_set(ERR_INTERNAL, "lt_backward: the workspace was planned forward-only");
    o->upload(cx, s->dlogp, dlogp, sizeof(float) * (size_t)R);

    /* 4'. log-prob -> logits -> lm_head -> final-norm output rows, chunk by chunk as in the forward (the logits of a
     *     chunk recomputed when they were not kept) */
    o->zero(cx, s->dsel, R * D);
    const int64_t ch = s->st.logits_chunk;
    for (int64_t r0 = 0; r0 < R; r0 += ch) {
        int64_t n = R - r0 < ch ? R - r0 : ch;
        void *logits = s->st.logits_keep ? AT(t, s->logits, r0 * V) : head_chunk_fwd(t, r0, n, 0);
        o->logprob_bwd(cx, logits, s->dlogp + r0, s->lse + r0, logits, s->d.row_label + r0, n, V);
        lin_bwd_at(t, AT(t, s->dsel, r0 * D), logits, AT(t, s->rsel, r0 * D), &w->lm_head, &t->head,
                   AT(t, s->thead, r0 * t->spec.rank), n, r0);
    }
    o->zero(cx, s->dX, T * D);
    o->scatter_add_rows(cx, s->dX, s->dsel, s->d.row_h, R, D);
    o->copy(cx, s->dMid, s->dX, T * D);
    o->zero(cx, s->dX, T * D);
    o->rmsnorm_bwd(cx, s->dX, NULL, s->dMid, layer_input(t, (int)L), w->norm, s->rstd_f, T, D);
    /* 3'. decoder layers in reverse; with recompute each layer runs again from its input first; with offloading
     *     the input of the layer below comes back from host memory while this one runs */
    uint64_t fence = 0;
    for (int l = (int)L - 1; l >= 0; l--) {
        if (s->st.offload && l < L - 1) o->copy_wait(cx, fence);
        if (s->st.offload && l > 0) fence = prefetch_input(t, l - 1);
        const void *x = layer_input(t, l);
        dec_acts *a = &s->acts[s->st.recompute ? 0 : l];
        if (s->st.recompute) layer_fwd(t, l, x, a, NULL);
        layer_bwd(t, l, x, a, s->dX);
    }
    /* 2'. embeddings: trainable token rows; image rows back through the packing into the projector */
    if (s->n_tok_pos) { /* their gradients are fp32: bf16 rows are widened first */
        o->gather_rows(cx, s->tmp, s->dX, s->d.tok_pos, s->n_tok_pos, D);
        const void *rows = s->tmp;
        if (t->spec.act_dtype != DT_F32) {
            o->cast(cx, s->tok_rows_f32, DT_F32, s->tmp, t->spec.act_dtype, s->n_tok_pos * D);
            rows = s->tok_rows_f32;
        }
        t->of->scatter_add_rows(cx, t->tok_grad, rows, s->d.tok_slot, s->n_tok_pos, D);
    }
    const int vision = t->vis_first < c->v_run_layers;
    if (!t->spec.full_projector && !has_lora(&t->proj[0]) && !vision) return o->sync(cx);
    /* 1'. image rows -> projector output rows -> projector (the frozen part of the vision tower gets no dx) */
    const int64_t NR = s->n_tiles * np;
    o->gather_rows(cx, s->tmp, s->dX, s->d.nn_pos, s->n_nn, D);
    o->zero(cx, s->dP, NR * D);
    o->scatter_add_rows(cx, s->dP, s->tmp, s->d.nn_dst, s->n_nn, D);
    o->zero(cx, s->dG1, NR * D);
    o->zero(cx, s->dH1, NR * D);
    if (vision) o->zero(cx, s->dvsel, NR * c->v_hidden);
    if (t->spec.full_projector) {
        o->linear_bwd(cx, s->dG1, t->proj_grad[2], t->proj_grad[3], s->dP, s->g1, lin_weight(t, &w->proj2), NR,
                      w->proj2.in, w->proj2.out);
        o->gelu_bwd(cx, s->dH1, s->dG1, s->h1, NR * D);
        o->linear_bwd(cx, vision ? s->dvsel : NULL, t->proj_grad[0], t->proj_grad[1], s->dH1, s->sel,
                      lin_weight(t, &w->proj1), NR, w->proj1.in, w->proj1.out);
    } else {
        lin_bwd(t, s->dG1, s->dP, s->g1, &w->proj2, &t->proj[1], s->pt2, NR);
        o->gelu_bwd(cx, s->dH1, s->dG1, s->h1, NR * D);
        lin_bwd(t, vision ? s->dvsel : NULL, s->dH1, s->sel, &w->proj1, &t->proj[0], s->pt1, NR);
    }
    if (vision) vis_backward(t);
    return o->sync(cx);
}
/* ---- generation --------------------------------------------------------------------------------- */

void lt_gen_opts_default(lt_gen_opts *g) {
    memset(g, 0, sizeof *g);
    g->max_new = 64;
    g->temperature = 0.0f;
    g->top_p = 1.0f;
    g->seed = 0;
    g->eos = -1;
}

/* the cache of n prompts with room for max_new tokens each, laid out in the planned buffers */
static lt_kv *kv_setup(llava_trainer *t, const lt_pair *p, int n, int max_new) {
    lt_ws *s = t->ws;
    lt_kv *kv = &s->kvb;
    kv->nb = n;
    kv->rows = 0;
    for (int b = 0; b < n; b++) {
        kv->start[b] = kv->rows;
        kv->cap[b] = p[b].n_prefix + max_new;
        kv->len[b] = 0;
        kv->rows += kv->cap[b];
    }
    return kv;
}

/* the cache's host descriptors and rows to the device */
static void kv_upload(llava_trainer *t, lt_kv *kv, int64_t ntok) {
    t->o->upload(&t->ctx, kv->d_seqs, kv->seqs, sizeof(seq_desc) * (size_t)(2 * kv->nb));
    t->o->upload(&t->ctx, kv->d_row, kv->row, sizeof(int64_t) * (size_t)ntok);
}

static const double *g_sort_prob; /* qsort has no context argument; generation runs on one thread per trainer */

static int by_prob(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_sort_prob[x] != g_sort_prob[y]) return g_sort_prob[x] > g_sort_prob[y] ? -1 : 1;
    return (x > y) - (x < y);
}

/* The next token from a row of logits: argmax (lowest id on a tie, as torch.argmax) when temperature is 0;
 * else a draw from softmax(logits / temperature) cut to the smallest set of most likely tokens whose
 * probability reaches top_p, with u = rng_uniform_d(key(seed, RNG_SAMPLE), stream, step, 0): the same tokens for
 * the same seed whatever the batch or the thread. prob, order: [V] scratch. */
static int32_t pick(const float *logits, int64_t V, const lt_gen_opts *g, uint32_t stream, uint32_t step,
                    double *prob, int32_t *order) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (g->temperature <= 0.0f) return (int32_t)best;
    double sum = 0;
    for (int64_t i = 0; i < V; i++) {
        prob[i] = exp(((double)logits[i] - logits[best]) / g->temperature);
        sum += prob[i];
        order[i] = (int32_t)i;
    }
    /* tokens by falling probability, equal probabilities in id order */
    g_sort_prob = prob;
    qsort(order, (size_t)V, sizeof *order, by_prob);
    double keep = 0;
    int64_t n = 0;
    while (n < V && (n == 0 || keep < g->top_p * sum)) keep += prob[order[n++]];
    double u = rng_uniform_d(rng_key(g->seed, RNG_SAMPLE), stream, step, 0) * keep, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += prob[order[i]];
        if (u < acc) return order[i];
    }
    return order[n - 1];
}

int lt_generate(llava_trainer *t, const lt_pair *p, int n, const lt_gen_opts *g, const uint32_t *streams, int32_t *out,
                int32_t *n_out) {
    if (!t->ws) return err_set(ERR_INTERNAL, "lt_generate before lt_plan");
    if (n < 1) return ERR_OK;
    if (g->max_new < 1) return err_set(ERR_ARGS, "max new tokens: %d, expected >= 1", g->max_new);
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t D = c->t_hidden, V = c->vocab;
    int64_t need = 0, tiles = 0;
    for (int b = 0; b < n; b++) need += p[b].n_prefix, tiles += p[b].P;
    if (n > s->dims.gen_prompts || g->max_new > s->dims.gen_max_new)
        return err_set(ERR_ARGS, "generation: %d prompt(s) of up to %d new tokens; the workspace was planned for %d "
                       "prompt(s) of up to %d (tr_config gen_max_new, eval.samples)", n, g->max_new,
                       s->dims.gen_prompts, s->dims.gen_max_new);
    if (n > s->dims.max_rows || need > s->dims.max_tok || tiles > s->dims.max_tiles)
        return err_set(ERR_ARGS, "generation: %d prompt(s) of %lld tokens and %lld image tiles in all; the workspace "
                       "was sized for %lld rows, %lld tokens and %d tiles (the largest pairs of the data set): use "
                       "a smaller image or fewer prompts at once", n, (long long)need, (long long)tiles,
                       (long long)s->dims.max_rows, (long long)s->dims.max_tok, s->dims.max_tiles);
    lt_kv *kv = kv_setup(t, p, n, g->max_new);
    double *prob = mem_alloc(sizeof(double) * (size_t)V, "sampling scratch");
    int32_t *order = mem_alloc(sizeof(int32_t) * (size_t)V, "sampling scratch");
    int *item = mem_alloc(sizeof(int) * (size_t)n, "generation: active prompts");
    /* prefill: the prompts packed as pack() lays them out (one sequence each, in order) */
    int64_t k = 0;
    for (int b = 0; b < n; b++) {
        for (int32_t j = 0; j < p[b].n_prefix && k < s->dims.max_tok; j++) kv->row[k++] = kv->start[b] + j;
        kv->seqs[b] = (seq_desc){(int32_t)kv->start[b], p[b].n_prefix, 0, n + b};
        kv->seqs[n + b] = (seq_desc){(int32_t)kv->start[b], 0, 0, -1};
        n_out[b] = 0;
    }
    kv->nseq = n;
    kv_upload(t, kv, k);
    s->kv = kv;
    s->gen = 1;
    lt_batch lb = {p, n, 0, 1};
    lt_fwd fw;
    int rc = forward(t, &lb, &fw);
    int active = n;
    for (int b = 0; b < n; b++) item[b] = b;
    for (int step = 0; !rc; step++) {
        /* the next token of every active prompt, from the logits rows (one per active prompt, in order) */
        int still = 0;
        for (int i = 0; i < active; i++) {
            int b = item[i];
            if (step == 0) kv->len[b] = p[b].n_prefix;
            else kv->len[b] += 1;
            int32_t tok = pick(kv->logits + (int64_t)i * V, V, g, streams ? streams[b] : (uint32_t)b, (uint32_t)step,
                               prob, order);
            out[(int64_t)b * g->max_new + n_out[b]++] = tok;
            if (tok != g->eos && n_out[b] < g->max_new) item[still++] = b;
        }
        active = still;
        if (!active) break;
        /* one new token per active prompt: embed it at its position, run the layers against the cache */
        s->ntok = active;
        s->nrows = active;
        s->n_img_pos = 0;
        for (int i = 0; i < active; i++) {
            int b = item[i];
            s->h.ids[i] = out[(int64_t)b * g->max_new + n_out[b] - 1];
            s->h.pos[i] = (int32_t)kv->len[b];
            s->h.row_h[i] = i;
            kv->row[i] = kv->start[b] + kv->len[b];
            kv->seqs[i] = (seq_desc){(int32_t)(kv->start[b] + kv->len[b]), 1, (int32_t)kv->len[b], active + i};
            kv->seqs[active + i] = (seq_desc){(int32_t)kv->start[b], (int32_t)kv->len[b], 0, -1};
        }
        kv->nseq = active;
        kv_upload(t, kv, active);
        o->upload(cx, s->d.ids, s->h.ids, sizeof(int32_t) * (size_t)active);
        o->upload(cx, s->d.pos, s->h.pos, sizeof(int32_t) * (size_t)active);
        o->upload(cx, s->d.row_h, s->h.row_h, sizeof(int64_t) * (size_t)active);
        o->embed_fwd(cx, layer_input(t, 0), t->m->w.embed, s->d.ids, active, D);
        decoder_and_head(t);
        if ((rc = o->sync(cx))) break;
    }
    s->kv = NULL;
    s->gen = 0;
    free(prob);
    free(order);
    free(item);
    return rc;
}

/* ---- inspection (tests, bench) ------------------------------------------------------------------ */

int lt_peek(llava_trainer *t, const char *what, float *out, int64_t cap, int64_t *n, int64_t *cols) {
    lt_ws *s = t->ws;
    if (!s) return err_set(ERR_INTERNAL, "lt_peek before lt_plan");
    const llava_config *c = &t->m->cfg;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), D = c->t_hidden;
    const void *src = NULL;
    int64_t rows = 0, w = 0;
    if (!strcmp(what, "vision_features")) src = s->sel, rows = s->n_tiles * np, w = c->v_hidden;
    else if (!strcmp(what, "image_rows")) src = s->img_rows, rows = s->n_img_pos, w = D;
    else if (!strcmp(what, "embeddings") && s->xin && !s->st.offload) src = s->xin, rows = s->ntok, w = D;
    else if (!strcmp(what, "final_hidden")) src = s->hfin, rows = s->ntok, w = D;
    else if (!strcmp(what, "logits") && s->st.logits_keep) src = s->logits, rows = s->nrows, w = c->vocab;
    else if (!strcmp(what, "row_positions")) {
        if (s->nrows > cap) return err_set(ERR_ARGS, "lt_peek row_positions: %lld rows, room for %lld",
                                           (long long)s->nrows, (long long)cap);
        for (int64_t i = 0; i < s->nrows; i++) out[i] = (float)s->h.row_h[i];
        *n = s->nrows;
        if (cols) *cols = 1;
        return ERR_OK;
    } else
        return err_set(ERR_ARGS, "lt_peek: no buffer '%s' in this plan", what);
    if (rows * w > cap)
        return err_set(ERR_ARGS, "lt_peek %s: %lld values, room for %lld", what, (long long)(rows * w), (long long)cap);
    const ops *o = t->o;
    if (s->es == (int)sizeof(float)) {
        o->download(&t->ctx, out, src, sizeof(float) * (size_t)(rows * w));
    } else { /* bf16: the bits into the second half of out, widened on the host */
        uint16_t *bits = (uint16_t *)(out + rows * w) - rows * w;
        o->download(&t->ctx, bits, src, sizeof(uint16_t) * (size_t)(rows * w));
        ops_cpu()->cast(&t->ctx, out, DT_F32, bits, DT_BF16, rows * w);
    }
    *n = rows;
    if (cols) *cols = w;
    return o->sync(&t->ctx);
}

int lt_vision_features(llava_trainer *t, const float *pixels, int P, void *out) {
    lt_ws *s = t->ws;
    if (!s) return err_set(ERR_INTERNAL, "lt_vision_features before lt_plan");
    if (s->st.vision != LS_VIS_RUN) return err_set(ERR_INTERNAL, "lt_vision_features: the plan does not run the tower");
    const int room = s->dims.max_tiles < ls_image_tiles(&t->m->cfg) ? s->dims.max_tiles : ls_image_tiles(&t->m->cfg);
    if (P < 1 || P > room) return err_set(ERR_ARGS, "vision features: %d tiles, the plan has room for %d", P, room);
    const llava_config *c = &t->m->cfg;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    lt_pair p;
    memset(&p, 0, sizeof p);
    p.pixels = pixels;
    p.P = P;
    lt_batch b = {&p, 1, 0, 1};
    s->ninst = 1;
    s->inst[0] = (img_inst){0, P, 0, 0, 0, 0};
    s->n_tiles = P;
    s->eval = 1;
    vision_index(t);
    t->o->upload(&t->ctx, s->d.vseqs, s->h.vseqs, sizeof(seq_desc) * (size_t)P);
    t->o->upload(&t->ctx, s->d.vrows, s->h.vrows, sizeof(int64_t) * (size_t)(P * np));
    if (t->act_store) t->o->cast(&t->ctx, t->act_store, t->spec.act_dtype, t->store, DT_F32, t->nstore);
    vis_forward(t, &b);
    t->o->download(&t->ctx, out, s->sel, (size_t)s->es * (size_t)(P * np * c->v_hidden));
    return t->o->sync(&t->ctx);
}
