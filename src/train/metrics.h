/* metrics — DIR/metrics.h5: tables train, val, samples, segments (and halluc); always a complete, closed HDF5 file
 * (readable by h5py/pandas while the job runs, never left unreadable by kill -9), one row per step after
 * any sequence of crashes and resumes (docs/metrics.md).
 *
 * Mechanism: every row is made durable at once in the segment's journal DIR/metrics/seg-NNNNNN.h5 (the rows
 * not yet in metrics.h5, rewritten atomically); metrics.h5 is rebuilt atomically (tmp, close, fsync, rename)
 * at met_open, met_checkpoint, met_close and every `refresh` seconds. met_open folds every journal left by a
 * crash into metrics.h5; rows of older segments with step > resume_from_step are superseded. A trainer's met_open
 * waits up to 10 s for the lock (an eval writing its row); one held longer is another trainer.
 *
 *   met_open(dir, resume_from_step, &m)     start a new segment (0 = fresh start: every older row superseded)
 *   met_set_refresh(m, seconds)             rebuild metrics.h5 at most this often between checkpoints (60; 0 = never)
 *   met_train_row(m, &row)                  one row per optimiser step; steps increase, > resume_from_step
 *   met_val_row(m, &row)                    one row per evaluation; steps increase, >= resume_from_step
 *   met_sample(m, step, prompt, chosen, rejected, answer)   one generated sample (index = order within the step)
 *   met_open_eval(dir, &m)                  a stand-alone evaluation's segment: supersedes no row; does not wait
 *                                           for the lock (ERR_IO "another orpo-hpc process" when held)
 *   met_eval_row(m, &row)                   one stand-alone val row (standalone = 1; never superseded); written by
 *                                           met_close(m, "eval")
 *   met_halluc_row(m, &row)                 one hallucination benchmark result (table halluc, only in files that have
 *                                           one; never superseded); written by met_close(m, "eval")
 *   met_rows_at(m, step, &nval, &nsamp)     training val rows and sample rows standing at `step`
 *   met_checkpoint(m, step)                 after checkpoint `step` is durable: metrics.h5 := every row so far
 *   met_close(m, reason)                    end the segment ("done", "interrupted", "error"), rebuild, free m
 *   met_train_rows(m)                       rows of the train table (for ckpt_state.metrics_rows)
 *   met_segment_id(m)                       number of the current segment (1, 2, ...)
 *   met_read_train / _val / _segments(path, &rows, &n)   tables of a metrics file, malloc'ed
 *   met_read_samples(path, &rows, &n), met_free_samples(rows, n)
 *   met_read_halluc(path, &rows, &n)        the halluc table (0 rows when the file has none)
 */
#ifndef ORPO_METRICS_H
#define ORPO_METRICS_H

#include <stdint.h>

#define MET_FORMAT "orpo-hpc/metrics"
#define MET_FORMAT_VERSION 2 /* 2: val.standalone; files of version 1 are read (standalone 0) */

typedef struct met_train {
    int64_t step;
    double epoch;            /* fractional: pairs seen / pairs per epoch */
    int64_t samples, tokens; /* cumulative pairs and tokens */
    double loss, nll_loss, log_odds_ratio, log_odds_chosen, chosen_logps, rejected_logps;
    double reward_accuracy, reward_margin, lr, grad_norm, step_time, tokens_per_s;
    int64_t mem_peak;        /* bytes */
    int64_t segment;         /* set by met_ */
} met_train;

typedef struct met_val {
    int64_t step;
    double loss, nll_loss, accuracy, chosen_logps, rejected_logps;
    int64_t segment;
    int64_t standalone;      /* 1: a stand-alone `orpo-hpc eval` of the checkpoint of this step; 0: training's */
} met_val;

typedef struct met_sample_row {
    int64_t step, index;
    char *prompt, *chosen, *rejected, *answer;
    int64_t segment;
} met_sample_row;

typedef struct met_segment {
    int64_t segment, start_step, end_step, checkpoint_step; /* checkpoint_step: last durable one, -1 none */
    char reason[16];         /* running, done, interrupted, error, crashed */
    int64_t slurm_job_id, restart_count;
    int64_t slurm_array_job_id, slurm_array_task_id; /* -1 outside a job array */
    double start_time, end_time; /* Unix seconds; end_time NaN when unknown (crashed) */
    char host[64];
} met_segment;

typedef struct met_halluc {   /* one run of the demo's hallucination benchmark (eval --hallucination) */
    int64_t step, answers, answered, false_answers, mentions, absent;
    double rate, chair;      /* false_answers / answers; absent / mentions */
    int64_t segment;
} met_halluc;

typedef struct met_log met_log;

int met_open(const char *dir, int64_t resume_from_step, met_log **m);
int met_open_eval(const char *dir, met_log **m);
int met_eval_row(met_log *m, const met_val *row);
int met_halluc_row(met_log *m, const met_halluc *row);
void met_rows_at(const met_log *m, int64_t step, int64_t *nval, int64_t *nsamp);
void met_set_refresh(met_log *m, double seconds);
int met_train_row(met_log *m, const met_train *row);
int met_val_row(met_log *m, const met_val *row);
int met_sample(met_log *m, int64_t step, const char *prompt, const char *chosen, const char *rejected,
               const char *answer);
int met_checkpoint(met_log *m, int64_t step);
int met_close(met_log *m, const char *reason);
int64_t met_train_rows(const met_log *m);
int64_t met_segment_id(const met_log *m);

int met_read_train(const char *path, met_train **rows, int64_t *n);
int met_read_val(const char *path, met_val **rows, int64_t *n);
int met_read_samples(const char *path, met_sample_row **rows, int64_t *n);
void met_free_samples(met_sample_row *rows, int64_t n);
int met_read_segments(const char *path, met_segment **rows, int64_t *n);
int met_read_halluc(const char *path, met_halluc **rows, int64_t *n);

#endif
