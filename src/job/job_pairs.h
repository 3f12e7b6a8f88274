/* job_pairs — per-pair results of `orpo-hpc eval --pairs-out FILE` (docs/analysis.md).
 *
 *   job_pairs_open(path, &p)        FILE ending in .h5 or .jsonl (else ERR_ARGS); nothing is written yet
 *   job_pairs_add(p, r)             one pair (the tr_evaluate callback; ctx is the job_pairs)
 *   job_pairs_close(p, meta, write) write the file atomically (write 1) and free p; meta: its provenance
 *
 * .jsonl: one object per line {"pair":I,"chosen_logps":X,"rejected_logps":X,"nll":X,"log_odds":X,"correct":B}
 * (numbers with 17 significant digits; NaN as null). .h5: one 1-d dataset per column under the root (pair int64,
 * chosen_logps, rejected_logps, nll, log_odds float64, correct uint8), root attributes format
 * "orpo-hpc/eval-pairs", format_version 1, step, checkpoint, model, data.
 */
#ifndef ORPO_JOB_PAIRS_H
#define ORPO_JOB_PAIRS_H

#include <stdint.h>

#include "train/trainer.h"

#define JOB_PAIRS_FORMAT "orpo-hpc/eval-pairs"

typedef struct job_pairs job_pairs;

typedef struct job_pairs_meta {
    int64_t step;
    const char *checkpoint; /* "" when none (the initial adapters) */
    const char *model, *data;
} job_pairs_meta;

int job_pairs_open(const char *path, job_pairs **out);
int job_pairs_add(void *p, const tr_pair_result *r);
int job_pairs_close(job_pairs *p, const job_pairs_meta *meta, int write);

#endif
