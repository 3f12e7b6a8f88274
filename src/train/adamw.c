/* adamw — torch.optim.AdamW single-tensor path and torch.nn.utils.clip_grad_norm_. */
#include "train/adamw.h"

#include <math.h>
#include <string.h>

#include "io/err.h"

void adamw_init(adamw_opt *o) {
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->step = 0;
}

double adamw_grad_norm(const adamw_group *g, int ng) {
    double ss = 0;
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++) {
            const float *gr = g[k].t[j].grad;
            for (int64_t i = 0; i < g[k].t[j].n; i++) ss += (double)gr[i] * (double)gr[i];
        }
    return sqrt(ss);
}

double adamw_clip(adamw_group *g, int ng, double max_norm) {
    double total = adamw_grad_norm(g, ng);
    if (!(max_norm > 0)) return total;
    double coef = max_norm / (total + 1e-6);
    if (!(coef < 1.0)) return total; /* torch multiplies by the coefficient clamped to 1: a no-op */
    float c = (float)coef;
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++) {
            float *gr = g[k].t[j].grad;
            for (int64_t i = 0; i < g[k].t[j].n; i++) gr[i] *= c;
        }
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
    for (int k = 0; k < ng; k++) {
        const double lr = g[k].lr * lr_factor;
        const float decay = (float)(1.0 - lr * g[k].weight_decay);
        const float neg_step = (float)(-(lr / bc1));
        for (int j = 0; j < g[k].nt; j++) {
            float *p = g[k].t[j].param, *m = g[k].t[j].m, *v = g[k].t[j].v;
            const float *gr = g[k].t[j].grad;
            for (int64_t i = 0; i < g[k].t[j].n; i++) {
                float gi = gr[i];
                if (g[k].weight_decay != 0) p[i] *= decay;
                m[i] = m[i] + w1 * (gi - m[i]);
                float vi = v[i] * b2;
                v[i] = vi + w2 * gi * gi;
                float denom = sqrtf(v[i]) / bc2f + epsf;
                p[i] = p[i] + neg_step * m[i] / denom;
            }
        }
    }
    return ERR_OK;
}

void adamw_zero_grad(adamw_group *g, int ng) {
    for (int k = 0; k < ng; k++)
        for (int j = 0; j < g[k].nt; j++)
            if (g[k].t[j].n > 0) memset(g[k].t[j].grad, 0, sizeof(float) * (size_t)g[k].t[j].n);
}

int adamw_group_index(const adamw_group *g, int ng, const char *name) {
    for (int k = 0; k < ng; k++)
        if (g[k].name && name && !strcmp(g[k].name, name)) return k;
    return -1;
}
