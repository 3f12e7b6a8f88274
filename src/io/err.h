/* err — status codes and the one error message of the current thread.
 *
 * Every function that can fail returns an `int` status (ERR_OK on success) and,
 * on failure, leaves a message that names the file, the place and what was
 * expected. Callers add context with err_push() on their way up.
 *
 *   err_set(code, fmt, ...)   set code and message; returns code (the arguments may quote err_msg())
 *   err_push(fmt, ...)        prefix the current message with "context: "; returns code
 *   err_recode(code)          keep the current message, change its code (e.g. a parse error that makes a file
 *                             bad data); returns code
 *   err_code()                current code (ERR_OK when none)
 *   err_msg()                 current message ("" when none)
 *   err_clear()               forget the current error
 *   err_exit_code(code)       process exit code for a status (DESIGN.md)
 *
 * Status codes double as exit codes: 0 done, 2 bad job/arguments, 3 bad model
 * or data file, 4 I/O failure, 75 interrupted and checkpointed, 1 internal.
 */
#ifndef ORPO_ERR_H
#define ORPO_ERR_H

enum {
    ERR_OK = 0,
    ERR_INTERNAL = 1,
    ERR_ARGS = 2,  /* bad job file or command line */
    ERR_DATA = 3,  /* bad model or data file */
    ERR_IO = 4,    /* disk full, permissions, missing file */
    ERR_INTERRUPTED = 75
};

#if defined(__GNUC__)
#define ERR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ERR_PRINTF(a, b)
#endif

int err_set(int code, const char *fmt, ...) ERR_PRINTF(2, 3);
int err_push(const char *fmt, ...) ERR_PRINTF(1, 2);
int err_recode(int code);
int err_code(void);
const char *err_msg(void);
void err_clear(void);
int err_exit_code(int code);

#endif
