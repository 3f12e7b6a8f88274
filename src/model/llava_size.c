/* llava_size — the size table (llava_size.h). The trainer carves exactly these items, in this order, from its
 * arenas (llava_train.c lt_plan), so a change of a buffer is a change here. */
#include "model/llava_size.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/attn_scratch.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "model/llava_params.h"
#include "model/nf4.h"

void ls_strategy_default(ls_strategy *s, int act_dtype) {
    memset(s, 0, sizeof *s);
    s->act_dtype = act_dtype;
    s->logits_keep = 1;
    s->logits_chunk = LS_LOGITS_CHUNK;
    s->vision = LS_VIS_RUN;
}

void ls_weights_default(ls_weights *w, int device) {
    memset(w, 0, sizeof *w);
    w->linear_dtype = DT_NF4;
    w->dtype = device == 1 /* DEVICE_CUDA */ ? DT_BF16 : DT_F32;
    w->embed_host = device == 1;
}

size_t ls_nf4_bytes(int64_t n) {
    int64_t nb = nf4_nblocks(n, NF4_BLOCKSIZE);
    return (size_t)(((n + 1) / 2 + 63) & ~63LL) + (size_t)((nb + 63) & ~63LL) +
           sizeof(float) * (size_t)((nf4_nblocks(nb, NF4_BLOCKSIZE2) + 15) & ~15LL);
}

/* bytes of count elements of dtype, rounded up to the 64-byte pieces the arenas hand out */
static size_t item_bytes(int dtype, int64_t count) {
    size_t b = dtype == DT_NF4 ? ls_nf4_bytes(count) : dtype_size(dtype) * (size_t)count;
    return (b + 63) & ~(size_t)63;
}

static void add(ls_table *t, const char *name, int dtype, int64_t count, int life, int place) {
    if (count <= 0) return;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->items = mem_realloc(t->items, sizeof *t->items * (size_t)t->cap, "size table");
    }
    ls_item *it = &t->items[t->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    it->dtype = dtype;
    it->count = count;
    it->bytes = dtype == DT_NF4 ? ls_nf4_bytes(count) : item_bytes(dtype, count);
    it->life = life;
    it->place = place;
}

/* a fixed-size record counted in 64-bit words (img_inst, seq_desc) */
#define WORDS(bytes) (((int64_t)(bytes) + 7) / 8)

/* the frozen weights, grouped: NF4 linears, bf16/f32 linears of the tower and projector, embeddings, lm_head, the
 * rest (norms, biases, position embeddings, image_newline) */
static int add_weights(ls_table *t, const llava_config *cfg, const ls_weights *wt, const ls_strategy *st) {
    llava_weights w;
    memset(&w, 0, sizeof w);
    llava_param *ps = NULL;
    int np = 0;
    vis_layer *vl = mem_calloc((size_t)(cfg->v_run_layers > 0 ? cfg->v_run_layers : 1), sizeof *vl, "size table");
    dec_layer *dl = mem_calloc((size_t)(cfg->t_layers > 0 ? cfg->t_layers : 1), sizeof *dl, "size table");
    w.vis = vl;
    w.dec = dl;
    int rc = llava_params_build(cfg, &w, &ps, &np);
    free(vl);
    free(dl);
    if (rc) return rc;
    int64_t nf4 = 0, nf4_bytes = 0, dec_lin = 0, vision = 0, proj = 0, embed = 0, head = 0, other = 0;
    for (int i = 0; i < np; i++) {
        const llava_param *p = &ps[i];
        const int is_head = !strcmp(p->name, "language_model.lm_head.weight");
        const int is_vis = !strncmp(p->name, "vision_tower.", 13);
        const int is_proj = !strncmp(p->name, "multi_modal_projector.", 22);
        if (is_vis && st->vision == LS_VIS_CACHE) continue; /* the tower is not needed on the device */
        if (p->is_linear && !is_head && wt->linear_dtype == DT_NF4 && (p->is_decoder || wt->quant_all)) {
            nf4 += p->numel;
            nf4_bytes += (int64_t)ls_nf4_bytes(p->numel);
        } else if (p->is_linear && p->is_decoder) {
            dec_lin += p->numel;
        } else if (is_head) {
            head += p->numel;
        } else if (!strcmp(p->name, "language_model.model.embed_tokens.weight")) {
            embed += p->numel;
        } else if (is_vis) {
            vision += p->numel;
        } else if (is_proj) {
            proj += p->numel;
        } else {
            other += p->numel;
        }
    }
    free(ps);
    /* weights are one allocation each on the device: exact bytes, no 64-byte rounding per item */
    const int first = t->n;
    add(t, "weights.nf4_linears", DT_NF4, nf4, LS_WEIGHTS, LS_DEVICE);
    add(t, "weights.decoder_linears", wt->linear_dtype == DT_NF4 ? wt->dtype : wt->linear_dtype, dec_lin, LS_WEIGHTS,
        LS_DEVICE);
    add(t, "weights.vision_tower", wt->dtype, vision, LS_WEIGHTS, LS_DEVICE);
    add(t, "weights.projector", wt->dtype, proj, LS_WEIGHTS, LS_DEVICE);
    add(t, "weights.embed_tokens", DT_F32, embed, LS_WEIGHTS, wt->embed_host ? LS_HOST : LS_DEVICE);
    add(t, "weights.lm_head", wt->dtype, head, LS_WEIGHTS, LS_DEVICE);
    add(t, "weights.other", DT_F32, other, LS_WEIGHTS, LS_DEVICE);
    for (int i = first; i < t->n; i++)
        t->items[i].bytes = t->items[i].dtype == DT_NF4 ? (size_t)nf4_bytes
                                                        : dtype_size(t->items[i].dtype) * (size_t)t->items[i].count;
    return ERR_OK;
}

int ls_image_tiles(const llava_config *c) {
    int m = 1;
    for (int i = 0; i < c->anyres.n_pinpoints; i++) {
        int t = 1 + (c->anyres.pinpoints[i][0] / c->anyres.tile) * (c->anyres.pinpoints[i][1] / c->anyres.tile);
        if (t > m) m = t;
    }
    return m;
}

void ls_dims_pairs(int64_t prefix_ids, int64_t image_tokens, int64_t answer_ids, int64_t pairs, int tiles_per_pair,
                   ls_dims *d) {
    const int64_t per_pair = prefix_ids + image_tokens + 2 * answer_ids + 2;
    memset(d, 0, sizeof *d);
    d->max_tok = pairs * per_pair;
    d->max_rows = pairs * per_pair;
    d->max_tiles = (int)pairs * tiles_per_pair;
}

int64_t ls_token_rows(const llava_config *cfg, const lt_spec *sp) {
    if (!sp->train_token_rows) return 0;
    int64_t n = 0;
    for (int id = 0; id < cfg->vocab; id++)
        if (id >= cfg->src_vocab || id == cfg->image_token || id == cfg->pad_token) n++;
    return n;
}

int64_t ls_trainable_count(const llava_config *c, const lt_spec *sp) {
    const int64_t D = c->t_hidden, Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    const int64_t I = c->t_inter, Dv = c->v_hidden, VI = c->v_inter, r = sp->rank;
    const int64_t dec_io[LT_DEC_MODULES] = {D + Q, D + KV, D + KV, Q + D, D + I, D + I, I + D};
    const int64_t vis_io[LT_VIS_MODULES] = {2 * Dv, 2 * Dv, 2 * Dv, 2 * Dv, Dv + VI, VI + Dv};
    int64_t n = 0;
    for (int m = 0; m < LT_DEC_MODULES; m++)
        if (sp->targets & (1u << m)) n += (int64_t)c->t_layers * r * dec_io[m];
    if (sp->targets & LT_LM_HEAD) n += r * (D + c->vocab);
    if (sp->vision_targets) {
        int nl = sp->vision_layers > 0 && sp->vision_layers < c->v_run_layers ? sp->vision_layers : c->v_run_layers;
        for (int m = 0; m < LT_VIS_MODULES; m++)
            if (sp->vision_targets & (1u << m)) n += (int64_t)nl * r * vis_io[m];
    }
    if (sp->full_projector)
        n += Dv * D + D + D * D + D;
    else if (sp->targets & LT_PROJ)
        n += r * (Dv + D) + r * (D + D);
    return n + ls_token_rows(c, sp) * D;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

int ls_build(const llava_config *c, const lt_spec *sp, const ls_weights *wt, const ls_dims *d, const ls_strategy *st,
             ls_table *tab) {
    memset(tab, 0, sizeof *tab);
    if (st->offload && !st->recompute)
        return err_set(ERR_ARGS, "memory strategy: offloading the saved layer inputs needs per-layer recompute");
    if (st->vision == LS_VIS_CACHE && sp->vision_targets)
        return err_set(ERR_ARGS, "runtime.vision_cache: the vision features cannot come from a cache when the vision "
                       "tower is trained (vision:* LoRA targets)");
    int rc = add_weights(tab, c, wt, st);
    if (rc) return rc;
    const int A = st->act_dtype, F = DT_F32, I32 = DT_I32, I64 = DT_I64, U8 = DT_U8;
    const int64_t T = d->max_tok, R = d->max_rows, P = d->max_tiles, D = c->t_hidden;
    const int64_t Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    const int64_t In = c->t_inter, r = sp->rank, V = c->vocab, L = c->t_layers;
    const int64_t g = c->v_image / c->v_patch, np = g * g, Dv = c->v_hidden, VI = c->v_inter;
    const int64_t pk = 3LL * c->v_patch * c->v_patch, NT = P * (np + 1), NR = P * np;
    const int vis_run = st->vision == LS_VIS_RUN;
    int nad = 0;
    if (sp->vision_targets)
        nad = sp->vision_layers > 0 && sp->vision_layers < c->v_run_layers ? sp->vision_layers : c->v_run_layers;

    /* trainable state: fp32 masters, their gradients, the step's summed gradient, AdamW's two moments */
    const int64_t n = ls_trainable_count(c, sp);
    const int first_trainable = tab->n;
    add(tab, "trainable.params", F, n, LS_TRAINABLE, LS_DEVICE);
    add(tab, "trainable.grads", F, n, LS_TRAINABLE, LS_DEVICE);
    add(tab, "trainable.step_grads", F, n, LS_TRAINABLE, LS_DEVICE);
    add(tab, "trainable.adam_m", F, n, LS_TRAINABLE, LS_DEVICE);
    add(tab, "trainable.adam_v", F, n, LS_TRAINABLE, LS_DEVICE);
    if (A != F) add(tab, "trainable.params_act", A, n, LS_TRAINABLE, LS_DEVICE); /* the masters cast for the GEMMs */
    add(tab, "trainable.token_ids", I64, ls_token_rows(c, sp), LS_TRAINABLE, LS_DEVICE);
    add(tab, "trainable.norm_sum", U8, 8, LS_TRAINABLE, LS_DEVICE); /* the gradient norm's sum of squares (double) */
    for (int i = first_trainable; i < tab->n; i++) /* separate allocations: exact bytes */
        tab->items[i].bytes = dtype_size(tab->items[i].dtype) * (size_t)tab->items[i].count;

    /* the packed micro-batch, built on the host (pack) and uploaded */
    const char *ix[] = {"ids", "pos", "seqs", "img_src", "img_pos", "nn_pos", "nn_dst", "tok_pos", "tok_slot",
                        "row_h", "row_label", "vseqs", "vrows"};
    const int ixt[] = {I32, I32, I64, I64, I64, I64, I64, I64, I64, I64, I32, I64, I64};
    const int64_t ixn[] = {T, T, WORDS(3 * T * sizeof(seq_desc)), T, T, T, T, T, T, R, R,
                           WORDS(2 * P * sizeof(seq_desc)) /* per image, then over all tiles */, NR};
    char name[48];
    for (int place = LS_HOST; place >= LS_DEVICE; place--)
        for (size_t i = 0; i < sizeof ixn / sizeof ixn[0]; i++) {
            snprintf(name, sizeof name, "%s.%s", place == LS_HOST ? "host" : "batch", ix[i]);
            add(tab, name, ixt[i], ixn[i], LS_MICRO, place);
        }
    add(tab, "host.inst", I64, WORDS(P * 32), LS_MICRO, LS_HOST);  /* img_inst records */
    add(tab, "host.pidx", I64, T, LS_MICRO, LS_HOST);
    add(tab, "host.row_pair", I32, R, LS_MICRO, LS_HOST);
    add(tab, "host.row_role", U8, R, LS_MICRO, LS_HOST);
    add(tab, "host.logp", F, R, LS_MICRO, LS_HOST);
    const int fo = st->forward_only, bw = !fo; /* backward buffers */
    if (bw) add(tab, "batch.dlogp", F, R, LS_MICRO, LS_DEVICE);

    /* vision tower: every tile of the micro-batch at once (CLS + patches each); frozen layers with scratch
     * activations, adapted layers (vision LoRA) keep theirs */
    if (vis_run) { /* the frozen tower runs image by image: its scratch is one image's */
        const int64_t Pi = P < ls_image_tiles(c) ? P : ls_image_tiles(c), NTi = Pi * (np + 1);
        add(tab, "vision.pixels", F, Pi * 3 * c->v_image * c->v_image, LS_LAYER, LS_DEVICE);
        add(tab, "vision.patches", A, Pi * np * pk, LS_LAYER, LS_DEVICE);
        add(tab, "vision.hidden", A, 2 * NT * Dv, LS_MICRO, LS_DEVICE);
        add(tab, "vision.tmp", A, (nad ? NT : NTi) * Dv, LS_LAYER, LS_DEVICE);
        add(tab, "vision.frozen_acts", A, NTi * (7 * Dv + 2 * VI), LS_LAYER, LS_DEVICE);
        add(tab, "vision.frozen_stats", F, NTi * (4 + c->v_heads), LS_LAYER, LS_DEVICE);
    }
    if (nad) {
        add(tab, "vision.layer_inputs", A, (int64_t)(nad + 1) * NT * Dv, LS_MICRO, LS_DEVICE);
        add(tab, "vision.acts", A, (int64_t)nad * NT * (7 * Dv + 2 * VI + LT_VIS_MODULES * r), LS_MICRO, LS_DEVICE);
        add(tab, "vision.act_stats", F, (int64_t)nad * NT * (4 + c->v_heads), LS_MICRO, LS_DEVICE);
        if (bw) add(tab, "vision.grads", A, NT * (7 * Dv + 2 * VI), LS_LAYER, LS_DEVICE);
        if (bw) add(tab, "vision.dsel", A, NR * Dv, LS_MICRO, LS_DEVICE);
    }
    /* projector (2 linears with GELU) over every tile's patch features, then anyres packing */
    add(tab, "proj.features", A, NR * Dv, LS_MICRO, LS_DEVICE);
    add(tab, "proj.h1", A, NR * D, LS_MICRO, LS_DEVICE);
    add(tab, "proj.g1", A, NR * D, LS_MICRO, LS_DEVICE);
    add(tab, "proj.out", A, NR * D, LS_MICRO, LS_DEVICE);
    add(tab, "proj.lora_t", A, 2 * NR * r, LS_MICRO, LS_DEVICE);
    add(tab, "proj.image_rows", A, T * D, LS_MICRO, LS_DEVICE);
    add(tab, "proj.newline", A, D, LS_MICRO, LS_DEVICE); /* image_newline in the activation dtype */
    /* decoder: the input of every layer (the checkpoints; host memory when offloaded, with two device buffers) and
     * the saved activations of every layer, or of one when recomputed */
    if (fo) {
        add(tab, "dec.layer_input_bufs", A, 2 * T * D, LS_MICRO, LS_DEVICE);
    } else if (st->offload) {
        add(tab, "dec.layer_inputs", A, (L + 1) * T * D, LS_MICRO, LS_HOST);
        add(tab, "dec.layer_input_bufs", A, 2 * T * D, LS_MICRO, LS_DEVICE);
    } else {
        add(tab, "dec.layer_inputs", A, (L + 1) * T * D, LS_MICRO, LS_DEVICE);
    }
    const int64_t na = st->recompute || fo ? 1 : L;
    const int alife = st->recompute || fo ? LS_LAYER : LS_MICRO;
    /* the MLP's product h = silu(gate) up feeds down_proj only; without LoRA on down_proj its backward does not read
     * it, so a training plan puts it in the layer's backward buffers (the MLP gradients' place) instead of keeping it */
    const int keep_h = fo || (sp->targets & LT_DOWN);
    add(tab, "dec.acts", A, na * T * (3 * D + 2 * Q + 2 * KV + (keep_h ? 3 : 2) * In + LT_DEC_MODULES * r), alife,
        LS_DEVICE);
    add(tab, "dec.act_stats", F, na * T * (2 + c->t_heads), alife, LS_DEVICE);
    add(tab, "dec.final_rstd", F, T, LS_MICRO, LS_DEVICE);
    add(tab, "dec.final_hidden", A, T * D, LS_MICRO, LS_DEVICE);
    /* lm_head on the target rows only, LS_LOGITS_CHUNK rows at a time */
    add(tab, "head.rows", A, R * D, LS_MICRO, LS_DEVICE);
    const int64_t chunk = st->logits_chunk > 0 ? st->logits_chunk : LS_LOGITS_CHUNK;
    add(tab, "head.logits", A, (st->logits_keep ? R : (R < chunk ? R : chunk)) * V,
        st->logits_keep ? LS_MICRO : LS_LAYER, LS_DEVICE); /* forward-only runs keep them too: eval reads them */
    add(tab, "head.lse_logp", F, 2 * R, LS_MICRO, LS_DEVICE);
    add(tab, "head.lora_t", A, R * r, LS_MICRO, LS_DEVICE);
    /* backward: one layer's gradients, reused by every layer; the projector's */
    if (bw) {
        /* dX, dMid, dA; then the attention's gradients and the MLP's in the same place (one phase, then the other) */
        add(tab, "bwd.layer", A, T * (3 * D + max64(2 * Q + 2 * KV, 3 * In)), LS_LAYER, LS_DEVICE);
        add(tab, "bwd.head_rows", A, R * D, LS_LAYER, LS_DEVICE);
        if (A != F && sp->train_token_rows) add(tab, "bwd.token_rows_f32", F, T * D, LS_LAYER, LS_DEVICE);
        add(tab, "bwd.proj", A, 3 * NR * D, LS_LAYER, LS_DEVICE);
    }
    /* generation's device buffers, sized here, take the backward buffers' place in a training plan */
    const int64_t G = T + (int64_t)d->gen_prompts * d->gen_max_new, nb = d->gen_prompts;
    const int64_t gen_bytes = d->gen_prompts <= 0 ? 0 : (int64_t)(item_bytes(A, 2 * L * G * KV) + item_bytes(A, 2 * G * Q) +
                              item_bytes(F, G * c->t_heads) + item_bytes(I64, WORDS(2 * nb * sizeof(seq_desc))) +
                              item_bytes(I64, max64(T, nb)));
    const int share_gen = bw && d->gen_prompts > 0;
    if (share_gen) {
        int64_t region = 0;
        for (int i = 0; i < tab->n; i++)
            if (!strncmp(tab->items[i].name, "bwd.", 4)) region += (int64_t)tab->items[i].bytes;
        if (gen_bytes > region) add(tab, "bwd.generation_extra", U8, gen_bytes - region, LS_LAYER, LS_DEVICE);
    }
    /* workspace: one dequantised weight (the largest linear), LoRA scratch, a row buffer */
    const int64_t big = max64(T, NR);
    add(tab, "ws.tmp", A, T * D, LS_WORKSPACE, LS_DEVICE); /* a projection's output before its residual add */
    /* the weight a GEMM reads when it is not stored in the activation dtype: NF4 dequantised, or cast (the largest
     * such linear; llava_train.c lin_weight) */
    const int vis_dt = wt->quant_all ? wt->linear_dtype : wt->dtype;
    const int proj_dt = sp->full_projector ? F : vis_dt;
    int64_t wmax = 0;
    if (wt->linear_dtype == DT_NF4 || wt->linear_dtype != A) wmax = max64(wmax, D * max64(In, Q));
    if (vis_run && (vis_dt == DT_NF4 || vis_dt != A)) wmax = max64(wmax, Dv * max64(VI, Dv));
    if (vis_run && wt->dtype != A) wmax = max64(wmax, Dv * pk); /* the patch embedding */
    if (proj_dt == DT_NF4 || proj_dt != A) wmax = max64(wmax, D * max64(Dv, D));
    if (wt->dtype != A) wmax = max64(wmax, V * D); /* lm_head */
    add(tab, "ws.dequant", A, wmax, LS_WORKSPACE, LS_DEVICE);
    const int64_t lrows = max64(max64(big, R), NT);
    /* LoRA's dropout scratch: the widest input of an adapted linear */
    const int64_t dec_in[LT_DEC_MODULES] = {D, D, D, Q, D, D, In};
    int64_t maxin = 0;
    for (int m = 0; m < LT_DEC_MODULES; m++)
        if (sp->targets & (1u << m)) maxin = max64(maxin, dec_in[m]);
    if (sp->targets & LT_LM_HEAD) maxin = max64(maxin, D);
    if ((sp->targets & LT_PROJ) && !sp->full_projector) maxin = max64(maxin, max64(Dv, D));
    if (sp->vision_targets) maxin = max64(maxin, (sp->vision_targets & LTV_FC2) ? max64(Dv, VI) : Dv);
    if (bw) add(tab, "ws.lora_t", A, lrows * r, LS_WORKSPACE, LS_DEVICE);
    if (sp->dropout > 0.0f) add(tab, "ws.lora_dropout", A, lrows * maxin, LS_WORKSPACE, LS_DEVICE);
    /* generation: the KV cache of gen_prompts prompts (their prefixes fit max_tok) with gen_max_new new tokens
     * each, the new tokens' queries and attention, the descriptors; the logits to pick from on the host */
    if (d->gen_prompts > 0) {
        const int first_gen = tab->n;
        add(tab, "gen.kv", A, 2 * L * G * KV, LS_MICRO, LS_DEVICE);
        add(tab, "gen.q_att", A, 2 * G * Q, LS_MICRO, LS_DEVICE);
        add(tab, "gen.lse", F, G * c->t_heads, LS_MICRO, LS_DEVICE);
        add(tab, "gen.seqs", I64, WORDS(2 * nb * sizeof(seq_desc)), LS_MICRO, LS_DEVICE);
        add(tab, "gen.rows", I64, max64(T, nb), LS_MICRO, LS_DEVICE);
        for (int i = first_gen; share_gen && i < tab->n; i++) tab->items[i].shared = 1;
        add(tab, "host.gen_seqs", I64, WORDS(2 * nb * sizeof(seq_desc)), LS_MICRO, LS_HOST);
        add(tab, "host.gen_rows", I64, max64(T, nb), LS_MICRO, LS_HOST);
        add(tab, "host.gen_books", I64, 3 * nb, LS_MICRO, LS_HOST);
        add(tab, "host.gen_logits", F, nb * V, LS_MICRO, LS_HOST);
        if (A != F) add(tab, "host.gen_raw", A, chunk * V, LS_MICRO, LS_HOST);
    }
    if (st->ws_cap) { /* CUDA */
        add(tab, "ws.library", U8, (int64_t)st->ws_cap, LS_WORKSPACE, LS_DEVICE);
        /* the CUDA attention's scratch (backend/attn_scratch.h; it grows to the largest call and stays): the decoder
         * over the micro-batch, and the tower's (forward when frozen: one image; backward over every tile with
         * vision LoRA) */
        size_t ks = attn_layout_of(ATTN_CHUNK_ENTRIES, T, c->t_heads, c->t_kv_heads, c->t_head_dim, bw, bw, bw).total;
        if (vis_run && c->v_heads > 0) {
            const int vb = nad && bw;
            const int64_t Pi = P < ls_image_tiles(c) ? P : ls_image_tiles(c), ntv = vb ? NT : Pi * (np + 1);
            size_t kv = attn_layout_of(ATTN_CHUNK_ENTRIES, ntv, c->v_heads, c->v_heads, (int)(Dv / c->v_heads), vb, vb,
                                       vb).total;
            if (kv > ks) ks = kv;
        }
        /* a bf16 product with a bias is formed in fp32 scratch (kernels/kgemm.cu): the projector's outputs, and
         * the running tower's widest linear (fc1) */
        const size_t proj = sizeof(float) * (size_t)(NR * D);
        if (proj > ks) ks = proj;
        if (vis_run) {
            const int64_t Pi = P < ls_image_tiles(c) ? P : ls_image_tiles(c), rows = nad ? NT : Pi * (np + 1);
            const size_t fc1 = sizeof(float) * (size_t)(rows * VI);
            if (fc1 > ks) ks = fc1;
        }
        add(tab, "ws.kernel_scratch", U8, (int64_t)ks, LS_WORKSPACE, LS_DEVICE);
    }
    if (st->ctx_reserve) add(tab, "ws.context_reserve", U8, (int64_t)st->ctx_reserve, LS_WORKSPACE, LS_DEVICE);
    /* the vision features read from the cache for one micro-batch, uploaded to proj.features (last: the trainer
     * fills it, llava_train.c only carves it; lt_feature_buffer) */
    if (st->vision == LS_VIS_CACHE) add(tab, "host.vision_features", A, NR * Dv, LS_MICRO, LS_HOST);
    return ERR_OK;
}

size_t ls_total(const ls_table *t, int place, int life) {
    size_t s = 0;
    for (int i = 0; i < t->n; i++)
        if (!t->items[i].shared && (place == LS_ANY || t->items[i].place == place) &&
            (life == LS_ANY || t->items[i].life == life))
            s += t->items[i].bytes;
    return s;
}

const ls_item *ls_find(const ls_table *t, const char *name) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->items[i].name, name)) return &t->items[i];
    return NULL;
}

void ls_free(ls_table *t) {
    free(t->items);
    memset(t, 0, sizeof *t);
}
