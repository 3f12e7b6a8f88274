/* run — the job lifecycle on the CPU backend: train, resume, eval (what `orpo-hpc train|resume|eval` run).
 *
 *   run_opts_default(&o)
 *   run_job(job, &o)      returns an exit code: 0 done, 75 interrupted and checkpointed, or the err_ status
 *   run_signal_install()  SIGTERM / SIGUSR1 / SIGINT set a flag read at step boundaries; a second SIGINT aborts
 *   run_stop_requested()  the signal number that asked to stop, or 0
 *
 * Lifecycle (docs/jobs.md, docs/checkpoints.md): the job's configuration is frozen into output_dir/job.yaml at the
 * first start; a resume refuses (exit 2, naming the keys) when a key that changes the result differs from it.
 * Each optimiser step reads micro_batch_pairs * grad_accum pairs, runs them as grad_accum micro-batches (the ORPO
 * normalisers are the step's totals, so accumulation equals one big batch), clips, steps AdamW, logs a metrics
 * row; validation every eval.every_steps (and before the first step); a checkpoint every
 * checkpoint.every_steps, at the end and when a signal asks to stop (then exit 75).
 */
#ifndef ORPO_RUN_H
#define ORPO_RUN_H

#include "job/job.h"

enum { RUN_TRAIN = 0, RUN_RESUME = 1, RUN_EVAL = 2 };

typedef struct run_opts {
    int mode;               /* RUN_TRAIN, RUN_RESUME, RUN_EVAL */
    int restart;            /* train: move existing checkpoints and metrics aside and start over */
    const char *checkpoint; /* eval: this checkpoint instead of the newest */
} run_opts;

void run_opts_default(run_opts *o);
int run_job(const job_config *job, const run_opts *o);
void run_signal_install(void);
int run_stop_requested(void);

#endif
