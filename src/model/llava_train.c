/* llava_train — training forward (saving what backward needs) and the explicit backward of LLaVA-NeXT.
 * Read lt_forward and lt_backward top to bottom: they mirror each other. */
#include "model/llava_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "model/carve.h"
#include "backend/rng.h"

static const char *dec_module_names[LT_DEC_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                       "mlp.down_proj"};
enum { M_Q, M_K, M_V, M_O, M_GATE, M_UP, M_DOWN };

/* saved activations of one decoder layer */
typedef struct dec_acts {
    float *a1, *rstd1, *q, *k, *v, *att, *lse, *x_mid, *a2, *rstd2, *g, *u, *h;
    float *t[LT_DEC_MODULES]; /* LoRA x A^T per module */
} dec_acts;

/* saved activations of one adapted vision layer */
typedef struct vis_acts {
    float *mean1, *rstd1, *a1, *q, *k, *v, *att, *lse, *h_mid, *mean2, *rstd2, *a2, *f1, *g;
    float *t[LT_VIS_MODULES];
} vis_acts;

static const char *vis_module_names[LT_VIS_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                       "self_attn.out_proj", "mlp.fc1", "mlp.fc2"};
enum { V_Q, V_K, V_V, V_OUT, V_FC1, V_FC2 };

typedef struct img_inst {   /* one encoded image in the packed batch */
    int pair, P, h, w;
    int64_t sel_off;        /* first row in the per-tile feature buffers (rows of np) */
    int64_t nrows;          /* packed rows (incl. newlines) */
} img_inst;

/* The KV cache of a generation (lt_generate): item b owns rows [start[b], start[b] + cap[b]) of every layer's K
 * and V (after RoPE), of which the first len[b] are filled. The new tokens' queries are put at the rows their keys
 * take, so that the op table's attention (attn_fwd) runs unchanged: a descriptor per new-token run whose prefix
 * descriptor (after the nseq computed ones) names the item's cached rows. */
typedef struct lt_kv {
    int nb;
    int64_t rows;                     /* sum of cap */
    int64_t *start, *cap, *len;
    float **K, **V;                   /* [t_layers] of [rows, kv_heads * head_dim] */
    float *q, *att, *lse;             /* [rows, heads * head_dim], [rows, heads * head_dim], [rows, heads] */
    seq_desc *seqs;                   /* [2 * nb]: runs of new tokens, then the cached rows they see */
    int nseq;
    int64_t *row;                     /* [max_tok] cache row of each new (packed) token */
} lt_kv;

struct lt_ws {
    int64_t max_tok, max_rows, max_img_rows;
    int max_tiles;
    int vis_nadapt;                   /* adapted vision layers (vision LoRA) */
    /* packing */
    int32_t *ids, *pos;
    seq_desc *seqs;
    int nseq;
    int64_t ntok;
    img_inst *inst;
    int ninst;
    int64_t *img_pos, n_img_pos;     /* packed positions of <image> tokens, in order */
    int64_t *pidx;                   /* packing index of one image (llava_pack_index) */
    int64_t n_tiles;                 /* tiles of all instances */
    int64_t *nn_pos, *nn_dst, n_nn;  /* non-newline image rows: packed position -> projector row */
    int64_t *tok_pos;                /* positions of trainable token ids */
    int64_t *tok_slot;
    int64_t n_tok_pos;
    /* vision + projector */
    void *vis_ws;
    float *sel, *h1, *g1, *pout, *pt1, *pt2, *img_rows;
    /* decoder */
    float *xin;                       /* [(L + 1) * max_tok * D]: input of every layer, then the final norm input */
    dec_acts *acts;                   /* t_layers sets, or 1 with gradient checkpointing */
    float *rstd_f, *hfin;
    /* target rows */
    int64_t nrows;
    int64_t *row_h;
    int32_t *row_label, *row_pair;
    uint8_t *row_role;
    float *rsel, *logits, *lse, *logp, *thead;
    /* backward scratch */
    float *dX, *dMid, *dA, *dQ, *dK, *dV, *dAtt, *dG, *dU, *dH, *dsel, *dP, *dG1, *dH1, *tmp;
    float *wscr, *ldt, *lxd;
    uint32_t step;
    int eval;                         /* no LoRA dropout */
    lt_kv *kv;                        /* generation: attention reads and extends this KV cache (else NULL) */
    int gen;                          /* generation: pack prompts only, one logits row per prompt */
    /* vision LoRA: all tiles of the micro-batch as one packed batch of (CLS + patches) sequences */
    int64_t vtok;                     /* tokens of the vision batch */
    seq_desc *vseqs;
    float *vpatch, *vxin, *vscr;      /* im2col rows; inputs of layers vis_first.. and the output; frozen-layer scratch */
    vis_acts *vacts;                  /* one per adapted layer */
    float *vdX, *vdMid, *vdA, *vdQ, *vdK, *vdV, *vdAtt, *vdF, *vdG, *vtmp;
    float *dvsel;                     /* d loss / d selected vision features */
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
        rng_lora_init(t->spec.seed, init_id, RNG_INIT_KAIMING_A, ad->r, ad->in, ad->A);
        memset(ad->B, 0, sizeof(float) * (size_t)(ad->out * ad->r));
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
            memcpy(t->proj_master[0], p1->w, sizeof(float) * (size_t)(p1->out * p1->in));
            memcpy(t->proj_master[1], p1->b, sizeof(float) * (size_t)p1->out);
            memcpy(t->proj_master[2], p2->w, sizeof(float) * (size_t)(p2->out * p2->in));
            memcpy(t->proj_master[3], p2->b, sizeof(float) * (size_t)p2->out);
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
                memcpy(t->tok_rows + (int64_t)i * c->t_hidden, w->embed + (int64_t)t->tok_ids[i] * c->t_hidden,
                       sizeof(float) * (size_t)c->t_hidden);
    }
    t->nstore = off;
}

int lt_init(llava_trainer *t, llava_model *m, const lt_spec *spec) {
    memset(t, 0, sizeof *t);
    t->o = ops_cpu();
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
    t->store = mem_calloc((size_t)(t->nstore ? t->nstore : 1), sizeof(float), "trainable parameters");
    t->gstore = mem_calloc((size_t)(t->nstore ? t->nstore : 1), sizeof(float), "gradients");
    t->tensors = mem_calloc((size_t)(t->ntensors ? t->ntensors : 1), sizeof *t->tensors, "trainable tensor list");
    layout(t); /* fill */
    return ERR_OK;
}

int lt_tensor_count(const llava_trainer *t) { return t->ntensors; }
const lt_tensor_info *lt_tensor(const llava_trainer *t, int i) { return &t->tensors[i]; }
void lt_zero_grads(llava_trainer *t) { memset(t->gstore, 0, sizeof(float) * (size_t)t->nstore); }

/* ---- workspace -------------------------------------------------------------------------------- */

static int64_t maxin_of(const llava_config *c) {
    int64_t m = c->t_hidden > c->t_inter ? c->t_hidden : c->t_inter;
    if (c->v_hidden > m) m = c->v_hidden;
    if (c->v_inter > m) m = c->v_inter;
    return m;
}

static void carve_ws(lt_ws *s, carve *cv, const llava_config *c, const lt_spec *sp) {
    const int64_t T = s->max_tok, D = c->t_hidden, Q = (int64_t)c->t_heads * c->t_head_dim;
    const int64_t KV = (int64_t)c->t_kv_heads * c->t_head_dim, I = c->t_inter, r = sp->rank;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), R = s->max_rows;
    const int64_t tiles = s->max_tiles, V = c->vocab;
    s->ids = carve_take(cv, sizeof(int32_t) * (size_t)T);
    s->pos = carve_take(cv, sizeof(int32_t) * (size_t)T);
    s->seqs = carve_take(cv, sizeof(seq_desc) * (size_t)(3 * T));
    s->inst = carve_take(cv, sizeof(img_inst) * (size_t)tiles);
    s->img_pos = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->nn_pos = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->pidx = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->nn_dst = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->tok_pos = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->tok_slot = carve_take(cv, sizeof(int64_t) * (size_t)T);
    s->sel = carve_f32(cv, tiles * np * c->v_hidden);
    s->h1 = carve_f32(cv, tiles * np * D);
    s->g1 = carve_f32(cv, tiles * np * D);
    s->pout = carve_f32(cv, tiles * np * D);
    s->pt1 = carve_f32(cv, tiles * np * r);
    s->pt2 = carve_f32(cv, tiles * np * r);
    s->img_rows = carve_f32(cv, T * D);
    s->xin = carve_f32(cv, (int64_t)(c->t_layers + 1) * T * D);
    int nacts = sp->grad_ckpt ? 1 : c->t_layers;
    s->acts = carve_take(cv, sizeof(dec_acts) * (size_t)nacts);
    for (int l = 0; l < nacts; l++) {
        dec_acts a;
        /* the saved activations of one decoder layer, in this order */
        float **part[] = {&a.a1, &a.rstd1, &a.q, &a.k, &a.v, &a.att, &a.lse, &a.x_mid, &a.a2, &a.rstd2, &a.g, &a.u,
                          &a.h};
        const int64_t size[] = {T * D, T, T * Q, T * KV, T * KV, T * Q, T * c->t_heads, T * D, T * D, T, T * I,
                                T * I, T * I};
        for (size_t i = 0; i < sizeof size / sizeof size[0]; i++) *part[i] = carve_f32(cv, size[i]);
        for (int mi = 0; mi < LT_DEC_MODULES; mi++) a.t[mi] = carve_f32(cv, T * r);
        if (cv->base) s->acts[l] = a;
    }
    s->rstd_f = carve_f32(cv, T);
    s->hfin = carve_f32(cv, T * D);
    s->row_h = carve_take(cv, sizeof(int64_t) * (size_t)R);
    s->row_label = carve_take(cv, sizeof(int32_t) * (size_t)R);
    s->row_pair = carve_take(cv, sizeof(int32_t) * (size_t)R);
    s->row_role = carve_take(cv, (size_t)R);
    s->rsel = carve_f32(cv, R * D);
    s->logits = carve_f32(cv, R * V);
    s->lse = carve_f32(cv, R);
    s->logp = carve_f32(cv, R);
    s->thead = carve_f32(cv, R * r);
    int64_t big = T > tiles * np ? T : tiles * np;
    s->dX = carve_f32(cv, T * D);
    s->dMid = carve_f32(cv, T * D);
    s->dA = carve_f32(cv, T * D);
    s->dQ = carve_f32(cv, T * Q);
    s->dK = carve_f32(cv, T * KV);
    s->dV = carve_f32(cv, T * KV);
    s->dAtt = carve_f32(cv, T * Q);
    s->dG = carve_f32(cv, T * I);
    s->dU = carve_f32(cv, T * I);
    s->dH = carve_f32(cv, T * I);
    s->dsel = carve_f32(cv, R * D);
    s->dP = carve_f32(cv, tiles * np * D);
    s->dG1 = carve_f32(cv, tiles * np * D);
    s->dH1 = carve_f32(cv, tiles * np * D);
    s->tmp = carve_f32(cv, big * (D > I ? D : I));
    int64_t wmax = (int64_t)c->t_hidden * (c->t_inter > Q ? c->t_inter : Q);
    if ((int64_t)V * D > wmax) wmax = (int64_t)V * D;
    if ((int64_t)c->v_hidden * D > wmax) wmax = (int64_t)c->v_hidden * D;
    if ((int64_t)c->v_hidden * c->v_inter > wmax) wmax = (int64_t)c->v_hidden * c->v_inter;
    s->wscr = carve_f32(cv, wmax);
    int64_t lrows = big > R ? big : R; /* rows any LoRA sees at once: tokens, target rows, vision tokens */
    if (tiles * (np + 1) > lrows) lrows = tiles * (np + 1);
    s->ldt = carve_f32(cv, lrows * r);
    s->lxd = carve_f32(cv, lrows * maxin_of(c));
    if (sp->vision_targets) {
        const int64_t Dv = c->v_hidden, NT = tiles * (np + 1), VI = c->v_inter, pk = 3LL * c->v_patch * c->v_patch;
        int nad = s->vis_nadapt;
        s->vseqs = carve_take(cv, sizeof(seq_desc) * (size_t)tiles);
        s->vpatch = carve_f32(cv, tiles * np * (pk > Dv ? pk : Dv));
        s->vxin = carve_f32(cv, (int64_t)(nad + 1) * NT * Dv);
        s->vscr = carve_f32(cv, NT * (9 * Dv + 2 * VI + c->v_heads + 4));
        s->vacts = carve_take(cv, sizeof(vis_acts) * (size_t)(nad > 0 ? nad : 1));
        for (int l = 0; l < nad; l++) {
            vis_acts a;
            /* the saved activations of one adapted layer, in this order */
            float **part[] = {&a.mean1, &a.rstd1, &a.a1, &a.q, &a.k, &a.v, &a.att, &a.lse, &a.h_mid, &a.mean2,
                              &a.rstd2, &a.a2, &a.f1, &a.g};
            const int64_t size[] = {NT, NT, NT * Dv, NT * Dv, NT * Dv, NT * Dv, NT * Dv, NT * c->v_heads, NT * Dv,
                                    NT, NT, NT * Dv, NT * VI, NT * VI};
            for (size_t i = 0; i < sizeof size / sizeof size[0]; i++) *part[i] = carve_f32(cv, size[i]);
            for (int mi = 0; mi < LT_VIS_MODULES; mi++) a.t[mi] = carve_f32(cv, NT * r);
            if (cv->base) s->vacts[l] = a;
        }
        s->vdX = carve_f32(cv, NT * Dv);
        s->vdMid = carve_f32(cv, NT * Dv);
        s->vdA = carve_f32(cv, NT * Dv);
        s->vdQ = carve_f32(cv, NT * Dv);
        s->vdK = carve_f32(cv, NT * Dv);
        s->vdV = carve_f32(cv, NT * Dv);
        s->vdAtt = carve_f32(cv, NT * Dv);
        s->vdF = carve_f32(cv, NT * VI);
        s->vdG = carve_f32(cv, NT * VI);
        s->vtmp = carve_f32(cv, NT * (Dv > VI ? Dv : VI));
        s->dvsel = carve_f32(cv, tiles * np * Dv);
    }

}

int lt_plan(llava_trainer *t, int64_t max_tok, int max_tiles, int64_t max_rows) {
    const llava_config *c = &t->m->cfg;
    lt_ws probe;
    memset(&probe, 0, sizeof probe);
    probe.max_tok = max_tok;
    probe.max_tiles = max_tiles;
    probe.max_rows = max_rows;
    probe.vis_nadapt = c->v_run_layers - t->vis_first;
    carve cv = {NULL, 0};
    carve_ws(&probe, &cv, c, &t->spec);
    char *mem = calloc(1, cv.used + sizeof(lt_ws) + 64);
    if (!mem) return err_set(ERR_IO, "training workspace: cannot allocate %.1f MiB", (double)cv.used / 1048576.0);
    free(t->ws ? t->ws->vis_ws : NULL);
    free(t->ws);
    t->ws = (lt_ws *)mem;
    *t->ws = probe;
    carve real = {mem + ((sizeof(lt_ws) + 63) & ~(size_t)63), 0};
    carve_ws(t->ws, &real, c, &t->spec);
    t->ws->vis_ws = mem_alloc(llava_ws_size(c, 1, max_tiles), "vision tower workspace");
    return ERR_OK;
}

void lt_free(llava_trainer *t) {
    if (t->proj_orig[0]) {
        llava_weights *w = &t->m->w;
        w->proj1.w = t->proj_orig[0];
        w->proj1.b = t->proj_orig[1];
        w->proj2.w = t->proj_orig[2];
        w->proj2.b = t->proj_orig[3];
    }
    if (t->ws) free(t->ws->vis_ws);
    free(t->ws);
    free(t->dec);
    free(t->vis);
    free(t->store);
    free(t->gstore);
    free(t->tensors);
    free(t->tok_ids);
    memset(t, 0, sizeof *t);
}

/* ---- linear with optional LoRA ------------------------------------------------------------------ */

static int has_lora(const lora_ad *ad) { return ad && ad->A; }

static void lin_fwd(llava_trainer *t, float *y, const float *x, const lin_w *w, const lora_ad *ad, float *tsave,
                    int64_t M) {
    t->o->linear_fwd(&t->ctx, y, x, lin_f32(w, t->ws->wscr), w->b, M, w->in, w->out);
    if (!has_lora(ad)) return;
    if (t->ws->eval && ad->dropout > 0.0f) {
        lora_ad nodrop = *ad;
        nodrop.dropout = 0.0f;
        lora_fwd(t->o, &t->ctx, &nodrop, y, x, M, tsave, t->ws->lxd, t->ws->step);
    } else {
        lora_fwd(t->o, &t->ctx, ad, y, x, M, tsave, t->ws->lxd, t->ws->step);
    }
}

/* dx += dy W (+ LoRA path); LoRA dA/dB accumulate. dW of the base is never needed (frozen) except for the
 * fully trained projector, handled by the caller. */
static void lin_bwd(llava_trainer *t, float *dx, const float *dy, const float *x, const lin_w *w, lora_ad *ad,
                    const float *tsave, int64_t M) {
    if (dx) t->o->linear_bwd(&t->ctx, dx, NULL, NULL, dy, x, lin_f32(w, t->ws->wscr), M, w->in, w->out);
    if (has_lora(ad)) lora_bwd(t->o, &t->ctx, ad, dx, dy, x, tsave, M, t->ws->ldt, t->ws->lxd, t->ws->step);
}

/* ---- packing ---------------------------------------------------------------------------------- */

static void add_row(lt_ws *s, int64_t h, int32_t label, uint8_t role, int32_t pair) {
    s->row_h[s->nrows] = h;
    s->row_label[s->nrows] = label;
    s->row_role[s->nrows] = role;
    s->row_pair[s->nrows] = pair;
    s->nrows++;
}

/* append one sequence of ids at position offset pos0; returns its start */
static int64_t put_seq(lt_ws *s, const int32_t *ids, int32_t n, int32_t pos0, int32_t prefix) {
    int64_t start = s->ntok;
    for (int32_t i = 0; i < n; i++) {
        s->ids[s->ntok + i] = ids[i];
        s->pos[s->ntok + i] = pos0 + i;
    }
    s->seqs[s->nseq++] = (seq_desc){(int32_t)start, n, pos0, prefix};
    s->ntok += n;
    return start;
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
    if (need > s->max_tok || tiles > s->max_tiles || rows > s->max_rows)
        return err_set(ERR_INTERNAL, "micro-batch of %lld tokens, %lld tiles, %lld rows exceeds the planned "
                       "%lld / %d / %lld", (long long)need, (long long)tiles, (long long)rows, (long long)s->max_tok,
                       s->max_tiles, (long long)s->max_rows);
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
                    s->seqs[s->nseq - 1].len += p->n_chosen;
                }
                for (int32_t j = 0; j < p->n_chosen; j++)
                    add_row(s, j == 0 ? last : cs + j - 1, p->chosen[j], LT_ROLE_CHOSEN | LT_ROLE_NLL, i);
            }
            if (do_rejected) {
                int64_t rs = put_seq(s, p->rejected, p->n_rejected, p->n_prefix, t->spec.share_prefix ? prefix_seq : -1);
                if (!t->spec.share_prefix) {
                    s->nseq--;
                    s->seqs[s->nseq - 1].len += p->n_rejected;
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
        if (s->ids[k] == c->image_token) s->img_pos[s->n_img_pos++] = k;
        else if (t->n_tok_rows)
            for (int j = 0; j < t->n_tok_rows; j++)
                if (t->tok_ids[j] == s->ids[k]) {
                    s->tok_pos[s->n_tok_pos] = k;
                    s->tok_slot[s->n_tok_pos++] = j;
                }
    }
    int64_t expect = 0;
    for (int k = 0; k < s->ninst; k++) expect += s->inst[k].nrows;
    if (expect != s->n_img_pos)
        return err_set(ERR_DATA, "micro-batch: %lld <image> tokens but the images give %lld feature rows",
                       (long long)s->n_img_pos, (long long)expect);
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
    for (int64_t i = 0; i < s->ntok; i++) {
        int64_t r = kv->row[i];
        o->copy(cx, kv->q + r * Q, a->q + i * Q, Q);
        o->copy(cx, kv->K[l] + r * KV, a->k + i * KV, KV);
        o->copy(cx, kv->V[l] + r * KV, a->v + i * KV, KV);
    }
    o->attn_fwd(cx, kv->att, kv->lse, kv->q, kv->K[l], kv->V[l], kv->seqs, kv->nseq, kv->rows, c->t_heads,
                c->t_kv_heads, c->t_head_dim, 1);
    o->gather_rows(cx, a->att, kv->att, kv->row, s->ntok, Q);
}

/* ---- decoder layer ---------------------------------------------------------------------------- */

static void layer_fwd(llava_trainer *t, int l, const float *x, dec_acts *a, float *out) {
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
    o->rope_fwd(cx, a->q, s->pos, T, c->t_heads, c->t_head_dim, c->rope_theta);
    o->rope_fwd(cx, a->k, s->pos, T, c->t_kv_heads, c->t_head_dim, c->rope_theta);
    if (s->kv)
        kv_attention(t, l, a);
    else
        o->attn_fwd(cx, a->att, a->lse, a->q, a->k, a->v, s->seqs, s->nseq, T, c->t_heads, c->t_kv_heads,
                    c->t_head_dim, 1);
    lin_fwd(t, s->tmp, a->att, &ly->o, &ad[M_O], a->t[M_O], T);
    o->copy(cx, a->x_mid, x, T * D);
    o->add_inplace(cx, a->x_mid, s->tmp, T * D);
    o->rmsnorm_fwd(cx, a->a2, a->rstd2, a->x_mid, ly->post_norm, T, D, c->t_eps);
    lin_fwd(t, a->g, a->a2, &ly->gate, &ad[M_GATE], a->t[M_GATE], T);
    lin_fwd(t, a->u, a->a2, &ly->up, &ad[M_UP], a->t[M_UP], T);
    o->swiglu_fwd(cx, a->h, a->g, a->u, T * c->t_inter);
    lin_fwd(t, s->tmp, a->h, &ly->down, &ad[M_DOWN], a->t[M_DOWN], T); /* also saves down's LoRA input */
    if (!out) return; /* recomputed for backward: the layer output itself is not needed */
    o->copy(cx, out, a->x_mid, T * D);
    o->add_inplace(cx, out, s->tmp, T * D);
}

/* dX: gradient of the layer output on entry, of the layer input on exit */
static void layer_bwd(llava_trainer *t, int l, const float *x, dec_acts *a, float *dX) {
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
    o->attn_bwd(cx, s->dQ, s->dK, s->dV, s->dAtt, a->att, a->lse, a->q, a->k, a->v, s->seqs, s->nseq, T, c->t_heads,
                c->t_kv_heads, c->t_head_dim, 1);
    o->rope_bwd(cx, s->dQ, s->pos, T, c->t_heads, c->t_head_dim, c->rope_theta);
    o->rope_bwd(cx, s->dK, s->pos, T, c->t_kv_heads, c->t_head_dim, c->rope_theta);
    o->zero(cx, s->dA, T * D);
    lin_bwd(t, s->dA, s->dQ, a->a1, &ly->q, &ad[M_Q], a->t[M_Q], T);
    lin_bwd(t, s->dA, s->dK, a->a1, &ly->k, &ad[M_K], a->t[M_K], T);
    lin_bwd(t, s->dA, s->dV, a->a1, &ly->v, &ad[M_V], a->t[M_V], T);
    o->copy(cx, dX, s->dMid, T * D);
    o->rmsnorm_bwd(cx, dX, NULL, s->dA, x, ly->in_norm, a->rstd1, T, D);
}

/* ---- vision tower with LoRA ------------------------------------------------------------------- */

static void vis_layer_fwd(llava_trainer *t, int l, const float *x, vis_acts *a, float *out) {
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
    o->attn_fwd(cx, a->att, a->lse, a->q, a->k, a->v, s->vseqs, (int)s->n_tiles, NT, c->v_heads, c->v_heads,
                (int)(Dv / c->v_heads), 0);
    lin_fwd(t, s->vtmp, a->att, &vl->o, &ad[V_OUT], a->t[V_OUT], NT);
    o->copy(cx, a->h_mid, x, NT * Dv);
    o->add_inplace(cx, a->h_mid, s->vtmp, NT * Dv);
    o->layernorm_fwd(cx, a->a2, a->mean2, a->rstd2, a->h_mid, vl->ln2_w, vl->ln2_b, NT, Dv, c->v_eps);
    lin_fwd(t, a->f1, a->a2, &vl->fc1, &ad[V_FC1], a->t[V_FC1], NT);
    o->copy(cx, a->g, a->f1, NT * c->v_inter);
    o->quick_gelu_fwd(cx, a->g, a->g, NT * c->v_inter);
    lin_fwd(t, s->vtmp, a->g, &vl->fc2, &ad[V_FC2], a->t[V_FC2], NT);
    o->copy(cx, out, a->h_mid, NT * Dv);
    o->add_inplace(cx, out, s->vtmp, NT * Dv);
}

static void vis_layer_bwd(llava_trainer *t, int l, const float *x, vis_acts *a, float *dX) {
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
    o->attn_bwd(cx, s->vdQ, s->vdK, s->vdV, s->vdAtt, a->att, a->lse, a->q, a->k, a->v, s->vseqs, (int)s->n_tiles, NT,
                c->v_heads, c->v_heads, (int)(Dv / c->v_heads), 0);
    o->zero(cx, s->vdA, NT * Dv);
    lin_bwd(t, s->vdA, s->vdQ, a->a1, &vl->q, &ad[V_Q], a->t[V_Q], NT);
    lin_bwd(t, s->vdA, s->vdK, a->a1, &vl->k, &ad[V_K], a->t[V_K], NT);
    lin_bwd(t, s->vdA, s->vdV, a->a1, &vl->v, &ad[V_V], a->t[V_V], NT);
    o->copy(cx, dX, s->vdMid, NT * Dv);
    o->layernorm_bwd(cx, dX, NULL, NULL, s->vdA, x, vl->ln1_w, a->mean1, a->rstd1, NT, Dv);
}

/* every tile of the micro-batch through the tower at once; the adapted layers keep their activations */
static void vis_forward(llava_trainer *t, const lt_batch *b) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int g = c->v_image / c->v_patch, p = c->v_patch;
    const int64_t np = (int64_t)g * g, L = np + 1, Dv = c->v_hidden, pk = 3LL * p * p;
    const int64_t NT = s->n_tiles * L;
    s->vtok = NT;
    /* patch embedding: im2col rows of every instance's tiles, then one GEMM with the conv weight */
    for (int k = 0; k < s->ninst; k++)
        llava_im2col(c, b->pairs[s->inst[k].pair].pixels, s->inst[k].P, s->vpatch + s->inst[k].sel_off * np * pk);
    float *h = s->vscr;              /* ping-pong buffers for the frozen layers */
    float *h2 = h + NT * Dv;
    float *scr = h2 + NT * Dv;
    o->linear_fwd(cx, s->vtmp, s->vpatch, w->patch_w, NULL, s->n_tiles * np, pk, Dv);
    for (int64_t tl = 0; tl < s->n_tiles; tl++) {
        float *h0 = h + tl * L * Dv;
        o->copy(cx, h0, w->cls, Dv);
        o->add_inplace(cx, h0, w->pos, Dv);
        o->copy(cx, h0 + Dv, s->vtmp + tl * np * Dv, np * Dv);
        o->add_inplace(cx, h0 + Dv, w->pos + Dv, np * Dv);
        s->vseqs[tl] = (seq_desc){(int32_t)(tl * L), (int32_t)L, 0, -1};
    }
    /* frozen layers run with scratch activations */
    vis_acts fz;
    memset(&fz, 0, sizeof fz);
    fz.mean1 = scr; fz.rstd1 = scr + NT; fz.mean2 = scr + 2 * NT; fz.rstd2 = scr + 3 * NT;
    fz.a1 = scr + 4 * NT; fz.q = fz.a1 + NT * Dv; fz.k = fz.q + NT * Dv; fz.v = fz.k + NT * Dv;
    fz.att = fz.v + NT * Dv; fz.h_mid = fz.att + NT * Dv; fz.a2 = fz.h_mid + NT * Dv;
    fz.f1 = fz.a2 + NT * Dv; fz.g = fz.f1 + NT * c->v_inter; fz.lse = fz.g + NT * c->v_inter;
    o->layernorm_fwd(cx, h2, fz.mean1, fz.rstd1, h, w->pre_ln_w, w->pre_ln_b, NT, Dv, c->v_eps);
    float *cur = h2, *nxt = h;
    for (int l = 0; l < t->vis_first; l++) {
        vis_layer_fwd(t, l, cur, &fz, nxt);
        float *tmp = cur; cur = nxt; nxt = tmp;
    }
    o->copy(cx, s->vxin, cur, NT * Dv);
    for (int l = t->vis_first; l < c->v_run_layers; l++) {
        int k = l - t->vis_first;
        vis_layer_fwd(t, l, s->vxin + (int64_t)k * NT * Dv, &s->vacts[k], s->vxin + (int64_t)(k + 1) * NT * Dv);
    }
    const float *last = s->vxin + (int64_t)(c->v_run_layers - t->vis_first) * NT * Dv;
    for (int64_t tl = 0; tl < s->n_tiles; tl++) /* drop CLS */
        o->copy(cx, s->sel + tl * np * Dv, last + (tl * L + 1) * Dv, np * Dv);
}

static void vis_backward(llava_trainer *t) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), L = np + 1, Dv = c->v_hidden;
    o->zero(cx, s->vdX, s->vtok * Dv);
    for (int64_t tl = 0; tl < s->n_tiles; tl++) o->copy(cx, s->vdX + (tl * L + 1) * Dv, s->dvsel + tl * np * Dv, np * Dv);
    for (int l = c->v_run_layers - 1; l >= t->vis_first; l--) {
        int k = l - t->vis_first;
        vis_layer_bwd(t, l, s->vxin + (int64_t)k * s->vtok * Dv, &s->vacts[k], s->vdX);
    }
}

/* ---- the step's forward and backward ---------------------------------------------------------- */

static int forward(llava_trainer *t, const lt_batch *b, lt_fwd *fw);

/* 3. decoder layers over the packed tokens in xin; every layer input is kept (the checkpoints);
 * 4. lm_head on the target rows only (their logits in s->logits) */
static void decoder_and_head(llava_trainer *t) {
    lt_ws *s = t->ws;
    const llava_config *c = &t->m->cfg;
    llava_weights *w = &t->m->w;
    const ops *o = t->o;
    opctx *cx = &t->ctx;
    const int64_t D = c->t_hidden, T = s->ntok;
    for (int l = 0; l < c->t_layers; l++) {
        dec_acts *a = &s->acts[t->spec.grad_ckpt ? 0 : l];
        layer_fwd(t, l, s->xin + (int64_t)l * T * D, a, s->xin + (int64_t)(l + 1) * T * D);
    }
    o->rmsnorm_fwd(cx, s->hfin, s->rstd_f, s->xin + (int64_t)c->t_layers * T * D, w->norm, T, D, c->t_eps);
    o->gather_rows(cx, s->rsel, s->hfin, s->row_h, s->nrows, D);
    lin_fwd(t, s->logits, s->rsel, &w->lm_head, &t->head, s->thead, s->nrows);
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

    /* 1. vision tower (frozen) per image instance; the projector once over all their tiles; anyres packing.
     *    nn_pos/nn_dst remember where every non-newline image row came from, for the backward. */
    if (t->vis_first < c->v_run_layers)
        vis_forward(t, b);
    else
        for (int k = 0; k < s->ninst; k++) {
            const img_inst *in = &s->inst[k];
            llava_vision_forward(o, cx, c, w, b->pairs[in->pair].pixels, in->P, s->sel + in->sel_off * np * c->v_hidden,
                                 s->vis_ws);
        }
    const int64_t NR = s->n_tiles * np;
    lin_fwd(t, s->h1, s->sel, &w->proj1, &t->proj[0], s->pt1, NR);
    o->copy(cx, s->g1, s->h1, NR * D);
    o->gelu_fwd(cx, s->g1, s->g1, NR * D);
    lin_fwd(t, s->pout, s->g1, &w->proj2, &t->proj[1], s->pt2, NR);
    int64_t row = 0;
    s->n_nn = 0;
    for (int k = 0; k < s->ninst; k++) {
        const img_inst *in = &s->inst[k];
        llava_pack_index(c, in->P, in->h, in->w, s->pidx);
        for (int64_t r = 0; r < in->nrows; r++, row++) {
            const float *src = s->pidx[r] >= 0 ? s->pout + (in->sel_off * np + s->pidx[r]) * D : w->newline;
            o->copy(cx, s->img_rows + row * D, src, D);
            if (s->pidx[r] >= 0) {
                s->nn_pos[s->n_nn] = s->img_pos[row];
                s->nn_dst[s->n_nn++] = in->sel_off * np + s->pidx[r];
            }
        }
    }
    /* 2. embeddings: token rows (trainable rows from the masters), image rows at <image> positions */
    for (int j = 0; j < t->n_tok_rows; j++)
        memcpy((float *)w->embed + (int64_t)t->tok_ids[j] * D, t->tok_rows + (int64_t)j * D, sizeof(float) * (size_t)D);
    float *x0 = s->xin;
    o->embed_fwd(cx, x0, w->embed, s->ids, T, D);
    row = 0;
    for (int64_t k = 0; k < s->n_img_pos; k++) o->copy(cx, x0 + s->img_pos[k] * D, s->img_rows + (row++) * D, D);
    decoder_and_head(t);
    if (s->gen) return ERR_OK; /* lt_generate reads the logits */
    o->logprob_fwd(cx, s->logp, s->lse, s->logits, s->row_label, s->nrows, c->vocab);
    fw->nrows = s->nrows;
    fw->logp = s->logp;
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
    const int64_t D = c->t_hidden, T = s->ntok, R = s->nrows;
    const int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);

    /* 4'. log-prob -> logits -> lm_head -> final-norm output rows */
    o->logprob_bwd(cx, s->logits, dlogp, s->lse, s->logits, s->row_label, R, c->vocab);
    o->zero(cx, s->dsel, R * D);
    lin_bwd(t, s->dsel, s->logits, s->rsel, &w->lm_head, &t->head, s->thead, R);
    o->zero(cx, s->dX, T * D);
    o->scatter_add_rows(cx, s->dX, s->dsel, s->row_h, R, D);
    o->copy(cx, s->dMid, s->dX, T * D);
    o->zero(cx, s->dX, T * D);
    o->rmsnorm_bwd(cx, s->dX, NULL, s->dMid, s->xin + (int64_t)c->t_layers * T * D, w->norm, s->rstd_f, T, D);
    /* 3'. decoder layers in reverse; with checkpointing each layer is recomputed from its input first */
    for (int l = c->t_layers - 1; l >= 0; l--) {
        const float *x = s->xin + (int64_t)l * T * D;
        dec_acts *a = &s->acts[t->spec.grad_ckpt ? 0 : l];
        if (t->spec.grad_ckpt) layer_fwd(t, l, x, a, NULL);
        layer_bwd(t, l, x, a, s->dX);
    }
    /* 2'. embeddings: trainable token rows; image rows back through the packing into the projector */
    if (s->n_tok_pos) {
        o->gather_rows(cx, s->tmp, s->dX, s->tok_pos, s->n_tok_pos, D);
        o->scatter_add_rows(cx, t->tok_grad, s->tmp, s->tok_slot, s->n_tok_pos, D);
    }
    const int vision = t->vis_first < c->v_run_layers;
    if (!t->spec.full_projector && !has_lora(&t->proj[0]) && !vision) return ERR_OK;
    /* 1'. image rows -> projector output rows -> projector (the vision tower is frozen: no dx below it) */
    const int64_t NR = s->n_tiles * np;
    o->gather_rows(cx, s->tmp, s->dX, s->nn_pos, s->n_nn, D);
    o->zero(cx, s->dP, NR * D);
    o->scatter_add_rows(cx, s->dP, s->tmp, s->nn_dst, s->n_nn, D);
    o->zero(cx, s->dG1, NR * D);
    o->zero(cx, s->dH1, NR * D);
    if (t->spec.full_projector) {
        o->linear_bwd(cx, s->dG1, t->proj_grad[2], t->proj_grad[3], s->dP, s->g1, w->proj2.w, NR, w->proj2.in, w->proj2.out);
        o->gelu_bwd(cx, s->dH1, s->dG1, s->h1, NR * D);
        if (vision) o->zero(cx, s->dvsel, NR * c->v_hidden);
        o->linear_bwd(cx, vision ? s->dvsel : NULL, t->proj_grad[0], t->proj_grad[1], s->dH1, s->sel, w->proj1.w, NR,
                      w->proj1.in, w->proj1.out);
    } else {
        lin_bwd(t, s->dG1, s->dP, s->g1, &w->proj2, &t->proj[1], s->pt2, NR);
        o->gelu_bwd(cx, s->dH1, s->dG1, s->h1, NR * D);
        if (vision) o->zero(cx, s->dvsel, NR * c->v_hidden);
        lin_bwd(t, vision ? s->dvsel : NULL, s->dH1, s->sel, &w->proj1, &t->proj[0], s->pt1, NR);
    }
    if (vision) vis_backward(t);
    return ERR_OK;
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

static void kv_free(lt_kv *kv, int layers) {
    if (!kv) return;
    for (int l = 0; l < layers; l++) {
        if (kv->K) free(kv->K[l]);
        if (kv->V) free(kv->V[l]);
    }
    free(kv->K);
    free(kv->V);
    free(kv->q);
    free(kv->att);
    free(kv->lse);
    free(kv->start);
    free(kv->cap);
    free(kv->len);
    free(kv->seqs);
    free(kv->row);
    free(kv);
}

static lt_kv *kv_alloc(const llava_config *c, const lt_pair *p, int n, int max_new, int64_t max_tok) {
    const int64_t Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    lt_kv *kv = mem_calloc(1, sizeof *kv, "KV cache");
    kv->nb = n;
    kv->start = mem_calloc((size_t)n, sizeof(int64_t), "KV cache");
    kv->cap = mem_calloc((size_t)n, sizeof(int64_t), "KV cache");
    kv->len = mem_calloc((size_t)n, sizeof(int64_t), "KV cache");
    for (int b = 0; b < n; b++) {
        kv->start[b] = kv->rows;
        kv->cap[b] = p[b].n_prefix + max_new;
        kv->rows += kv->cap[b];
    }
    kv->K = mem_calloc((size_t)c->t_layers, sizeof(float *), "KV cache");
    kv->V = mem_calloc((size_t)c->t_layers, sizeof(float *), "KV cache");
    for (int l = 0; l < c->t_layers; l++) {
        kv->K[l] = mem_alloc(sizeof(float) * (size_t)(kv->rows * KV), "KV cache keys");
        kv->V[l] = mem_alloc(sizeof(float) * (size_t)(kv->rows * KV), "KV cache values");
    }
    kv->q = mem_calloc((size_t)(kv->rows * Q), sizeof(float), "KV cache queries");
    kv->att = mem_calloc((size_t)(kv->rows * Q), sizeof(float), "KV cache attention");
    kv->lse = mem_calloc((size_t)(kv->rows * c->t_heads), sizeof(float), "KV cache attention");
    kv->seqs = mem_calloc((size_t)(2 * n), sizeof(seq_desc), "KV cache");
    kv->row = mem_calloc((size_t)(max_tok > n ? max_tok : n), sizeof(int64_t), "KV cache");
    return kv;
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
    if (n > s->max_rows || need > s->max_tok || tiles > s->max_tiles)
        return err_set(ERR_ARGS, "generation: %d prompt(s) of %lld tokens and %lld image tiles in all; the workspace "
                       "was sized for %lld rows, %lld tokens and %d tiles (the largest pairs of the data set): use "
                       "a smaller image or fewer prompts at once", n, (long long)need, (long long)tiles,
                       (long long)s->max_rows, (long long)s->max_tok, s->max_tiles);
    lt_kv *kv = kv_alloc(c, p, n, g->max_new, s->max_tok);
    double *prob = mem_alloc(sizeof(double) * (size_t)V, "sampling scratch");
    int32_t *order = mem_alloc(sizeof(int32_t) * (size_t)V, "sampling scratch");
    int *item = mem_alloc(sizeof(int) * (size_t)n, "generation: active prompts");
    /* prefill: the prompts packed as pack() lays them out (one sequence each, in order) */
    int64_t k = 0;
    for (int b = 0; b < n; b++) {
        for (int32_t j = 0; j < p[b].n_prefix && k < s->max_tok; j++) kv->row[k++] = kv->start[b] + j;
        kv->seqs[b] = (seq_desc){(int32_t)kv->start[b], p[b].n_prefix, 0, n + b};
        kv->seqs[n + b] = (seq_desc){(int32_t)kv->start[b], 0, 0, -1};
        n_out[b] = 0;
    }
    kv->nseq = n;
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
            int32_t tok = pick(s->logits + (int64_t)i * V, V, g, streams ? streams[b] : (uint32_t)b, (uint32_t)step,
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
            s->ids[i] = out[(int64_t)b * g->max_new + n_out[b] - 1];
            s->pos[i] = (int32_t)kv->len[b];
            s->row_h[i] = i;
            kv->row[i] = kv->start[b] + kv->len[b];
            kv->seqs[i] = (seq_desc){(int32_t)(kv->start[b] + kv->len[b]), 1, (int32_t)kv->len[b], active + i};
            kv->seqs[active + i] = (seq_desc){(int32_t)kv->start[b], (int32_t)kv->len[b], 0, -1};
        }
        kv->nseq = active;
        o->embed_fwd(cx, s->xin, t->m->w.embed, s->ids, active, D);
        decoder_and_head(t);
    }
    s->kv = NULL;
    s->gen = 0;
    kv_free(kv, c->t_layers);
    free(prob);
    free(order);
    free(item);
    return rc;
}
