/* adamw — torch.optim.AdamW single-tensor path and torch.nn.utils.clip_grad_norm_. */
#include "train/adamw.h"

#include <math.h>
#include <string.h>

#include "io/err.h"

void adamw_init(adamw_opt *o) {
    memset(o, 0, sizeof *o);
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->step = 0;
}

int adamw_bind(adamw_opt *o, const ops *backend, opctx *c) {
    o->o = backend;
    o->c = c;
    o->ss = backend->mem_alloc(c, sizeof(double), MEM_DEVICE, "the optimiser's gradient norm");
    return o->ss ? ERR_OK : backend->sync(c);
}

void adamw_release(adamw_opt *o) {
    if (o->o && o->ss) o->o->mem_free(o->c, o->ss, MEM_DEVICE);
    o->ss = NULL;
}

/* the backend of o: its own, or the fp32 CPU reference with the caller's scratch context */
static const ops *backend_of(const adamw_opt *o, opctx **c, opctx *own) {
    if (o->o) {
        *c = o->c;
        return o->o;
    }
    memset(own, 0, sizeof *own);
    *c = own;
    return ops_cpu();
}

double adamw_grad_norm(const adamw_opt *o, const adamw_group *g, int ng) {
    opctx own, *c;
    const ops *b = backend_of(o, &c, &own);
    double host = 0, *ss = o->o && o->ss ? o->ss : &host;
    b->memset(c, ss, 0, sizeof(double));
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            if (g[k].t[j].n > 0) b->sumsq(c, ss, g[k].t[j].grad, g[k].t[j].n);
    if (ss != &host) b->download(c, &host, ss, sizeof host);
    return sqrt(host);
}

double adamw_clip(const adamw_opt *o, adamw_group *g, int ng, double max_norm) {
    double total = adamw_grad_norm(o, g, ng);
    if (!(max_norm > 0)) return total;
    double coef = max_norm / (total + 1e-6);
    if (!(coef < 1.0)) return total; /* torch multiplies by the coefficient clamped to 1: a no-op */
    opctx own, *c;
    const ops *b = backend_of(o, &c, &own);
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            if (g[k].t[j].n > 0) b->scale(c, g[k].t[j].grad, g[k].t[j].n, (float)coef);
    return total;
}

int adamw_step(adamw_opt *o, adamw_group *g, int ng, double lr_factor) {
    if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1 && o->eps >= 0))
        return err_set(ERR_ARGS, "adamw: betas (%g, %g), eps %g: expected 0 <= beta < 1 and eps >= 0", o->beta1,
                       o->beta2, o->eps);
    if (!(lr_factor >= 0 && isfinite(lr_factor)))
        return err_set(ERR_ARGS, "adamw: lr factor %g, expected a finite value >= 0", lr_factor);
    for (int k = 0; k < ng; k++) {
        if (!(g[k].lr >= 0 && isfinite(g[k].lr) && g[k].weight_decay >= 0 && isfinite(g[k].weight_decay)))
            return err_set(ERR_ARGS, "adamw: group \"%s\": lr %g, weight decay %g, expected finite values >= 0",
                           g[k].name ? g[k].name : "?", g[k].lr, g[k].weight_decay);
        for (int j = 0; j < g[k].nt; j++)
            if (g[k].t[j].n < 0 || (g[k].t[j].n > 0 && !(g[k].t[j].param && g[k].t[j].grad && g[k].t[j].m &&
                                                         g[k].t[j].v)))
                return err_set(ERR_ARGS, "adamw: group \"%s\" tensor %d (%s): %lld elements, expected n >= 0 "
                               "and param, grad, m, v buffers", g[k].name ? g[k].name : "?", j,
                               g[k].t[j].name ? g[k].t[j].name : "?", (long long)g[k].t[j].n);
    }
    o->step++;
    const double t = (double)o->step;
    const double bc1 = 1.0 - pow(o->beta1, t);
    const double bc2_sqrt = sqrt(1.0 - pow(o->beta2, t));
    const float w1 = (float)(1.0 - o->beta1), b2 = (float)o->beta2, w2 = (float)(1.0 - o->beta2);
    const float bc2f = (float)bc2_sqrt, epsf = (float)o->eps;
    opctx own, *c;
    const ops *b = backend_of(o, &c, &own);
    for (int k = 0; k < ng; k++) {
        const double lr = g[k].lr * lr_factor;
        const float decay = (float)(1.0 - lr * g[k].weight_decay);
        const float neg_step = (float)(-(lr / bc1));
        for (int j = 0; j < g[k].nt; j++) {
            const adamw_tensor *t = &g[k].t[j];
            if (t->n > 0)
                b->adamw(c, t->param, t->grad, t->m, t->v, t->n, decay, g[k].weight_decay != 0, w1, b2, w2, bc2f,
                         epsf, neg_step);
        }
    }
    return b->sync(c);
}

void adamw_zero_grad(const adamw_opt *o, adamw_group *g, int ng) {
    opctx own, *c;
    const ops *b = backend_of(o, &c, &own);
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            if (g[k].t[j].n > 0) b->memset(c, g[k].t[j].grad, 0, sizeof(float) * (size_t)g[k].t[j].n);
}

int adamw_group_index(const adamw_group *g, int ng, const char *name) {
    for (int k = 0; k < ng; k++)
        if (g[k].name && name && !strcmp(g[k].name, name)) return k;
    return -1;
}
