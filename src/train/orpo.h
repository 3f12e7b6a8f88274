/* orpo — the ORPO loss, its metrics and its gradient w.r.t. every per-token log-prob (TRL semantics).
 *
 * Input per micro-batch: the log-prob of every target token and its role (NLL target, chosen-answer
 * token of pair i, rejected-answer token of pair i; answer tokens include </s>). Per pair
 *   L̄_w = mean log-prob of the chosen answer,  L̄_l = same for the rejected answer,
 *   z    = (L̄_w - L̄_l) - (log1mexp(L̄_w) - log1mexp(L̄_l))      (log-odds ratio, Mächler log1mexp)
 * and for the optimiser step (all micro-batches, all ranks together: P pairs, T NLL target tokens)
 *   loss = NLL - beta/P * Σ_i logsigmoid(z_i)
 *   NLL  = -(Σ NLL-target log-probs) / T       nll = ORPO_NLL_ALL    (TRL: prompt+answer of chosen, token mean)
 *   NLL  = -1/P * Σ_i L̄_w,i                    nll = ORPO_NLL_ANSWER (LLaMA-Factory: per-pair answer mean)
 * Each micro-batch call adds its share (already divided by the step's P and T, passed in orpo_norm) to an
 * orpo_accum and writes d loss / d log-prob for its own tokens, so the sum over micro-batches is the loss
 * and gradient of the whole step as if it were one batch (docs/training.md). Internally fp64.
 *
 *   orpo_log1mexp(x)                         log(1 - e^x) for x <= 0, branch at -ln 2
 *   orpo_logsigmoid(z)                       log σ(z), stable for any z
 *   orpo_log_odds(lw, ll)                    z for two mean log-probs (no clamping)
 *   orpo_accum_init(acc)                     zero an accumulator (start of an optimiser step)
 *   orpo_pairs(cfg, p, n, nll_sum, nll_n, norm, acc, g, d_nll)   loss/metrics/grad from per-pair sums
 *   orpo_tokens(cfg, batch, norm, acc, dlogp)                     same from per-token log-probs and roles
 *   orpo_finish(acc, norm, m)                 the step's metrics as floats; checks every pair was added
 *   orpo_metric_name(i) / orpo_metric_trl_name(i) / orpo_metric_value(m, i)   metric table (ORPO_NMETRICS)
 */
#ifndef ORPO_ORPO_H
#define ORPO_ORPO_H

#include <stdint.h>

/* values in the order of the job key train.nll ("all", "answer") */
enum { ORPO_NLL_ALL = 0, ORPO_NLL_ANSWER = 1 };

/* token roles (bit flags); CHOSEN and REJECTED exclude each other. In ORPO_NLL_ANSWER mode the NLL
 * flag is ignored (the NLL comes from the chosen answer tokens). */
enum { ORPO_TOK_NLL = 1, ORPO_TOK_CHOSEN = 2, ORPO_TOK_REJECTED = 4 };

/* most pairs in one micro-batch call (stack work space; nothing is allocated) */
#define ORPO_MAX_PAIRS 256

/* mean answer log-probs above this are clamped to it inside log1mexp and z (straight-through for the
 * gradient): log(1 - e^0) = -inf would otherwise give inf/NaN where a model is certain of an answer. */
#define ORPO_LOGP_CEIL (-1e-20)

typedef struct orpo_config {
    double beta; /* λ of the paper, TRL ORPOConfig.beta (default 0.1); >= 0 */
    int nll;     /* ORPO_NLL_ALL or ORPO_NLL_ANSWER */
} orpo_config;

typedef struct orpo_norm {
    int64_t pairs;      /* pairs in the whole optimiser step (all micro-batches, all ranks) */
    int64_t nll_tokens; /* ORPO_TOK_NLL tokens in the whole step (used with ORPO_NLL_ALL) */
} orpo_norm;

typedef struct orpo_pair {
    double sum_w, sum_l; /* Σ log-probs of the chosen / rejected answer tokens (incl. </s>) */
    int64_t n_w, n_l;    /* their counts (>= 1) */
} orpo_pair;

typedef struct orpo_pair_grad {
    double d_w; /* d loss / d log-prob of each chosen answer token of the pair (NLL share not included) */
    double d_l; /* d loss / d log-prob of each rejected answer token */
} orpo_pair_grad;

typedef struct orpo_batch {
    int64_t n_tokens;
    const float *logp;   /* [n_tokens] log-prob of each target token */
    const uint8_t *role; /* [n_tokens] OR of ORPO_TOK_*; 0 = not part of the loss (gradient 0) */
    const int32_t *pair; /* [n_tokens] pair 0..n_pairs-1 of a CHOSEN/REJECTED token (else ignored) */
    int32_t n_pairs;     /* pairs of this micro-batch */
} orpo_batch;

/* Step sums, each already divided by the step's normaliser; plain doubles so that data-parallel ranks can
 * add them element-wise (ORPO_ACCUM_N doubles) before orpo_finish. */
typedef struct orpo_accum {
    double loss, nll_loss, log_odds_ratio, log_odds_chosen, chosen_logps, rejected_logps;
    double reward_accuracy, reward_margin, rewards_chosen, rewards_rejected;
    double pairs, nll_tokens; /* counts seen (checked against the normaliser) */
} orpo_accum;
#define ORPO_ACCUM_N 12

#define ORPO_NMETRICS 10
typedef struct orpo_metrics {
    float loss;             /* TRL "loss" */
    float nll_loss;         /* "nll_loss" (LLaMA-Factory "sft_loss") */
    float log_odds_ratio;   /* "log_odds_ratio": mean logsigmoid(z) (<= 0, not × beta) */
    float log_odds_chosen;  /* "log_odds_chosen": mean z */
    float chosen_logps;     /* "logps/chosen": mean L̄_w */
    float rejected_logps;   /* "logps/rejected": mean L̄_l */
    float reward_accuracy;  /* "rewards/accuracies": mean 1[beta L̄_w > beta L̄_l] */
    float reward_margin;    /* "rewards/margins": mean beta (L̄_w - L̄_l) */
    float rewards_chosen;   /* "rewards/chosen": mean beta L̄_w */
    float rewards_rejected; /* "rewards/rejected": mean beta L̄_l */
} orpo_metrics;

double orpo_log1mexp(double x);
double orpo_logsigmoid(double z);
double orpo_log_odds(double lw, double ll);
void orpo_accum_init(orpo_accum *acc);
int orpo_pairs(const orpo_config *cfg, const orpo_pair *p, int32_t n_pairs, double nll_sum, int64_t nll_count,
               const orpo_norm *norm, orpo_accum *acc, orpo_pair_grad *g, double *d_nll);
int orpo_tokens(const orpo_config *cfg, const orpo_batch *b, const orpo_norm *norm, orpo_accum *acc,
                float *dlogp);
int orpo_finish(const orpo_accum *acc, const orpo_norm *norm, orpo_metrics *m);
const char *orpo_metric_name(int i);
const char *orpo_metric_trl_name(int i);
float orpo_metric_value(const orpo_metrics *m, int i);

#endif
