/* sched — transformers' lr lambdas, same float operations (Python floats are C doubles). */
#include "train/sched.h"

#include <math.h>
#include <string.h>

#include "io/err.h"

static const char *const NAMES[] = {"cosine", "constant", "linear"};

static double imax1(int64_t x) { return (double)(x > 1 ? x : 1); }

double sched_factor(int kind, int64_t step, int64_t warmup, int64_t total) {
    if (step < warmup) return (double)step / imax1(warmup);
    switch (kind) {
    case SCHED_CONSTANT:
        return 1.0;
    case SCHED_LINEAR: {
        double f = (double)(total - step) / imax1(total - warmup);
        return f > 0.0 ? f : 0.0;
    }
    case SCHED_COSINE:
    default: {
        /* as transformers: past `total` the cosine rises again (progress > 1); callers stop at total */
        double progress = (double)(step - warmup) / imax1(total - warmup);
        double f = 0.5 * (1.0 + cos(3.141592653589793 * 0.5 * 2.0 * progress));
        return f > 0.0 ? f : 0.0;
    }
    }
}

double sched_lr(int kind, double base_lr, int64_t step, int64_t warmup, int64_t total) {
    return base_lr * sched_factor(kind, step, warmup, total);
}

const char *sched_name(int kind) {
    return kind >= 0 && kind < (int)(sizeof NAMES / sizeof NAMES[0]) ? NAMES[kind] : "?";
}

int sched_parse(const char *name, int *kind) {
    for (int i = 0; i < (int)(sizeof NAMES / sizeof NAMES[0]); i++)
        if (name && !strcmp(name, NAMES[i])) {
            *kind = i;
            return ERR_OK;
        }
    return err_set(ERR_ARGS, "schedule \"%s\": expected one of cosine, constant, linear", name ? name : "(null)");
}
