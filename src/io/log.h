/* log — human-readable lines on stderr and progress reporting.
 *
 *   log_set_level(level)          LOG_ERROR..LOG_DEBUG (default LOG_INFO; env ORPO_LOG=debug|info|warn|error)
 *   log_error/warn/info/debug(fmt, ...)   one line "orpo-hpc: <level>: ..." (info has no level word)
 *   log_error_current()           print err_msg() as an error line
 *   log_set_name(name)            the word in front of every line (default "orpo-hpc"; "orpo-hpc[rank 1]")
 *   log_now()                     monotonic seconds
 *
 *   progress_begin(&p, what, total)   start a progress report (total 0 = unknown)
 *   progress_update(&p, done)         redraw: a bar with rate and ETA on a terminal,
 *                                     a plain line every 10 s otherwise
 *   progress_end(&p)                  final line with count, time and rate
 */
#ifndef ORPO_LOG_H
#define ORPO_LOG_H

#include <stdint.h>

#include "io/err.h"

enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(int level);
int log_level(void);
void log_error(const char *fmt, ...) ERR_PRINTF(1, 2);
void log_warn(const char *fmt, ...) ERR_PRINTF(1, 2);
void log_info(const char *fmt, ...) ERR_PRINTF(1, 2);
void log_debug(const char *fmt, ...) ERR_PRINTF(1, 2);
void log_error_current(void);
void log_set_name(const char *name);
double log_now(void);

typedef struct progress {
    const char *what;
    uint64_t total, done;
    double t0, last_draw;
    int tty;
} progress;

void progress_begin(progress *p, const char *what, uint64_t total);
void progress_update(progress *p, uint64_t done);
void progress_end(progress *p);

#endif
