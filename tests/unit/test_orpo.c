/* orpo unit tests (no fixtures): spec A.12 values, log1mexp branches, finiteness at L̄ = -1e-8, -ln 2, -50,
 * 0 and slightly > 0, the gradient against central finite differences, micro-batch splitting invariance,
 * role mapping, the answer-mode NLL, and the error paths (nothing modified on failure). */
#include <stdint.h>
#include <string.h>

#include "io/err.h"
#include "test.h"
#include "train/orpo.h"

static void test_values(void) {
    CHECK_NEAR(orpo_log_odds(-0.3, -0.9), 1.42839017, 5e-9);
    CHECK_NEAR(orpo_log_odds(-2.0, -1.5), -0.60706900, 5e-9);
    /* log1mexp: both branches, the branch point, and the tails */
    CHECK_NEAR(orpo_log1mexp(-1e-8), log(1e-8) - 0.5e-8, 1e-12);
    CHECK_NEAR(orpo_log1mexp(-50), -exp(-50), 1e-36);
    CHECK_NEAR(orpo_log1mexp(-0.6931471805599453), -0.6931471805599453, 1e-15);
    CHECK_NEAR(orpo_log1mexp(-0.6931471805599454), orpo_log1mexp(-0.6931471805599452), 1e-15);
    CHECK_NEAR(orpo_log1mexp(-1.0), log(1 - exp(-1.0)), 1e-15);
    CHECK_NEAR(orpo_log1mexp(-0.1), log(1 - exp(-0.1)), 1e-14);
    CHECK(isinf(orpo_log1mexp(0.0)) && orpo_log1mexp(0.0) < 0);
    /* logsigmoid */
    CHECK_NEAR(orpo_logsigmoid(0), -0.6931471805599453, 1e-16);
    CHECK_NEAR(orpo_logsigmoid(800), 0.0, 1e-300);
    CHECK_NEAR(orpo_logsigmoid(-800), -800.0, 1e-12);
    CHECK_NEAR(orpo_logsigmoid(40), -exp(-40), 1e-30);
    CHECK_NEAR(orpo_logsigmoid(-3), -log1p(exp(3.0)), 1e-14);
    CHECK_NEAR(orpo_logsigmoid(3), -log1p(exp(-3.0)), 1e-15);
}

/* loss of one pair as a function of its two mean log-probs (nll: answer, so the NLL is -L̄_w) */
static double pair_loss(double lw, double ll, double beta, int mode) {
    orpo_config cfg = {beta, mode};
    orpo_norm norm = {1, 1};
    orpo_pair p = {lw, ll, 1, 1};
    orpo_accum acc;
    orpo_accum_init(&acc);
    if (orpo_pairs(&cfg, &p, 1, 0.0, 0, &norm, &acc, NULL, NULL)) return NAN;
    return acc.loss;
}

static void test_finite(void) {
    const double L[] = {-1e-8, -0.6931471805599453, -50.0, 0.0, 1e-7, -1e-30, -700.0};
    int nl = (int)(sizeof L / sizeof L[0]);
    for (int i = 0; i < nl; i++)
        for (int j = 0; j < nl; j++)
            for (int mode = 0; mode < 2; mode++) {
                orpo_config cfg = {0.1, mode};
                orpo_norm norm = {1, 3};
                orpo_pair p = {L[i] * 3, L[j] * 2, 3, 2};
                orpo_pair_grad g;
                double dn;
                orpo_accum acc;
                orpo_accum_init(&acc);
                CHECK_EQ_INT(orpo_pairs(&cfg, &p, 1, L[i] * 3, 3, &norm, &acc, &g, &dn), ERR_OK);
                int ok = isfinite(acc.loss) && isfinite(acc.log_odds_chosen) && isfinite(acc.log_odds_ratio) &&
                         isfinite(g.d_w) && isfinite(g.d_l) && isfinite((float)g.d_w) && isfinite((float)g.d_l);
                if (!ok)
                    fprintf(stderr, "(%g, %g) mode %d: loss %g z %g dw %g dl %g\n", L[i], L[j], mode, acc.loss,
                            acc.log_odds_chosen, g.d_w, g.d_l);
                CHECK(ok);
                /* the OR gradient pushes the chosen answer up and the rejected one down */
                CHECK(g.d_w <= 0 && g.d_l >= 0);
            }
    /* at L̄_w = -1e-8 the chosen gradient tends to the finite limit -beta e^ll/(1-e^ll) (no 0*inf) */
    orpo_config cfg = {0.1, ORPO_NLL_ALL};
    orpo_norm norm = {1, 1};
    orpo_pair p = {-1e-12, -1.0, 1, 1};
    orpo_pair_grad g;
    double dn;
    orpo_accum acc;
    orpo_accum_init(&acc);
    CHECK_EQ_INT(orpo_pairs(&cfg, &p, 1, 0, 0, &norm, &acc, &g, &dn), ERR_OK);
    CHECK_NEAR(g.d_w, -0.1 * exp(-1.0) / (1 - exp(-1.0)), 1e-10);
    p.sum_w = 0.0; /* exactly certain: clamped, still the limit */
    CHECK_EQ_INT(orpo_pairs(&cfg, &p, 1, 0, 0, &norm, &acc, &g, &dn), ERR_OK);
    CHECK_NEAR(g.d_w, -0.1 * exp(-1.0) / (1 - exp(-1.0)), 1e-10);
}

static void test_fd(void) {
    /* central differences of the loss w.r.t. L̄_w and L̄_l vs the analytic gradient, both NLL modes */
    const double pts[][2] = {{-0.3, -0.9}, {-2.0, -1.5}, {-0.7, -0.69}, {-0.05, -3.0}, {-4.0, -0.2}, {-1e-3, -2e-3}};
    for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++)
        for (int mode = 0; mode < 2; mode++) {
            double lw = pts[k][0], ll = pts[k][1], beta = 0.25;
            double h = 1e-6 * fmin(fabs(lw), fabs(ll));
            double fw = (pair_loss(lw + h, ll, beta, mode) - pair_loss(lw - h, ll, beta, mode)) / (2 * h);
            double fl = (pair_loss(lw, ll + h, beta, mode) - pair_loss(lw, ll - h, beta, mode)) / (2 * h);
            orpo_config cfg = {beta, mode};
            orpo_norm norm = {1, 1};
            orpo_pair p = {lw, ll, 1, 1};
            orpo_pair_grad g;
            double dn;
            orpo_accum acc;
            orpo_accum_init(&acc);
            CHECK_EQ_INT(orpo_pairs(&cfg, &p, 1, 0, 0, &norm, &acc, &g, &dn), ERR_OK);
            CHECK_NEAR(g.d_w, fw, 1e-6 * fmax(1.0, fabs(fw)));
            CHECK_NEAR(g.d_l, fl, 1e-6 * fmax(1.0, fabs(fl)));
        }
}

/* a synthetic step of 6 pairs: per pair P prompt tokens (NLL), answer tokens (NLL|CHOSEN), rejected tokens */
enum { NP = 6, MAXT = 256 };
static float LP[MAXT];
static uint8_t ROLE[MAXT];
static int32_t PAIR[MAXT]; /* step-wide pair index */
static int NT;

static void build(void) {
    NT = 0;
    uint32_t s = 12345;
    for (int i = 0; i < NP; i++) {
        int P = 2 + i % 3, nw = 1 + (i * 5) % 7, nl = 1 + (i * 3) % 5;
        for (int t = 0; t < P + nw + nl; t++) {
            s = s * 1664525u + 1013904223u;
            float u = (float)((s >> 8) * (1.0 / 16777216.0));
            LP[NT] = -(0.01f + 2.5f * u * u);
            ROLE[NT] = t < P ? ORPO_TOK_NLL : t < P + nw ? ORPO_TOK_NLL | ORPO_TOK_CHOSEN : ORPO_TOK_REJECTED;
            PAIR[NT] = i;
            NT++;
        }
    }
    LP[NT] = -3.0f; /* a token outside the loss */
    ROLE[NT] = 0;
    PAIR[NT] = -1;
    NT++;
}

/* run the step split at pair boundaries `cuts` (micro-batch m = pairs [cuts[m], cuts[m+1])) */
static void run_split(int mode, const int *cuts, int nmb, orpo_metrics *m, float *d) {
    orpo_config cfg = {0.1, mode};
    int64_t nll = 0;
    for (int t = 0; t < NT; t++) nll += (ROLE[t] & ORPO_TOK_NLL) != 0;
    orpo_norm norm = {NP, nll};
    orpo_accum acc;
    orpo_accum_init(&acc);
    for (int k = 0; k < nmb; k++) {
        float lp[MAXT], dd[MAXT];
        uint8_t role[MAXT];
        int32_t pair[MAXT], idx[MAXT];
        int64_t n = 0;
        for (int t = 0; t < NT; t++) {
            int in = PAIR[t] >= cuts[k] && PAIR[t] < cuts[k + 1];
            if (PAIR[t] < 0) in = k == 0;
            if (!in) continue;
            lp[n] = LP[t];
            role[n] = ROLE[t];
            pair[n] = PAIR[t] < 0 ? -1 : PAIR[t] - cuts[k];
            idx[n++] = t;
        }
        orpo_batch b = {n, lp, role, pair, cuts[k + 1] - cuts[k]};
        CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, dd), ERR_OK);
        for (int64_t j = 0; j < n; j++) d[idx[j]] = dd[j];
    }
    CHECK_EQ_INT(orpo_finish(&acc, &norm, m), ERR_OK);
}

static void test_accumulation(void) {
    build();
    for (int mode = 0; mode < 2; mode++) {
        orpo_metrics m1, m2, m3;
        float d1[MAXT], d2[MAXT], d3[MAXT];
        int c1[] = {0, NP}, c2[] = {0, 4, NP}, c3[] = {0, 1, 3, NP};
        run_split(mode, c1, 1, &m1, d1);
        run_split(mode, c2, 2, &m2, d2);
        run_split(mode, c3, 3, &m3, d3);
        for (int i = 0; i < ORPO_NMETRICS; i++) {
            float a = orpo_metric_value(&m1, i);
            CHECK_NEAR(orpo_metric_value(&m2, i), a, 1e-6 * fabs(a));
            CHECK_NEAR(orpo_metric_value(&m3, i), a, 1e-6 * fabs(a));
        }
        for (int t = 0; t < NT; t++) {
            CHECK_NEAR(d2[t], d1[t], 1e-6 * fabs(d1[t]));
            CHECK_NEAR(d3[t], d1[t], 1e-6 * fabs(d1[t]));
        }
        /* the loss by hand (double), the role mapping of the gradient */
        double sw[NP] = {0}, sl[NP] = {0}, nll = 0;
        int nw[NP] = {0}, nl[NP] = {0}, nn = 0;
        for (int t = 0; t < NT; t++) {
            if (ROLE[t] & ORPO_TOK_CHOSEN) sw[PAIR[t]] += LP[t], nw[PAIR[t]]++;
            if (ROLE[t] & ORPO_TOK_REJECTED) sl[PAIR[t]] += LP[t], nl[PAIR[t]]++;
            if (ROLE[t] & ORPO_TOK_NLL) nll += LP[t], nn++;
        }
        double or = 0, mw = 0;
        for (int i = 0; i < NP; i++) {
            or += orpo_logsigmoid(orpo_log_odds(sw[i] / nw[i], sl[i] / nl[i])) / NP;
            mw += sw[i] / nw[i] / NP;
        }
        double nll_term = mode == ORPO_NLL_ALL ? -nll / nn : -mw;
        CHECK_NEAR(m1.loss, nll_term - 0.1 * or, 1e-6 * fabs(m1.loss));
        CHECK_NEAR(m1.nll_loss, nll_term, 1e-6 * fabs(nll_term));
        CHECK_NEAR(m1.chosen_logps, mw, 1e-6 * fabs(mw));
        CHECK_NEAR(m1.rewards_chosen, 0.1 * mw, 1e-6 * fabs(mw));
        for (int t = 0; t < NT; t++) {
            if (ROLE[t] == 0) CHECK(d1[t] == 0.0f);
            if (ROLE[t] == ORPO_TOK_NLL) CHECK_NEAR(d1[t], mode == ORPO_NLL_ALL ? -1.0 / nn : 0.0, 1e-9);
        }
        /* a chosen token = (the NLL share) + the OR share; the OR share is -beta/P * σ(-z)/(1-P̄_w)/n_w */
        for (int t = 0; t < NT; t++)
            if (ROLE[t] & ORPO_TOK_CHOSEN) {
                int i = PAIR[t];
                double lw = sw[i] / nw[i], ll = sl[i] / nl[i], z = orpo_log_odds(lw, ll);
                double sig = 1.0 / (1.0 + exp(z));
                double d_or = -0.1 / NP * sig / (1 - exp(lw)) / nw[i];
                double d_nll = mode == ORPO_NLL_ALL ? -1.0 / nn : -1.0 / NP / nw[i];
                CHECK_NEAR(d1[t], d_or + d_nll, 1e-6 * fabs(d_or + d_nll));
            }
    }
}

static void test_errors(void) {
    orpo_config cfg = {0.1, ORPO_NLL_ALL};
    orpo_norm norm = {2, 4};
    float lp[] = {-1.0f, -0.5f, -0.2f, -0.7f, -0.3f};
    uint8_t role[] = {ORPO_TOK_NLL | ORPO_TOK_CHOSEN, ORPO_TOK_REJECTED, ORPO_TOK_NLL | ORPO_TOK_CHOSEN,
                      ORPO_TOK_NLL, ORPO_TOK_NLL};
    int32_t pair[] = {0, 0, 1, 1, 1}; /* pair 1 has no rejected answer */
    float d[5] = {7, 7, 7, 7, 7};
    orpo_accum acc;
    orpo_accum_init(&acc);
    acc.loss = 123;
    orpo_batch b = {5, lp, role, pair, 2};
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "pair 1 of the micro-batch: the rejected answer has 0 tokens");
    CHECK(acc.loss == 123 && acc.pairs == 0 && d[0] == 7 && d[4] == 7); /* nothing modified */
    pair[1] = 1;
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "pair 0 of the micro-batch: the rejected answer has 0 tokens");
    pair[1] = 0;
    role[0] = ORPO_TOK_NLL; /* pair 0 loses its chosen answer */
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "the chosen answer has 0 tokens");
    role[0] = ORPO_TOK_NLL | ORPO_TOK_CHOSEN;
    role[4] = ORPO_TOK_REJECTED;
    /* now valid */
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_OK);
    CHECK(d[0] != 7 && isfinite(d[0]));
    /* non-finite log-prob */
    lp[2] = NAN;
    orpo_accum_init(&acc);
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "token 2 (chosen answer): log-prob nan");
    lp[2] = -INFINITY;
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_DATA);
    lp[2] = -0.2f;
    /* bad roles and pair indices are caller bugs */
    role[1] = ORPO_TOK_CHOSEN | ORPO_TOK_REJECTED;
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "token 1: role 0x6");
    role[1] = 8;
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_ARGS);
    role[1] = ORPO_TOK_REJECTED;
    pair[1] = 2;
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &norm, &acc, d), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "pair 2, expected 0..1");
    pair[1] = 0;
    /* normalisers smaller than the micro-batch */
    orpo_norm small = {1, 4};
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &small, &acc, d), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "pair count of the whole optimiser step");
    orpo_norm small2 = {2, 2};
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &small2, &acc, d), ERR_ARGS);
    orpo_norm none = {2, 0};
    uint8_t role2[] = {ORPO_TOK_CHOSEN, ORPO_TOK_REJECTED, ORPO_TOK_CHOSEN, 0, ORPO_TOK_REJECTED};
    orpo_batch b2 = {5, lp, role2, pair, 2};
    CHECK_EQ_INT(orpo_tokens(&cfg, &b2, &none, &acc, d), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "no NLL target tokens");
    orpo_config ans = {0.1, ORPO_NLL_ANSWER};
    CHECK_EQ_INT(orpo_tokens(&ans, &b2, &none, &acc, d), ERR_OK); /* answer mode needs no NLL targets */
    orpo_config badb = {-0.1, ORPO_NLL_ALL};
    CHECK_EQ_INT(orpo_tokens(&badb, &b, &norm, &acc, d), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "beta = -0.1");
    orpo_config badm = {0.1, 2};
    CHECK_EQ_INT(orpo_tokens(&badm, &b, &norm, &acc, d), ERR_ARGS);
    /* finish checks that every pair of the step was added */
    orpo_accum_init(&acc);
    orpo_norm exact = {2, 3};
    CHECK_EQ_INT(orpo_tokens(&cfg, &b, &exact, &acc, d), ERR_OK);
    orpo_metrics m;
    orpo_norm more = {3, 3};
    CHECK_EQ_INT(orpo_finish(&acc, &more, &m), ERR_INTERNAL);
    CHECK_CONTAINS(err_msg(), "says 3 pairs but 2 were added");
    CHECK_EQ_INT(orpo_finish(&acc, &norm, &m), ERR_INTERNAL); /* 3 NLL tokens added, 4 announced */
    CHECK_CONTAINS(err_msg(), "says 4 NLL tokens but 3 were added");
    CHECK_EQ_INT(orpo_finish(&acc, &exact, &m), ERR_OK);
    /* empty micro-batch: a rank with nothing left at the end of an epoch */
    orpo_batch e = {0, NULL, NULL, NULL, 0};
    orpo_accum_init(&acc);
    CHECK_EQ_INT(orpo_tokens(&cfg, &e, &norm, &acc, NULL), ERR_OK);
    CHECK(acc.loss == 0 && acc.pairs == 0);
}

static void test_metrics_table(void) {
    const char *trl[] = {"loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "logps/chosen", "logps/rejected",
                         "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"};
    orpo_metrics m = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    for (int i = 0; i < ORPO_NMETRICS; i++) {
        CHECK_EQ_STR(orpo_metric_trl_name(i), trl[i]);
        CHECK(orpo_metric_value(&m, i) == (float)(i + 1));
    }
    CHECK_EQ_STR(orpo_metric_name(6), "reward_accuracy");
    CHECK(orpo_metric_name(ORPO_NMETRICS) == NULL);
    /* accuracy is strict: a tie counts as wrong; margin and rewards use beta */
    orpo_config cfg = {0.5, ORPO_NLL_ANSWER};
    orpo_norm norm = {2, 0};
    orpo_pair p[2] = {{-1.0, -1.0, 1, 1}, {-1.0, -3.0, 1, 1}};
    orpo_accum acc;
    orpo_accum_init(&acc);
    CHECK_EQ_INT(orpo_pairs(&cfg, p, 2, 0, 0, &norm, &acc, NULL, NULL), ERR_OK);
    orpo_metrics r;
    CHECK_EQ_INT(orpo_finish(&acc, &norm, &r), ERR_OK);
    CHECK_NEAR(r.reward_accuracy, 0.5, 0);
    CHECK_NEAR(r.reward_margin, 0.5 * (0 + 2) / 2, 1e-7);
    CHECK_NEAR(r.rewards_rejected, 0.5 * -2.0, 1e-7);
    CHECK_NEAR(r.nll_loss, 1.0, 1e-7);
}

int main(void) {
    test_values();
    test_finite();
    test_fd();
    test_accumulation();
    test_errors();
    test_metrics_table();
    TEST_MAIN_END();
}
