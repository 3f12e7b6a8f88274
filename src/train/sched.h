/* sched — learning-rate schedules of transformers (optimization.py), as pure functions of the step.
 *
 * The optimiser step s (0-based: the number of optimiser steps already taken) runs with
 * lr = base_lr * sched_factor(kind, s, warmup, total), exactly like torch LambdaLR driven by
 * HF Trainer (optimizer.step() then scheduler.step()); so with warm-up the first step has lr 0.
 * The only schedule state is the step number.
 *
 *   sched_factor(kind, step, warmup, total)        the LambdaLR multiplier (>= 0)
 *   sched_lr(kind, base_lr, step, warmup, total)   base_lr * sched_factor(...)
 *   sched_name(kind)                               "cosine", "constant", "linear"
 *   sched_parse(name, &kind)                       name -> kind; ERR_ARGS naming the choices
 */
#ifndef ORPO_SCHED_H
#define ORPO_SCHED_H

#include <stdint.h>

/* cosine and constant keep the order of the job key train.schedule ("cosine", "constant") */
enum {
    SCHED_COSINE = 0,   /* get_cosine_schedule_with_warmup, num_cycles 0.5: warm-up, then cosine to 0 at total */
    SCHED_CONSTANT = 1, /* get_constant_schedule_with_warmup: warm-up, then 1 */
    SCHED_LINEAR = 2    /* get_linear_schedule_with_warmup: warm-up, then linear to 0 at total */
};

double sched_factor(int kind, int64_t step, int64_t warmup, int64_t total);
double sched_lr(int kind, double base_lr, int64_t step, int64_t warmup, int64_t total);
const char *sched_name(int kind);
int sched_parse(const char *name, int *kind);

#endif
