/* generate — answers to prompts with images through lt_generate (see generate.h). */
#include "train/generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/template.h"
#include "data/tok.h"
#include "io/err.h"
#include "io/mem.h"

char *gen_text(trainer *t, const int32_t *ids, int n) {
    const llava_config *c = &tr_lt(t)->m->cfg;
    int32_t *tmp = mem_alloc(sizeof(int32_t) * (size_t)(n + 1), "answer text ids");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] != c->image_token && ids[i] != c->eos) tmp[k++] = ids[i];
    char *s = NULL;
    size_t len = 0;
    if (tok_decode(tr_tok(t), tmp, (size_t)k, 0, &s, &len)) s = mem_strdup("(undecodable)", "answer text");
    free(tmp);
    return s;
}

/* n lt_pairs (prompts) -> texts */
static int run(trainer *t, const lt_pair *lp, int n, const uint32_t *streams, const lt_gen_opts *g0, char **answers,
               int *ntok) {
    llava_trainer *lt = tr_lt(t);
    lt_gen_opts g = *g0;
    g.eos = lt->m->cfg.eos;
    int32_t *out = mem_alloc(sizeof(int32_t) * (size_t)n * (size_t)g.max_new, "generated ids");
    int32_t *nout = mem_alloc(sizeof(int32_t) * (size_t)n, "generated ids");
    int rc = lt_generate(lt, lp, n, &g, streams, out, nout);
    for (int i = 0; !rc && i < n; i++) {
        answers[i] = gen_text(t, out + (int64_t)i * g.max_new, nout[i]);
        if (ntok) ntok[i] = nout[i];
    }
    free(out);
    free(nout);
    return rc;
}

int gen_pairs(trainer *t, const ldr_pair *pairs, int n, const lt_gen_opts *g, char **answers, int *ntok) {
    lt_pair *lp = mem_calloc((size_t)n, sizeof *lp, "generation prompts");
    uint32_t *streams = mem_alloc(sizeof(uint32_t) * (size_t)n, "generation streams");
    for (int i = 0; i < n; i++) {
        const ldr_pair *p = &pairs[i];
        lp[i] = (lt_pair){p->pixels, p->n_patches, p->height, p->width, p->prefix, p->prefix_len, NULL, NULL, 0, 0, NULL};
        streams[i] = (uint32_t)p->index;
    }
    int rc = tr_pair_features(t, pairs, n, lp); /* a plan with the vision features from a cache */
    if (!rc) rc = run(t, lp, n, streams, g, answers, ntok);
    free(lp);
    free(streams);
    return rc;
}

int gen_split(trainer *t, int split, int64_t max_pairs, const lt_gen_opts *g,
              int (*on)(void *ctx, const gen_answer *a), void *ctx) {
    const tr_config *c = tr_cfg(t);
    ldr_opts lo;
    ldr_opts_default(&lo);
    lo.split = split;
    lo.batch_pairs = (int)c->micro_batch_pairs;
    lo.shuffle = 0;
    ldr *l = NULL;
    ds_file *d = NULL;
    int rc = ds_open(c->data_path, &d);
    if (!rc) rc = ldr_open(c->data_path, tr_ref(t), &lo, &l);
    int64_t total = l ? ldr_num_pairs(l) : 0, done = 0;
    if (max_pairs > 0 && max_pairs < total) total = max_pairs;
    char **ans = mem_calloc((size_t)lo.batch_pairs, sizeof(char *), "answers");
    int *ntok = mem_calloc((size_t)lo.batch_pairs, sizeof(int), "answers");
    while (!rc && done < total) {
        const ldr_batch *b;
        if ((rc = ldr_next(l, &b))) break;
        int n = b->n;
        if (n > total - done) n = (int)(total - done);
        if ((rc = gen_pairs(t, b->pairs, n, g, ans, ntok))) break;
        for (int i = 0; i < n; i++) {
            const ldr_pair *p = &b->pairs[i];
            char *pr = gen_text(t, p->prefix, p->prefix_len), *ch = gen_text(t, p->chosen, p->chosen_len);
            char *rj = gen_text(t, p->rejected, p->rejected_len);
            gen_answer a = {p->index, ds_pair_at(d, p->index)->image, pr, ans[i], ch, rj, ntok[i]};
            if (!rc) rc = on(ctx, &a);
            free(pr);
            free(ch);
            free(rj);
            free(ans[i]);
            ans[i] = NULL;
        }
        done += n;
        if (b->n < lo.batch_pairs) break; /* end of the split */
    }
    free(ans);
    free(ntok);
    ldr_close(l);
    ds_close(d);
    return rc;
}

int gen_image(trainer *t, const img_rgb *im, const char *question, const lt_gen_opts *g, char **answer, int *ntok) {
    llava_trainer *lt = tr_lt(t);
    const llava_config *c = &lt->m->cfg;
    const ds_model_ref *ref = tr_ref(t);
    img_config icfg;
    img_config_llava16(&icfg);
    icfg.grid = ref->anyres;
    int maxp = anyres_num_patches(&ref->anyres, im->h, im->w), np = 0;
    if (maxp < 1) return err_set(ERR_DATA, "image of %dx%d: no anyres grid", im->w, im->h);
    size_t tile = (size_t)ref->anyres.tile;
    float *pix = mem_alloc(sizeof(float) * (size_t)maxp * 3 * tile * tile, "image tiles");
    int rc = img_preprocess(im, &icfg, pix, maxp, &np);
    tpl_seq seq;
    memset(&seq, 0, sizeof seq);
    int64_t nimg = anyres_num_image_tokens(&ref->anyres, im->h, im->w);
    if (!rc) rc = tpl_encode(tr_tok(t), question, "x", (int32_t)nimg, &seq);
    if (!rc) {
        (void)c;
        lt_pair p = {pix, np, im->h, im->w, seq.ids.v, (int32_t)seq.answer_start, NULL, NULL, 0, 0, NULL};
        uint32_t stream = 0;
        rc = run(t, &p, 1, &stream, g, answer, ntok);
    }
    tpl_free(&seq);
    free(pix);
    return rc;
}
