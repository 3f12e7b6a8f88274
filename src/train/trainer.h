/* trainer — the ORPO step loop of one job on the CPU backend: set-up, optimiser steps, validation, checkpoint
 * writes. It takes a plain tr_config (no job file: src/job/job_run.c builds it and owns the lifecycle: locks,
 * the frozen job.yaml, signals, which checkpoint to restore, the input checks).
 *
 *   tr_open(c, mode, &t)          load model.h5 and data.h5, size the trainer and the optimiser once.
 *                                 TR_TRAIN opens the train split (it must hold pairs); TR_EVAL only the val split
 *                                 (an evaluation-only data set may have an empty train split)
 *   tr_restore(t, path, check_job, &info)   load checkpoint `path` into the trainer, optimiser and data cursor;
 *                                 info gets the hashes and format recorded there (check_job: refuse another
 *                                 job_hash, ERR_ARGS). Nothing on disk changes.
 *   tr_train(t, m, &sum)          run to the stop step: validation before the first step (at step 0) and every
 *                                 eval_every steps and at the end; a checkpoint every ckpt_every steps and at the
 *                                 end, written before that step's validation; c->stop_requested() -> checkpoint
 *                                 and ERR_INTERRUPTED. m: the metrics log (met_open'ed by the caller)
 *   tr_evaluate(t, &row, &n, on_pair, ctx)  validation metrics of the current parameters over the first
 *                                 eval_max_pairs val pairs (n: pairs seen); on_pair (may be NULL) gets each pair
 *   tr_step(t) / tr_stop_step(t)  optimiser steps done / where training stops
 *   tr_close(t)                   free everything (safe on NULL)
 *   tr_pair_features(t, pairs, n, lp)   a plan with the vision features from a cache: each lt_pair's features
 *                                 from the cache (lp[i] made from pairs[i]); nothing otherwise
 *   tr_lt(t) / tr_tok(t) / tr_cfg(t) / tr_ref(t)   the model trainer, tokenizer, configuration and model reference
 *                                 (src/train/generate.c generates with them)
 *
 * Each optimiser step reads micro_batch_pairs * grad_accum pairs, runs them as grad_accum micro-batches (the ORPO
 * normalisers are the step's totals, so accumulation equals one big batch), clips, steps AdamW, logs a metrics
 * row. Allocation failures exit 4 with a message (io/mem.h).
 *
 * Data parallel (c->dist, docs/parallel.md): a step takes world * micro_batch_pairs * grad_accum pairs, in the
 * epoch's order whatever the world size; micro-batch k of the step runs on rank k % world. Each micro-batch's
 * gradient and loss sums start from zero and are added to the step's sums in the order of k (dist_fold_*: rank
 * order on the CPU), so the result depends on world * grad_accum, not on how it is split: world 2 x grad_accum 1
 * gives the same bits as world 1 x grad_accum 2. Rank 0 writes checkpoints and metrics, after a barrier; every
 * rank reads the checkpoint on resume, and they check that they hold the same state; the stop flag is agreed
 * every step, so a signal to any rank checkpoints them all.
 */
#ifndef ORPO_TRAINER_H
#define ORPO_TRAINER_H

#include <stdint.h>

#include "data/dataset.h"
#include "dist/dist.h"
#include "model/llava_size.h"
#include "model/llava_train.h"
#include "train/metrics.h"

enum { TR_DEVICE_AUTO = 0, TR_DEVICE_CPU = 1, TR_DEVICE_CUDA = 2 };
enum { TR_TRAIN = 0, TR_EVAL = 1 };

typedef struct tr_group_lr {
    const char *name; /* parameter group ("lora", "mm_projector", ...) */
    double lr;
} tr_group_lr;

typedef struct tr_config {
    const char *name;                     /* the job's name, for messages */
    const char *model_path, *data_path;   /* model.h5, data.h5 */
    const char *output_dir;               /* checkpoints/ go there */
    int device;                           /* TR_DEVICE_* */
    int attention;                        /* runtime.attention: AFZ_AUTO, AFZ_CUDNN, AFZ_KERNELS (backend/attn_fused.h) */
    int precision_auto;                   /* runtime.precision auto: bf16 when the run uses CUDA (spec.act_dtype
                                           * is then set by setup), else spec.act_dtype (fp32) */
    int threads;                          /* BLAS threads; 0: the library's default */
    lt_spec spec;                         /* LoRA targets and trainer options */
    int64_t max_pairs;                    /* pairs of the train split used per epoch; 0: all */
    int64_t epochs, max_steps;            /* max_steps 0: epochs decide */
    int64_t micro_batch_pairs, grad_accum, warmup_steps;
    double lr, weight_decay, max_grad_norm, orpo_beta;
    int cosine;                           /* schedule: 1 cosine with warm-up, 0 constant */
    int nll_all;                          /* ORPO NLL over prompt and chosen answer (else the answer only) */
    uint64_t seed;
    const tr_group_lr *group_lr;          /* learning rates of named groups; the others train at lr */
    int n_group_lr;
    int64_t ckpt_every, keep_last;        /* 0: only at the end / keep all */
    int64_t eval_every, eval_max_pairs, eval_samples;
    ls_strategy strategy;     /* the memory strategies of the plan (job_plan.c), when have_strategy; else none,
                               * with recompute as spec.grad_ckpt */
    int have_strategy;
    const char *vision_cache; /* runtime.vision_cache (NULL: not set). Training with it reads the frozen vision
                               * features from this file (train/vcache.h; built at tr_open when missing) instead of
                               * running the tower; a plan with the cache (have_strategy) needs it. TR_EVAL runs
                               * the tower */
    int gen_max_new;          /* generation (generate, the hallucination benchmark): new tokens at most per prompt;
                               * 0: none besides eval samples. Sizes the plan's KV cache */
    uint64_t job_hash, model_hash, data_hash; /* recorded in every checkpoint */
    const char *job_yaml;                 /* the frozen configuration, recorded in every checkpoint */
    int (*stop_requested)(void);          /* nonzero: checkpoint and stop (NULL: never) */
    double log_every_s;                   /* seconds between progress lines; 0: every step */
    dist *dist;                           /* data parallel (NULL: one process); tr_train's metrics: rank 0's only */
} tr_config;

typedef struct tr_restored {
    int64_t step;
    int64_t format_version;               /* the checkpoint's; 1: model_hash/data_hash are not content hashes */
    uint64_t job_hash, model_hash, data_hash;
    char *job_yaml;                       /* malloc'ed; the caller frees */
} tr_restored;

typedef struct tr_summary {
    double acc_before, acc_after;         /* validation accuracy before / after training; -1: none */
    double elapsed;                       /* seconds of training, all segments */
} tr_summary;

typedef struct tr_pair_result {
    int64_t index;                        /* pair index in data.h5 (/pairs row) */
    double chosen_logps, rejected_logps;  /* mean log-prob per answer token */
    double nll;                           /* -chosen_logps: the pair's answer NLL */
    double log_odds;                      /* ORPO log-odds ratio z */
    int correct;                          /* chosen_logps > rejected_logps */
} tr_pair_result;

typedef struct trainer trainer;

int tr_open(const tr_config *c, int mode, trainer **out);
int tr_restore(trainer *t, const char *path, int check_job, tr_restored *info);
int tr_train(trainer *t, met_log *m, tr_summary *sum);

/* memory of the run: what the size table planned (llava_size.h) and what the backend measured */
typedef struct tr_memory_use {
    size_t plan_weights, weights;         /* frozen weights: planned, loaded */
    size_t plan_device, device_peak;      /* everything else on the device: planned, high-water of the backend */
    size_t plan_host, host_peak;          /* host arenas (packed batch, offloaded layer inputs) */
} tr_memory_use;
void tr_memory(trainer *t, tr_memory_use *u);
int tr_evaluate(trainer *t, met_val *row, int64_t *pairs, int (*on_pair)(void *ctx, const tr_pair_result *p),
                void *ctx);
int64_t tr_step(const trainer *t);
int64_t tr_stop_step(const trainer *t);
void tr_close(trainer *t);
struct tok;
struct ldr_pair;
int tr_pair_features(trainer *t, const struct ldr_pair *pairs, int n, lt_pair *lp);
llava_trainer *tr_lt(trainer *t);
const struct tok *tr_tok(const trainer *t);
const tr_config *tr_cfg(const trainer *t);
const ds_model_ref *tr_ref(const trainer *t);

#endif
