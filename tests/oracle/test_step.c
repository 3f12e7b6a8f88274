/* One ORPO + LoRA training step on the tiny LLaVA-NeXT against transformers + PEFT + torch autograd
 * (tests/fixtures/step/step.h5 from tools/oracle/make_step_fixtures.py), for the fp32 and the NF4 base,
 * LoRA everywhere (decoder, projector, lm_head), LoRA q,v + the projector trained fully, or LoRA q,v + vision
 * LoRA on every linear of the last vision layer feeding the projector (fp32 base); each with and
 * without prefix sharing and with and without gradient checkpointing:
 *   loss and metrics within TOL_METRIC relative, every gradient within TOL_GRAD (max|diff| / max|ref|), both
 *   the worst-case fp32 error of the model's chain for any summation order (tolerance.h, set_tolerances);
 *   finite differences (fp64) vs our gradients within TOL_GRAD + the oracle's own distance to them;
 *   weights after 3 AdamW steps (warm-up + cosine, weight decay, clipping) per element within the bound of
 *   adamw_bound.h, computed from our gradients and TOL_GRAD; two wrong optimisers must exceed it;
 *   shared vs unshared prefix, checkpointed vs not: every gradient equal within TOL_GRAD. */
#include <string.h>

#include "adamw_bound.h"
#include "fixture_h5.h"
#include "io/err.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "model/nf4.h"
#include "step_pairs.h"
#include "test.h"
#include "tolerance.h"
#include "train/adamw.h"
#include "train/orpo.h"
#include "train/sched.h"

static hid_t F;
/* Tolerances, set by set_tolerances for the model and the batch (derivations there). */
static double TOL_GRAD, TOL_METRIC;
static lt_pair pairs[2];

/* The gradient check: max|g - g_torch| / max|g_torch| per tensor <= TOL_GRAD = 2 tol_llava_bwd(L, R) + u
 * (tolerance.h: the forward chain, the backward chain and the weight-gradient sum over the R rows of the batch,
 * worst case for any summation order, ours and torch's, + u for the stored reference), for the longest sequence L
 * and all R rows. Was 1e-4: below that worst case.
 * Loss and metrics: means of token log-probs, log p = logit - lse; |d log p| <= |d logit| + |d lse|, the logits
 * within the forward chain bound and lse one more sum over the vocabulary: TOL_METRIC = 2 tol_llava_fwd(L) +
 * gamma_V + 4 u (the means, in fp64 on our side), relative to each metric's scale: |log p| of a near-uniform
 * random model (about log V) is larger than the logits it comes from, and the metrics that are differences of two
 * mean log-probs (log_odds_chosen, reward_margin) are scaled by the log-probs they subtract (cancellation).
 * Was 1e-5. */
static void set_tolerances(const llava_model *m) {
    int64_t L = 0, R = 0;
    for (int i = 0; i < 2; i++) {
        int64_t a = pairs[i].n_chosen > pairs[i].n_rejected ? pairs[i].n_chosen : pairs[i].n_rejected;
        if (pairs[i].n_prefix + a > L) L = pairs[i].n_prefix + a;
        R += 2 * pairs[i].n_prefix + pairs[i].n_chosen + pairs[i].n_rejected;
    }
    TOL_GRAD = 2 * tol_llava_bwd(&m->cfg, L, R) + TOL_U;
    TOL_METRIC = 2 * tol_llava_fwd(&m->cfg, L) + tol_gamma(m->cfg.vocab) + 4 * TOL_U;
}

static void set_init(llava_trainer *t, const char *grp) { step_set_init(F, t, grp); }

static double max_grad_err(llava_trainer *t, const char *grp, const char *what) {
    double worst = 0;
    for (int i = 0; i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        char p[300];
        size_t n;
        snprintf(p, sizeof p, "%s/%s/%s", grp, what, ti->name);
        float *ref = fx_f32(F, p, &n);
        const float *mine = !strcmp(what, "grad") ? ti->grad : ti->data;
        double e = fx_relerr(mine, ref, n);
        if (e > worst) worst = e;
        if (getenv("STEP_DEBUG") && e > 1e-5) {
            size_t at = 0;
            for (size_t k = 0; k < n; k++) if (fabs(mine[k] - ref[k]) > fabs(mine[at] - ref[at])) at = k;
            printf("      %s %s: rel %.2e at %zu: %.9g vs %.9g\n", what, ti->name, e, at, mine[at], ref[at]);
        }
        free(ref);
    }
    return worst;
}

/* Central differences (float64, by the oracle, h = 1e-5) at 3 coordinates of every tensor: an independent check of
 * the gradient that does not trust autograd. fd differs from the exact gradient by its truncation (h^2/6 times
 * the third derivative) and fp64 rounding (2^-53 |loss| / h); torch's fp32 gradient differs from fd by that plus
 * its own rounding, so the realised max|g_torch - fd| (computed here from the fixture, not a number of one
 * machine) bounds the fd error plus the oracle's rounding, and ours may add TOL_GRAD max|g_torch|:
 *   max_k |g - fd| <= TOL_GRAD max|g_torch| + max_k |g_torch - fd|   per tensor.
 * Was: per coordinate 1e-3 relative to max(|fd|, 0.01 max|g|), which allows 100x the gradient error at small
 * coordinates and had no derivation. */
static void check_fd(llava_trainer *t, const char *grp) {
    double worst = 0;
    for (int i = 0; i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        char p[300];
        size_t n, ni, ng;
        snprintf(p, sizeof p, "%s/fd/%s", grp, ti->name);
        float *fd = fx_f32(F, p, &n);
        snprintf(p, sizeof p, "%s/grad/%s", grp, ti->name);
        float *ref = fx_f32(F, p, &ng);
        snprintf(p, sizeof p, "%s/fdidx/%s", grp, ti->name);
        hsize_t dims[1];
        H5LTget_dataset_info(F, p, dims, NULL, NULL);
        ni = (size_t)dims[0];
        long long *idx = malloc(sizeof(long long) * ni);
        H5LTread_dataset(F, p, H5T_NATIVE_LLONG, idx);
        double scale = 0, eref = 0, e = 0;
        for (size_t k = 0; k < ng; k++) scale = fabs(ref[k]) > scale ? fabs(ref[k]) : scale;
        for (size_t k = 0; k < ni; k++) {
            eref = fmax(eref, fabs((double)ref[idx[k]] - (double)fd[k]));
            e = fmax(e, fabs((double)ti->grad[idx[k]] - (double)fd[k]));
        }
        double bound = TOL_GRAD * scale + eref;
        double r = e == 0 ? 0 : (bound > 0 ? e / bound : INFINITY);
        if (r > worst) worst = r;
        free(fd);
        free(ref);
        free(idx);
    }
    printf("    finite differences (fp64) vs gradients: worst |g - fd| / bound %.3f\n", worst);
    CHECK(worst <= 1);
}

/* LoRA dropout: the same masks in the recomputed forward (checkpointing) and on a rerun; it changes the result */
static void check_dropout(llava_model *m) {
    float *g[3] = {NULL, NULL, NULL};
    int64_t n = 0;
    for (int k = 0; k < 3; k++) {
        lt_spec sp;
        lt_spec_default(&sp);
        sp.rank = 4;
        sp.alpha = 8.0f;
        sp.targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
        sp.dropout = k < 2 ? 0.1f : 0.0f;
        sp.grad_ckpt = k == 1;
        llava_trainer t;
        lt_init(&t, m, &sp);
        lt_plan(&t, 512, 16, 512);
        set_init(&t, "lora_fp32");
        orpo_metrics mt;
        CHECK_EQ_INT(step_grads(&t, pairs, 7, &mt), 0);
        n = t.nstore;
        g[k] = malloc(sizeof(float) * (size_t)n);
        memcpy(g[k], t.gstore, sizeof(float) * (size_t)n);
        lt_free(&t);
    }
    double same = fx_relerr(g[1], g[0], (size_t)n), differ = fx_relerr(g[2], g[0], (size_t)n);
    printf("    dropout 0.1: checkpointed vs not %.1e; vs no dropout %.1e\n", same, differ);
    /* checkpointing recomputes the same forward: within the rounding of two summation orders of our own
     * (TOL_GRAD, was 1e-6); dropout 0.1 zeroes 10% of the LoRA inputs and scales the rest by 1/0.9, an O(0.1)
     * change of every LoRA gradient: it must exceed 10x the rounding bound (was 1e-3) */
    CHECK(same <= TOL_GRAD);
    CHECK(differ > 10 * TOL_GRAD);
    for (int k = 0; k < 3; k++) free(g[k]);
}


static double gamma_n(double n) { return tol_gamma(n); }

typedef struct {
    const char *what;
    adamw_opt opt;
    adamw_group g;
    adamw_tensor *at;
    float *w, *mom, *gbuf; /* gbuf: its own gradients (L2 mutant), else NULL */
    double l2, worst;
} mutant;

static void mutant_init(mutant *mu, const char *what, llava_trainer *t, const adamw_group *real) {
    int nt = lt_tensor_count(t);
    mu->what = what;
    adamw_init(&mu->opt);
    mu->g = *real;
    mu->at = calloc((size_t)nt, sizeof *mu->at);
    mu->w = malloc(sizeof(float) * (size_t)t->nstore);
    mu->gbuf = NULL;
    mu->l2 = 0;
    mu->mom = calloc((size_t)t->nstore * 2, sizeof(float));
    mu->worst = 0;
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        memcpy(mu->w + off, ti->data, sizeof(float) * (size_t)ti->numel);
        mu->at[i] = (adamw_tensor){ti->name, mu->w + off, ti->grad, mu->mom + off, mu->mom + t->nstore + off, ti->numel};
        off += ti->numel;
    }
    mu->g.t = mu->at;
}

/* Adam with L2 regularisation instead of decoupled decay: g += wd w, no decay of the weights */
static void mutant_l2(mutant *mu, llava_trainer *t, double wd) {
    mu->gbuf = malloc(sizeof(float) * (size_t)t->nstore);
    mu->l2 = wd;
    mu->g.weight_decay = 0;
    for (int i = 0; i < lt_tensor_count(t); i++) mu->at[i].grad = mu->gbuf + (mu->at[i].param - mu->w);
}

static void mutant_grads(mutant *mu, llava_trainer *t) {
    if (!mu->gbuf) return;
    for (int i = 0; i < lt_tensor_count(t); i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        for (int64_t k = 0; k < ti->numel; k++)
            mu->at[i].grad[k] = ti->grad[k] + (float)mu->l2 * mu->at[i].param[k];
    }
}

/* 3 AdamW steps (warm-up 1 step: lr 0, then cosine: lr, 0.75 lr), weight decay, clipping, each on the same batch,
 * against torch's weights after each step. The check is per element, |w - w_torch| <= bound, with the bound of
 * adamw_bound.h (derivation there) computed from our own gradients. The gradient of each element may differ
 * from torch's by delta (before clipping):
 *   delta = TOL_GRAD/(1-TOL_GRAD) * max|g| of its tensor      (the gradient check: max|diff| <= TOL_GRAD max|ref|,
 *                                                               and max|ref| <= max|g|/(1-TOL_GRAD))
 * clip_grad_norm_ multiplies by c = clip/(N+1e-6) (when < 1). |N - N'| <= ||g - g'||_2 <= sqrt(sum n_i delta_i^2)
 * plus torch's own rounding of N (fp32 norm of each tensor, then of the norms: gamma_n/2 each, any order, + 2 u for
 * the square roots), so with k = |N - N'|/N: |c' - c| <= c (k/(1-k) + 2u) = c kc (2u: the coefficient rounded to
 * fp32 on both sides) and |c g - c' g'| <= c (1 + kc) delta + kc |c g| (+ u |c g| for the product, in ab_grad).
 * Control: two deliberately wrong optimisers (no bias correction: the step counter starts at 10^6, so that
 * 1 - beta^t == 1; Adam with L2 regularisation g + wd w instead of AdamW's decoupled decay) run on copies of the
 * weights with the same gradients; the same bound must reject each of them at some element, or the check could
 * not fail. Dropping the weight decay altogether (2e-6 |w| per step at lr 2e-4, wd 0.01) is NOT detectable here:
 * it is smaller than what the worst-case gradient tolerance allows (about 0.4 of the bound); test_adamw, which
 * feeds both sides the same gradients, catches it. */
static void check_adamw(llava_trainer *t, const char *grp) {
    int nt = lt_tensor_count(t);
    int64_t N = t->nstore;
    const double lr = fx_attr_d(F, "/", "lr"), wd = fx_attr_d(F, "/", "weight_decay"), clip = fx_attr_d(F, "/", "clip");
    adamw_opt opt;
    adamw_init(&opt);
    adamw_tensor *at = calloc((size_t)nt, sizeof *at);
    float *mom = calloc((size_t)N * 2, sizeof(float));
    int64_t *off = calloc((size_t)nt + 1, sizeof(int64_t));
    double *gmax = calloc((size_t)nt, sizeof(double));
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(t, i);
        at[i] = (adamw_tensor){ti->name, ti->data, ti->grad, mom + off[i], mom + N + off[i], ti->numel};
        off[i + 1] = off[i] + ti->numel;
    }
    adamw_group g = {"all", lr, wd, at, nt};
    set_init(t, grp);
    mutant mu[2];
    mutant_init(&mu[0], "no bias correction", t, &g);
    mu[0].opt.step = 1000000;
    mutant_init(&mu[1], "L2 regularisation instead of decoupled weight decay", t, &g);
    mutant_l2(&mu[1], t, wd);
    ab_state b;
    ab_init(&b, &opt, N);
    for (int s = 1; s <= 3; s++) {
        orpo_metrics mt;
        CHECK_EQ_INT(step_grads(t, pairs, (uint32_t)s, &mt), 0);
        double ss = 0, kt = 0;
        for (int i = 0; i < nt; i++) {
            const lt_tensor_info *ti = lt_tensor(t, i);
            gmax[i] = 0;
            for (int64_t k = 0; k < ti->numel; k++) gmax[i] = fmax(gmax[i], fabs(ti->grad[k]));
            double d = TOL_GRAD / (1 - TOL_GRAD) * gmax[i];
            ss += (double)ti->numel * d * d;
            kt = fmax(kt, gamma_n((double)ti->numel) / 2);
        }
        kt += gamma_n(nt) / 2 + 2 * AB_U;
        double norm = adamw_clip(&opt, &g, 1, clip);
        double c = norm > 0 && clip / (norm + 1e-6) < 1 ? clip / (norm + 1e-6) : 1;
        double k = norm > 0 ? sqrt(ss) / norm + kt : 0;
        CHECK(k < 0.5);
        double kc = k / (1 - k) + 2 * AB_U;
        ab_begin_step(&b);
        for (int i = 0; i < nt; i++)
            ab_grad(&b, off[i], lt_tensor(t, i)->grad, lt_tensor(t, i)->numel,
                    c * (1 + kc) * TOL_GRAD / (1 - TOL_GRAD) * gmax[i], kc);
        double f = sched_factor(SCHED_COSINE, s - 1, 1, 4);
        CHECK_EQ_INT(adamw_step(&opt, &g, 1, f), 0);
        for (int q = 0; q < 2; q++) {
            mutant_grads(&mu[q], t);
            CHECK_EQ_INT(adamw_step(&mu[q].opt, &mu[q].g, 1, f), 0);
        }
        double worst = 0, old = 0;
        const char *worst_name = "";
        int64_t worst_at = 0;
        for (int i = 0; i < nt; i++) {
            const lt_tensor_info *ti = lt_tensor(t, i);
            ab_step(&b, off[i], ti->data, mom + off[i], mom + N + off[i], ti->numel, lr * f, wd);
            char p[300];
            size_t n;
            snprintf(p, sizeof p, "%s/step%d/%s", grp, s, ti->name);
            float *ref = fx_f32(F, p, &n);
            CHECK_EQ_INT(n, ti->numel);
            int64_t a = 0;
            double r = ab_ratio(&b, off[i], ti->data, ref, ti->numel, &a);
            if (r > worst) {
                worst = r;
                worst_name = ti->name;
                worst_at = a;
            }
            old = fmax(old, fx_relerr(ti->data, ref, n));
            for (int q = 0; q < 2; q++) mu[q].worst = fmax(mu[q].worst, ab_ratio(&b, off[i], mu[q].w + off[i], ref, ti->numel, NULL));
            free(ref);
        }
        printf("    AdamW step %d: worst |w - w_torch| / bound %.3f (%s [%lld]); %lld of %lld elements with an "
               "undetermined update; max|diff|/max|ref| %.1e; clip k %.1e\n", s, worst, worst_name,
               (long long)worst_at, (long long)b.undetermined, (long long)b.elements, old, k);
        CHECK(worst <= 1);
    }
    for (int q = 0; q < 2; q++) {
        printf("    control, AdamW with %s: worst |w - w_torch| / bound %.3g (must be > 1)\n", mu[q].what, mu[q].worst);
        CHECK(mu[q].worst > 1);
        free(mu[q].at);
        free(mu[q].w);
        free(mu[q].mom);
        free(mu[q].gbuf);
    }
    ab_free(&b);
    free(at);
    free(mom);
    free(off);
    free(gmax);
}

static void run_variant(const char *variant, const char *base, llava_model *m) {
    char grp[64];
    snprintf(grp, sizeof grp, "%s_%s", variant, base);
    float *ref_grads = NULL;
    int64_t ngrad = 0;
    for (int share = 1; share >= 0; share--)
        for (int ckpt = 0; ckpt <= 1; ckpt++) {
            lt_spec sp;
            lt_spec_default(&sp);
            sp.rank = 4;
            sp.alpha = 8.0f;
            sp.share_prefix = share;
            sp.grad_ckpt = ckpt;
            if (!strcmp(variant, "lora")) {
                sp.targets = LT_Q | LT_K | LT_V | LT_O | LT_GATE | LT_UP | LT_DOWN | LT_PROJ | LT_LM_HEAD;
            } else if (!strcmp(variant, "vision")) {
                sp.targets = LT_Q | LT_V;
                sp.vision_targets = LTV_Q | LTV_K | LTV_V | LTV_OUT | LTV_FC1 | LTV_FC2;
                sp.vision_layers = 1;
            } else {
                sp.targets = LT_Q | LT_V;
                sp.full_projector = 1;
            }
            llava_trainer t;
            CHECK_EQ_INT(lt_init(&t, m, &sp), 0);
            CHECK_EQ_INT(lt_plan(&t, 512, 16, 512), 0);
            set_init(&t, grp);
            orpo_metrics mt;
            int rc = step_grads(&t, pairs, 1, &mt);
            if (rc) fprintf(stderr, "%s\n", err_msg());
            CHECK_EQ_INT(rc, 0);
            const char *names[8] = {"loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "chosen_logps",
                                    "rejected_logps", "reward_accuracy", "reward_margin"};
            float vals[8] = {mt.loss, mt.nll_loss, mt.log_odds_ratio, mt.log_odds_chosen, mt.chosen_logps,
                             mt.rejected_logps, mt.reward_accuracy, mt.reward_margin};
            /* relative error; log_odds_chosen and reward_margin are differences of two mean log-probs (near 0 for
             * a random model), so their scale is that of the log-probs they subtract (cancellation) */
            double lw = fabs(fx_attr_d(F, grp, "chosen_logps")), ll = fabs(fx_attr_d(F, grp, "rejected_logps"));
            double worst_m = 0;
            for (int k = 0; k < 8; k++) {
                double ref = fx_attr_d(F, grp, names[k]);
                double scale = fabs(ref) > 1e-3 ? fabs(ref) : 1e-3;
                if (k == 3) scale = fmax(scale, lw + ll);
                if (k == 7) scale = fmax(scale, 0.1 * (lw + ll));
                double e = fabs(vals[k] - ref) / scale;
                if (e > worst_m) worst_m = e;
                if (e > TOL_METRIC) printf("    metric %s: %.9g vs %.9g\n", names[k], vals[k], ref);
            }
            double ge = max_grad_err(&t, grp, "grad");
            printf("  %-14s share=%d ckpt=%d  loss %.6f  metrics rel err %.1e (tol %.1e)  grads rel err %.1e (tol %.1e)\n",
                   grp, share, ckpt, mt.loss, worst_m, TOL_METRIC, ge, TOL_GRAD);
            CHECK(worst_m <= TOL_METRIC); /* derivations at set_tolerances */
            CHECK(ge <= TOL_GRAD);
            if (share == 1 && ckpt == 0 && !strcmp(base, "fp32")) check_fd(&t, grp);
            /* prefix sharing and checkpointing change nothing: compare with the first configuration */
            if (!ref_grads) {
                ngrad = t.nstore;
                ref_grads = malloc(sizeof(float) * (size_t)ngrad);
                memcpy(ref_grads, t.gstore, sizeof(float) * (size_t)ngrad);
            } else {
                /* the same gradients in our own code with other row groupings (shared prefix: other lengths of
                 * the attention and weight-gradient sums): two summation orders, TOL_GRAD (was 1e-6) */
                double e = fx_relerr(t.gstore, ref_grads, (size_t)ngrad);
                CHECK(e <= TOL_GRAD);
                if (e > TOL_GRAD) printf("    differs from share=1 ckpt=0 by %.2e\n", e);
            }
            if (share == 1 && ckpt == 0) check_adamw(&t, grp);
            lt_free(&t);
        }
    free(ref_grads);
}

int main(void) {
    F = fx_open(test_fixture("step/step.h5"));
    step_pairs_load(F, pairs);
    char fp32[1024], nf4[1024];
    step_models(fp32, nf4);
    const char *bases[2] = {"fp32", "nf4"};
    const char *paths[2] = {fp32, nf4};
    for (int b = 0; b < 2; b++)
        for (int v = 0; v < 2; v++) {
            llava_model m;
            CHECK_EQ_INT(mh5_load(paths[b], &m), 0);
            set_tolerances(&m);
            run_variant(v ? "fullproj" : "lora", bases[b], &m);
            if (b == 0 && v == 0) check_dropout(&m);
            if (b == 0 && v == 1) run_variant("vision", "fp32", &m);
            llava_model_free(&m);
        }
    step_pairs_free(pairs);
    H5Fclose(F);
    TEST_MAIN_END();
}
