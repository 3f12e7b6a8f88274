/* orpo — ORPO loss, metrics and backward (math in docs/training.md). */
#include "train/orpo.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "io/err.h"

_Static_assert(sizeof(orpo_accum) == ORPO_ACCUM_N * sizeof(double), "orpo_accum must be plain doubles");

double orpo_log1mexp(double x) {
    /* Mächler (2012): log1p(-e^x) is accurate for x < -ln2, log(-expm1(x)) near 0 */
    if (x < -0.6931471805599453) return log1p(-exp(x));
    return log(-expm1(x));
}

double orpo_logsigmoid(double z) {
    if (z >= 0) return -log1p(exp(-z));
    return z - log1p(exp(z));
}

double orpo_log_odds(double lw, double ll) {
    return (lw - ll) - (orpo_log1mexp(lw) - orpo_log1mexp(ll));
}

void orpo_accum_init(orpo_accum *acc) { memset(acc, 0, sizeof *acc); }

static int check_norm(const orpo_config *cfg, const orpo_norm *norm, int32_t n_pairs, int64_t nll_count) {
    if (!(cfg->beta >= 0 && isfinite(cfg->beta)))
        return err_set(ERR_ARGS, "orpo: beta = %g, expected a finite value >= 0", cfg->beta);
    if (cfg->nll != ORPO_NLL_ALL && cfg->nll != ORPO_NLL_ANSWER)
        return err_set(ERR_ARGS, "orpo: nll mode %d, expected 0 (all) or 1 (answer)", cfg->nll);
    if (n_pairs < 0 || n_pairs > ORPO_MAX_PAIRS)
        return err_set(ERR_ARGS, "orpo: %d pairs in a micro-batch, expected 0..%d", n_pairs, ORPO_MAX_PAIRS);
    if (norm->pairs < n_pairs)
        return err_set(ERR_ARGS, "orpo: step normaliser pairs = %lld is smaller than the %d pairs of this "
                       "micro-batch (expected the pair count of the whole optimiser step)",
                       (long long)norm->pairs, n_pairs);
    if (cfg->nll == ORPO_NLL_ALL) {
        if (norm->nll_tokens < nll_count)
            return err_set(ERR_ARGS, "orpo: step normaliser nll_tokens = %lld is smaller than the %lld NLL "
                           "targets of this micro-batch (expected the count of the whole optimiser step)",
                           (long long)norm->nll_tokens, (long long)nll_count);
        if (n_pairs > 0 && norm->nll_tokens <= 0)
            return err_set(ERR_DATA, "orpo: the optimiser step has no NLL target tokens (nll: all needs the "
                           "chosen sequences' targets; expected >= 1)");
    }
    return ERR_OK;
}

int orpo_pairs(const orpo_config *cfg, const orpo_pair *p, int32_t n_pairs, double nll_sum, int64_t nll_count,
               const orpo_norm *norm, orpo_accum *acc, orpo_pair_grad *g, double *d_nll) {
    int rc = check_norm(cfg, norm, n_pairs, nll_count);
    if (rc) return rc;
    for (int32_t i = 0; i < n_pairs; i++) {
        if (p[i].n_w <= 0 || p[i].n_l <= 0)
            return err_set(ERR_DATA, "orpo: pair %d of the micro-batch: the %s answer has %lld tokens, expected "
                           ">= 1 answer token (incl. </s>)", i, p[i].n_w <= 0 ? "chosen" : "rejected",
                           (long long)(p[i].n_w <= 0 ? p[i].n_w : p[i].n_l));
        if (!isfinite(p[i].sum_w) || !isfinite(p[i].sum_l))
            return err_set(ERR_DATA, "orpo: pair %d of the micro-batch: the %s answer's log-prob sum is %g, "
                           "expected a finite value", i, isfinite(p[i].sum_w) ? "rejected" : "chosen",
                           isfinite(p[i].sum_w) ? p[i].sum_l : p[i].sum_w);
    }
    if (cfg->nll == ORPO_NLL_ALL && !isfinite(nll_sum))
        return err_set(ERR_DATA, "orpo: NLL log-prob sum is %g, expected a finite value", nll_sum);

    const double beta = cfg->beta;
    const double inv_p = norm->pairs > 0 ? 1.0 / (double)norm->pairs : 0.0;
    orpo_accum a;
    memset(&a, 0, sizeof a);
    for (int32_t i = 0; i < n_pairs; i++) {
        double Lw = p[i].sum_w / (double)p[i].n_w, Ll = p[i].sum_l / (double)p[i].n_l;
        double lw = Lw < ORPO_LOGP_CEIL ? Lw : ORPO_LOGP_CEIL;
        double ll = Ll < ORPO_LOGP_CEIL ? Ll : ORPO_LOGP_CEIL;
        double z = orpo_log_odds(lw, ll);
        double ls = orpo_logsigmoid(z);
        /* d(-logsigmoid z)/dlw = -σ(-z)/(1-e^lw); σ(-z)/(1-e^lw) = 1/(q_w + e^(lw-ll) q_l), q = -expm1(l),
         * which has no 0·inf at lw -> 0; σ(-z)/(1-e^ll) = that · q_w/q_l. */
        double qw = -expm1(lw), ql = -expm1(ll);
        double gw = 1.0 / (qw + exp(lw - ll) * ql);
        double gl = gw * qw / ql;
        double dw = -beta * inv_p * gw, dl = beta * inv_p * gl;
        if (cfg->nll == ORPO_NLL_ANSWER) dw -= inv_p;
        if (g) {
            g[i].d_w = dw / (double)p[i].n_w;
            g[i].d_l = dl / (double)p[i].n_l;
        }
        a.log_odds_ratio += ls * inv_p;
        a.log_odds_chosen += z * inv_p;
        a.chosen_logps += Lw * inv_p;
        a.rejected_logps += Ll * inv_p;
        a.reward_accuracy += (beta * Lw > beta * Ll ? 1.0 : 0.0) * inv_p;
        a.reward_margin += beta * (Lw - Ll) * inv_p;
        a.rewards_chosen += beta * Lw * inv_p;
        a.rewards_rejected += beta * Ll * inv_p;
    }
    if (cfg->nll == ORPO_NLL_ALL) {
        a.nll_loss = norm->nll_tokens > 0 ? -nll_sum / (double)norm->nll_tokens : 0.0;
        a.nll_tokens = (double)nll_count;
        if (d_nll) *d_nll = norm->nll_tokens > 0 ? -1.0 / (double)norm->nll_tokens : 0.0;
    } else {
        a.nll_loss = -a.chosen_logps;
        if (d_nll) *d_nll = 0.0;
    }
    a.loss = a.nll_loss - beta * a.log_odds_ratio;
    a.pairs = n_pairs;
    acc->loss += a.loss;
    acc->nll_loss += a.nll_loss;
    acc->log_odds_ratio += a.log_odds_ratio;
    acc->log_odds_chosen += a.log_odds_chosen;
    acc->chosen_logps += a.chosen_logps;
    acc->rejected_logps += a.rejected_logps;
    acc->reward_accuracy += a.reward_accuracy;
    acc->reward_margin += a.reward_margin;
    acc->rewards_chosen += a.rewards_chosen;
    acc->rewards_rejected += a.rewards_rejected;
    acc->pairs += a.pairs;
    acc->nll_tokens += a.nll_tokens;
    return ERR_OK;
}

static const char *role_name(int r) {
    return (r & ORPO_TOK_CHOSEN) ? "chosen answer" : (r & ORPO_TOK_REJECTED) ? "rejected answer" : "NLL target";
}

int orpo_tokens(const orpo_config *cfg, const orpo_batch *b, const orpo_norm *norm, orpo_accum *acc,
                float *dlogp) {
    orpo_pair pairs[ORPO_MAX_PAIRS];
    orpo_pair_grad grads[ORPO_MAX_PAIRS];
    int32_t np = b->n_pairs;
    if (np < 0 || np > ORPO_MAX_PAIRS)
        return err_set(ERR_ARGS, "orpo: %d pairs in a micro-batch, expected 0..%d", np, ORPO_MAX_PAIRS);
    if (b->n_tokens < 0)
        return err_set(ERR_ARGS, "orpo: %lld tokens, expected >= 0", (long long)b->n_tokens);
    memset(pairs, 0, sizeof(orpo_pair) * (size_t)np);
    double nll_sum = 0;
    int64_t nll_count = 0;
    const int use_nll = cfg->nll == ORPO_NLL_ALL;
    for (int64_t t = 0; t < b->n_tokens; t++) {
        int r = b->role[t];
        if (!r) continue;
        if ((r & ~(ORPO_TOK_NLL | ORPO_TOK_CHOSEN | ORPO_TOK_REJECTED)) ||
            ((r & ORPO_TOK_CHOSEN) && (r & ORPO_TOK_REJECTED)))
            return err_set(ERR_ARGS, "orpo: token %lld: role 0x%x, expected NLL(1)|CHOSEN(2) or NLL(1)|REJECTED(4)",
                           (long long)t, r);
        double lp = b->logp[t];
        if ((r & (ORPO_TOK_CHOSEN | ORPO_TOK_REJECTED)) || use_nll) {
            if (!isfinite(lp))
                return err_set(ERR_DATA, "orpo: token %lld (%s): log-prob %g, expected a finite value <= 0",
                               (long long)t, role_name(r), lp);
        }
        if (r & (ORPO_TOK_CHOSEN | ORPO_TOK_REJECTED)) {
            int32_t i = b->pair[t];
            if (i < 0 || i >= np)
                return err_set(ERR_ARGS, "orpo: token %lld (%s): pair %d, expected 0..%d", (long long)t,
                               role_name(r), i, np - 1);
            if (r & ORPO_TOK_CHOSEN) {
                pairs[i].sum_w += lp;
                pairs[i].n_w++;
            } else {
                pairs[i].sum_l += lp;
                pairs[i].n_l++;
            }
        }
        if ((r & ORPO_TOK_NLL) && use_nll) {
            nll_sum += lp;
            nll_count++;
        }
    }
    double d_nll = 0;
    int rc = orpo_pairs(cfg, pairs, np, nll_sum, nll_count, norm, acc, grads, &d_nll);
    if (rc) return rc;
    if (!dlogp) return ERR_OK;
    for (int64_t t = 0; t < b->n_tokens; t++) {
        int r = b->role[t];
        double d = 0;
        if ((r & ORPO_TOK_NLL) && use_nll) d += d_nll;
        if (r & ORPO_TOK_CHOSEN) d += grads[b->pair[t]].d_w;
        if (r & ORPO_TOK_REJECTED) d += grads[b->pair[t]].d_l;
        dlogp[t] = (float)d;
    }
    return ERR_OK;
}

int orpo_finish(const orpo_accum *acc, const orpo_norm *norm, orpo_metrics *m) {
    if (acc->pairs != (double)norm->pairs)
        return err_set(ERR_INTERNAL, "orpo: the step normaliser says %lld pairs but %.0f were added (every "
                       "micro-batch of the step must be passed once with the same normaliser)",
                       (long long)norm->pairs, acc->pairs);
    if (acc->nll_tokens != 0 && acc->nll_tokens != (double)norm->nll_tokens)
        return err_set(ERR_INTERNAL, "orpo: the step normaliser says %lld NLL tokens but %.0f were added",
                       (long long)norm->nll_tokens, acc->nll_tokens);
    m->loss = (float)acc->loss;
    m->nll_loss = (float)acc->nll_loss;
    m->log_odds_ratio = (float)acc->log_odds_ratio;
    m->log_odds_chosen = (float)acc->log_odds_chosen;
    m->chosen_logps = (float)acc->chosen_logps;
    m->rejected_logps = (float)acc->rejected_logps;
    m->reward_accuracy = (float)acc->reward_accuracy;
    m->reward_margin = (float)acc->reward_margin;
    m->rewards_chosen = (float)acc->rewards_chosen;
    m->rewards_rejected = (float)acc->rewards_rejected;
    return ERR_OK;
}

static const struct {
    const char *name, *trl;
    size_t off;
} METRICS[ORPO_NMETRICS] = {
    {"loss", "loss", offsetof(orpo_metrics, loss)},
    {"nll_loss", "nll_loss", offsetof(orpo_metrics, nll_loss)},
    {"log_odds_ratio", "log_odds_ratio", offsetof(orpo_metrics, log_odds_ratio)},
    {"log_odds_chosen", "log_odds_chosen", offsetof(orpo_metrics, log_odds_chosen)},
    {"chosen_logps", "logps/chosen", offsetof(orpo_metrics, chosen_logps)},
    {"rejected_logps", "logps/rejected", offsetof(orpo_metrics, rejected_logps)},
    {"reward_accuracy", "rewards/accuracies", offsetof(orpo_metrics, reward_accuracy)},
    {"reward_margin", "rewards/margins", offsetof(orpo_metrics, reward_margin)},
    {"rewards_chosen", "rewards/chosen", offsetof(orpo_metrics, rewards_chosen)},
    {"rewards_rejected", "rewards/rejected", offsetof(orpo_metrics, rewards_rejected)},
};

const char *orpo_metric_name(int i) { return i >= 0 && i < ORPO_NMETRICS ? METRICS[i].name : NULL; }
const char *orpo_metric_trl_name(int i) { return i >= 0 && i < ORPO_NMETRICS ? METRICS[i].trl : NULL; }
float orpo_metric_value(const orpo_metrics *m, int i) {
    if (i < 0 || i >= ORPO_NMETRICS) return NAN;
    float v;
    memcpy(&v, (const char *)m + METRICS[i].off, sizeof v);
    return v;
}
