#include "io/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_MSG_MAX 4096

static _Thread_local int g_code;
static _Thread_local char g_msg[ERR_MSG_MAX];

/* Formats into a local buffer first: an argument may point into g_msg itself (err_set(c, "%s: %s", x, err_msg())),
 * and vsnprintf into the buffer it reads from is undefined behaviour. */
int err_set(int code, const char *fmt, ...) {
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(g_msg, msg, sizeof g_msg);
    g_code = code;
    return code;
}

/* The prefix is formatted before g_msg is touched, so it may also quote err_msg(). */
int err_push(const char *fmt, ...) {
    char prefix[ERR_MSG_MAX];
    char old[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof g_msg - 3) n = sizeof g_msg - 3;
    memcpy(g_msg, prefix, n);
    g_msg[n] = ':';
    g_msg[n + 1] = ' ';
    size_t m = strlen(old);
    if (m > sizeof g_msg - n - 3) m = sizeof g_msg - n - 3;
    memcpy(g_msg + n + 2, old, m);
    g_msg[n + 2 + m] = '\0';
    if (g_code == ERR_OK) g_code = ERR_INTERNAL;
    return g_code;
}

int err_recode(int code) {
    g_code = code;
    return code;
}

int err_code(void) { return g_code; }
const char *err_msg(void) { return g_msg; }

void err_clear(void) {
    g_code = ERR_OK;
    g_msg[0] = '\0';
}

int err_exit_code(int code) {
    switch (code) {
    case ERR_OK: case ERR_ARGS: case ERR_DATA: case ERR_IO: case ERR_INTERRUPTED:
        return code;
    default:
        return ERR_INTERNAL;
    }
}
