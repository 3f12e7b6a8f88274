/* llava_fwd — the LLaVA-NeXT forward pass on the op table: vision tower, projector, anyres packing,
 * embedding splice, Mistral decoder over packed sequences, lm_head on selected rows.
 *
 * Workspace layout (llava_ws_size): the model never allocates; every activation of one forward
 * lives in the caller's workspace, carved below in a fixed order. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/tensor.h"
#include "io/err.h"
#include "io/mem.h"
#include "model/carve.h"
#include "model/llava.h"
#include "model/nf4.h"

const float *lin_f32(const lin_w *w, float *scratch) {
    if (w->dtype != DT_NF4) return (const float *)w->w;
    nf4_dequantize(w->w, w->qabsmax, w->absmax2, w->offset, w->out * w->in, NF4_BLOCKSIZE, NF4_BLOCKSIZE2, scratch);
    return scratch;
}

static int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- workspace ------------------------------------------------------------------------------ */

typedef struct vis_ws {
    float *h, *a, *q, *k, *v, *att, *mlp, *mean, *rstd, *lse, *wscr;
    seq_desc *seqs;
} vis_ws;

typedef struct dec_ws {
    float *a, *q, *k, *v, *att, *gate, *up, *rstd, *lse, *wscr;
    float *tmp; /* [ntok, D] projection outputs before the residual add */
} dec_ws;

static int64_t max_linear(const llava_config *c) {
    int64_t m = (int64_t)c->v_hidden * c->v_inter;
    m = imax(m, (int64_t)c->t_hidden * c->t_inter);
    m = imax(m, (int64_t)c->t_hidden * c->t_heads * c->t_head_dim);
    m = imax(m, (int64_t)c->t_hidden * c->v_hidden);
    m = imax(m, (int64_t)c->t_hidden * c->t_hidden);
    return m;
}

static vis_ws carve_vis(carve *cv, const llava_config *c, int P) {
    int64_t np = (int64_t)(c->v_image / c->v_patch) * (c->v_image / c->v_patch);
    int64_t T = (int64_t)P * (np + 1), D = c->v_hidden;
    vis_ws w;
    w.h = carve_f32(cv, T * D);
    w.a = carve_f32(cv, T * imax(D, 3LL * c->v_patch * c->v_patch));
    w.q = carve_f32(cv, T * D);
    w.k = carve_f32(cv, T * D);
    w.v = carve_f32(cv, T * D);
    w.att = carve_f32(cv, T * D);
    w.mlp = carve_f32(cv, T * c->v_inter);
    w.mean = carve_f32(cv, T);
    w.rstd = carve_f32(cv, T);
    w.lse = carve_f32(cv, T * c->v_heads);
    w.wscr = carve_f32(cv, max_linear(c));
    w.seqs = carve_take(cv, sizeof(seq_desc) * (size_t)P);
    return w;
}

static dec_ws carve_dec(carve *cv, const llava_config *c, int64_t ntok) {
    int64_t D = c->t_hidden, Q = (int64_t)c->t_heads * c->t_head_dim, KV = (int64_t)c->t_kv_heads * c->t_head_dim;
    dec_ws w;
    w.a = carve_f32(cv, ntok * D);
    w.q = carve_f32(cv, ntok * Q);
    w.k = carve_f32(cv, ntok * KV);
    w.v = carve_f32(cv, ntok * KV);
    w.att = carve_f32(cv, ntok * Q);
    w.gate = carve_f32(cv, ntok * c->t_inter);
    w.up = carve_f32(cv, ntok * c->t_inter);
    w.rstd = carve_f32(cv, ntok);
    w.lse = carve_f32(cv, ntok * c->t_heads);
    w.wscr = carve_f32(cv, max_linear(c));
    w.tmp = carve_f32(cv, ntok * imax(D, (int64_t)c->vocab));
    return w;
}

size_t llava_ws_size(const llava_config *cfg, int64_t max_tok, int max_tiles) {
    carve a = {NULL, 0}, b = {NULL, 0};
    carve_vis(&a, cfg, max_tiles > 0 ? max_tiles : 1);
    carve_f32(&a, (int64_t)(max_tiles > 0 ? max_tiles : 1) * (cfg->v_image / cfg->v_patch) *
                 (cfg->v_image / cfg->v_patch) * cfg->t_hidden); /* projector hidden */
    carve_dec(&b, cfg, max_tok > 0 ? max_tok : 1);
    return (a.used > b.used ? a.used : b.used) + 64;
}

static void linear(const ops *o, opctx *c, float *y, const float *x, const lin_w *w, int64_t M, float *scr) {
    o->linear_fwd(c, y, x, lin_f32(w, scr), w->b, M, w->in, w->out);
}

/* ---- vision tower ----------------------------------------------------------------------------- */

void llava_im2col(const llava_config *cfg, const float *pixels, int P, float *rows) {
    const int g = cfg->v_image / cfg->v_patch, p = cfg->v_patch, T = cfg->v_image;
    const int64_t np = (int64_t)g * g, kpatch = 3LL * p * p;
    for (int t = 0; t < P; t++)
        for (int py = 0; py < g; py++)
            for (int px = 0; px < g; px++) {
                float *row = rows + ((int64_t)t * np + py * g + px) * kpatch;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < p; ky++)
                        memcpy(row + ((int64_t)ch * p + ky) * p,
                               pixels + (((int64_t)t * 3 + ch) * T + (int64_t)py * p + ky) * T + (int64_t)px * p,
                               sizeof(float) * (size_t)p);
            }
}

void llava_vision_forward(const ops *o, opctx *c, const llava_config *cfg, const llava_weights *w,
                          const float *pixels, int P, float *out, void *ws) {
    const int g = cfg->v_image / cfg->v_patch, p = cfg->v_patch;
    const int64_t np = (int64_t)g * g, L = np + 1, D = cfg->v_hidden, ntok = (int64_t)P * L;
    const int64_t kpatch = 3LL * p * p;
    carve cv = {ws, 0};
    vis_ws s = carve_vis(&cv, cfg, P);

    /* patch embedding: im2col rows, then one GEMM with the conv weight [D, 3*p*p] */
    llava_im2col(cfg, pixels, P, s.a);
    o->linear_fwd(c, s.q, s.a, w->patch_w, NULL, (int64_t)P * np, kpatch, D);
    /* [CLS | patches] + position embeddings, per tile */
    for (int t = 0; t < P; t++) {
        float *h0 = s.h + (int64_t)t * L * D;
        for (int64_t j = 0; j < D; j++) h0[j] = w->cls[j] + w->pos[j];
        for (int64_t i = 0; i < np; i++)
            for (int64_t j = 0; j < D; j++)
                h0[(i + 1) * D + j] = s.q[((int64_t)t * np + i) * D + j] + w->pos[(i + 1) * D + j];
        s.seqs[t] = (seq_desc){(int32_t)(t * L), (int32_t)L, 0, -1};
    }
    o->layernorm_fwd(c, s.h, s.mean, s.rstd, s.h, w->pre_ln_w, w->pre_ln_b, ntok, D, cfg->v_eps);

    const int hd = (int)(D / cfg->v_heads);
    for (int l = 0; l < cfg->v_run_layers; l++) {
        const vis_layer *ly = &w->vis[l];
        o->layernorm_fwd(c, s.a, s.mean, s.rstd, s.h, ly->ln1_w, ly->ln1_b, ntok, D, cfg->v_eps);
        linear(o, c, s.q, s.a, &ly->q, ntok, s.wscr);
        linear(o, c, s.k, s.a, &ly->k, ntok, s.wscr);
        linear(o, c, s.v, s.a, &ly->v, ntok, s.wscr);
        o->attn_fwd(c, s.att, s.lse, s.q, s.k, s.v, s.seqs, P, ntok, cfg->v_heads, cfg->v_heads, hd, 0);
        linear(o, c, s.a, s.att, &ly->o, ntok, s.wscr);
        o->add_inplace(c, s.h, s.a, ntok * D);
        o->layernorm_fwd(c, s.a, s.mean, s.rstd, s.h, ly->ln2_w, ly->ln2_b, ntok, D, cfg->v_eps);
        linear(o, c, s.mlp, s.a, &ly->fc1, ntok, s.wscr);
        o->quick_gelu_fwd(c, s.mlp, s.mlp, ntok * cfg->v_inter);
        linear(o, c, s.a, s.mlp, &ly->fc2, ntok, s.wscr);
        o->add_inplace(c, s.h, s.a, ntok * D);
    }
    /* "default" feature strategy: drop CLS */
    for (int t = 0; t < P; t++)
        memcpy(out + (int64_t)t * np * D, s.h + ((int64_t)t * L + 1) * D, sizeof(float) * (size_t)(np * D));
}

/* ---- projector and anyres packing ------------------------------------------------------------- */

void llava_project(const ops *o, opctx *c, const llava_config *cfg, const llava_weights *w,
                   const float *feats, int64_t rows, float *out, void *ws) {
    carve cv = {ws, 0};
    float *hid = carve_f32(&cv, rows * cfg->t_hidden);
    float *scr = carve_f32(&cv, max_linear(cfg));
    linear(o, c, hid, feats, &w->proj1, rows, scr);
    o->gelu_fwd(c, hid, hid, rows * cfg->t_hidden);
    linear(o, c, out, hid, &w->proj2, rows, scr);
}

int64_t llava_pack_index(const llava_config *cfg, int P, int h, int wd, int64_t *idx) {
    const int s = cfg->v_image / cfg->v_patch;
    const int64_t np = (int64_t)s * s;
    int rows = 0, cols = 0;
    if (anyres_grid(&cfg->anyres, h, wd, &rows, &cols)) return -1;
    if (P != 1 + rows * cols) return -1;
    int64_t n = 0;
    for (int64_t i = 0; i < np; i++, n++) /* base image first, no newline */
        if (idx) idx[n] = i;
    const int CH = rows * s, CW = cols * s;
    int r0, nr, c0, nc;
    anyres_unpad(h, wd, CH, CW, &r0, &nr, &c0, &nc);
    for (int y = r0; y < r0 + nr; y++) {
        for (int x = c0; x < c0 + nc; x++, n++)
            if (idx) idx[n] = (1 + (int64_t)(y / s) * cols + x / s) * np + (int64_t)(y % s) * s + x % s;
        if (idx) idx[n] = -1; /* image_newline */
        n++;
    }
    return n;
}

int64_t llava_pack_image(const llava_config *cfg, const llava_weights *w, const float *proj, int P, int h,
                         int wd, float *out) {
    const int64_t D = cfg->t_hidden;
    int64_t n = llava_pack_index(cfg, P, h, wd, NULL);
    if (n < 0 || !out) return n;
    int64_t *idx = mem_alloc(sizeof(int64_t) * (size_t)n, "image packing index");
    llava_pack_index(cfg, P, h, wd, idx);
    for (int64_t i = 0; i < n; i++)
        memcpy(out + i * D, idx[i] >= 0 ? proj + idx[i] * D : w->newline, sizeof(float) * (size_t)D);
    free(idx);
    return n;
}

/* ---- embeddings ------------------------------------------------------------------------------- */

int llava_embed(const ops *o, opctx *c, const llava_config *cfg, const llava_weights *w, const int32_t *ids,
                int64_t ntok, const float *image_rows, int64_t n_image_rows, float *out) {
    const int64_t D = cfg->t_hidden;
    int64_t nimg = 0;
    for (int64_t i = 0; i < ntok; i++) {
        if (ids[i] < 0 || ids[i] >= cfg->vocab)
            return err_set(ERR_DATA, "token %lld: id %d outside the vocabulary of %d", (long long)i, ids[i], cfg->vocab);
        nimg += ids[i] == cfg->image_token;
    }
    if (nimg != n_image_rows)
        return err_set(ERR_DATA, "the sequence has %lld <image> tokens but the images give %lld feature rows",
                       (long long)nimg, (long long)n_image_rows);
    o->embed_fwd(c, out, w->embed, ids, ntok, D);
    int64_t k = 0;
    for (int64_t i = 0; i < ntok; i++)
        if (ids[i] == cfg->image_token) memcpy(out + i * D, image_rows + (k++) * D, sizeof(float) * (size_t)D);
    return ERR_OK;
}

/* ---- Mistral decoder -------------------------------------------------------------------------- */

void llava_decoder_forward(const ops *o, opctx *c, const llava_config *cfg, const llava_weights *w, float *x,
                           const int32_t *pos, const seq_desc *seqs, int nseq, int64_t ntok, void *ws) {
    const int64_t D = cfg->t_hidden;
    carve cv = {ws, 0};
    dec_ws s = carve_dec(&cv, cfg, ntok);
    for (int l = 0; l < cfg->t_layers; l++) {
        const dec_layer *ly = &w->dec[l];
        o->rmsnorm_fwd(c, s.a, s.rstd, x, ly->in_norm, ntok, D, cfg->t_eps);
        linear(o, c, s.q, s.a, &ly->q, ntok, s.wscr);
        linear(o, c, s.k, s.a, &ly->k, ntok, s.wscr);
        linear(o, c, s.v, s.a, &ly->v, ntok, s.wscr);
        o->rope_fwd(c, s.q, pos, ntok, cfg->t_heads, cfg->t_head_dim, cfg->rope_theta);
        o->rope_fwd(c, s.k, pos, ntok, cfg->t_kv_heads, cfg->t_head_dim, cfg->rope_theta);
        o->attn_fwd(c, s.att, s.lse, s.q, s.k, s.v, seqs, nseq, ntok, cfg->t_heads, cfg->t_kv_heads,
                    cfg->t_head_dim, 1);
        linear(o, c, s.tmp, s.att, &ly->o, ntok, s.wscr);
        o->add_inplace(c, x, s.tmp, ntok * D);
        o->rmsnorm_fwd(c, s.a, s.rstd, x, ly->post_norm, ntok, D, cfg->t_eps);
        linear(o, c, s.gate, s.a, &ly->gate, ntok, s.wscr);
        linear(o, c, s.up, s.a, &ly->up, ntok, s.wscr);
        o->swiglu_fwd(c, s.gate, s.gate, s.up, ntok * cfg->t_inter);
        linear(o, c, s.tmp, s.gate, &ly->down, ntok, s.wscr);
        o->add_inplace(c, x, s.tmp, ntok * D);
    }
    o->rmsnorm_fwd(c, x, s.rstd, x, w->norm, ntok, D, cfg->t_eps);
}

void llava_lm_head(const ops *o, opctx *c, const llava_config *cfg, const llava_weights *w, const float *h,
                   const int64_t *rows, int64_t nrows, float *logits, void *ws) {
    const int64_t D = cfg->t_hidden;
    carve cv = {ws, 0};
    float *sel = carve_f32(&cv, nrows * D), *scr = carve_f32(&cv, max_linear(cfg));
    for (int64_t i = 0; i < nrows; i++) memcpy(sel + i * D, h + rows[i] * D, sizeof(float) * (size_t)D);
    linear(o, c, logits, sel, &w->lm_head, nrows, scr);
}
