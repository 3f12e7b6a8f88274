/* job_plan — `orpo-hpc plan`: what a job needs on a device, before it runs (docs/plan.md).
 *
 * Every number comes from the size table (model/llava_size.h), the one the trainer's allocator carves its arenas
 * from: the model's config (model.h5's attributes, an HF directory or its config.json: no weights are read), the
 * job's LoRA spec, the largest micro-batch (data.h5's largest pair, or an assumed image and text length), the
 * device (CPU or CUDA: weight dtypes, activation precision, context reserve, library workspace cap) and the memory
 * strategies. The planner tries the strategies from the cheapest up and keeps the first combination whose device
 * peak fits the budget; a roofline over a built-in GPU table estimates the step time.
 *
 *   jp_opts_default(&o)                 no overrides: the job's budget, device, micro-batch
 *   jp_make(job, &o, &p)                the plan (ERR_ARGS: a bad option or job; ERR_IO / ERR_DATA: an unreadable
 *                                       model or data file); p->fits says whether it fits. jp_free(&p) after
 *   jp_print(&p, fp)                    the human-readable plan (items, strategies and why, peak, host, estimate)
 *   jp_print_json(&p, fp)               the same as one JSON object
 *   jp_summary(&p, buf, n)              one line: peak, budget, strategies, estimate (train's start)
 *   jp_log_start(job)                   train/resume: the summary as a log line; a plan that fails is a warning,
 *                                       never an error (the trainer itself decides what runs)
 *   jp_free(&p)
 *   jp_gpus(&n) / jp_gpu_find(name)     the built-in GPU table; a name matches ignoring case, spaces and '-'
 *                                       (an unambiguous prefix is enough: "a2000", "h100"); NULL when none
 *   jp_dims_for(cfg, prefix, n_img, answer, pairs, tiles, &d)   the micro-batch dims lt_plan gets for pairs whose
 *                                       largest prefix (ids, <image> unexpanded), image tokens, longer answer and
 *                                       image tiles are these (the trainer's formula, src/train/trainer.c setup)
 *   jp_strategy_name(bit)               "answer-only logits in chunks", ...
 */
#ifndef ORPO_JOB_PLAN_H
#define ORPO_JOB_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "job/job.h"
#include "model/llava_size.h"

/* the memory strategies the planner chooses, cheapest first */
enum { JP_LOGITS_CHUNK = 1, JP_RECOMPUTE = 2, JP_OFFLOAD = 4, JP_VISION_CACHE = 8 };
#define JP_NSTRAT 4
#define JP_MAX_SUGGEST 6

/* assumed text lengths of a pair when the job names no data set (RLAIF-V-like: a short question in the chat
 * template, detailed answers); docs/plan.md says where they come from */
#define JP_ASSUME_PROMPT 64
#define JP_ASSUME_ANSWER 256
#define JP_ASSUME_TILES 2 /* the image: this many tiles each way (672x672 with LLaVA-1.6's 336 tiles) */

typedef struct jp_gpu {
    const char *name;
    double bf16_tflops;  /* dense bf16 tensor-core peak with fp32 accumulation, TFLOP/s */
    double mem_gbs;      /* device memory bandwidth, GB/s */
    double pcie_gbs;     /* host link, one direction, GB/s */
    double mem_gib;      /* device memory (the spec sheet's GB, taken as GiB) */
} jp_gpu;

typedef struct jp_opts {
    double gpu_memory_gb;  /* --gpu-memory-gb: the budget in GiB (0: the job's runtime.gpu_memory_gb, else the GPU's) */
    const char *gpu;       /* --gpu NAME (NULL: by the budget, else the RTX A2000 8GB) */
    int image_h, image_w;  /* --image WxH when there is no data set (0: two tiles each way, 672x672) */
    int64_t pairs;         /* --pairs: pairs per micro-batch (0: train.micro_batch_pairs) */
    int64_t prompt, answer;/* --prompt / --answer: assumed ids per prompt / answer (0: JP_ASSUME_*) */
    int ranks;             /* --ranks: data-parallel ranks for the all-reduce estimate (0, 1: none) */
} jp_opts;

/* the roofline estimate of one micro-batch (forward + backward) on a GPU; all flops and bytes per micro-batch */
typedef struct jp_estimate {
    double flops;          /* the sum of the parts below */
    double f_dec_fwd, f_dec_bwd, f_recompute, f_lora, f_attn, f_vision, f_proj, f_head;
    double bytes;          /* device memory traffic */
    double b_weights, b_acts;
    double pcie_bytes;     /* host <-> device: offload out and back, uploads */
    double t_compute, t_memory, t_pcie, t_optimizer; /* seconds; t_optimizer per micro-batch (AdamW / grad_accum) */
    double time_s;         /* max(t_compute, t_memory) + t_pcie + t_optimizer */
    double pairs_per_s;    /* per rank */
    /* data parallel (opts.ranks > 1) */
    int ranks;
    double ar_bytes, ar_gbs, ar_time_s, ar_pairs_per_s;
} jp_estimate;

typedef struct jp_plan {
    const job_config *job;
    char model_from[64];   /* "model.h5", "HF config.json", ... */
    char model_path[4200];
    llava_config cfg;
    lt_spec spec;
    ls_weights wts;
    char weights_from[128];
    int device;            /* DEVICE_CPU or DEVICE_CUDA */
    int act_dtype;         /* DT_F32 or DT_BF16 */
    const jp_gpu *gpu;     /* NULL on the CPU */
    int gpu_assumed;       /* 1: not named (--gpu); chosen by the budget */
    double budget;         /* bytes */
    char budget_from[64];
    /* the micro-batch */
    int64_t pairs;
    int from_data;         /* 1: data.h5's largest pair */
    char data_note[4300];
    int64_t prefix_ids, image_tokens, answer_ids; /* per pair (largest) */
    int tiles_per_pair, image_h, image_w;
    ls_dims dims;
    /* the search */
    unsigned allowed;      /* JP_* the job allows */
    unsigned fixed;        /* JP_* the job sets (runtime.vision_cache) */
    unsigned chosen;       /* JP_* of the plan (when nothing fits: of the smallest configuration) */
    size_t saves[JP_NSTRAT];   /* device bytes each chosen strategy saves */
    ls_strategy st;
    ls_table tab;
    size_t peak, host;     /* ls_total device / host, every lifetime */
    int fits;
    int has_estimate;
    jp_estimate est;
    /* when nothing fits: what would */
    int nsuggest;
    char suggest[JP_MAX_SUGGEST][512];
} jp_plan;

void jp_opts_default(jp_opts *o);
int jp_make(const job_config *j, const jp_opts *o, jp_plan *p);
void jp_print(const jp_plan *p, FILE *fp);
int jp_print_json(const jp_plan *p, FILE *fp);
void jp_summary(const jp_plan *p, char *buf, size_t n);
void jp_log_start(const job_config *j, int log, ls_strategy *st, int *have);
void jp_free(jp_plan *p);
const jp_gpu *jp_gpus(int *n);
const jp_gpu *jp_gpu_find(const char *name);
void jp_dims_for(int64_t prefix_ids, int64_t image_tokens, int64_t answer_ids, int64_t pairs, int tiles_per_pair,
                 ls_dims *d);
const char *jp_strategy_name(unsigned bit);

#endif
