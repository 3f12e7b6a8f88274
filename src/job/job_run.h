/* job_run — the lifecycle of a job: what `orpo-hpc train | resume | eval` run (docs/jobs.md, docs/checkpoints.md).
 *
 *   job_run_opts_default(&o)
 *   job_run(job, &o)              (train | resume | eval | generate) returns an exit code: 0 done, 75 interrupted and checkpointed, or the err_ status
 *   job_run_signal_install()      SIGTERM / SIGUSR1 / SIGINT set a flag read at step boundaries; a second SIGINT
 *                                 aborts; SIGXFSZ is ignored (a file-size limit gives exit 4 with a message)
 *   job_run_stop_requested()      the signal number that asked to stop, or 0
 *   job_run_spec(job, &spec)      the job's LoRA targets and trainer options as a trainer spec (ERR_ARGS on a bad one)
 *   job_run_yaml(job)             the configuration as job_write_yaml writes it (the frozen job.yaml); free() it
 *   job_run_input_hashes(job, &m, &d)  the content hashes of model.h5 and data.h5 that checkpoints record (the one
 *                                 recorded at import; computed, with a warning, for a file without one)
 *
 * What it owns (the step loop itself is src/train/trainer.c):
 *   - DIR/run.lock: one trainer per output directory, taken before anything there is read, moved or written;
 *   - train refuses a directory that holds checkpoints; train --restart moves checkpoints, metrics and job.yaml
 *     aside to DIR/restart-<time>/;
 *   - the frozen configuration DIR/job.yaml: a start compares the job with it (result-changing keys; exit 2
 *     naming each key, then/now) and writes it only once the set-up (model, data, trainer) has succeeded;
 *   - the inputs: the content hashes of model.h5 and data.h5 (io/content_hash.h, recorded at import) go into every
 *     checkpoint; resume and eval refuse (exit 2, naming the file and both hashes) when the file at the same path
 *     holds other content than when the checkpoint was written, unless o->accept_changed_inputs;
 *   - which checkpoint is restored (the newest that verifies; eval: or o->checkpoint);
 *   - eval: a `val` row marked standalone in DIR/metrics.h5 (not while a trainer holds the metrics: then only
 *     printed, with a warning), and per-pair results in o->pairs_out (.h5 or .jsonl).
 */
#ifndef ORPO_JOB_RUN_H
#define ORPO_JOB_RUN_H

#include <stdint.h>

#include "job/job.h"
#include "model/llava_train.h"

enum { JOB_RUN_TRAIN = 0, JOB_RUN_RESUME = 1, JOB_RUN_EVAL = 2, JOB_RUN_GENERATE = 3 };

typedef struct job_run_opts {
    int mode;                  /* JOB_RUN_TRAIN, JOB_RUN_RESUME, JOB_RUN_EVAL */
    int restart;               /* train: move existing checkpoints and metrics aside and start over */
    const char *checkpoint;    /* eval: this checkpoint instead of the newest */
    int accept_changed_inputs; /* resume/eval: go on when model.h5 or data.h5 changed since the checkpoint */
    const char *pairs_out;     /* eval: per-pair results to this .h5 or .jsonl file (NULL: none) */
    /* generate (src/job/job_generate.c): checkpoint is STEP, latest (NULL) or none (the base model) or a file */
    const char *image, *prompt;    /* one image and question, or: */
    const char *data;              /* data.h5 (the job's when NULL) and split (DS_TRAIN / DS_VAL) */
    int split;
    int64_t max_pairs;             /* 0: all */
    int max_new;
    double temperature, top_p;
    uint64_t seed;
    const char *out;               /* --data: JSONL answers here (NULL: stdout) */
    int hallucination;             /* eval --hallucination: the demo's benchmark instead of the val metrics */
    int json;                      /* ... printed as JSON */
    int halluc_items;              /* held-out scenes (0: 120) */
} job_run_opts;

typedef struct job_halluc_result {
    int64_t step, answers, answered, false_answers, mentions, absent;
    int64_t objects, covered;      /* the described scenes' objects; of those, named by the descriptions */
    double rate, chair;            /* false_answers / answers; absent / mentions */
    double coverage;               /* covered / objects */
} job_halluc_result;

/* generate's work once the trainer holds the chosen parameters (src/job/job_generate.c) */
struct trainer;
int job_generate(struct trainer *t, const job_run_opts *o);
/* eval --hallucination: the demo's held-out scenes asked and scored (src/demo/demo_halluc.c), printed */
int job_halluc(struct trainer *t, const job_run_opts *o, int64_t step, job_halluc_result *res);

void job_run_opts_default(job_run_opts *o);
int job_run(const job_config *j, const job_run_opts *o);
void job_run_signal_install(void);
int job_run_stop_requested(void);
int job_run_spec(const job_config *j, lt_spec *s);
char *job_run_yaml(const job_config *j);
int job_run_input_hashes(const job_config *j, uint64_t *model_hash, uint64_t *data_hash);

#endif
